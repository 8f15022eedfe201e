//! Verified tokens, kept by the SHA-256 of the token until their `exp`: a warm token is
//! not verified again. Only a token's result is kept, never a proof's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::token::Verified;

/// The SHA-256 of a token.
pub(crate) type TokenHash = [u8; 32];

/// Keeps an entry until the token's `exp` (plus the leeway).
struct UntilExp {
    leeway: u64,
    clock: super::Clock,
}

impl moka::Expiry<TokenHash, Arc<Verified>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Arc<Verified>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let now = (self.clock)();
        let until = value.claims.exp.saturating_add(self.leeway);
        Some(Duration::from_secs(
            until.saturating_sub(now).min(24 * 60 * 60),
        ))
    }
}

/// The bounded cache of verified tokens; none with a capacity of 0 (every token is
/// verified in full).
pub(crate) struct TokenCache {
    cache: Option<moka::future::Cache<TokenHash, Arc<Verified>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: u64, leeway: u64, clock: super::Clock) -> Self {
        TokenCache {
            cache: (capacity > 0).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .expire_after(UntilExp { leeway, clock })
                    .build()
            }),
        }
    }

    pub(crate) async fn get(&self, key: &TokenHash) -> Option<Arc<Verified>> {
        self.cache.as_ref()?.get(key).await
    }

    pub(crate) async fn insert(&self, key: TokenHash, value: Arc<Verified>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, value).await;
        }
    }

    pub(crate) async fn remove(&self, key: &TokenHash) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key).await;
        }
    }
}
