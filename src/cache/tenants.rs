//! The tenants' front: a lock-free, read-mostly copy of the tenants' tokens in use,
//! read on the hot path without a lock, a clock read, an allocation or an await. The
//! cache stays the store of record (expiry, capacity, single flight); a token leaves the
//! front at its refresh point, when a `401` retires it, or when its shard is full.
//!
//! A lookup turns the [`Tenant`] into two words and hashes them (FxHash) instead of
//! building and hashing a whole [`CacheKey`]. With thousands of tenants in turn, the
//! lines a hit touches decide its cost, so a hit reads, beside lines that stay in cache
//! (the shard, its table of buckets, its values' reference count), exactly one line of
//! the tenant's own: its slot, one line long, with the tenant, the token's value and its
//! id. The token values of a shard are copies in one buffer of the shard's (wiped when
//! the last of them is dropped), so a request's clone of a value writes the shard's one
//! reference count, not a count of each token's far apart in the heap. Most writes copy
//! no value: a shard takes up to [`UNCOPIED`] new tokens with their own values, and the
//! write that would pass that copies all of the shard's values into a new buffer, so
//! that a write copies a few values on average, not a whole shard. The copy of a token
//! that leaves a shard stays in the shard's buffer until the next such copy; a buffer
//! is wiped when the last shard or request that holds it is dropped.
//!
//! [`CacheKey`]: super::CacheKey

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::time::Instant;

#[cfg(test)]
use super::front::Hit;
use super::front::Sent;
use super::{Entry, refused};
use crate::assertion::{OrgNumber, Tenant};

/// Fewest shards. A front for more tenants has more, so that a write, which rebuilds one
/// shard, rebuilds about [`PER_SHARD`] slots.
const MIN_SHARDS: usize = 64;
/// Most shards: a shard's number is at most the top 12 bits of the tenant's hash.
const MAX_SHARDS: usize = 1 << 12;
/// Tokens in a shard, on average, when the front is full.
const PER_SHARD: usize = 160;
/// Most tokens a shard holds: a bucket's entry names a slot by its index plus one, in
/// 8 bits.
const MAX_SHARD_CAPACITY: usize = u8::MAX as usize;
/// Entries in a bucket.
const WAYS: usize = 4;
/// Most tokens in a shard whose values are their own, not yet copies in a buffer of the
/// shard's.
const UNCOPIED: usize = 16;
/// A slot's word: the bit that says a service has accepted its token (the other bits
/// are the token's id, a count that never reaches it).
const ACCEPTED: u64 = 1 << 63;
/// How often the front's clock advances. Tokens leave the front one tick before their
/// refresh point, so a late tick never keeps one past it.
const TICK: Duration = Duration::from_millis(250);
/// The clock's value once its ticker has stopped (its runtime shut down): every token
/// is then due, and the next write starts a new ticker.
const STOPPED: u64 = u64::MAX;

/// The tenants' tokens in use, for a lock-free read.
pub(crate) struct Tenants {
    /// A power of two shards.
    shards: Box<[ArcSwap<Shard>]>,
    /// How far a hash is shifted right to give its shard's number.
    shift: u32,
    clock: Arc<Clock>,
    /// Most tokens one shard holds.
    shard_capacity: usize,
}

/// A coarse clock: milliseconds since `start`, advanced by a ticker task.
struct Clock {
    start: Instant,
    now: AtomicU64,
}

/// A tenant in two words, without loss: what a slot keeps and compares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Key([u64; 2]);

impl Key {
    /// The organisation numbers' [`word`]s, the kind of tenant in the first one's
    /// second byte's high half (always 3 in an ASCII digit), and `0` (never a word) for
    /// no second number.
    #[inline]
    fn of(tenant: &Tenant) -> Key {
        let (kind, first, second) = match tenant {
            Tenant::Multi { parent, child } => (1, word(parent), child.as_ref().map_or(0, word)),
            Tenant::Single { child } => (2, word(child), 0),
        };
        Key([first ^ (kind << 12), second])
    }

    /// FxHash's step (rustc's) over the two words, then the high half folded into the
    /// low and one more multiply: a product's bits depend only on the bits below them,
    /// and tenants with consecutive numbers differ in their words' high bytes, so
    /// without the fold the bucket's and the tag's bits would differ little between
    /// them. Its top bits pick the shard, bits 20 to 31 the bucket, bits 32 to 39 the
    /// tag.
    #[inline]
    fn hash(self) -> u64 {
        let hash = fx(fx(0, self.0[0]), self.0[1]);
        (hash ^ (hash >> 32)).wrapping_mul(SEED)
    }
}

/// FxHash's multiplier.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[inline]
fn fx(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// An organisation number in one word: the first eight digits' bytes, and the ninth
/// digit in the first byte's high half (always 3 in an ASCII digit).
#[inline]
fn word(org: &OrgNumber) -> u64 {
    let digits = org.digits();
    let [a, b, c, d, e, f, g, h, ninth] = *digits;
    u64::from_le_bytes([a, b, c, d, e, f, g, h]) ^ (u64::from(ninth & 0x0f) << 4)
}

/// One shard, rebuilt on every write: a table of buckets over slots side by side.
#[derive(Default)]
struct Shard {
    /// The clock's value from which one of the shard's tokens is due: from then on the
    /// shard serves none, until a write rebuilds it without the due ones (`0`, none
    /// served, in an empty shard).
    due: u64,
    /// A power of two buckets (or none). An entry holds a slot's [`tag`] in its high
    /// byte and the slot's index plus one in its low byte; `0` is free.
    buckets: Box<[[u16; WAYS]]>,
    slots: Box<[Slot]>,
    /// What writes read of each slot.
    meta: Box<[Meta]>,
    /// The slots that found no room in their bucket (a scan finds them; almost always
    /// none).
    spilled: Box<[u8]>,
}

/// What writes read of a slot.
#[derive(Clone, Copy)]
struct Meta {
    /// When its token is due (its refresh point, less a tick).
    until: u64,
    /// Whether its value is a copy in a buffer of the shard's.
    copied: bool,
}

/// A tenant's token: one cache line, all that a hit reads of the tenant's own.
#[repr(align(64))]
struct Slot {
    /// The token's `Authorization` value: a copy in a buffer of the shard's, or for a
    /// few new tokens their own (see the module docs).
    header: HeaderValue,
    key: Key,
    /// The token's id (what a `401` names), and [`ACCEPTED`] once a service has accepted
    /// it (set in place, once).
    word: AtomicU64,
}

impl Slot {
    fn id(&self) -> u64 {
        self.word.load(Ordering::Relaxed) & !ACCEPTED
    }
}

/// What a slot is built from.
struct Parts<'a> {
    key: Key,
    meta: Meta,
    header: &'a HeaderValue,
    /// The slot's word.
    word: u64,
}

/// The bucket of `hash` in a table of `mask + 1` buckets.
#[inline]
fn bucket_of(hash: u64, mask: usize) -> usize {
    (hash >> 20) as usize & mask
}

/// The 8 bits of `hash` a bucket's entry keeps, to tell its slot from others without
/// reading it.
#[inline]
fn tag(hash: u64) -> u16 {
    (hash >> 32) as u16 & 0xff
}

impl Shard {
    #[inline]
    fn find(&self, key: Key, hash: u64) -> Option<&Slot> {
        let mask = self.buckets.len().checked_sub(1)?;
        let bucket = &self.buckets[bucket_of(hash, mask)];
        let tag = tag(hash);
        // Without a branch: the index of the entry with this tag (a free entry adds
        // nothing; two entries with one tag, one chance in 256 for a pair, make a wrong
        // index, which the comparison below catches).
        let mut found = 0;
        for &entry in bucket {
            found |= if entry >> 8 == tag { entry & 0xff } else { 0 };
        }
        if let Some(slot) = usize::from(found)
            .checked_sub(1)
            .and_then(|i| self.slots.get(i))
            && slot.key == key
        {
            return Some(slot);
        }
        if found == 0 && self.spilled.is_empty() {
            return None;
        }
        self.search(bucket, tag, key)
    }

    /// The slow half of [`find`](Self::find): every entry of `bucket` with `tag`, then
    /// the spilled slots.
    #[cold]
    fn search(&self, bucket: &[u16; WAYS], tag: u16, key: Key) -> Option<&Slot> {
        let tagged = bucket
            .iter()
            .filter(|&&entry| entry != 0 && entry >> 8 == tag)
            .map(|&entry| usize::from(entry & 0xff) - 1);
        let spilled = self.spilled.iter().map(|&i| usize::from(i));
        tagged
            .chain(spilled)
            .filter_map(|i| self.slots.get(i))
            .find(|slot| slot.key == key)
    }

    /// A new shard of `parts` (at most [`MAX_SHARD_CAPACITY`]): with the values they
    /// have, or, when more than [`UNCOPIED`] are their tokens' own, with copies of all
    /// in one new buffer.
    fn build(mut parts: Vec<Parts<'_>>) -> Shard {
        if parts.is_empty() {
            return Shard::default();
        }
        let uncopied = parts.iter().filter(|part| !part.meta.copied).count();
        // Always some when made: a copy of a value is a value.
        let copies = (uncopied > UNCOPIED)
            .then(|| {
                let values: Vec<&HeaderValue> = parts.iter().map(|part| part.header).collect();
                crate::token::in_one_buffer(&values)
            })
            .flatten();
        let headers = match copies {
            Some(copies) => {
                parts.iter_mut().for_each(|part| part.meta.copied = true);
                copies
            }
            None => parts.iter().map(|part| part.header.clone()).collect(),
        };
        let slots: Box<[Slot]> = parts
            .iter()
            .zip(headers)
            .map(|(part, header)| Slot {
                header,
                key: part.key,
                word: AtomicU64::new(part.word),
            })
            .collect();
        let meta: Box<[Meta]> = parts.iter().map(|part| part.meta).collect();
        let hashes: Vec<u64> = parts.iter().map(|part| part.key.hash()).collect();
        // Two slots per bucket on average; twice and four times as many buckets while
        // some slot finds no room; the few left then are spilled.
        let fewest = slots.len().div_ceil(2).next_power_of_two();
        let mut size = fewest;
        loop {
            let (buckets, spilled) = place(&hashes, size);
            if spilled.is_empty() || size >= fewest * 4 {
                return Shard {
                    due: meta.iter().map(|m| m.until).min().unwrap_or(STOPPED),
                    buckets,
                    slots,
                    meta,
                    spilled,
                };
            }
            size *= 2;
        }
    }

    /// The parts of the slots whose tokens are due after `now` and that `keep` keeps.
    fn live(&self, now: u64, keep: impl Fn(&Slot) -> bool) -> Vec<Parts<'_>> {
        self.slots
            .iter()
            .zip(&self.meta)
            .filter(|&(slot, meta)| now < meta.until && keep(slot))
            .map(|(slot, &meta)| Parts {
                key: slot.key,
                meta,
                header: &slot.header,
                word: slot.word.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A table of `size` buckets for slots with `hashes`, and the slots that found no
/// room.
fn place(hashes: &[u64], size: usize) -> (Box<[[u16; WAYS]]>, Box<[u8]>) {
    let mut buckets = vec![[0u16; WAYS]; size].into_boxed_slice();
    let mut spilled = Vec::new();
    for (i, &hash) in hashes.iter().enumerate() {
        // Never more than `MAX_SHARD_CAPACITY` slots.
        let (Ok(index), Ok(number)) = (u8::try_from(i), u8::try_from(i + 1)) else {
            break;
        };
        let bucket = &mut buckets[bucket_of(hash, size - 1)];
        match bucket.iter_mut().find(|entry| **entry == 0) {
            Some(entry) => *entry = (tag(hash) << 8) | u16::from(number),
            None => spilled.push(index),
        }
    }
    (buckets, spilled.into_boxed_slice())
}

impl Tenants {
    /// An empty front that holds about `capacity` tokens at most, with its clock
    /// started on the current runtime (`None` without one).
    pub(crate) fn new(capacity: u64) -> Option<Self> {
        let clock = Arc::new(Clock {
            start: Instant::now(),
            now: AtomicU64::new(STOPPED),
        });
        clock.restart()?;
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shards = (capacity / PER_SHARD)
            .clamp(MIN_SHARDS, MAX_SHARDS)
            .next_power_of_two();
        let empty = Arc::new(Shard::default());
        Some(Tenants {
            shards: (0..shards)
                .map(|_| ArcSwap::new(Arc::clone(&empty)))
                .collect(),
            shift: 64 - shards.trailing_zeros(),
            clock,
            shard_capacity: (capacity / shards)
                .saturating_mul(2)
                .clamp(8, MAX_SHARD_CAPACITY),
        })
    }

    /// The shard of `hash`.
    #[inline]
    fn shard(&self, hash: u64) -> &ArcSwap<Shard> {
        &self.shards[(hash >> self.shift) as usize & (self.shards.len() - 1)]
    }

    /// `tenant`'s token, when it is in front, not yet due for a refresh, and no service
    /// has refused it.
    #[cfg(test)]
    fn get(&self, tenant: &Tenant) -> Option<Hit> {
        let mut headers = http::HeaderMap::new();
        let sent = self.attach(tenant, &mut headers)?;
        Some(Hit {
            header: headers.remove(http::header::AUTHORIZATION)?,
            id: sent.id,
            accepted: sent.accepted,
        })
    }

    /// Sets `tenant`'s token on a request's `headers`, when it is in front, its shard
    /// holds no token due for a refresh, and no service has refused it.
    #[inline]
    pub(crate) fn attach(&self, tenant: &Tenant, headers: &mut http::HeaderMap) -> Option<Sent> {
        let key = Key::of(tenant);
        let hash = key.hash();
        let shard = self.shard(hash).load();
        if self.clock.now.load(Ordering::Relaxed) >= shard.due {
            return None;
        }
        let slot = shard.find(key, hash)?;
        let word = slot.word.load(Ordering::Relaxed);
        let id = word & !ACCEPTED;
        if refused::is_refused(id) {
            return None;
        }
        Some(Sent::attach(
            headers,
            slot.header.clone(),
            id,
            word & ACCEPTED != 0,
        ))
    }

    /// Notes that a service accepted `tenant`'s token with id `id`, if it is in front.
    pub(crate) fn accept(&self, tenant: &Tenant, id: u64) {
        let key = Key::of(tenant);
        let hash = key.hash();
        if let Some(slot) = self.shard(hash).load().find(key, hash)
            && slot.id() == id
        {
            slot.word.fetch_or(ACCEPTED, Ordering::Relaxed);
        }
    }

    /// Puts `entry` in front for `tenant` until its refresh point (and takes out of
    /// `tenant`'s shard the tokens that are due).
    pub(crate) fn set(&self, tenant: &Tenant, entry: &Arc<Entry>) {
        let mut now = self.clock.now.load(Ordering::Relaxed);
        if now == STOPPED {
            if self.clock.restart().is_none() {
                return;
            }
            now = self.clock.now.load(Ordering::Relaxed);
        }
        let until = u64::try_from(
            entry
                .refresh_at
                .saturating_duration_since(self.clock.start)
                .saturating_sub(TICK)
                .as_millis(),
        )
        .unwrap_or(STOPPED - 1);
        if until <= now {
            return;
        }
        let key = Key::of(tenant);
        let hash = key.hash();
        let shard = self.shard(hash);
        let id = entry.token.id();
        let current = |shard: &Shard| {
            now < shard.due && shard.find(key, hash).is_some_and(|slot| slot.id() == id)
        };
        if current(&shard.load()) {
            return;
        }
        shard.rcu(|shard| {
            if current(shard) {
                return Arc::clone(shard);
            }
            // The token already in front (the write is for another's due token): its
            // slot stays as it is, accepted, its value copied.
            let held = shard.find(key, hash).is_some_and(|slot| slot.id() == id);
            let mut parts = shard.live(now, |slot| held || slot.key != key);
            if !held {
                if parts.len() >= self.shard_capacity {
                    // Full of live tokens: the one due first leaves (the cache keeps it).
                    parts.sort_unstable_by_key(|part| std::cmp::Reverse(part.meta.until));
                    parts.truncate(self.shard_capacity - 1);
                }
                parts.push(Parts {
                    key,
                    meta: Meta {
                        until,
                        copied: false,
                    },
                    header: entry.token.authorization(),
                    word: id,
                });
            }
            Arc::new(Shard::build(parts))
        });
    }

    /// Removes `tenant`'s token from the front if it is the one with id `sent`.
    pub(crate) fn retire_if(&self, tenant: &Tenant, sent: u64) {
        let key = Key::of(tenant);
        let hash = key.hash();
        let shard = self.shard(hash);
        let held = |shard: &Shard| shard.find(key, hash).is_some_and(|slot| slot.id() == sent);
        if !held(&shard.load()) {
            return;
        }
        let now = self.clock.now.load(Ordering::Relaxed);
        shard.rcu(|shard| {
            if !held(shard) {
                return Arc::clone(shard);
            }
            Arc::new(Shard::build(shard.live(now, |slot| slot.key != key)))
        });
    }

    /// How many tokens are in front.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.load().slots.len())
            .sum()
    }
}

impl Clock {
    fn elapsed(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(STOPPED - 1)
    }

    /// Sets the clock and starts a ticker on the current runtime (`None` without one).
    /// When the ticker stops (its runtime shut down), the clock reads [`STOPPED`].
    fn restart(self: &Arc<Self>) -> Option<()> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let now = self.elapsed();
        if self
            .now
            .compare_exchange(STOPPED, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another caller restarted it.
            return Some(());
        }
        let weak = Arc::downgrade(self);
        // Dropped with the task, even one that never ran.
        let stop = Stop(weak.clone());
        runtime.spawn(async move {
            let _stop = stop;
            let mut ticks = tokio::time::interval(TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(clock) = weak.upgrade() else { return };
                clock.now.store(clock.elapsed(), Ordering::Relaxed);
            }
        });
        Some(())
    }
}

/// Stops the clock when the ticker ends, however it ends.
struct Stop(Weak<Clock>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(clock) = self.0.upgrade() {
            clock.now.store(STOPPED, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Key, Meta, Parts, Shard, Tenants, UNCOPIED, bucket_of, place, tag};

    fn hash(tenant: &Tenant) -> u64 {
        Key::of(tenant).hash()
    }
    use crate::assertion::Tenant;
    use crate::cache::tests::entry;

    fn tenant(i: usize) -> Tenant {
        format!("{:09}:{:09}", 100_000_000 + i, 200_000_000 + i)
            .parse()
            .expect("tenant")
    }

    #[test]
    fn without_a_runtime_there_is_no_front() {
        assert!(Tenants::new(10).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn holds_tokens_until_their_refresh_point_or_until_retired() {
        let front = Tenants::new(10_000).expect("runtime");
        let (a, b) = (tenant(1), tenant(2));
        assert!(front.get(&a).is_none());
        let (first, second) = (entry("first"), entry("second"));
        front.set(&a, &first);
        front.set(&b, &second);
        assert_eq!(
            front.get(&a).map(|hit| hit.header).as_ref(),
            Some(first.token.authorization())
        );
        assert_eq!(
            front.get(&b).map(|hit| hit.header).as_ref(),
            Some(second.token.authorization())
        );
        front.retire_if(&a, entry("other").token.id());
        assert!(front.get(&a).is_some(), "another token's 401");
        front.retire_if(&a, second.token.id());
        assert!(front.get(&a).is_some(), "another tenant's token");
        front.retire_if(&a, first.token.id());
        assert!(front.get(&a).is_none(), "its own 401 retires it");
        assert!(front.get(&b).is_some());
        front.set(&a, &first);
        // The refresh point: 3600 - 10 - 60 = 3530 s; the front lets go a tick before.
        tokio::time::advance(Duration::from_secs(3529)).await;
        tokio::task::yield_now().await;
        assert!(front.get(&a).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        assert!(front.get(&a).is_none(), "due for a refresh");
        assert!(front.get(&b).is_none());
        let late = entry("late");
        front.set(&a, &late);
        assert_eq!(
            front.get(&a).map(|hit| hit.header).as_ref(),
            Some(late.token.authorization())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn acceptance_is_per_token_and_outlives_a_rebuild_and_a_refused_token_is_not_served() {
        let front = Tenants::new(10_000).expect("runtime");
        let (a, b) = (tenant(1), tenant(2));
        let (first, second) = (entry("first"), entry("second"));
        front.set(&a, &first);
        front.accept(&a, second.token.id());
        assert!(!front.get(&a).expect("in front").accepted, "another token");
        front.accept(&a, first.token.id());
        assert!(front.get(&a).expect("in front").accepted);
        // Another tenant in a's shard: the shard's table is rebuilt.
        let same = (3..)
            .map(tenant)
            .find(|t| std::ptr::eq(front.shard(hash(t)), front.shard(hash(&a))))
            .expect("a tenant in the same shard");
        front.set(&same, &second);
        front.set(&b, &second);
        assert!(
            front.get(&a).expect("in front").accepted,
            "kept by the rebuilds"
        );
        assert!(!front.get(&b).expect("in front").accepted);
        crate::cache::refused::refuse(second.token.id());
        assert!(front.get(&b).is_none(), "a refused token is not served");
        assert!(front.get(&a).is_some(), "another token is");
    }

    /// A front for `capacity` tokens that has been given the first `n` tenants, each
    /// with one token.
    fn given(capacity: u64, n: usize) -> Tenants {
        let front = Tenants::new(capacity).expect("runtime");
        let token = entry("t");
        for i in 0..n {
            front.set(&tenant(i), &token);
        }
        front
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_shard_lets_the_earliest_go() {
        let front = given(0, 10_000);
        assert!(front.len() <= 64 * 8, "{}", front.len());
        assert!(
            front.get(&tenant(9_999)).is_some(),
            "the newest is in front"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn thousands_of_tenants_are_each_found_and_a_shards_values_share_one_buffer() {
        let front = Tenants::new(10_000).expect("runtime");
        let tokens: Vec<_> = (0..3_000).map(|i| entry(&format!("token-{i}"))).collect();
        for (i, token) in tokens.iter().enumerate() {
            front.set(&tenant(i), token);
        }
        assert_eq!(front.len(), 3_000);
        for (i, token) in tokens.iter().enumerate() {
            let hit = front.get(&tenant(i)).expect("in front");
            assert_eq!(&hit.header, token.token.authorization(), "tenant {i}");
            assert!(hit.header.is_sensitive());
            assert_eq!(hit.id, token.token.id());
        }
        assert!(front.get(&tenant(3_000)).is_none());
        let single: Tenant = "987654321".parse().expect("tenant");
        assert!(front.get(&single).is_none());
        // In every shard, the copied values are slices of one buffer, back to back, and
        // the few others are the tokens' own.
        let own: std::collections::HashMap<_, _> = tokens
            .iter()
            .map(|token| {
                (
                    token.token.id(),
                    token.token.authorization().as_bytes().as_ptr(),
                )
            })
            .collect();
        let mut copied = 0;
        for shard in front.shards.iter() {
            let shard = shard.load();
            let mut spans = Vec::new();
            for (slot, meta) in shard.slots.iter().zip(&shard.meta) {
                let bytes = slot.header.as_bytes();
                if meta.copied {
                    spans.push(bytes.as_ptr_range());
                } else {
                    assert_eq!(Some(&bytes.as_ptr()), own.get(&slot.id()), "its own");
                }
            }
            assert!(shard.slots.len() - spans.len() <= UNCOPIED);
            spans.sort_by_key(|span| span.start);
            for pair in spans.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "one buffer");
            }
            copied += spans.len();
        }
        assert!(copied > 2_000, "{copied} of 3,000 copied");
    }

    /// `n` tenants whose hashes fall in one bucket of a table of `size` buckets.
    fn in_one_bucket(n: usize, size: usize) -> Vec<Tenant> {
        let first = bucket_of(hash(&tenant(0)), size - 1);
        (0..)
            .map(tenant)
            .filter(|t| bucket_of(hash(t), size - 1) == first)
            .take(n)
            .collect()
    }

    fn shard_of_tenants(tenants: &[Tenant], header: &http::HeaderValue) -> Shard {
        let parts: Vec<Parts<'_>> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| Parts {
                key: Key::of(t),
                meta: Meta {
                    until: 1_000,
                    copied: false,
                },
                header,
                word: i as u64,
            })
            .collect();
        Shard::build(parts)
    }

    #[test]
    fn new_values_stay_their_tokens_own_until_one_too_many_then_all_are_copied_to_one_buffer() {
        let tenants: Vec<Tenant> = (0..=UNCOPIED).map(tenant).collect();
        let header = http::HeaderValue::from_static("Bearer own");
        let own = header.as_bytes().as_ptr();
        let shard = shard_of_tenants(&tenants[..UNCOPIED], &header);
        assert!(shard.meta.iter().all(|meta| !meta.copied));
        assert!(
            shard
                .slots
                .iter()
                .all(|slot| slot.header.as_bytes().as_ptr() == own)
        );
        let shard = shard_of_tenants(&tenants, &header);
        assert!(shard.meta.iter().all(|meta| meta.copied));
        let start = shard.slots[0].header.as_bytes().as_ptr();
        assert_ne!(start, own);
        for (i, slot) in shard.slots.iter().enumerate() {
            assert_eq!(slot.header, header);
            assert!(slot.header.is_sensitive());
            assert_eq!(
                slot.header.as_bytes().as_ptr(),
                start.wrapping_add(i * header.len()),
                "one buffer"
            );
        }
    }

    #[test]
    fn a_full_bucket_spills_and_the_spilled_are_found() {
        // Six slots in the four-way bucket of a table of one (and of two and four).
        let hashes = vec![0; 6];
        let (buckets, spilled) = place(&hashes, 1);
        assert_eq!(buckets.len(), 1);
        assert!(buckets[0].iter().all(|&entry| entry != 0));
        assert_eq!(&*spilled, &[4, 5]);
        let crowded = in_one_bucket(12, 32);
        let header = http::HeaderValue::from_static("Bearer t");
        let shard = shard_of_tenants(&crowded, &header);
        assert!(
            !shard.spilled.is_empty(),
            "twelve in one bucket of any size"
        );
        for (i, t) in crowded.iter().enumerate() {
            assert_eq!(
                shard.find(Key::of(t), hash(t)).map(|slot| slot.id()),
                Some(i as u64)
            );
        }
        let other = (0..)
            .map(tenant)
            .find(|t| !crowded.contains(t))
            .expect("one");
        assert!(shard.find(Key::of(&other), hash(&other)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_tenants_are_found_by_their_tags_without_a_scan() {
        let front = given(10_000, 10_000);
        assert_eq!(front.len(), 10_000);
        // The fast half of a lookup finds the slot when exactly one entry of its bucket
        // has its tag (a random hash: about one lookup in 300 has two).
        let scanned = (0..10_000)
            .filter(|&i| {
                let hash = hash(&tenant(i));
                let shard = front.shard(hash).load();
                let bucket = &shard.buckets[bucket_of(hash, shard.buckets.len() - 1)];
                let tagged = bucket
                    .iter()
                    .filter(|&&entry| entry != 0 && entry >> 8 == tag(hash))
                    .count();
                tagged != 1
            })
            .count();
        assert!(scanned < 100, "{scanned} of 10,000 lookups scan");
    }

    #[test]
    fn two_tenants_with_one_tag_in_one_bucket_are_told_apart() {
        // Two slots make a table of one bucket: any two tenants share it.
        let mut seen = std::collections::HashMap::new();
        let pair = (0..)
            .map(tenant)
            .find_map(|t| seen.insert(tag(hash(&t)), t).map(|first| [first, t]))
            .expect("a pair with one tag");
        let header = http::HeaderValue::from_static("Bearer t");
        let shard = shard_of_tenants(&pair, &header);
        assert_eq!(shard.buckets.len(), 1);
        assert!(shard.spilled.is_empty());
        for (i, t) in pair.iter().enumerate() {
            assert_eq!(
                shard.find(Key::of(t), hash(t)).map(|slot| slot.id()),
                Some(i as u64)
            );
        }
        let other = tenant(1_000_000);
        assert!(shard.find(Key::of(&other), hash(&other)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_token_holds_its_shard_back_until_a_write_takes_it_out() {
        let front = Tenants::new(10_000).expect("runtime");
        let a = tenant(1);
        let same = |t: &Tenant| std::ptr::eq(front.shard(hash(t)), front.shard(hash(&a)));
        let b = (2..)
            .map(tenant)
            .find(|t| same(t))
            .expect("one in a's shard");
        let elsewhere = (2..).map(tenant).find(|t| !same(t)).expect("one elsewhere");
        front.set(&a, &entry("early"));
        tokio::time::advance(Duration::from_secs(100)).await;
        let (late, other) = (entry("late"), entry("other"));
        front.set(&b, &late);
        front.accept(&b, late.token.id());
        front.set(&elsewhere, &other);
        // a's refresh point: 3530 s.
        tokio::time::advance(Duration::from_secs(3430)).await;
        tokio::task::yield_now().await;
        assert!(front.get(&a).is_none(), "due");
        assert!(front.get(&b).is_none(), "held back with its shard");
        assert!(front.get(&elsewhere).is_some(), "other shards serve on");
        // The slow path puts b's unchanged entry in front again: that write rebuilds the
        // shard without a's token, and keeps b's slot as it was.
        front.set(&b, &late);
        let hit = front.get(&b).expect("served again");
        assert_eq!(hit.id, late.token.id());
        assert!(hit.accepted, "still accepted");
        assert!(front.get(&a).is_none());
        assert_eq!(front.len(), 2);
    }

    #[test]
    fn a_slot_is_one_cache_line_and_keys_tell_every_kind_of_tenant_apart() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 64);
        assert_eq!(std::mem::align_of::<super::Slot>(), 64);
        let org = |digits: &str| digits.parse().expect("nine digits");
        let (a, b) = (org("100000001"), org("200000002"));
        let tenants = [
            Tenant::Multi {
                parent: a,
                child: None,
            },
            Tenant::Multi {
                parent: a,
                child: Some(b),
            },
            Tenant::Multi {
                parent: b,
                child: Some(a),
            },
            Tenant::Multi {
                parent: a,
                child: Some(a),
            },
            Tenant::Single { child: a },
            Tenant::Single { child: b },
            Tenant::Multi {
                parent: org("100000009"),
                child: None,
            },
            Tenant::Multi {
                parent: org("900000001"),
                child: None,
            },
        ];
        for (i, x) in tenants.iter().enumerate() {
            for (j, y) in tenants.iter().enumerate() {
                assert_eq!(Key::of(x) == Key::of(y), i == j, "{x:?} and {y:?}");
            }
        }
    }

    #[test]
    fn a_stopped_clock_sends_everyone_to_the_cache() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        };
        let first = runtime();
        let front = first.block_on(async { Tenants::new(100).expect("runtime") });
        first.block_on(async { front.set(&tenant(1), &entry("t")) });
        assert!(front.get(&tenant(1)).is_some());
        drop(first);
        assert!(
            front.get(&tenant(1)).is_none(),
            "the ticker's runtime is gone"
        );
        // On another runtime, the next write starts a new ticker.
        runtime().block_on(async {
            front.set(&tenant(1), &entry("u"));
            assert!(front.get(&tenant(1)).is_some());
        });
    }
}
