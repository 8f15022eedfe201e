//! The guard against token storms: an API that answers `401 invalid_token` to every
//! request (a wrong audience, say) must not make the layer ask HelseID for a new token
//! on every request. A key's token is evicted for `invalid_token` at most once per
//! interval; further 401s in the interval are returned as they are, counted, and logged
//! once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::CacheKey;

/// The most keys remembered; past it, the oldest are forgotten.
const MAX_KEYS: usize = 4096;

/// When a key's token was last evicted for `invalid_token`, and whether a 401 in that
/// interval has been logged.
struct Evicted {
    at: Instant,
    logged: bool,
}

#[derive(Default)]
pub(super) struct StormGuard {
    evicted: Mutex<HashMap<CacheKey, Evicted>>,
    suppressed: AtomicU64,
}

impl StormGuard {
    fn evicted(&self) -> MutexGuard<'_, HashMap<CacheKey, Evicted>> {
        self.evicted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key`'s token may be evicted (and fetched anew) for `invalid_token` now:
    /// yes once per `interval`. A no is counted, and the first no of an interval logged.
    pub(super) fn allow(&self, key: &CacheKey, interval: Duration) -> bool {
        let now = Instant::now();
        let mut evicted = self.evicted();
        match evicted.get_mut(key) {
            Some(last) if now.saturating_duration_since(last.at) < interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                if !last.logged {
                    last.logged = true;
                    tracing::warn!(
                        client_id = %key.client_id,
                        interval = ?interval,
                        "the service refused a fresh token with invalid_token again: returning its 401s as they are, without new tokens, until the interval has passed"
                    );
                }
                false
            }
            _ => {
                super::key::make_room(&mut evicted, key, MAX_KEYS, |e| e.at);
                evicted.insert(
                    key.clone(),
                    Evicted {
                        at: now,
                        logged: false,
                    },
                );
                true
            }
        }
    }

    /// How many `invalid_token` evictions were refused so far.
    pub(super) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::TokenRequest;

    #[tokio::test(start_paused = true)]
    async fn one_eviction_per_key_per_interval() {
        let guard = StormGuard::default();
        let a = CacheKey::new("a", &TokenRequest::client_credentials(["s"]));
        let b = CacheKey::new("b", &TokenRequest::client_credentials(["s"]));
        let interval = Duration::from_secs(5);
        assert!(guard.allow(&a, interval));
        assert!(!guard.allow(&a, interval));
        assert!(!guard.allow(&a, interval));
        assert!(guard.allow(&b, interval), "another key is not held back");
        assert_eq!(guard.suppressed(), 2);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(guard.allow(&a, interval), "the interval has passed");
        assert!(!guard.allow(&a, interval));
        assert_eq!(guard.suppressed(), 3);
    }
}
