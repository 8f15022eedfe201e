//! The front: a lock-free copy of one hot token, read on the hot path without a lock,
//! a clock read, an allocation or an await. The cache stays the store of record.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::time::Instant;

use super::{Entry, refused};

/// A token in front, for one request.
#[derive(Debug)]
pub(crate) struct Hit {
    /// Its `Authorization` value.
    pub(crate) header: HeaderValue,
    /// Its id (what a `401` names).
    pub(crate) id: u64,
    /// Whether a service has accepted it.
    pub(crate) accepted: bool,
}

/// What a request remembers of the token it carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent {
    /// The token's id (what a `401` names).
    pub(crate) id: u64,
    /// Whether a service had accepted it.
    pub(crate) accepted: bool,
}

impl Sent {
    /// Sets the `Authorization` value `header` of the token with id `id` on a request's
    /// `headers`.
    #[inline]
    pub(crate) fn attach(
        headers: &mut http::HeaderMap,
        header: HeaderValue,
        id: u64,
        accepted: bool,
    ) -> Sent {
        headers.insert(http::header::AUTHORIZATION, header);
        Sent { id, accepted }
    }
}

impl Hit {
    /// Sets the token on a request's `headers`.
    #[inline]
    pub(crate) fn attach(self, headers: &mut http::HeaderMap) -> Sent {
        Sent::attach(headers, self.header, self.id, self.accepted)
    }
}

/// One token while it is not due for a refresh: a copy of a cache entry, for a
/// lock-free read.
#[derive(Default)]
pub(crate) struct Front {
    held: Arc<ArcSwapOption<Held>>,
}

/// Whether a token is still the one in front, and whether a service has accepted it:
/// flags set once each. A token leaves the front at its refresh point, after a `401`,
/// when a newer token arrives, or when its timer's runtime shuts down; it is accepted at
/// the first success of a request that carried it. A service keeps a copy of the token
/// in front with these flags, and reads only them per request: a line no request
/// writes once the token is accepted.
#[derive(Debug, Default)]
pub(crate) struct Live {
    state: AtomicU8,
}

/// [`Live`]'s bit: the token has left the front.
const GONE: u8 = 1;
/// [`Live`]'s bit: a service has accepted the token.
const ACCEPTED: u8 = 2;

/// What one read of a [`Live`] says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen(u8);

impl Seen {
    /// Whether the token is still in front.
    #[inline]
    pub(crate) fn is_live(self) -> bool {
        self.0 & GONE == 0
    }

    /// Whether a service has accepted the token.
    #[inline]
    pub(crate) fn is_accepted(self) -> bool {
        self.0 & ACCEPTED != 0
    }
}

impl Live {
    /// Both flags, in one read.
    #[inline]
    pub(crate) fn seen(&self) -> Seen {
        Seen(self.state.load(Ordering::Acquire))
    }

    /// Whether the token is still in front.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        self.seen().is_live()
    }

    fn end(&self) {
        self.state.fetch_or(GONE, Ordering::Release);
    }

    /// Notes that a service has accepted the token (written once).
    fn accept(&self) {
        if !self.seen().is_accepted() {
            self.state.fetch_or(ACCEPTED, Ordering::Release);
        }
    }
}

/// Ends a token's [`Live`] when dropped: the timer task owns one, so that the flag is
/// set whether the timer fires, is aborted, or is dropped with its runtime.
struct EndOnDrop(Arc<Live>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The entry in the front. A timer task removes it at the refresh point; should the
/// timer's runtime shut down first, the task's [`EndOnDrop`] ends its [`Live`] all the
/// same (a finished timer has always ended it).
struct Held {
    entry: Arc<Entry>,
    live: Arc<Live>,
    timer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live.end();
        self.timer.abort();
    }
}

impl Front {
    /// `read` of the entry in front, when there is one and it is not yet due for a
    /// refresh.
    #[inline]
    fn read<T>(&self, read: impl FnOnce(&Held) -> T) -> Option<T> {
        let guard = self.held.load();
        let held = guard
            .as_ref()
            .filter(|held| held.live.is_live() && !refused::is_refused(held.entry.token.id()))?;
        Some(read(held))
    }

    /// The token in front, when there is one, it is not yet due for a refresh and no
    /// service has refused it.
    #[inline]
    pub(crate) fn get(&self) -> Option<Hit> {
        self.read(|held| {
            let token = &held.entry.token;
            Hit {
                header: token.authorization().clone(),
                id: token.id(),
                accepted: held.live.seen().is_accepted(),
            }
        })
    }

    /// Notes that a service accepted the token with id `id`, if it is in front.
    pub(crate) fn accept(&self, id: u64) {
        if let Some(held) = &*self.held.load()
            && held.entry.token.id() == id
        {
            held.live.accept();
        }
    }

    /// The id of the token in front, with what its [`Live`] flag says, when the token
    /// is in front, not yet due for a refresh and not refused: nothing is cloned, so no
    /// reference count another core writes is touched.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(u64, Seen)> {
        self.read(|held| (held.entry.token.id(), held.live.seen()))
    }

    /// The token in front (its header and id) with its [`Live`] flag, for a copy that
    /// reads the flag alone.
    pub(crate) fn current(&self) -> Option<(HeaderValue, u64, Arc<Live>)> {
        self.read(|held| {
            let token = &held.entry.token;
            (token.authorization().clone(), token.id(), held.live.clone())
        })
    }

    /// Puts `entry` in front until its refresh point (needs a tokio runtime for the
    /// timer; without one, nothing happens).
    pub(crate) fn set(&self, entry: &Arc<Entry>) {
        let current = self.held.load();
        if current
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(&held.entry, entry) && held.live.is_live())
        {
            return;
        }
        if Instant::now() >= entry.refresh_at {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<ArcSwapOption<Held>> = Arc::downgrade(&self.held);
        let live = Arc::new(Live::default());
        let (due, mine, end) = (entry.refresh_at, live.clone(), EndOnDrop(live.clone()));
        let timer = runtime.spawn(async move {
            let _end = end;
            tokio::time::sleep_until(due).await;
            if let Some(held) = weak.upgrade() {
                retire(&held, |current| Arc::ptr_eq(&current.live, &mine));
            }
        });
        let old = self.held.swap(Some(Arc::new(Held {
            entry: entry.clone(),
            live,
            timer,
        })));
        if let Some(old) = old {
            old.live.end();
        }
    }

    /// Removes the token with id `sent` (a `401` refused it) from the front, if it is
    /// still there.
    pub(crate) fn retire_if(&self, sent: u64) {
        retire(&self.held, |current| current.entry.token.id() == sent);
    }
}

/// Empties `held` if what it holds is `what`, and ends that token's [`Live`].
fn retire(held: &ArcSwapOption<Held>, what: impl Fn(&Held) -> bool) {
    let old = held.rcu(|current| match current {
        Some(current) if what(current) => None,
        other => other.clone(),
    });
    if let Some(old) = old
        && what(&old)
    {
        old.live.end();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Front;
    use crate::cache::tests::entry;

    #[tokio::test(start_paused = true)]
    async fn a_token_is_accepted_once_and_a_refused_one_is_not_served() {
        let front = Front::default();
        let first = entry("first");
        front.set(&first);
        let (_, id, live) = front.current().expect("in front");
        front.accept(entry("other").token.id());
        assert!(!front.get().expect("in front").accepted, "another token");
        front.accept(id);
        assert!(front.get().expect("in front").accepted);
        assert!(
            live.seen().is_accepted() && live.is_live(),
            "the copy sees it"
        );
        front.accept(id);
        assert!(live.seen().is_accepted() && live.is_live());
        crate::cache::refused::refuse(id);
        assert!(front.get().is_none(), "a refused token is not served");
        assert!(front.current().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn holds_a_token_until_its_refresh_point_or_until_it_is_retired() {
        let front = Front::default();
        assert!(front.get().is_none());
        let first = entry("first");
        front.set(&first);
        let hit = front.get().expect("in front");
        assert_eq!(&hit.header, first.token.authorization());
        assert_eq!(hit.id, first.token.id());
        assert!(!hit.accepted);
        front.retire_if(entry("other").token.id());
        let again = front.get().expect("another token's 401");
        assert_eq!((again.header, again.id), (hit.header, hit.id));
        front.retire_if(first.token.id());
        assert!(front.get().is_none(), "its own 401 retires it");
        front.set(&first);
        // The refresh point: 3600 - 10 - 60 = 3530 s.
        tokio::time::advance(Duration::from_secs(3529)).await;
        assert!(front.get().is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert!(front.get().is_none(), "the timer retired it");
        assert!(front.held.load().is_none(), "and let go of the entry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_sees_its_token_leave_by_a_401_a_newer_token_or_the_timer() {
        let front = Front::default();
        let first = entry("first");
        front.set(&first);
        let (header, id, live) = front.current().expect("in front");
        assert_eq!(
            (&header, id),
            (first.token.authorization(), first.token.id())
        );
        front.retire_if(entry("other").token.id());
        assert!(live.is_live(), "another token's 401");
        front.retire_if(id);
        assert!(!live.is_live(), "its own 401");

        front.set(&first);
        let (_, _, live) = front.current().expect("in front again");
        front.set(&first);
        assert!(live.is_live(), "the same entry again changes nothing");
        front.set(&entry("newer"));
        assert!(!live.is_live(), "a newer token");

        let (_, _, live) = front.current().expect("the newer one");
        tokio::time::advance(Duration::from_secs(3531)).await;
        tokio::task::yield_now().await;
        assert!(!live.is_live(), "its refresh point");
    }

    #[test]
    fn a_copy_sees_its_token_leave_when_the_timers_runtime_shuts_down() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let front = Front::default();
        let live = runtime.block_on(async {
            front.set(&entry("first"));
            front.current().expect("in front").2
        });
        assert!(live.is_live());
        drop(runtime);
        assert!(!live.is_live(), "no timer is left to retire it");
        assert!(front.get().is_none());
    }

    #[test]
    fn without_a_runtime_nothing_is_put_in_front() {
        let front = Front::default();
        front.set(&entry("first"));
        assert!(front.get().is_none());
    }
}
