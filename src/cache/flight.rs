//! Single flight: one fetch per key at a time, run as its own task under the fetch
//! timeout, shared by every caller that waits for it; and the background refresh.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::{CacheKey, Entry, FetchToken, TokenCache};
use crate::error::{Error, Result};
use crate::exchange::SubjectToken;

/// A fetch in flight, shared by every caller that waits for it.
pub(super) type InFlight = Shared<BoxFuture<'static, Result<Arc<Entry>>>>;

impl TokenCache {
    /// The fetch in flight for `key`, or a new one (`on_miss`: or the token a fetch
    /// stored a moment ago). A fetch runs as its own task, under
    /// the fetch timeout, stores its token, and goes on when the callers waiting for it
    /// are dropped.
    pub(super) fn join_fetch(
        &self,
        source: &Arc<dyn FetchToken>,
        key: &CacheKey,
        on_miss: bool,
    ) -> InFlight {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(fetch) = in_flight.get(key) {
            return fetch.clone();
        }
        // A fetch stores its token before it leaves `in_flight`: a caller that missed
        // the token just before it was stored finds it here, instead of fetching again.
        if on_miss && self.inner.entries.contains_key(key) {
            let cache = self.clone();
            let (source, key) = (source.clone(), key.clone());
            return async move {
                match cache.inner.entries.get(&key).await {
                    Some(entry) if Instant::now() < entry.usable_until => Ok(entry),
                    _ => cache.join_fetch(&source, &key, false).await,
                }
            }
            .boxed()
            .shared();
        }
        let cache = self.clone();
        let source = source.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let result = cache.fetch(&source, &task_key).await;
            if let Ok(entry) = &result {
                cache
                    .inner
                    .entries
                    .insert(task_key.clone(), entry.clone())
                    .await;
            }
            cache
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task_key);
            result
        });
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::FetchTask {
                    source: Arc::new(e),
                })
            })
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), fetch.clone());
        fetch
    }

    #[tracing::instrument(
        name = "helseid.fetch",
        skip_all,
        fields(client_id = %key.client_id, grant = key.grant.grant_type(), scopes = ?key.scopes, tenant = ?key.tenant)
    )]
    async fn fetch(&self, source: &Arc<dyn FetchToken>, key: &CacheKey) -> Result<Arc<Entry>> {
        let counters = &self.inner.counters;
        counters.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.settings.fetch_timeout;
        let result = match tokio::time::timeout(timeout, source.fetch(key.request())).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                endpoint: "token fetch",
                after: timeout,
            }),
        };
        match result {
            Ok(token) => {
                self.inner.backoff.clear(key);
                tracing::debug!(expires_in = ?token.expires_in(), "token fetched");
                let cap = key.subject.as_ref().and_then(SubjectToken::expires_at);
                Ok(Arc::new(
                    Entry::new(token, &self.inner.settings, cap).with_source(source),
                ))
            }
            Err(error) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .backoff
                    .record_failure(key, &error, &self.inner.settings);
                Err(error)
            }
        }
    }

    /// Starts one background refresh of `entry`, unless one runs already or the key is
    /// backing off. Needs a tokio runtime; without one, nothing happens.
    pub(super) fn refresh_in_background(
        &self,
        source: &Arc<dyn FetchToken>,
        key: &CacheKey,
        entry: &Arc<Entry>,
    ) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.inner.backoff.check(key, Instant::now()).is_err()
            || tokio::runtime::Handle::try_current().is_err()
        {
            entry.refreshing.store(false, Ordering::Release);
            return;
        }
        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client_id = %key.client_id, "refreshing a token ahead of expiry");
        crate::metrics::refresh_ahead();
        let fetch = self.join_fetch(source, key, false);
        let entry = entry.clone();
        tokio::spawn(async move {
            // On failure the current token stays in use until it expires; the next
            // request in the window tries again, after the back-off.
            if fetch.await.is_err() {
                entry.refreshing.store(false, Ordering::Release);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::cache::tests::{Counting, request};
    use crate::cache::{CacheSettings, TokenCache};
    use crate::error::Error;

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_fetch() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_millis(50),
            ..Counting::default()
        };
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                let source = source.clone();
                tokio::spawn(async move { cache.get(&source, &request()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.expect("join").expect("token").secret(),
                "token-1"
            );
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(stats.fetches, 1);
        assert_eq!(stats.hits + stats.misses, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_ahead_keeps_serving_while_one_refresh_runs() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_secs(5),
            ..Counting::default()
        };
        cache.get(&source, &request()).await.expect("first");
        // Into the refresh window: 3600 - 10 - 60 = 3530 s.
        tokio::time::advance(Duration::from_secs(3531)).await;
        let started = Instant::now();
        for _ in 0..10 {
            let token = cache.get(&source, &request()).await.expect("served");
            assert_eq!(
                token.secret(),
                "token-1",
                "the current token is served during the refresh"
            );
        }
        assert_eq!(
            Instant::now(),
            started,
            "no caller waited on the slow token endpoint"
        );
        assert_eq!(
            cache.stats().refreshes,
            1,
            "one refresh, however many callers"
        );
        // Let the background refresh finish.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-2"
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_current_token_until_expiry() {
        let cache = TokenCache::new();
        let source = Counting::default();
        cache.get(&source, &request()).await.expect("first");
        source.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(3531)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        tokio::time::sleep(Duration::from_millis(1)).await; // the refresh runs and fails
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        assert!(cache.stats().failures >= 1);
        // Past the usable time, the failure reaches the caller.
        tokio::time::advance(Duration::from_secs(60)).await;
        let err = cache
            .get(&source, &request())
            .await
            .expect_err("expired, endpoint failing");
        assert_eq!(
            err.oauth_error().map(|e| &e.error),
            Some(&crate::OAuthErrorCode::InvalidClient)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_fetch_times_out_for_everyone() {
        let cache = TokenCache::with_settings(CacheSettings {
            fetch_timeout: Duration::from_secs(2),
            ..CacheSettings::default()
        });
        let source = Counting {
            delay: Duration::from_secs(3600),
            ..Counting::default()
        };
        let request = request();
        let (a, b) = tokio::join!(cache.get(&source, &request), cache.get(&source, &request));
        for result in [a, b] {
            assert!(
                matches!(result, Err(Error::Timeout { after, .. }) if after == Duration::from_secs(2))
            );
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_first_caller_neither_stalls_nor_fails_the_others() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_secs(1),
            ..Counting::default()
        };
        let first = {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move { cache.get(&source, &request()).await })
        };
        tokio::task::yield_now().await;
        let second = {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move { cache.get(&source, &request()).await })
        };
        tokio::task::yield_now().await;
        first.abort();
        let token = second
            .await
            .expect("join")
            .expect("the second caller gets a token");
        assert_eq!(
            token.secret(),
            "token-1",
            "the fetch the first caller started went on"
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }
}
