//! Keys that rotate before they expire: Selvbetjening's client-secret API.
//!
//! Keys registered in Selvbetjening (NHN's self-service portal) expire, and an expired
//! key is an outage. A client granted the scope [`SCOPE`] (`nhn:selvbetjening/client`)
//! reads its key's expiration ([`Selvbetjening::key_expiration`]) and registers a new
//! key ([`Selvbetjening::register_key`]) with a DPoP-bound token of its own; after the
//! registration HelseID refuses the old key. [`rotate_config_file`] does the whole
//! rotation of a configuration file so that a failure at any step leaves a
//! configuration that works:
//!
//! 1. a new private key, written to `<file>.new` first (owner-only, atomically);
//! 2. a DPoP-bound token for [`SCOPE`] with the CURRENT key, and the new public JWK
//!    posted to Selvbetjening;
//! 3. the new key proven with the same request as step 2: a DPoP-bound token for
//!    [`SCOPE`] with the NEW key, used at Selvbetjening;
//! 4. only then the configuration file replaced (atomically, with `keyExpiration`), the
//!    old one kept as `<file>.bak`;
//! 5. apart, a token for the configuration's API scopes with the new key: its failure
//!    is reported in [`Rotation::api_scopes_error`] and undoes nothing.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), helseid::Error> {
//! let rotation = helseid::selvbetjening::rotate_config_file(
//!     "helseid-client.json".as_ref(),
//!     None, // Selvbetjening of the configuration's environment
//!     None, // the current key's algorithm
//! )
//! .await?;
//! println!("the new key expires {}", rotation.expiration.to_rfc3339());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;

use crate::HelseIdLayer;
use crate::auth::HelseId;
use crate::config::ClientConfig;
use crate::dpop::DpopKey;
use crate::endpoint::{TokenEndpoint, TokenRequest};
use crate::error::{Error, Result};
use crate::key::{Algorithm, PrivateJwk, PublicJwk};
use crate::transport::HttpsClient;

/// The scope that lets a client read and rotate its own key.
pub const SCOPE: &str = "nhn:selvbetjening/client";

/// Selvbetjening's API in NHN's test environment.
pub const TEST_BASE_URL: &str = "https://api.selvbetjening.test.nhn.no";

/// Selvbetjening's API in production.
pub const PROD_BASE_URL: &str = "https://api.selvbetjening.nhn.no";

const API: &str = "selvbetjening";

/// The largest answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// How long one call to Selvbetjening may take, the token it needs and the whole answer
/// included.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The Selvbetjening of `config`'s environment: NHN's test or production API, or the
/// authority itself when it is a loopback emulator. `None` for another authority.
pub fn base_url(config: &ClientConfig) -> Option<String> {
    let issuer = config.authority().issuer();
    let url = url::Url::parse(issuer).ok()?;
    match url.host_str()? {
        "helseid-sts.test.nhn.no" => Some(TEST_BASE_URL.to_owned()),
        "helseid-sts.nhn.no" => Some(PROD_BASE_URL.to_owned()),
        "127.0.0.1" | "localhost" | "[::1]" if url.scheme() == "http" => Some(issuer.to_owned()),
        _ => None,
    }
}

/// When a key expires, as Selvbetjening says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyExpiration {
    /// The expiration.
    pub expires_at: SystemTime,
}

impl KeyExpiration {
    /// Whole days from now until the expiration (0 once it has passed).
    pub fn days_left(&self) -> u64 {
        self.expires_at
            .duration_since(SystemTime::now())
            .map_or(0, |left| left.as_secs() / 86_400)
    }

    /// The expiration as RFC 3339 in UTC (`2027-12-01T14:31:28Z`).
    pub fn to_rfc3339(&self) -> String {
        crate::rfc3339::format(self.expires_at)
    }
}

/// Selvbetjening's client-secret API for one client, through a DPoP stack: a token for
/// [`SCOPE`] bound to an ephemeral key, a fresh proof per request.
#[derive(Clone, Debug)]
pub struct Selvbetjening {
    stack: HelseId<HttpsClient<Full<Bytes>>>,
    url: String,
    timeout: std::time::Duration,
}

impl Selvbetjening {
    /// The API at `base_url` (see [`base_url`]), for the client of `endpoint`.
    ///
    /// # Errors
    /// [`Error::Config`] for a base URL that is not `https` (or `http` to loopback), or
    /// when the TLS client or the DPoP key cannot be made.
    pub fn new(endpoint: TokenEndpoint, base_url: &str) -> Result<Self> {
        let base = crate::config::check_url("selvbetjeningUrl", base_url)?;
        let layer = HelseIdLayer::builder(endpoint)
            .scopes([SCOPE])
            .dpop(DpopKey::generate()?)
            .build();
        Ok(Selvbetjening {
            stack: HelseId::from_layer(crate::transport::https_client()?, layer),
            url: format!("{}/v1/client-secret", base.as_str().trim_end_matches('/')),
            timeout: TIMEOUT,
        })
    }

    /// How long one call may take, its token and the whole answer included (default
    /// [`TIMEOUT`], 30 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The current key's expiration (`GET /v1/client-secret`).
    ///
    /// # Errors
    /// The token's error; [`Error::Api`] when Selvbetjening refuses;
    /// [`Error::InvalidResponse`] for an answer without a readable `expiration`.
    pub async fn key_expiration(&self) -> Result<KeyExpiration> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(&self.url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::config("selvbetjeningUrl", e.to_string()))?;
        self.send(request).await
    }

    /// Registers `key` as the client's new key (`POST /v1/client-secret`); from then on
    /// HelseID refuses the old one. Returns the new key's expiration.
    ///
    /// # Errors
    /// As [`key_expiration`](Self::key_expiration).
    pub async fn register_key(&self, key: &PublicJwk) -> Result<KeyExpiration> {
        let body = serde_json::to_vec(key).map_err(|e| Error::config("jwk", e.to_string()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::config("selvbetjeningUrl", e.to_string()))?;
        self.send(request).await
    }

    /// Sends `request` and reads the answer, all of it within the timeout: a server that
    /// accepts the connection and then says nothing, or trickles its body, ends in
    /// [`Error::Timeout`], not in a wait without end.
    async fn send(&self, request: Request<Full<Bytes>>) -> Result<KeyExpiration> {
        tokio::time::timeout(self.timeout, self.send_untimed(request))
            .await
            .map_err(|_| Error::Timeout {
                endpoint: API,
                after: self.timeout,
            })?
    }

    async fn send_untimed(&self, request: Request<Full<Bytes>>) -> Result<KeyExpiration> {
        let response =
            self.stack
                .clone()
                .oneshot(request)
                .await
                .map_err(|e| match e.downcast::<Error>() {
                    Ok(error) => *error,
                    Err(other) => Error::Transport {
                        endpoint: API,
                        source: std::sync::Arc::from(other),
                    },
                })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| Error::Transport {
                endpoint: API,
                source: std::sync::Arc::from(e),
            })?
            .to_bytes();
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let said = |name: &str| {
                json.as_ref()
                    .and_then(|j| j.get(name))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            let detail = said("detail")
                .or_else(|| said("title"))
                .unwrap_or_else(|| format!("{} bytes without a problem detail", body.len()));
            return Err(Error::Api {
                api: API,
                status,
                detail: crate::text::untrusted(&detail, &[]),
            });
        }
        let expires_at = json
            .as_ref()
            .and_then(|j| j.get("expiration"))
            .and_then(serde_json::Value::as_str)
            .and_then(crate::rfc3339::parse)
            .ok_or_else(|| Error::InvalidResponse {
                endpoint: API,
                status,
                reason: "the answer has no RFC 3339 `expiration`".into(),
                retry_after: None,
            })?;
        Ok(KeyExpiration { expires_at })
    }
}

/// A finished key rotation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Rotation {
    /// The configuration file, now with the new key.
    pub config: PathBuf,
    /// The previous configuration, kept.
    pub backup: PathBuf,
    /// When the new key expires.
    pub expiration: KeyExpiration,
    /// Why a token for the configuration's API scopes (all but [`SCOPE`]) with the new
    /// key was refused, when it was: a check apart from the rotation, which stands
    /// (HelseID may bind those scopes to DPoP, or not grant them yet). `None` when the
    /// token came, or the configuration names no other scope.
    pub api_scopes_error: Option<Error>,
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// A new private key for `alg`: EC on the algorithm's curve, or RSA of 3072 bits.
fn new_key(alg: Algorithm) -> Result<PrivateJwk> {
    if alg.is_rsa() {
        PrivateJwk::generate_rsa(3072, alg)
    } else {
        PrivateJwk::generate_ec(alg)
    }
}

/// A configuration file's JSON (`original`, as Selvbetjening wrote it) with `jwk` as
/// its key, in the form the file had (a JWK object, or a string holding one), and
/// `expiration` as its `keyExpiration` when known. The members that describe the
/// previous key go: its expiration, and the .NET XML form of an RSA key
/// (`rsaPrivateKey`) with its size (`rsaKeySizeBits`). Every other member stays as it
/// was. What [`rotate_config_file`] writes, for tools that put a key of their own in a
/// configuration (`helseid keys new --config`).
///
/// # Example
/// ```
/// use helseid::key::{Algorithm, PrivateJwk};
/// let original = serde_json::json!({ "clientId": "c", "privateJwk": "{}", "rsaKeySizeBits": 4096 });
/// let jwk = PrivateJwk::generate_ec(Algorithm::ES256)?;
/// let text = helseid::selvbetjening::config_with_key(&original, &jwk, None);
/// let file: serde_json::Value = serde_json::from_str(&text).unwrap();
/// assert!(file["privateJwk"].is_string() && file.get("rsaKeySizeBits").is_none());
/// # Ok::<(), helseid::Error>(())
/// ```
pub fn config_with_key(
    original: &serde_json::Value,
    jwk: &PrivateJwk,
    expiration: Option<&KeyExpiration>,
) -> zeroize::Zeroizing<String> {
    let mut file = original.clone();
    let key_json = jwk.to_json();
    let key = if original
        .get("privateJwk")
        .is_some_and(serde_json::Value::is_object)
    {
        serde_json::from_str(&key_json).unwrap_or_default()
    } else {
        serde_json::Value::String(key_json.to_string())
    };
    if let Some(map) = file.as_object_mut() {
        map.insert("privateJwk".to_owned(), key);
        for stale in ["keyExpiration", "rsaPrivateKey", "rsaKeySizeBits"] {
            map.remove(stale);
        }
        if let Some(expiration) = expiration {
            map.insert("keyExpiration".to_owned(), expiration.to_rfc3339().into());
        }
    }
    zeroize::Zeroizing::new(serde_json::to_string_pretty(&file).unwrap_or_default())
}

fn failed(step: &'static str, advice: String, source: Error) -> Error {
    Error::KeyRotation {
        step,
        advice,
        source: Box::new(source),
    }
}

/// Rotates the key of the configuration file at `path`: see the [module](self) for the
/// steps. `base_url` is Selvbetjening's (default: [`base_url`] of the configuration);
/// `alg` the new key's algorithm (default: the current key's).
///
/// # Errors
/// [`Error::ConfigFile`] or [`Error::Config`] when the configuration cannot be read;
/// [`Error::KeyRotation`] naming the step that failed and where the configuration
/// stands: before the registration nothing has changed; when the new key is registered
/// but HelseID gives no token for it yet, `path` still holds the previous key and
/// `<path>.new` the new one.
pub async fn rotate_config_file(
    path: &Path,
    base_url: Option<&str>,
    alg: Option<Algorithm>,
) -> Result<Rotation> {
    let config = ClientConfig::from_file(path)?;
    let text = crate::config::read_file(path)?;
    let original: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| Error::config("(file)", crate::jose::json_error_without_input(&e)))?;
    let base = match base_url {
        Some(url) => url.to_owned(),
        None => self::base_url(&config).ok_or_else(|| {
            Error::config(
                "selvbetjeningUrl",
                "the authority is neither NHN's test nor production HelseID: name Selvbetjening's URL",
            )
        })?,
    };
    let display = path.display();
    let jwk = new_key(alg.unwrap_or(config.signing_key().algorithm()))?;
    let public = jwk.public()?;

    // 1. The new key on disk before anything is sent.
    let staged = beside(path, ".new");
    crate::private_file::write(&staged, config_with_key(&original, &jwk, None).as_bytes())
        .map_err(|e| {
            failed(
                "writing the new key",
                format!("nothing changed: {display} still holds the current key"),
                Error::ConfigFile {
                    path: staged.display().to_string(),
                    source: std::sync::Arc::new(e),
                },
            )
        })?;

    // 2. Registered with a token of the current key.
    let registered = async {
        Selvbetjening::new(TokenEndpoint::new(config.clone())?, &base)?
            .register_key(&public)
            .await
    }
    .await;
    let expiration = match registered {
        Ok(expiration) => expiration,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(failed(
                "registering the new key at Selvbetjening",
                format!(
                    "nothing changed: {display} still holds the current key, which HelseID still accepts"
                ),
                e,
            ));
        }
    };

    // 3. The new key proven with exactly what step 2 did with the current key: a
    // DPoP-bound token for SCOPE (HelseID binds that scope's tokens to DPoP), used at
    // Selvbetjening.
    let new_config = ClientConfig::from_json(&config_with_key(&original, &jwk, Some(&expiration)))?;
    let proven = async {
        Selvbetjening::new(TokenEndpoint::new(new_config.clone())?, &base)?
            .key_expiration()
            .await
    }
    .await;
    if let Err(e) = proven {
        return Err(failed(
            "getting a token with the new key",
            format!(
                "the new key is registered at Selvbetjening (expires {}) and HelseID gave no token for it yet; {display} still holds the previous key, which HelseID accepts only until the new one takes effect; {} holds the new key: try `helseid token --config {}` shortly, and move it over {display} once it works",
                expiration.to_rfc3339(),
                staged.display(),
                staged.display()
            ),
            e,
        ));
    }

    // 4. The configuration replaced, the old one kept.
    let backup = beside(path, ".bak");
    let io = |step: &'static str, target: &Path, e: std::io::Error| {
        failed(
            step,
            format!(
                "the new key is registered and works; it is in {}: move it over {display}",
                staged.display()
            ),
            Error::ConfigFile {
                path: target.display().to_string(),
                source: std::sync::Arc::new(e),
            },
        )
    };
    crate::private_file::write(&backup, text.as_bytes())
        .map_err(|e| io("keeping the previous configuration", &backup, e))?;
    crate::private_file::write(
        path,
        config_with_key(&original, &jwk, Some(&expiration)).as_bytes(),
    )
    .map_err(|e| io("replacing the configuration", path, e))?;
    let _ = std::fs::remove_file(&staged);
    tracing::info!(
        config = %path.display(),
        expires = %expiration.to_rfc3339(),
        "the client's key was rotated"
    );

    // 5. A second check, apart: the configuration's API scopes with the new key. Its
    // failure is reported; it does not undo a rotation step 3 proved.
    let api_scopes: Vec<String> = new_config
        .scopes()
        .iter()
        .filter(|scope| *scope != SCOPE)
        .cloned()
        .collect();
    let api_scopes_error = if api_scopes.is_empty() {
        None
    } else {
        async {
            TokenEndpoint::new(new_config.clone())?
                .request(&TokenRequest::client_credentials(api_scopes))
                .await
        }
        .await
        .err()
    };
    Ok(Rotation {
        config: path.to_path_buf(),
        backup,
        expiration,
        api_scopes_error,
    })
}
