//! The front: a lock-free copy of one hot token, read on the hot path without a lock,
//! a clock read, an allocation or an await. The cache stays the store of record.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::time::Instant;

use super::Entry;

/// One token while it is not due for a refresh: a copy of a cache entry, for a
/// lock-free read.
#[derive(Default)]
pub(crate) struct Front {
    held: Arc<ArcSwapOption<Held>>,
}

/// The entry in the front. A timer task removes it at the refresh point; should the
/// timer's runtime shut down first, the finished handle retires it all the same.
struct Held {
    entry: Arc<Entry>,
    timer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

impl Front {
    /// The `Authorization` value of the token in front, when there is one and it is not
    /// yet due for a refresh.
    #[inline]
    pub(crate) fn get(&self) -> Option<HeaderValue> {
        let guard = self.held.load();
        let held = guard.as_ref()?;
        if held.timer.is_finished() {
            return None;
        }
        Some(held.entry.token.authorization().clone())
    }

    /// Puts `entry` in front until its refresh point (needs a tokio runtime for the
    /// timer; without one, nothing happens).
    pub(crate) fn set(&self, entry: &Arc<Entry>) {
        let current = self.held.load();
        if current
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(&held.entry, entry) && !held.timer.is_finished())
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
        let (due, mine) = (entry.refresh_at, entry.clone());
        let timer = runtime.spawn(async move {
            tokio::time::sleep_until(due).await;
            if let Some(held) = weak.upgrade() {
                retire(&held, |current| Arc::ptr_eq(&current.entry, &mine));
            }
        });
        self.held.store(Some(Arc::new(Held {
            entry: entry.clone(),
            timer,
        })));
    }

    /// Removes the token that was sent as `sent` from the front, if it is still there.
    pub(crate) fn retire_if(&self, sent: &HeaderValue) {
        retire(&self.held, |current| {
            current.entry.token.authorization() == sent
        });
    }
}

/// Empties `held` if what it holds is `what`.
fn retire(held: &ArcSwapOption<Held>, what: impl Fn(&Held) -> bool) {
    held.rcu(|current| match current {
        Some(current) if what(current) => None,
        other => other.clone(),
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::Front;
    use crate::cache::tests::entry;

    #[tokio::test(start_paused = true)]
    async fn holds_a_token_until_its_refresh_point_or_until_it_is_retired() {
        let front = Front::default();
        assert!(front.get().is_none());
        let first = entry("first");
        front.set(&first);
        let header = front.get().expect("in front");
        assert_eq!(&header, first.token.authorization());
        front.retire_if(&HeaderValue::from_static("Bearer other"));
        assert_eq!(front.get(), Some(header.clone()), "another token's 401");
        front.retire_if(&header);
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

    #[test]
    fn without_a_runtime_nothing_is_put_in_front() {
        let front = Front::default();
        front.set(&entry("first"));
        assert!(front.get().is_none());
    }
}
