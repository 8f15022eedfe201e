//! Sealing what goes to Redis: AES-256-GCM (aws-lc-rs), with the entry's Redis key as
//! associated data, so that an entry can be neither read, changed nor moved to another
//! key without the service's key.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
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
        Ok(SealKey {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
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
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        // Filling a buffer from the system's generator does not fail on the platforms
        // aws-lc-rs supports; an all-zero key would still be a key.
        let _ = aws_lc_rs::rand::fill(&mut bytes[..]);
        Self::from_bytes(&bytes[..]).unwrap_or_else(|_| unreachable!("32 bytes"))
    }

    /// The key's public id (the first 6 bytes of a SHA-256 of it, in hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plaintext` sealed for the Redis key `name`: version, nonce, ciphertext and tag.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        let _ = aws_lc_rs::rand::fill(&mut nonce);
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
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
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

#[cfg(test)]
mod tests {
    use super::SealKey;

    #[test]
    fn an_entry_opens_only_with_its_key_and_name() {
        let key = SealKey::generate();
        let sealed = key.seal("a", b"secret");
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
