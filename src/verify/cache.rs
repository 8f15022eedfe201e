//! Verified tokens, kept until their `exp`: a warm token is not verified again. Only a
//! token's result is kept, never a proof's.
//!
//! Two levels. The store of record is a bounded moka cache shared by the layer's clones.
//! In front of it, each thread keeps the last tokens it used in a small table of its own
//! ([`FRONT_SLOTS`] entries, all layers together), holding, for a token it uses often,
//! its own copy of the claims: a warm request reads no shared lock, writes no shared
//! cache line and bumps no shared reference count, so requests on two cores do not slow
//! each other down.
//!
//! An entry is found by a key taken from the token's last 32 bytes (its signature, which
//! no two tokens share) instead of a hash of all of it: hashing a 1.2 KB token would cost
//! more than the rest of a warm request. Whatever the key finds is used only when its
//! token is byte for byte the one presented (compared in constant time), so a key that
//! collides costs a verification, never a wrong answer.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::claims::HelseIdClaims;
use super::token::Verified;

/// What finds a token: its last 32 bytes, right-aligned (zeros before a shorter one).
pub(crate) type TokenKey = [u8; 32];

/// The key of `token`.
#[inline]
pub(crate) fn token_key(token: &[u8]) -> TokenKey {
    let mut key = [0u8; 32];
    let tail = &token[token.len().saturating_sub(32)..];
    key[32 - tail.len()..].copy_from_slice(tail);
    key
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    // Written without an early exit, and vectorised by the compiler.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The SHA-256 of a token: a DPoP proof's `ath` is its base64url.
pub(crate) type TokenDigest = [u8; 32];

/// A verified token, its text and its SHA-256 (computed once, for DPoP proofs' `ath`).
pub(crate) struct Entry {
    pub(crate) verified: Verified,
    pub(crate) digest: TokenDigest,
    token: Box<[u8]>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("verified", &self.verified)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl Entry {
    pub(crate) fn new(verified: Verified, token: &str) -> Self {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
        );
        Entry {
            verified,
            digest,
            token: token.as_bytes().into(),
        }
    }

    /// Whether this is the entry of `token`.
    #[inline]
    fn is(&self, token: &[u8]) -> bool {
        same_bytes(&self.token, token)
    }
}

/// Keeps an entry until the token's `exp` (plus the leeway).
struct UntilExp {
    leeway: u64,
    clock: super::Clock,
}

impl moka::Expiry<TokenKey, Arc<Entry>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let now = (self.clock)();
        let until = value.verified.claims.exp.saturating_add(self.leeway);
        Some(Duration::from_secs(
            until.saturating_sub(now).min(24 * 60 * 60),
        ))
    }
}

/// How many tokens each thread keeps in front of the shared cache.
const FRONT_SLOTS: usize = 64;

/// Hits after which a thread takes a copy of its own of a token's claims.
const HOT: u32 = 8;

/// One token a thread used: the cache's entry, and its claims: shared with the other
/// threads at first, then, once the token is hot here ([`HOT`] hits), this thread's own
/// copy, so that handing them out writes no reference count another core reads. (A
/// copy at every insertion would cost a service whose tokens outnumber the slots an
/// allocation-heavy clone per request.)
struct Slot {
    cache: u64,
    key: TokenKey,
    entry: Arc<Entry>,
    claims: Arc<HelseIdClaims>,
    hits: u32,
}

thread_local! {
    static FRONT: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

/// The front slot of `key`.
#[inline]
fn slot_of(key: &TokenKey) -> usize {
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&key[24..]);
    (u64::from_le_bytes(tail).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % FRONT_SLOTS
}

/// The bounded cache of verified tokens; none with a capacity of 0 (every token is
/// verified in full).
pub(crate) struct TokenCache {
    /// Which cache a thread's front slot belongs to.
    id: u64,
    cache: Option<moka::future::Cache<TokenKey, Arc<Entry>>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: u64, leeway: u64, clock: super::Clock) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        TokenCache {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            cache: (capacity > 0).then(|| {
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .expire_after(UntilExp { leeway, clock })
                    .build()
            }),
        }
    }

    /// `with` of this thread's entry of `token` and its claims, when the thread has it.
    #[inline]
    pub(crate) fn front<R>(
        &self,
        key: &TokenKey,
        token: &[u8],
        with: impl FnOnce(&Entry, &Arc<HelseIdClaims>) -> R,
    ) -> Option<R> {
        self.cache.as_ref()?;
        FRONT
            .try_with(|front| {
                let mut front = front.try_borrow_mut().ok()?;
                match front.get_mut(slot_of(key))? {
                    Some(slot)
                        if slot.cache == self.id && slot.key == *key && slot.entry.is(token) =>
                    {
                        if slot.hits < HOT {
                            slot.hits += 1;
                            if slot.hits == HOT {
                                slot.claims = Arc::new(HelseIdClaims::clone(&slot.claims));
                            }
                        }
                        Some(with(&slot.entry, &slot.claims))
                    }
                    _ => None,
                }
            })
            .ok()
            .flatten()
    }

    /// The shared cache's entry of `token`.
    pub(crate) async fn get(&self, key: &TokenKey, token: &[u8]) -> Option<Arc<Entry>> {
        let entry = self.cache.as_ref()?.get(key).await?;
        entry.is(token).then_some(entry)
    }

    /// Keeps `entry` in the shared cache.
    pub(crate) async fn insert(&self, key: TokenKey, entry: Arc<Entry>) {
        if let Some(cache) = &self.cache {
            cache.insert(key, entry).await;
        }
    }

    /// Puts `entry` in this thread's front: the claims to hand out.
    pub(crate) fn remember(&self, key: TokenKey, entry: &Arc<Entry>) -> Arc<HelseIdClaims> {
        let claims = entry.verified.claims.clone();
        if self.cache.is_none() {
            return claims;
        }
        let _ = FRONT.try_with(|front| {
            if let Ok(mut front) = front.try_borrow_mut() {
                if front.is_empty() {
                    front.resize_with(FRONT_SLOTS, || None);
                }
                front[slot_of(&key)] = Some(Slot {
                    cache: self.id,
                    key,
                    entry: entry.clone(),
                    claims: claims.clone(),
                    hits: 0,
                });
            }
        });
        claims
    }

    /// Drops the entry of `key` (its key left the issuer's set): from the shared cache
    /// and this thread's front. Other threads' fronts find its key gone at their next
    /// use, and ask the shared cache.
    pub(crate) async fn remove(&self, key: &TokenKey) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key).await;
        }
        let _ = FRONT.try_with(|front| {
            if let Ok(mut front) = front.try_borrow_mut()
                && let Some(slot) = front.get_mut(slot_of(key))
                && slot
                    .as_ref()
                    .is_some_and(|s| s.cache == self.id && s.key == *key)
            {
                *slot = None;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_comparisons() {
        assert_eq!(token_key(b"abc")[29..], *b"abc");
        assert_eq!(token_key(b"abc")[..29], [0u8; 29]);
        let long: Vec<u8> = (0..100u8).collect();
        assert_eq!(token_key(&long)[..], long[68..]);
        assert!(same_bytes(b"a.b.c", b"a.b.c"));
        assert!(!same_bytes(b"a.b.c", b"a.b.d"));
        assert!(!same_bytes(b"a.b.c", b"a.b.cc"));
        assert!(slot_of(&token_key(&long)) < FRONT_SLOTS);
    }
}
