//! The tenants' front: a lock-free, read-mostly copy of the tenants' tokens in use,
//! read on the hot path without a lock, a clock read, an allocation or an await. The
//! cache stays the store of record (expiry, capacity, single flight); a token leaves the
//! front at its refresh point, when a `401` retires it, or when its shard is full.
//!
//! A lookup turns the [`Tenant`] into two words and hashes them (FxHash) instead of
//! building and hashing a whole [`CacheKey`]. With thousands of tenants in turn, the
//! lines a hit touches decide its cost, so a hit reads, beside lines that stay in cache
//! (the shard's two, its values' reference count), exactly one line of the tenant's
//! own: its slot, one line long, with the tenant, the token's value and its id. A shard
//! places its slots by a perfect hash, rebuilt with it: the tenant's hash picks a group
//! of about four, and the group's pilot, one byte in the shard's second line, moves the
//! hash to the one slot the tenant can be in.
//!
//! The token values of a shard are copies in one buffer of the shard's (wiped when the
//! last of them is dropped), so a request's clone of a value writes the shard's one
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
/// Most tokens a shard holds.
const MAX_SHARD_CAPACITY: usize = u8::MAX as usize;
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
    /// An empty slot's: never a tenant's (a tenant's first word holds ASCII digits).
    const EMPTY: Key = Key([0; 2]);

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
    /// without the fold the group's bits would differ little between them. Its top
    /// bits pick the shard, bits 20 to 51 the group within it, and all of them, mixed
    /// with the group's pilot, the slot.
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

/// One shard, rebuilt on every write: slots placed by a perfect hash of their
/// tenants, so that a lookup reads, beside the shard's own two lines, the one slot its
/// tenant can be in.
///
/// The hot fields fill the first line and the pilots the second, so that a lookup's
/// loads of both start together: neither address waits for the other.
#[repr(C, align(64))]
struct Shard {
    /// The clock's value from which one of the shard's tokens is due: from then on the
    /// shard serves none, until a write rebuilds it without the due ones (`0`, none
    /// served, in an empty shard).
    due: u64,
    /// The tokens, each at the place its tenant's hash and its group's pilot give, and
    /// empty slots between them (the table is half again as large as its tokens).
    slots: Box<[Slot]>,
    /// The slots whose group found no pilot that placed it (a scan finds them; almost
    /// always none).
    spilled: Box<[u16]>,
    /// What writes read of each slot.
    meta: Box<[Meta]>,
    /// How many of [`pilots`](Self::pilots) are in use: the groups the hashes fall in.
    groups: u8,
    /// Each group's pilot: the number mixed into its tenants' hashes that sends each
    /// of them to a slot of its own.
    pilots: [u8; MAX_GROUPS],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            due: 0,
            slots: Box::default(),
            spilled: Box::default(),
            meta: Box::default(),
            groups: 0,
            pilots: [0; MAX_GROUPS],
        }
    }
}

/// What writes read of a slot.
#[derive(Clone, Copy, Default)]
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
    /// [`Key::EMPTY`] in an empty slot.
    key: Key,
    /// The token's id (what a `401` names), and [`ACCEPTED`] once a service has accepted
    /// it (set in place, once).
    word: AtomicU64,
}

impl Slot {
    fn id(&self) -> u64 {
        self.word.load(Ordering::Relaxed) & !ACCEPTED
    }

    fn empty() -> Slot {
        Slot {
            header: HeaderValue::from_static(""),
            key: Key::EMPTY,
            word: AtomicU64::new(0),
        }
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

/// Most groups in a shard: [`MAX_SHARD_CAPACITY`] tokens in groups of four or more.
const MAX_GROUPS: usize = 64;
/// Tokens in a group, at most on average.
const PER_GROUP: usize = 4;
/// Mixed with a pilot, so that each pilot moves a hash far.
const PILOT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The group of `hash` among `groups` (bits 20 to 51 of the hash: the top bits pick
/// the shard).
#[inline]
fn group_of(hash: u64, groups: usize) -> usize {
    ((u64::from((hash >> 20) as u32) * groups as u64) >> 32) as usize
}

/// The slot of `hash`, moved by `pilot`, in a table of `size`.
#[inline]
fn position(hash: u64, pilot: u8, size: usize) -> usize {
    let mixed = (hash ^ u64::from(pilot).wrapping_mul(PILOT)).wrapping_mul(SEED);
    ((u128::from(mixed) * size as u128) >> 64) as usize
}

impl Shard {
    /// The one slot the perfect hash gives `hash`: its tenant's, unless the tenant is
    /// not in the shard or its group was spilled.
    #[inline]
    fn slot_of(&self, hash: u64) -> Option<&Slot> {
        let pilot = *self.pilots.get(group_of(hash, usize::from(self.groups)))?;
        self.slots.get(position(hash, pilot, self.slots.len()))
    }

    #[inline]
    fn find(&self, key: Key, hash: u64) -> Option<&Slot> {
        if let Some(slot) = self.slot_of(hash)
            && slot.key == key
        {
            return Some(slot);
        }
        if self.spilled.is_empty() {
            return None;
        }
        self.search(key)
    }

    /// The tenant's slot, when it holds the token with id `id`.
    fn holding(&self, key: Key, hash: u64, id: u64) -> Option<&Slot> {
        self.find(key, hash).filter(|slot| slot.id() == id)
    }

    /// The slow half of [`find`](Self::find): the spilled slots.
    #[cold]
    fn search(&self, key: Key) -> Option<&Slot> {
        self.spilled
            .iter()
            .filter_map(|&i| self.slots.get(usize::from(i)))
            .find(|slot| slot.key == key)
    }

    /// A new shard of `parts` (at most [`MAX_SHARD_CAPACITY`]): with the values they
    /// have, or, when more than [`UNCOPIED`] are their tokens' own, with copies of all
    /// in one new buffer.
    fn build(parts: Vec<Parts<'_>>) -> Shard {
        let hashes: Vec<u64> = parts.iter().map(|part| part.key.hash()).collect();
        Shard::placed(parts, &hashes)
    }

    /// [`build`](Self::build), with the parts' hashes.
    fn placed(mut parts: Vec<Parts<'_>>, hashes: &[u64]) -> Shard {
        parts.truncate(MAX_SHARD_CAPACITY);
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
        let placement = place(hashes);
        let mut slots: Box<[Slot]> = (0..placement.size).map(|_| Slot::empty()).collect();
        let mut meta = vec![Meta::default(); placement.size].into_boxed_slice();
        for ((part, header), &at) in parts.iter().zip(headers).zip(&placement.at) {
            slots[at] = Slot {
                header,
                key: part.key,
                word: AtomicU64::new(part.word),
            };
            meta[at] = part.meta;
        }
        Shard {
            due: parts
                .iter()
                .map(|part| part.meta.until)
                .min()
                .unwrap_or(STOPPED),
            slots,
            spilled: placement.spilled,
            meta,
            groups: placement.groups,
            pilots: placement.pilots,
        }
    }

    /// The slots that hold a token, by the order of their ids.
    #[cfg(test)]
    fn filled(&self) -> Vec<&Slot> {
        let mut filled: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|slot| slot.key != Key::EMPTY)
            .collect();
        filled.sort_by_key(|slot| slot.id());
        filled
    }

    /// The parts of the slots whose tokens are due after `now` and that `keep` keeps.
    fn live(&self, now: u64, keep: impl Fn(&Slot) -> bool) -> Vec<Parts<'_>> {
        self.slots
            .iter()
            .zip(&self.meta)
            .filter(|&(slot, meta)| slot.key != Key::EMPTY && now < meta.until && keep(slot))
            .map(|(slot, &meta)| Parts {
                key: slot.key,
                meta,
                header: &slot.header,
                word: slot.word.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// Where [`place`] puts each of a shard's tokens.
struct Placement {
    /// Slots in the table.
    size: usize,
    groups: u8,
    pilots: [u8; MAX_GROUPS],
    /// Each token's slot.
    at: Vec<usize>,
    /// The slots of the tokens whose group no pilot placed.
    spilled: Box<[u16]>,
}

/// A perfect hash of `hashes` (at most [`MAX_SHARD_CAPACITY`]): the hashes fall in
/// groups of about [`PER_GROUP`]; the largest groups first, each group takes the first
/// pilot that sends each of its hashes to a slot still free. The table has half as many
/// slots again as hashes, so that the last groups find free slots quickly. A group
/// that no pilot places (hashes that are equal, or almost never bad luck) takes any
/// free slots, and is spilled.
fn place(hashes: &[u64]) -> Placement {
    let n = hashes.len().min(MAX_SHARD_CAPACITY);
    let size = n + n / 2 + 1;
    let groups = n.div_ceil(PER_GROUP).clamp(1, MAX_GROUPS);
    let group: Vec<usize> = hashes[..n]
        .iter()
        .map(|&hash| group_of(hash, groups))
        .collect();
    // The hashes' indices by group (a counting sort), and the groups, largest first.
    let mut starts = [0usize; MAX_GROUPS + 1];
    group.iter().for_each(|&g| starts[g + 1] += 1);
    for g in 0..groups {
        starts[g + 1] += starts[g];
    }
    let mut next = starts;
    let mut members = vec![0usize; n];
    for (i, &g) in group.iter().enumerate() {
        members[next[g]] = i;
        next[g] += 1;
    }
    let mut order: Vec<usize> = (0..groups).collect();
    order.sort_unstable_by_key(|&g| std::cmp::Reverse(starts[g + 1] - starts[g]));
    let mut taken = vec![false; size];
    let mut pilots = [0u8; MAX_GROUPS];
    let mut at = vec![usize::MAX; n];
    let mut unplaced = Vec::new();
    let mut chosen = Vec::with_capacity(PER_GROUP * 4);
    for g in order {
        let members = &members[starts[g]..starts[g + 1]];
        let pilot = (0..=u8::MAX).find(|&pilot| {
            chosen.clear();
            members.iter().all(|&i| {
                let slot = position(hashes[i], pilot, size);
                let free = !taken[slot] && !chosen.contains(&slot);
                chosen.push(slot);
                free
            })
        });
        match pilot {
            Some(pilot) => {
                pilots[g] = pilot;
                for (&i, &slot) in members.iter().zip(&chosen) {
                    taken[slot] = true;
                    at[i] = slot;
                }
            }
            None => unplaced.extend_from_slice(members),
        }
    }
    let mut free = (0..size).filter(|&slot| !taken[slot]);
    let mut spilled = Vec::with_capacity(unplaced.len());
    for i in unplaced {
        // Never short: the table has more slots than hashes.
        if let Some(slot) = free.next() {
            at[i] = slot;
            spilled.push(u16::try_from(slot).unwrap_or(u16::MAX));
        }
    }
    Placement {
        size,
        groups: u8::try_from(groups).unwrap_or(u8::MAX),
        pilots,
        at,
        spilled: spilled.into_boxed_slice(),
    }
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
        if let Some(slot) = self.shard(hash).load().holding(key, hash, id) {
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
        let current = |shard: &Shard| now < shard.due && shard.holding(key, hash, id).is_some();
        if current(&shard.load()) {
            return;
        }
        shard.rcu(|shard| {
            if current(shard) {
                return Arc::clone(shard);
            }
            // The token already in front (the write is for another's due token): its
            // slot stays as it is, accepted, its value copied.
            let held = shard.holding(key, hash, id).is_some();
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
        let held = |shard: &Shard| shard.holding(key, hash, sent).is_some();
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
            .map(|shard| shard.load().filled().len())
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

    use super::{
        Key, Meta, Parts, Placement, Shard, Slot, Tenants, UNCOPIED, group_of, place, position,
    };

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
            let slots = shard.slots.iter().zip(&shard.meta);
            for (slot, meta) in slots.filter(|(slot, _)| slot.key != Key::EMPTY) {
                let bytes = slot.header.as_bytes();
                if meta.copied {
                    spans.push(bytes.as_ptr_range());
                } else {
                    assert_eq!(Some(&bytes.as_ptr()), own.get(&slot.id()), "its own");
                }
            }
            assert!(shard.filled().len() - spans.len() <= UNCOPIED);
            spans.sort_by_key(|span| span.start);
            for pair in spans.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "one buffer");
            }
            copied += spans.len();
        }
        assert!(copied > 2_000, "{copied} of 3,000 copied");
    }

    /// The parts of `tenants`' slots, each with `header` and its index as its id.
    fn parts_of<'a>(tenants: &[Tenant], header: &'a http::HeaderValue) -> Vec<Parts<'a>> {
        tenants
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
            .collect()
    }

    /// The slot a lookup of `hash` reads in a shard built with `placement` (what
    /// [`Shard::slot_of`] computes).
    fn looked(placement: &Placement, hash: u64) -> usize {
        let pilot = placement.pilots[group_of(hash, usize::from(placement.groups))];
        position(hash, pilot, placement.size)
    }

    fn shard_of_tenants(tenants: &[Tenant], header: &http::HeaderValue) -> Shard {
        Shard::build(parts_of(tenants, header))
    }

    #[test]
    fn new_values_stay_their_tokens_own_until_one_too_many_then_all_are_copied_to_one_buffer() {
        let tenants: Vec<Tenant> = (0..=UNCOPIED).map(tenant).collect();
        let header = http::HeaderValue::from_static("Bearer own");
        let own = header.as_bytes().as_ptr();
        let shard = shard_of_tenants(&tenants[..UNCOPIED], &header);
        let filled = shard.filled();
        assert_eq!(filled.len(), UNCOPIED);
        assert!(
            filled
                .iter()
                .all(|slot| slot.header.as_bytes().as_ptr() == own)
        );
        assert!(shard.meta.iter().all(|meta| !meta.copied));
        let shard = shard_of_tenants(&tenants, &header);
        let filled = shard.filled();
        assert_eq!(filled.len(), UNCOPIED + 1);
        let start = filled[0].header.as_bytes().as_ptr();
        assert_ne!(start, own);
        for (i, slot) in filled.iter().enumerate() {
            assert_eq!(slot.header, header);
            assert!(slot.header.is_sensitive());
            assert_eq!(
                slot.header.as_bytes().as_ptr(),
                start.wrapping_add(i * header.len()),
                "one buffer"
            );
        }
        let copied = shard.meta.iter().filter(|meta| meta.copied).count();
        assert_eq!(copied, UNCOPIED + 1, "every token's, no empty slot's");
    }

    #[test]
    fn a_placement_is_perfect_and_half_again_as_large_as_its_tokens() {
        for n in [1, 2, 3, 7, 16, 100, 160, 255] {
            let hashes: Vec<u64> = (0..n).map(|i| hash(&tenant(i))).collect();
            let placement = place(&hashes);
            assert_eq!(placement.size, n + n / 2 + 1);
            assert!(placement.spilled.is_empty(), "{n}");
            assert_eq!(usize::from(placement.groups), n.div_ceil(4));
            let mut seen = std::collections::HashSet::new();
            for (&hash, &at) in hashes.iter().zip(&placement.at) {
                assert_eq!(looked(&placement, hash), at, "where a lookup looks");
                assert!(seen.insert(at), "{n}: two tokens in slot {at}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_hashes_get_a_slot_each_where_a_lookup_looks_or_are_spilled(
            mut hashes in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..=255),
            equal in 0usize..6,
        ) {
            // The first `equal` hashes are one, which no pilot parts.
            if let Some(&first) = hashes.first() {
                hashes.iter_mut().take(equal).for_each(|hash| *hash = first);
            }
            let placement = place(&hashes);
            let spilled: std::collections::HashSet<usize> =
                placement.spilled.iter().map(|&slot| usize::from(slot)).collect();
            proptest::prop_assert_eq!(placement.at.len(), hashes.len());
            let mut seen = std::collections::HashSet::new();
            for (&hash, &at) in hashes.iter().zip(&placement.at) {
                proptest::prop_assert!(at < placement.size);
                proptest::prop_assert!(seen.insert(at), "two in slot {}", at);
                proptest::prop_assert!(looked(&placement, hash) == at || spilled.contains(&at));
            }
            if equal >= 2 && hashes.len() >= 2 {
                proptest::prop_assert!(!spilled.is_empty(), "equal hashes spill");
            }
        }
    }

    #[test]
    fn hashes_no_pilot_can_part_are_spilled_and_still_found() {
        let tenants: Vec<Tenant> = (0..8).map(tenant).collect();
        let header = http::HeaderValue::from_static("Bearer t");
        // Three tenants with one hash, among five with their own.
        let one = hash(&tenants[0]);
        let hashes: Vec<u64> = (0..8)
            .map(|i| if i < 3 { one } else { hash(&tenants[i]) })
            .collect();
        let shard = Shard::placed(parts_of(&tenants, &header), &hashes);
        assert!(shard.spilled.len() >= 3, "{:?}", shard.spilled);
        for (i, (t, &hash)) in tenants.iter().zip(&hashes).enumerate() {
            assert_eq!(
                shard.find(Key::of(t), hash).map(|slot| slot.id()),
                Some(i as u64),
                "tenant {i}"
            );
        }
        let other = tenant(100);
        assert!(shard.find(Key::of(&other), one).is_none());
        assert_eq!(shard.filled().len(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_tenants_are_placed_without_a_spill() {
        let front = given(10_000, 10_000);
        assert_eq!(front.len(), 10_000);
        let spilled: usize = front
            .shards
            .iter()
            .map(|shard| shard.load().spilled.len())
            .sum();
        assert_eq!(spilled, 0);
        for i in 0..10_000 {
            let t = tenant(i);
            let hash = hash(&t);
            let shard = front.shard(hash).load();
            let slot = shard.slot_of(hash).expect("a slot");
            assert_eq!(slot.key, Key::of(&t), "tenant {i} where its hash says");
        }
    }

    #[test]
    fn a_tenant_not_in_a_shard_is_not_found_where_its_slot_holds_another() {
        let tenants: Vec<Tenant> = (0..200).map(tenant).collect();
        let header = http::HeaderValue::from_static("Bearer t");
        let shard = shard_of_tenants(&tenants, &header);
        let mut on_another = 0;
        for i in 200..20_000 {
            let t = tenant(i);
            let hash = hash(&t);
            assert!(shard.find(Key::of(&t), hash).is_none(), "tenant {i}");
            if shard.slot_of(hash).expect("a slot").key != Key::EMPTY {
                on_another += 1;
            }
        }
        // About four in five land on a slot that holds another tenant's token.
        assert!(on_another > 10_000, "{on_another}");
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
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
        // Its hot fields in one line, its pilots in the next.
        assert_eq!(std::mem::size_of::<Shard>(), 128);
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
            assert_ne!(Key::of(x), Key::EMPTY);
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
