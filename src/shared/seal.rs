//! Sealing what goes to Redis: AES-256-GCM (aws-lc-rs), with the entry's Redis key as
//! associated data, so that an entry can be neither read, changed nor moved to another
//! key without the service's key.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The format byte in front of every sealed entry.
const VERSION: u8 = 1;

/// The service's key for entries in Redis: 32 bytes, the same on every replica.
///
/// Give every replica the same key from the service's configuration (a secret, as the
/// client's private key is); a replica with another key neither reads nor trusts the
/// others' entries, and keeps its own apart from theirs. `Debug` shows only the key's
/// id, never the key.
#[derive(Clone)]
pub struct SealKey {
    key: std::sync::Arc<LessSafeKey>,
    /// The key that names entries in Redis (HMAC-SHA256), derived from the seal key:
    /// whoever reads Redis cannot tell from a name what it stands for (which client,
    /// which organisations, which session) without the service's key.
    names: hmac::Key,
    /// A short public name of the key: part of every Redis key, so that replicas with
    /// different keys (during a change of key) keep apart.
    id: String,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// The key from its 32 bytes.
    ///
    /// # Errors
    /// [`Error::Config`] when `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::config(
                "shared cache key",
                format!("must be 32 bytes, not {}", bytes.len()),
            ));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::config("shared cache key", "not an AES-256 key"))?;
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(b"helseid shared cache key id\0");
        context.update(bytes);
        let digest = context.finish();
        let id = crate::text::hex(&digest.as_ref()[..6]);
        // A key of its own for names: HMAC(seal key, label), so that a name never
        // reveals anything of the key that seals, nor the other way round.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"helseid shared cache names\0",
        );
        let names = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        Ok(SealKey {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
            names,
            id,
        })
    }

    /// The key from standard base64 (44 characters), as a configuration holds it.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not base64 of 32 bytes; the message never
    /// quotes the text.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            Error::config(
                "shared cache key",
                "is not standard base64 (make one with `openssl rand -base64 32`)",
            )
        })?);
        Self::from_bytes(&bytes)
    }

    /// A new random key, for tests and for a single process.
    ///
    /// # Panics
    /// When the system's random generator fails (a key of zeros, or of whatever the
    /// buffer held, is never made): [`try_generate`](Self::try_generate) returns the
    /// error instead.
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new random key, for tests and for a single process.
    ///
    /// # Errors
    /// [`Error::Config`] when the system's random generator fails: no key is made of a
    /// buffer the generator did not fill.
    pub fn try_generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random(&mut bytes[..])
            .map_err(|_| Error::config("shared cache key", "the random generator failed"))?;
        Self::from_bytes(&bytes[..])
    }

    /// The key's public id (the first 6 bytes of a SHA-256 of it, in hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of an entry in Redis for `parts` (an unambiguous encoding the caller
    /// makes): HMAC-SHA256 with the key derived for names, in hex.
    pub(crate) fn name(&self, parts: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
        let mut context = hmac::Context::with_key(&self.names);
        parts(&mut |bytes| context.update(bytes));
        crate::text::hex(context.sign().as_ref())
    }

    /// `plaintext` sealed for the Redis key `name`: version, nonce, ciphertext and tag;
    /// `None` when the random generator failed (no nonce is ever made of zeros) or the
    /// input is larger than GCM allows.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        // Sealing in place fails only for inputs larger than GCM allows (64 GiB).
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .is_err()
        {
            return None;
        }
        out.extend_from_slice(&body);
        Some(out)
    }

    /// The plaintext of `sealed`, read from the Redis key `name`; `None` when it was
    /// sealed with another key, for another Redis key, or changed.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&version, rest) = sealed.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .ok()?
            .len();
        body.truncate(len);
        Some(body)
    }
}

/// Fills `bytes` from the system's random generator. An error leaves nothing usable:
/// callers fail closed (no key, nonce or fencing value of zeros).
pub(crate) fn random(bytes: &mut [u8]) -> std::result::Result<(), aws_lc_rs::error::Unspecified> {
    #[cfg(test)]
    if tests::FAIL_RANDOM.with(std::cell::Cell::get) {
        return Err(aws_lc_rs::error::Unspecified);
    }
    aws_lc_rs::rand::fill(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::SealKey;

    thread_local! {
        /// Makes [`super::random`] fail on this thread, as a broken generator would.
        pub(crate) static FAIL_RANDOM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_failing_generator_makes_no_key_nonce_or_fence() {
        let key = SealKey::generate();
        FAIL_RANDOM.with(|f| f.set(true));
        let generated = SealKey::try_generate();
        let sealed = key.seal("a", b"secret");
        let fence = crate::shared::fence();
        FAIL_RANDOM.with(|f| f.set(false));
        let err = generated.expect_err("no key of zeros");
        assert!(err.to_string().contains("random generator failed"), "{err}");
        assert!(sealed.is_none(), "no nonce of zeros");
        assert!(fence.is_none(), "no fencing value of zeros");
        assert!(
            key.seal("a", b"secret").is_some(),
            "the generator works again"
        );
    }

    #[test]
    fn names_are_keyed_and_differ_by_key_and_parts() {
        let key = SealKey::from_bytes(&[7; 32]).expect("key");
        let name = key.name(|add| add(b"client"));
        assert_eq!(name.len(), 64);
        assert_eq!(name, key.name(|add| add(b"client")));
        assert_ne!(name, key.name(|add| add(b"client2")));
        assert_ne!(
            name,
            SealKey::from_bytes(&[8; 32])
                .expect("key")
                .name(|add| add(b"client"))
        );
        // Not the unkeyed SHA-256 of the parts: reading Redis tells nothing without the key.
        let plain = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"client");
        assert_ne!(name, crate::text::hex(plain.as_ref()));
    }

    #[test]
    fn an_entry_opens_only_with_its_key_and_name() {
        let key = SealKey::generate();
        let sealed = key.seal("a", b"secret").expect("sealed");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open("a", &sealed).as_deref().map(Vec::as_slice),
            Some(&b"secret"[..])
        );
        assert!(key.open("b", &sealed).is_none(), "moved to another key");
        assert!(
            SealKey::generate().open("a", &sealed).is_none(),
            "another service key"
        );
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert!(key.open("a", &tampered).is_none(), "byte {i} changed");
        }
        assert!(key.open("a", &sealed[..10]).is_none());
        assert!(key.open("a", &[]).is_none());
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_shown() {
        let err = SealKey::from_base64("not base64!").expect_err("bad text");
        assert!(!err.to_string().contains("not base64!"), "{err}");
        let err = SealKey::from_bytes(&[1; 16]).expect_err("short");
        assert!(err.to_string().contains("32 bytes, not 16"), "{err}");
        let key =
            SealKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
        let shown = format!("{key:?}");
        assert!(
            shown.contains(key.id()) && !shown.contains("AAEC"),
            "{shown}"
        );
        assert_eq!(key.id().len(), 12);
    }
}
