//! The emulator's own errors: what a test's setup gets wrong, and what the token
//! endpoint refuses when it is asked from Rust.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Why an [`Emulator`](crate::Emulator) could not start or do what it was asked.
///
/// Messages are lowercase and name the setting or step that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting or a client registration is wrong. `setting` names it (for
    /// example `cpe_page_size`, `client_id`, `jwk`).
    #[error("invalid emulator setting `{setting}`: {reason}")]
    #[non_exhaustive]
    Setting {
        /// The builder setting or registration field that is wrong.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The listener could not be bound.
    #[error("cannot listen on {address}")]
    #[non_exhaustive]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A key of the emulator's own (its signing key, a test client's key) could not be
    /// made, a token could not be signed, or a test client's configuration could not be
    /// built.
    #[error("cannot {what}")]
    #[non_exhaustive]
    Key {
        /// What was being done.
        what: &'static str,
        /// The library's error, when it gave one.
        #[source]
        source: Option<helseid::Error>,
    },

    /// A file could not be written
    /// ([`Emulator::write_client_config`](crate::Emulator::write_client_config)).
    #[error("cannot write {}", path.display())]
    #[non_exhaustive]
    WriteFile {
        /// The file asked for.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// [`Emulator::client_config`](crate::Emulator::client_config) was asked for a
    /// client whose private key the emulator does not hold: one that is not registered,
    /// or one registered with a key of the test's own
    /// ([`EmulatorBuilder::client`](crate::EmulatorBuilder::client)) instead of
    /// [`EmulatorBuilder::test_client`](crate::EmulatorBuilder::test_client).
    #[error("no private key for client `{client_id}`: {reason}")]
    #[non_exhaustive]
    NoClientKey {
        /// The client asked for.
        client_id: String,
        /// Why the emulator holds no key for it.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting {
            setting,
            reason: reason.into(),
        }
    }

    pub(crate) fn key(what: &'static str, source: impl Into<Option<helseid::Error>>) -> Self {
        Error::Key {
            what,
            source: source.into(),
        }
    }
}

/// A shorthand for results of the emulator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An OAuth 2.0 error body (RFC 6749 section 5.2) as the emulator writes it: the
/// emulator's own type, so that a mistake in the library's parsing cannot hide behind a
/// shared definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error code, for example `invalid_client`.
    pub error: String,
    /// What is wrong, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl ErrorBody {
    pub(crate) fn new(error: impl Into<String>, description: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            error_description: Some(description.into()),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorBody {}

/// base64url without padding, as JOSE writes it.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, tolerating trailing padding (some tools write it).
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}
