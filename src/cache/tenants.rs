//! The tenants' front: a lock-free, read-mostly copy of the tenants' tokens in use,
//! read on the hot path without a lock, a clock read, an allocation or an await. The
//! cache stays the store of record (expiry, capacity, single flight); a token leaves the
//! front at its refresh point, when a `401` retires it, or when its shard is full.
//!
//! A lookup hashes the [`Tenant`] alone (FxHash) and compares it (two nine-byte
//! arrays), instead of building and hashing a whole [`CacheKey`].
//!
//! [`CacheKey`]: super::CacheKey

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Shards of the front: a write copies one shard, never the whole front.
const SHARDS: usize = 64;
/// How often the front's clock advances. Tokens leave the front one tick before their
/// refresh point, so a late tick never keeps one past it.
const TICK: Duration = Duration::from_millis(250);
/// The clock's value once its ticker has stopped (its runtime shut down): every token
/// is then due, and the next write starts a new ticker.
const STOPPED: u64 = u64::MAX;

/// The tenants' tokens in use, for a lock-free read.
pub(crate) struct Tenants {
    shards: Box<[ArcSwap<Shard>]>,
    clock: Arc<Clock>,
    /// Most tokens one shard holds.
    shard_capacity: usize,
}

/// A coarse clock: milliseconds since `start`, advanced by a ticker task.
struct Clock {
    start: Instant,
    now: AtomicU64,
}

/// One shard: an open-addressed table, rebuilt on every write.
#[derive(Default)]
struct Shard {
    /// A power of two long (or empty); `None` is a free slot.
    slots: Box<[Option<Slot>]>,
}

struct Slot {
    /// The tenant's [`hash`], compared first: a probe past another tenant's slot
    /// compares one word.
    hash: u64,
    tenant: Tenant,
    /// The clock's value from which this token is due (its refresh point, less a tick).
    until: u64,
    /// The token's `Authorization` value, held here rather than behind the entry: a
    /// hit with 10,000 tenants in turn then touches one line of the token (the header
    /// bytes' reference count), not three.
    header: HeaderValue,
    /// The token's id (what a `401` names).
    id: u64,
    /// Whether a service has accepted the token: set in place, once.
    accepted: AtomicBool,
}

impl Clone for Slot {
    fn clone(&self) -> Self {
        Slot {
            hash: self.hash,
            tenant: self.tenant,
            until: self.until,
            header: self.header.clone(),
            id: self.id,
            accepted: AtomicBool::new(self.accepted.load(Ordering::Relaxed)),
        }
    }
}

/// A tenant's hash: FxHash's step (rustc's) over three words of its digits, a few
/// multiplies; no key is built, nothing is parsed.
#[inline]
fn hash(tenant: &Tenant) -> u64 {
    let (kind, first, second) = match tenant {
        Tenant::Multi { parent, child } => (1, word(parent), child.as_ref().map_or(0, word)),
        Tenant::Single { child } => (2, word(child), 0),
    };
    fx(fx(fx(0, kind), first), second)
}

#[inline]
fn fx(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// An organisation number in one word: the first eight digits' bytes, and the ninth
/// digit in the first byte's high half (always 3 in an ASCII digit).
#[inline]
fn word(org: &OrgNumber) -> u64 {
    let digits = org.digits();
    let [a, b, c, d, e, f, g, h, ninth] = *digits;
    u64::from_le_bytes([a, b, c, d, e, f, g, h]) ^ (u64::from(ninth & 0x0f) << 4)
}

fn shard_of(hash: u64) -> usize {
    (hash >> 58) as usize % SHARDS
}

impl Shard {
    fn find(&self, tenant: &Tenant, hash: u64) -> Option<&Slot> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = (hash >> 20) as usize & mask;
        loop {
            let slot = self.slots[i].as_ref()?;
            if slot.hash == hash && slot.tenant == *tenant {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// A new shard with `slots`.
    fn rebuild(slots: impl Iterator<Item = Slot>) -> Shard {
        let kept: Vec<Slot> = slots.collect();
        if kept.is_empty() {
            return Shard::default();
        }
        // At most half full: a hit probes one or two slots on average.
        let size = (kept.len() * 2).next_power_of_two().max(4);
        let mut table: Vec<Option<Slot>> = (0..size).map(|_| None).collect();
        let mask = size - 1;
        for slot in kept {
            let mut i = (slot.hash >> 20) as usize & mask;
            while table[i].is_some() {
                i = (i + 1) & mask;
            }
            table[i] = Some(slot);
        }
        Shard {
            slots: table.into_boxed_slice(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
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
        Some(Tenants {
            shards: (0..SHARDS).map(|_| ArcSwap::default()).collect(),
            clock,
            shard_capacity: (capacity / SHARDS).saturating_mul(2).max(8),
        })
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

    /// Sets `tenant`'s token on a request's `headers`, when it is in front, not yet due
    /// for a refresh, and no service has refused it.
    #[inline]
    pub(crate) fn attach(&self, tenant: &Tenant, headers: &mut http::HeaderMap) -> Option<Sent> {
        let hash = hash(tenant);
        let shard = self.shards[shard_of(hash)].load();
        let slot = shard.find(tenant, hash)?;
        if self.clock.now.load(Ordering::Relaxed) >= slot.until || refused::is_refused(slot.id) {
            return None;
        }
        let accepted = slot.accepted.load(Ordering::Relaxed);
        Some(Sent::attach(
            headers,
            slot.header.clone(),
            slot.id,
            accepted,
        ))
    }

    /// Notes that a service accepted `tenant`'s token with id `id`, if it is in front.
    pub(crate) fn accept(&self, tenant: &Tenant, id: u64) {
        let hash = hash(tenant);
        if let Some(slot) = self.shards[shard_of(hash)].load().find(tenant, hash)
            && slot.id == id
        {
            slot.accepted.store(true, Ordering::Relaxed);
        }
    }

    /// Puts `entry` in front for `tenant` until its refresh point.
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
        let hash = hash(tenant);
        let shard = &self.shards[shard_of(hash)];
        if shard
            .load()
            .find(tenant, hash)
            .is_some_and(|slot| slot.id == entry.token.id())
        {
            return;
        }
        shard.rcu(|current| {
            let live = |slot: &&Slot| slot.tenant != *tenant && now < slot.until;
            let mut kept: Vec<&Slot> = current.iter().filter(live).collect();
            if kept.len() >= self.shard_capacity {
                // Full of live tokens: the one due first leaves (the cache keeps it).
                kept.sort_unstable_by_key(|slot| std::cmp::Reverse(slot.until));
                kept.truncate(self.shard_capacity - 1);
            }
            let added = Slot {
                hash,
                tenant: *tenant,
                until,
                header: entry.token.authorization().clone(),
                id: entry.token.id(),
                accepted: AtomicBool::new(false),
            };
            Shard::rebuild(kept.into_iter().cloned().chain(Some(added)))
        });
    }

    /// Removes `tenant`'s token from the front if it is the one with id `sent`.
    pub(crate) fn retire_if(&self, tenant: &Tenant, sent: u64) {
        let hash = hash(tenant);
        let shard = &self.shards[shard_of(hash)];
        let held = |shard: &Shard| shard.find(tenant, hash).is_some_and(|slot| slot.id == sent);
        if !held(&shard.load()) {
            return;
        }
        shard.rcu(|current| {
            if !held(current) {
                return Arc::clone(current);
            }
            Arc::new(Shard::rebuild(
                current
                    .iter()
                    .filter(|slot| slot.tenant != *tenant)
                    .cloned(),
            ))
        });
    }

    /// How many tokens are in front.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.load().iter().count())
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

    use super::{Tenants, hash, shard_of};
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
            .find(|t| shard_of(hash(t)) == shard_of(hash(&a)))
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

    #[tokio::test(start_paused = true)]
    async fn a_full_shard_lets_the_earliest_go() {
        let front = Tenants::new(0).expect("runtime");
        let token = entry("t");
        for i in 0..10_000 {
            front.set(&tenant(i), &token);
        }
        assert!(front.len() <= 64 * 8, "{}", front.len());
        assert!(
            front.get(&tenant(9_999)).is_some(),
            "the newest is in front"
        );
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
