//! Back-off: consecutive failures per key, and how long a key waits before HelseID
//! is asked again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{CacheKey, CacheSettings};
use crate::error::{Error, Result};

/// Consecutive failures of one key.
#[derive(Clone)]
struct Failure {
    count: u32,
    retry_at: Instant,
    last: Error,
}

/// The most keys whose failures are remembered; past it, the oldest are forgotten.
const MAX_FAILING_KEYS: usize = 4096;

/// The consecutive failures of every key that failed last time.
#[derive(Default)]
pub(super) struct Backoff {
    failures: Mutex<HashMap<CacheKey, Failure>>,
}

fn jitter(delay: Duration) -> Duration {
    // Full jitter between half and all of the delay.
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    let fraction = 0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0;
    delay.mul_f64(fraction)
}

impl Backoff {
    fn failures(&self) -> MutexGuard<'_, HashMap<CacheKey, Failure>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Error::BackingOff`] while `key` waits after repeated failures.
    pub(super) fn check(&self, key: &CacheKey, now: Instant) -> Result<()> {
        match self.failures().get(key) {
            Some(f) if f.retry_at > now => Err(Error::BackingOff {
                retry_in: f.retry_at - now,
                failures: f.count,
                last: Box::new(f.last.clone()),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key`: from the second in a row on, `key` backs off; at once,
    /// and at least as long as the server asked (capped by the maximum), when the error
    /// carries a `Retry-After`.
    pub(super) fn record_failure(&self, key: &CacheKey, error: &Error, settings: &CacheSettings) {
        let mut failures = self.failures();
        super::key::make_room(&mut failures, key, MAX_FAILING_KEYS, |f| f.retry_at);
        let count = failures.get(key).map_or(0, |f| f.count) + 1;
        // The first failure may be retried at once; from the second on, back off.
        let mut delay = if count < 2 {
            Duration::ZERO
        } else {
            let doubled = settings
                .backoff_base
                .saturating_mul(1 << (count - 2).min(20));
            jitter(doubled.min(settings.backoff_max))
        };
        // A server that said how long to wait (429 or 503 with Retry-After) is not asked
        // sooner, from the first failure on; the back-off maximum still caps it.
        if let Some(asked) = error.retry_after() {
            delay = delay.max(asked.min(settings.backoff_max));
        }
        if delay.is_zero() {
            tracing::warn!(error = %error, failures = count, "token fetch failed");
        } else {
            tracing::warn!(error = %error, failures = count, retry_in = ?delay, "token fetch failed; backing off");
        }
        failures.insert(
            key.clone(),
            Failure {
                count,
                retry_at: Instant::now() + delay,
                last: error.clone(),
            },
        );
    }

    /// Forgets `key`'s failures: a fetch succeeded.
    pub(super) fn clear(&self, key: &CacheKey) {
        self.failures().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::cache::TokenCache;
    use crate::cache::tests::{Counting, request};
    use crate::error::Error;

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_not_cached_and_back_off_with_jitter() {
        let cache = TokenCache::new();
        let source = Counting::default();
        source.fail.store(true, Ordering::SeqCst);
        // One failure: the next call tries again at once.
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        // The second failure starts the back-off.
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        let err = cache
            .get(&source, &request())
            .await
            .expect_err("backing off");
        match &err {
            Error::BackingOff {
                retry_in, failures, ..
            } => {
                assert_eq!(*failures, 2);
                assert!(
                    *retry_in >= Duration::from_millis(500) && *retry_in <= Duration::from_secs(1),
                    "{retry_in:?}"
                );
            }
            other => panic!("expected back-off, got {other:?}"),
        }
        assert_eq!(
            err.oauth_error().map(|e| &e.error),
            Some(&crate::OAuthErrorCode::InvalidClient)
        );
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            2,
            "no request while backing off"
        );
        // After the delay, one more try, which fails: the delay doubles.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
        match cache.get(&source, &request()).await {
            Err(Error::BackingOff {
                retry_in,
                failures: 3,
                ..
            }) => {
                assert!(
                    retry_in >= Duration::from_secs(1) && retry_in <= Duration::from_secs(2),
                    "{retry_in:?}"
                );
            }
            other => panic!("expected a longer back-off, got {other:?}"),
        }
        // Recovery clears the back-off.
        source.fail.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&source, &request()).await.is_ok());
        assert_eq!(cache.stats().failures, 3);
    }
}
