//! The IdP's own signing keys, shaped as HelseID's: RS256 keys whose `kid` is 40
//! upper-case hexadecimal digits (a SHA-1 thumbprint, as HelseID's certificate
//! thumbprints are) and whose `x5t` is the same thumbprint in base64url, both in every
//! token header and in the JWKS.
//!
//! HelseID signs with a certificate; the emulator has none, so its thumbprint is the
//! SHA-1 of the public key's `SubjectPublicKeyInfo` DER: stable for a key, different
//! for each.
//!
//! **Key rotation**: [`SigningKeys::rotate`] makes a new key the one that signs, and
//! keeps the earlier ones published (in the JWKS, and accepted by
//! [`State::verify_access_token`](crate::idp::state::State::verify_access_token)) until
//! [`SigningKeys::retire`] withdraws them, as an issuer keeps its old key published
//! for a while after a rollover.

use std::sync::{Arc, RwLock};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use serde::Serialize;
use serde_json::{Value, json};

use crate::server::error::b64;

/// One signing key: the pair, its `kid` and `x5t`, its public JWK, and jsonwebtoken's
/// key to check the emulator's own tokens with.
pub(crate) struct IdpKey {
    pair: RsaKeyPair,
    kid: String,
    x5t: String,
    jwk: Value,
    pub(crate) decoding: jsonwebtoken::DecodingKey,
}

impl IdpKey {
    /// A fresh RSA 2048 key; `None` when one cannot be made.
    fn generate() -> Option<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
        let public = pair.public_key();
        let spki = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'static>>::as_der(public).ok()?;
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, spki.as_ref());
        let kid: String = thumbprint
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let x5t = b64(thumbprint.as_ref());
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let decoding = jsonwebtoken::DecodingKey::from_rsa_raw_components(&n, &e);
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": kid,
            "x5t": x5t,
            "e": b64(&e),
            "n": b64(&n),
            "alg": "RS256",
        });
        Some(IdpKey {
            pair,
            kid,
            x5t,
            jwk,
            decoding,
        })
    }

    /// Signs `claims` as a JWT of type `typ`: header `{"alg": "RS256", "kid", "typ",
    /// "x5t"}`, RSASSA-PKCS1-v1_5 with SHA-256.
    fn sign<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> Option<String> {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": typ, "x5t": self.x5t});
        let mut jwt = b64(serde_json::to_vec(&header).ok()?);
        jwt.push('.');
        jwt.push_str(&b64(serde_json::to_vec(claims).ok()?));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut sig,
            )
            .ok()?;
        jwt.push('.');
        jwt.push_str(&b64(sig));
        Some(jwt)
    }
}

/// The keys now: the one that signs, and the earlier ones still published.
struct Ring {
    current: Arc<IdpKey>,
    /// Newest first.
    previous: Vec<Arc<IdpKey>>,
}

/// The IdP's signing keys: one signs, earlier ones stay published until retired.
pub(crate) struct SigningKeys {
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.kids())
            .finish()
    }
}

impl SigningKeys {
    /// One fresh key; `None` when it cannot be made.
    pub(crate) fn generate() -> Option<Self> {
        Some(SigningKeys {
            ring: RwLock::new(Ring {
                current: Arc::new(IdpKey::generate()?),
                previous: Vec::new(),
            }),
        })
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key that signs now.
    fn current(&self) -> Arc<IdpKey> {
        Arc::clone(&self.ring().current)
    }

    /// The published key with this `kid`: the current one or one not yet retired.
    pub(crate) fn find(&self, kid: &str) -> Option<Arc<IdpKey>> {
        let ring = self.ring();
        std::iter::once(&ring.current)
            .chain(&ring.previous)
            .find(|key| key.kid == kid)
            .cloned()
    }

    /// The published `kid`s, the current one first.
    pub(crate) fn kids(&self) -> Vec<String> {
        let ring = self.ring();
        std::iter::once(&ring.current)
            .chain(&ring.previous)
            .map(|key| key.kid.clone())
            .collect()
    }

    /// Signs `claims` with the current key; `None` when the claims cannot be
    /// serialised or the signature fails.
    pub(crate) fn sign<T: Serialize + ?Sized>(&self, typ: &str, claims: &T) -> Option<String> {
        self.current().sign(typ, claims)
    }

    /// The published keys as a JWKS, the current one first.
    pub(crate) fn jwks(&self) -> Value {
        let ring = self.ring();
        let keys: Vec<&Value> = std::iter::once(&ring.current)
            .chain(&ring.previous)
            .map(|key| &key.jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// Makes a fresh key the one that signs; the one it replaces stays published.
    /// Returns the new `kid`, or `None` when no key can be made.
    pub(crate) fn rotate(&self) -> Option<String> {
        let fresh = Arc::new(IdpKey::generate()?);
        let kid = fresh.kid.clone();
        let mut ring = self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replaced = std::mem::replace(&mut ring.current, fresh);
        ring.previous.insert(0, replaced);
        Some(kid)
    }

    /// Withdraws every key but the current one; returns how many were withdrawn.
    pub(crate) fn retire(&self) -> usize {
        let mut ring = self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut ring.previous).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_sha1_thumbprints_and_rotation_keeps_the_old_key_until_retired() {
        crate::server::install_crypto_provider();
        let keys = SigningKeys::generate().expect("key");
        let first = keys.kids()[0].clone();
        assert_eq!(first.len(), 40);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kid"], first.as_str());
        let x5t = crate::server::error::b64_decode(jwks["keys"][0]["x5t"].as_str().expect("x5t"))
            .expect("base64url");
        let hex: String = x5t.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, first, "x5t is the kid's thumbprint in base64url");

        let token = keys.sign("at+jwt", &json!({"a": 1})).expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(first.as_str()));
        assert_eq!(header.x5t.as_deref(), jwks["keys"][0]["x5t"].as_str());

        let second = keys.rotate().expect("rotate");
        assert_ne!(first, second);
        assert_eq!(keys.kids(), [second.clone(), first.clone()]);
        assert!(keys.find(&first).is_some());
        assert_eq!(keys.retire(), 1);
        assert_eq!(keys.kids(), [second]);
        assert!(keys.find(&first).is_none());
    }
}
