//! The cache key: everything a token depends on.

use std::sync::Arc;

use super::FetchToken;
use crate::assertion::{JournalId, Tenant};
use crate::dpop::DpopKey;
use crate::endpoint::{Grant, TokenRequest};
use crate::exchange::SubjectToken;

/// Makes room for `key` in `map`, which holds at most `max` keys: when `key` is new and
/// the map full, forgets the entry whose `age` is least (the oldest).
// A key's DPoP key hashes by its thumbprint, which never changes; its nonces do.
#[allow(clippy::mutable_key_type)]
pub(super) fn make_room<V, T: Ord>(
    map: &mut std::collections::HashMap<CacheKey, V>,
    key: &CacheKey,
    max: usize,
    age: impl Fn(&V) -> T,
) {
    if map.len() >= max
        && !map.contains_key(key)
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, value)| age(value))
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// Everything a token depends on. Two requests share a token exactly when their keys
/// are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub(super) client_id: Arc<str>,
    pub(super) grant: Grant,
    /// Sorted and deduplicated: the order of scopes does not change the token.
    pub(super) scopes: Arc<[String]>,
    resource: Option<Arc<str>>,
    pub(super) tenant: Option<Tenant>,
    /// An SFM journal id the client assertion names.
    journal: Option<JournalId>,
    /// A token exchange's subject token, compared by its SHA-256 fingerprint.
    pub(super) subject: Option<SubjectToken>,
    /// The DPoP key a token is bound to, compared by its thumbprint.
    dpop: Option<DpopKey>,
    partition: u64,
}
impl CacheKey {
    /// The key of `request` for `client_id`. A refresh request's refresh token is not
    /// part of it: the token rotates, the session stays.
    pub(crate) fn new(client_id: &str, request: &TokenRequest) -> Self {
        let mut scopes = request.scopes().to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        CacheKey {
            client_id: client_id.into(),
            grant: request.grant().clone(),
            scopes: scopes.into(),
            resource: request.resource().map(Into::into),
            tenant: request.tenant().copied(),
            journal: request.journal_id().cloned(),
            subject: request.subject().cloned(),
            dpop: request.dpop().cloned(),
            partition: 0,
        }
    }

    /// The key of `request` for `source`'s client and partition.
    pub(crate) fn for_source(source: &dyn FetchToken, request: &TokenRequest) -> Self {
        CacheKey {
            partition: source.partition(),
            ..Self::new(source.client_id(), request)
        }
    }

    /// The hex SHA-256 of [`encode`](Self::encode)'s encoding, which the tests hold
    /// fixed. The subject token enters by its digest, the DPoP key by its thumbprint.
    #[cfg(all(feature = "redis", test))]
    pub(crate) fn stable_digest(&self) -> String {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        self.encode(&mut |bytes| context.update(bytes));
        crate::text::hex(context.finish().as_ref())
    }

    /// The unambiguous (tagged, length-prefixed) encoding of every part, given to
    /// `update` piece by piece: what a name in a store shared by processes is made of
    /// (the shared cache keys it with HMAC), so that replicas of any build agree on it.
    #[cfg(feature = "redis")]
    pub(crate) fn encode(&self, update: &mut dyn FnMut(&[u8])) {
        let mut field = |tag: u8, bytes: &[u8]| {
            update(&[tag]);
            update(&(bytes.len() as u64).to_be_bytes());
            update(bytes);
        };
        field(1, self.client_id.as_bytes());
        field(2, self.grant.grant_type().as_bytes());
        for scope in self.scopes.iter() {
            field(3, scope.as_bytes());
        }
        if let Some(resource) = &self.resource {
            field(4, resource.as_bytes());
        }
        match self.tenant {
            Some(Tenant::Multi { parent, child }) => {
                field(5, parent.as_str().as_bytes());
                if let Some(child) = child {
                    field(6, child.as_str().as_bytes());
                }
            }
            Some(Tenant::Single { child }) => field(7, child.as_str().as_bytes()),
            None => {}
        }
        if let Some(journal) = &self.journal {
            field(8, journal.as_str().as_bytes());
        }
        if let Some(subject) = &self.subject {
            field(9, subject.digest());
        }
        if let Some(key) = &self.dpop {
            field(10, key.thumbprint().as_bytes());
        }
        field(11, &self.partition.to_be_bytes());
    }

    /// The partition of the source this key belongs to (0: any source of the client).
    #[cfg(feature = "redis")]
    pub(crate) fn partition(&self) -> u64 {
        self.partition
    }

    /// The token request this key stands for (without a refresh token: the source
    /// holds that).
    pub fn request(&self) -> TokenRequest {
        let mut request = TokenRequest::with_grant(self.grant.clone(), self.scopes.iter().cloned());
        if let Some(resource) = &self.resource {
            request = request.with_resource(&**resource);
        }
        if let Some(tenant) = self.tenant {
            request = request.with_tenant(tenant);
        }
        if let Some(journal) = &self.journal {
            request = request.with_journal_id(journal.clone());
        }
        if let Some(subject) = &self.subject {
            request = request.with_subject(subject.clone());
        }
        if let Some(key) = &self.dpop {
            request = request.with_dpop(key.clone());
        }
        request
    }

    /// This key with another tenant.
    pub fn with_tenant(&self, tenant: Option<Tenant>) -> Self {
        CacheKey {
            tenant,
            ..self.clone()
        }
    }

    /// This key with another subject token (token exchange).
    pub fn with_subject(&self, subject: Option<SubjectToken>) -> Self {
        CacheKey {
            subject,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::assertion::Tenant;
    use crate::cache::TokenCache;
    use crate::cache::tests::Counting;
    use crate::dpop::DpopKey;
    use crate::endpoint::TokenRequest;

    #[tokio::test(start_paused = true)]
    async fn the_key_is_what_the_token_depends_on() {
        let cache = TokenCache::new();
        let source = Counting::default();
        let a = cache
            .get(&source, &TokenRequest::client_credentials(["a", "b"]))
            .await
            .expect("a");
        let b = cache
            .get(&source, &TokenRequest::client_credentials(["b", "a", "a"]))
            .await
            .expect("b");
        assert_eq!(
            a.secret(),
            b.secret(),
            "scope order and repeats do not matter"
        );
        let tenant: Tenant = "111111111:222222222".parse().expect("tenant");
        let c = cache
            .get(
                &source,
                &TokenRequest::client_credentials(["a", "b"]).with_tenant(tenant),
            )
            .await
            .expect("c");
        assert_ne!(a.secret(), c.secret(), "another tenant, another token");
        let d = cache
            .get(
                &source,
                &TokenRequest::client_credentials(["a", "b"]).with_resource("r"),
            )
            .await
            .expect("d");
        assert_ne!(a.secret(), d.secret(), "another resource, another token");
        let key = DpopKey::generate().expect("dpop key");
        let bound = TokenRequest::client_credentials(["a", "b"]).with_dpop(key.clone());
        let e = cache.get(&source, &bound).await.expect("e");
        assert_ne!(
            a.secret(),
            e.secret(),
            "a DPoP-bound token is not a Bearer token"
        );
        let again = TokenRequest::client_credentials(["a", "b"]).with_dpop(key);
        let f = cache.get(&source, &again).await.expect("f");
        assert_eq!(e.secret(), f.secret(), "the same DPoP key, the same token");
        let other = TokenRequest::client_credentials(["a", "b"])
            .with_dpop(DpopKey::generate().expect("another key"));
        let g = cache.get(&source, &other).await.expect("g");
        assert_ne!(e.secret(), g.secret(), "another DPoP key, another token");
        assert_eq!(source.calls.load(Ordering::SeqCst), 5);
    }

    /// Replicas of different builds must agree on a token's name in Redis: the
    /// encoding is fixed, and this value may change only with a new prefix.
    #[cfg(feature = "redis")]
    #[test]
    fn the_stable_digest_is_fixed_and_tells_every_part_apart() {
        use super::CacheKey;
        let base = TokenRequest::client_credentials(["b", "a"]);
        let key = CacheKey::new("client", &base);
        assert_eq!(
            key.stable_digest(),
            CacheKey::new("client", &TokenRequest::client_credentials(["a", "b", "a"]))
                .stable_digest(),
            "scope order and repeats do not matter"
        );
        assert_eq!(key.stable_digest(), GOLDEN);
        let tenant: Tenant = "111111111:222222222".parse().expect("tenant");
        let parent: Tenant = "111111111".parse().expect("tenant");
        let others = [
            CacheKey::new("client2", &base),
            CacheKey::new("client", &TokenRequest::client_credentials(["a"])),
            CacheKey::new("client", &TokenRequest::client_credentials(["ab"])),
            CacheKey::new("client", &base.clone().with_tenant(tenant)),
            CacheKey::new("client", &base.clone().with_tenant(parent)),
            CacheKey::new("client", &base.clone().with_resource("r")),
            CacheKey::new(
                "client",
                &base.clone().with_dpop(DpopKey::generate().expect("key")),
            ),
        ];
        for (i, other) in others.iter().enumerate() {
            assert_ne!(other.stable_digest(), key.stable_digest(), "{i}");
        }
    }

    /// SHA-256 of the encoding written out by hand (tag byte, big-endian u64 length,
    /// bytes): `1 "client"`, `2 "client_credentials"`, `3 "a"`, `3 "b"`, `11` and the
    /// partition 0 as 8 bytes; computed apart from this code, with Python's hashlib.
    #[cfg(feature = "redis")]
    const GOLDEN: &str = "91049d5762a2f1f58196a70f5386c1c3653aea85c40428314ca898fe44efe7a0";
}
