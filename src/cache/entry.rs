//! A cached token with its schedule, and the expiry that frees it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::time::Instant;

use super::{CacheKey, CacheSettings, FetchToken};
use crate::token::AccessToken;

/// A cached token with its schedule.
pub(crate) struct Entry {
    pub(crate) token: Arc<AccessToken>,
    /// Used until then.
    pub(super) usable_until: Instant,
    /// A background refresh may start from then.
    pub(super) refresh_at: Instant,
    /// Whether a background refresh runs.
    pub(super) refreshing: AtomicBool,
    /// The source that gave the token, told when a service refuses it (`None`: a
    /// token put in place by hand).
    pub(super) source: Option<Arc<dyn FetchToken>>,
}

impl Entry {
    /// An entry for `token`; `cap` ends it earlier (a token exchange's subject token
    /// expiry: an exchanged token is never used past it, nor refreshed ahead of it).
    pub(super) fn new(token: AccessToken, settings: &CacheSettings, cap: Option<Instant>) -> Self {
        let now = Instant::now();
        let lifetime = token.expires_in();
        let mut usable_until = token.expires_at() - settings.expiry_margin.min(lifetime / 4);
        let mut refresh_at = usable_until - settings.refresh_window.min(lifetime / 4);
        if let Some(cap) = cap
            && cap < usable_until
        {
            usable_until = cap;
            refresh_at = cap;
        }
        Entry {
            token: Arc::new(token),
            usable_until: usable_until.max(now),
            refresh_at: refresh_at.max(now),
            refreshing: AtomicBool::new(false),
            source: None,
        }
    }

    /// This entry, telling `source` when a service refuses its token.
    pub(super) fn with_source(mut self, source: &Arc<dyn FetchToken>) -> Self {
        self.source = Some(source.clone());
        self
    }
}

/// Frees an entry's memory when its token is no longer usable.
pub(super) struct TokenExpiry;

impl moka::Expiry<CacheKey, Arc<Entry>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        // Memory is freed when the token is no longer usable. Usability itself is judged
        // on tokio's clock in `TokenCache::get`.
        Some(value.usable_until.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::TokenCache;
    use crate::cache::tests::{Counting, request};

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_are_fetched_again() {
        let cache = TokenCache::new();
        let source = Counting::default();
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        // 3600 s token, 10 s margin: usable until 3590 s.
        tokio::time::advance(Duration::from_secs(3589)).await;
        let still = cache.get(&source, &request()).await.expect("t");
        assert_eq!(still.secret(), "token-1");
        tokio::time::advance(Duration::from_secs(2)).await;
        // A refresh may have started in the window; either way the expired one is gone.
        let fresh = cache.get(&source, &request()).await.expect("t");
        assert_ne!(fresh.secret(), "token-1");
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_keep_proportional_margins() {
        let cache = TokenCache::new();
        let source = Counting {
            lifetime: Some(Duration::from_secs(20)),
            ..Counting::default()
        };
        cache.get(&source, &request()).await.expect("t");
        // Margin min(10, 20/4) = 5 s: usable until 15 s.
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
    }
}
