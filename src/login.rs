//! Logging a user in from a native or command-line app: authorization code with PKCE
//! (S256), a pushed authorization request (PAR, RFC 9126) and DPoP (RFC 9449), as
//! HelseID requires of new clients.
//!
//! [`LoginClient::start`] pushes the authorization request (client assertion, PKCE
//! challenge, `state`, `nonce`, `dpop_jkt`) and binds a loopback listener on
//! `127.0.0.1` at a port chosen at run time, which is the redirect URI. The app sends
//! the user's browser to [`PendingLogin::authorize_url`]. [`PendingLogin::finish`] waits
//! for the redirect (with a timeout), checks its `state` (and `iss`), exchanges the code
//! with the verifier, a new client assertion and a DPoP proof (answering HelseID's nonce
//! challenge), and validates the ID token: its signature by a key of the issuer's JWKS
//! (fetched and kept for a day, as the discovery document), `iss`, `aud`, `nonce`, `exp`
//! and `iat` with a little clock skew allowed. The result, [`LoggedIn`], holds a
//! DPoP-bound [`TokenSet`] that a [`RefreshSession`](crate::refresh::RefreshSession)
//! renews.
//!
//! Every step fails with a typed [`Error::Login`] ([`LoginError`]) or the token
//! endpoint's own error: a cancelled login is [`LoginError::AccessDenied`], a forged
//! redirect [`LoginError::WrongState`], an expired or reused pushed request
//! [`LoginError::RequestExpired`], a bad ID token [`LoginError::IdToken`] naming the
//! check. The code, the verifier and the tokens never appear in `Debug`, errors or logs.
//!
//! # Example
//! ```no_run
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::TokenEndpoint;
//! use helseid::login::LoginClient;
//! use helseid::refresh::RefreshSession;
//!
//! # async fn run() -> Result<(), helseid::Error> {
//! let endpoint = TokenEndpoint::new(ClientConfig::from_file("epj-client.json")?)?;
//! let client = LoginClient::new(endpoint.clone());
//! let login = client.start(["openid", "profile", "offline_access"]).await?;
//! eprintln!("open {}", login.authorize_url());
//! let logged_in = login.finish().await?;
//! println!("hello {}", logged_in.claims().name().unwrap_or("?"));
//! if let Some(set) = logged_in.token_set() {
//!     let session = RefreshSession::new(endpoint, set.clone());
//!     let _token = session.access_token().await?;
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::config::check_url;
use crate::dpop::DpopKey;
use crate::endpoint::{CodeGrant, Discovery, TokenEndpoint, TokenRequest};
use crate::error::{Error, IdTokenCheck, LoginError, OAuthError, OAuthErrorCode, Result};
use crate::jose::{b64, b64_decode, b64_sha256, unix_now};
use crate::key::{Algorithm, PrivateJwk, PublicJwk};
use crate::refresh::TokenSet;
use crate::text::untrusted;
use crate::token::AccessToken;

/// How long [`PendingLogin::finish`] waits for the redirect by default: 5 minutes.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The clock skew allowed when checking an ID token's `exp` and `iat`: 60 seconds.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long the issuer's JWKS is kept before it is fetched again: 24 hours, as the
/// discovery document (NHN's FK2).
pub const DEFAULT_JWKS_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest time between two fetches of the JWKS for a key it did not have.
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(60);

/// The path of the loopback redirect URI.
const CALLBACK_PATH: &str = "/callback";

const PAR_ENDPOINT: &str = "pushed authorization request endpoint";
const JWKS: &str = "JWKS";
const REVOCATION: &str = "revocation endpoint";

/// Random bytes, base64url.
fn random(bytes: usize, what: &'static str) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| Error::Sign { what })?;
    Ok(b64(buf))
}

/// Logs users in for one client, and validates ID tokens with the issuer's JWKS (kept
/// between logins). Cheap to clone.
#[derive(Clone)]
pub struct LoginClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    endpoint: TokenEndpoint,
    timeout: Duration,
    clock_skew: Duration,
    jwks: JwksCache,
}

impl fmt::Debug for LoginClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginClient")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .field("clock_skew", &self.inner.clock_skew)
            .finish_non_exhaustive()
    }
}

impl LoginClient {
    /// A client that logs users in with `endpoint`'s client (its configuration, its
    /// HTTP service, its discovery document), waits [`DEFAULT_LOGIN_TIMEOUT`] for the
    /// redirect, allows [`DEFAULT_CLOCK_SKEW`] and keeps the JWKS for
    /// [`DEFAULT_JWKS_LIFETIME`].
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self::build(
            endpoint,
            DEFAULT_LOGIN_TIMEOUT,
            DEFAULT_CLOCK_SKEW,
            DEFAULT_JWKS_LIFETIME,
        )
    }

    /// This client with another timeout for the redirect. Default: 5 minutes. Set it
    /// before the first login: the JWKS kept so far is not carried over.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let inner = &self.inner;
        Self::build(
            inner.endpoint.clone(),
            timeout,
            inner.clock_skew,
            inner.jwks.lifetime,
        )
    }

    /// This client with another lifetime of the kept JWKS. Default: 24 hours. Set it
    /// before the first login: the JWKS kept so far is not carried over.
    pub fn with_jwks_lifetime(self, lifetime: Duration) -> Self {
        let inner = &self.inner;
        Self::build(
            inner.endpoint.clone(),
            inner.timeout,
            inner.clock_skew,
            lifetime,
        )
    }

    fn build(
        endpoint: TokenEndpoint,
        timeout: Duration,
        clock_skew: Duration,
        jwks_lifetime: Duration,
    ) -> Self {
        LoginClient {
            inner: Arc::new(ClientInner {
                endpoint,
                timeout,
                clock_skew,
                jwks: JwksCache::new(jwks_lifetime),
            }),
        }
    }

    /// The token endpoint the client logs in with.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.inner.endpoint
    }

    /// How many times the issuer's JWKS was fetched.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks.lock().fetches
    }

    /// Starts a login for `scopes` (`openid` is added when missing; add
    /// `offline_access` for a refresh token) with a new DPoP key (EC P-256).
    ///
    /// # Errors
    /// As [`start_with_dpop`](Self::start_with_dpop).
    pub async fn start(
        &self,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<PendingLogin> {
        self.start_with_dpop(scopes, PrivateJwk::generate_ec(Algorithm::ES256)?)
            .await
    }

    /// Starts a login for `scopes` whose tokens are bound to the DPoP key `dpop_jwk`:
    /// binds the loopback listener and pushes the authorization request.
    ///
    /// # Errors
    /// - [`Error::Config`] for a DPoP key that cannot sign;
    /// - the discovery document's errors, and [`Error::InvalidResponse`] when it names
    ///   no `pushed_authorization_request_endpoint` or `authorization_endpoint`;
    /// - [`LoginError::Listener`] when no loopback port can be bound;
    /// - [`LoginError::ParRefused`] when HelseID refuses the pushed request (a bad client
    ///   assertion is `invalid_client`), [`Error::InvalidResponse`] for an answer without
    ///   a `request_uri`, [`Error::Timeout`], [`Error::Transport`].
    pub async fn start_with_dpop(
        &self,
        scopes: impl IntoIterator<Item = impl Into<String>>,
        dpop_jwk: PrivateJwk,
    ) -> Result<PendingLogin> {
        let dpop = DpopKey::from_jwk(&dpop_jwk)?;
        let mut scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        let endpoint = &self.inner.endpoint;
        let discovery = endpoint.discovery().await?;
        let par_url = discovered(&discovery, "pushed_authorization_request_endpoint", |d| {
            d.pushed_authorization_request_endpoint.as_deref()
        })?;
        let authorize_url = discovered(&discovery, "authorization_endpoint", |d| {
            d.authorization_endpoint.as_deref()
        })?;

        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| listener_error("cannot bind 127.0.0.1", &e))?;
        let port = listener
            .local_addr()
            .map_err(|e| listener_error("cannot read the bound port", &e))?
            .port();
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");

        let verifier = Zeroizing::new(random(32, "a PKCE verifier (no randomness)")?);
        let challenge = b64_sha256(verifier.as_bytes());
        let state = random(16, "a login state (no randomness)")?;
        let nonce = random(16, "a login nonce (no randomness)")?;
        let scope = scopes.join(" ");
        let fields = [
            ("response_type", "code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", scope.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("dpop_jkt", dpop.thumbprint()),
        ];
        let (answer, assertion) = endpoint
            .post_authenticated(PAR_ENDPOINT, par_url.as_str(), &fields)
            .await?;
        let request_uri = read_par_answer(&answer, &[assertion.as_str()])?;
        let authorize_url = {
            let mut url = authorize_url;
            url.query_pairs_mut()
                .append_pair("client_id", endpoint.config().client_id())
                .append_pair("request_uri", &request_uri);
            url.to_string()
        };
        tracing::debug!(redirect_uri = %redirect_uri, "pushed the authorization request");
        Ok(PendingLogin {
            client: self.clone(),
            authorize_url,
            redirect_uri,
            state,
            nonce,
            verifier,
            dpop,
            dpop_jwk,
            listener: Some(listener),
        })
    }

    /// Validates an ID token of this client's issuer: a JWS signed (RS256/384/512,
    /// PS256/384/512, ES256/384/512) by a key of the issuer's JWKS (its `kid`), `iss`
    /// the issuer, `aud` the client id (a string, or an array holding it), `nonce` the
    /// login's, `exp` not passed and `iat` not in the future (each with the clock skew
    /// allowed). Returns its claims.
    ///
    /// # Errors
    /// [`LoginError::IdToken`] naming the check that failed; the JWKS's own fetch
    /// errors ([`Error::Transport`], [`Error::Timeout`], [`Error::InvalidResponse`]).
    pub async fn validate_id_token(&self, id_token: &str, nonce: &str) -> Result<IdTokenClaims> {
        let refuse = |check, reason: &str| {
            Error::Login(LoginError::IdToken {
                check,
                reason: reason.to_owned(),
            })
        };
        let parts: Vec<&str> = id_token.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(refuse(
                IdTokenCheck::Format,
                "not a signed JWT in compact form (three base64url parts)",
            ));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
            /// Present at all (even empty): extensions the client must understand, and it
            /// understands none.
            #[serde(default)]
            crit: Option<Value>,
        }
        let header: Header = b64_decode(header_b64)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| {
                refuse(
                    IdTokenCheck::Format,
                    "the header is not a JSON object with alg",
                )
            })?;
        let claims: Map<String, Value> = b64_decode(payload_b64)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| refuse(IdTokenCheck::Format, "the payload is not a JSON object"))?;
        let signature = b64_decode(signature_b64)
            .ok_or_else(|| refuse(IdTokenCheck::Format, "the signature is not base64url"))?;
        if header.crit.is_some() {
            return Err(refuse(
                IdTokenCheck::Critical,
                "the header names critical extensions (crit), which this client does not understand",
            ));
        }
        let alg: Algorithm = header.alg.parse().map_err(|_| {
            refuse(
                IdTokenCheck::Algorithm,
                &format!(
                    "alg `{}` is not an asymmetric algorithm this crate verifies",
                    untrusted(&header.alg, &[])
                ),
            )
        })?;
        let key = self.jwks_key(header.kid.as_deref(), alg).await?;
        let signed = &id_token[..header_b64.len() + 1 + payload_b64.len()];
        if !key.verifies(alg, signed.as_bytes(), &signature) {
            return Err(refuse(
                IdTokenCheck::Signature,
                "the signature does not verify with the issuer's key",
            ));
        }

        let config = self.inner.endpoint.config();
        let issuer = config.authority().issuer();
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(refuse(
                IdTokenCheck::Issuer,
                &format!("iss is missing or is not `{issuer}`"),
            ));
        }
        let client_id = config.client_id();
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == client_id,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
            _ => false,
        };
        if !audience_ok {
            return Err(refuse(
                IdTokenCheck::Audience,
                &format!("aud is missing or does not name client `{client_id}`"),
            ));
        }
        // OpenID Connect Core 3.1.3.7 (4, 5): a token for several audiences names the one
        // it was issued to in `azp`, and any `azp` must be this client.
        let several = matches!(claims.get("aud"), Some(Value::Array(auds)) if auds.len() > 1);
        match claims.get("azp") {
            Some(Value::String(azp)) if azp == client_id => {}
            None if !several => {}
            Some(_) => {
                return Err(refuse(
                    IdTokenCheck::Audience,
                    &format!("azp is not client `{client_id}`"),
                ));
            }
            None => {
                return Err(refuse(
                    IdTokenCheck::Audience,
                    &format!("aud has several values and azp does not name client `{client_id}`"),
                ));
            }
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(refuse(
                IdTokenCheck::Nonce,
                "nonce is missing or is not the one the login sent",
            ));
        }
        let skew = self.inner.clock_skew.as_secs();
        let now = unix_now();
        match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp.saturating_add(skew) > now => {}
            Some(exp) => {
                return Err(refuse(
                    IdTokenCheck::Expiry,
                    &format!("the ID token expired {} s ago", now.saturating_sub(exp)),
                ));
            }
            None => {
                return Err(refuse(
                    IdTokenCheck::Expiry,
                    "exp is missing or not a number",
                ));
            }
        }
        if let Some(iat) = claims.get("iat").and_then(Value::as_u64)
            && iat > now.saturating_add(skew)
        {
            return Err(refuse(
                IdTokenCheck::Expiry,
                &format!("iat lies {} s in the future", iat - now),
            ));
        }
        match claims.get("nbf") {
            None => {}
            Some(nbf) => match nbf.as_u64() {
                Some(nbf) if nbf <= now.saturating_add(skew) => {}
                Some(nbf) => {
                    return Err(refuse(
                        IdTokenCheck::Expiry,
                        &format!("nbf lies {} s in the future", nbf - now),
                    ));
                }
                None => {
                    return Err(refuse(IdTokenCheck::Expiry, "nbf is not a number"));
                }
            },
        }
        if claims.get("sub").and_then(Value::as_str).is_none() {
            return Err(refuse(IdTokenCheck::Format, "sub is missing"));
        }
        Ok(IdTokenClaims { claims })
    }

    /// The issuer's key `kid` for `alg`, from the kept JWKS or a fresh one.
    async fn jwks_key(&self, kid: Option<&str>, alg: Algorithm) -> Result<PublicJwk> {
        let cache = &self.inner.jwks;
        let (copy, stale, may_refetch) = {
            let state = cache.lock();
            let copy = state.keys.clone();
            let age = state.fetched_at.map(|at| at.elapsed());
            let stale = age.is_some_and(|age| age >= cache.lifetime);
            (
                copy,
                stale,
                age.is_none_or(|age| age >= UNKNOWN_KID_REFETCH),
            )
        };
        if let Some(keys) = &copy {
            if stale {
                self.refetch_jwks_in_background();
            }
            if let Some(key) = pick(keys, kid, alg) {
                return Ok(key.clone());
            }
            if !may_refetch {
                return Err(no_key(kid));
            }
        }
        // No copy yet, or the key is not in it (the issuer may have rotated its keys).
        let keys = self.fetch_jwks().await?;
        pick(&keys, kid, alg).cloned().ok_or_else(|| no_key(kid))
    }

    fn refetch_jwks_in_background(&self) {
        {
            let mut state = self.inner.jwks.lock();
            if state.refetching || tokio::runtime::Handle::try_current().is_err() {
                return;
            }
            state.refetching = true;
        }
        let client = self.clone();
        tokio::spawn(async move {
            if let Err(error) = client.fetch_jwks().await {
                tracing::warn!(error = %error, "cannot fetch the JWKS again: keeping the copy at hand");
            }
            client.inner.jwks.lock().refetching = false;
        });
    }

    /// Fetches the issuer's JWKS and keeps it.
    async fn fetch_jwks(&self) -> Result<Arc<Vec<PublicJwk>>> {
        let endpoint = &self.inner.endpoint;
        let discovery = endpoint.discovery().await?;
        let url = discovered(&discovery, "jwks_uri", |d| d.jwks_uri.as_deref())?;
        let answer = endpoint.get(JWKS, url.as_str()).await?;
        let unusable = |reason: &str| Error::InvalidResponse {
            endpoint: JWKS,
            status: answer.status,
            reason: reason.to_owned(),
            retry_after: None,
        };
        if !answer.status.is_success() {
            return Err(unusable("expected HTTP 200"));
        }
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document = serde_json::from_slice(&answer.body)
            .map_err(|_| unusable("expected a JSON object with a `keys` array"))?;
        // Keys of a kind the crate cannot use are left out, not fatal.
        let keys: Vec<PublicJwk> = document
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value(key).ok())
            .collect();
        let keys = Arc::new(keys);
        let mut state = self.inner.jwks.lock();
        state.keys = Some(keys.clone());
        state.fetched_at = Some(Instant::now());
        state.fetches += 1;
        Ok(keys)
    }

    /// Logs the user out: revokes the set's refresh token at the issuer's revocation
    /// endpoint (RFC 7009), and gives the URL that ends the session at HelseID, for the
    /// application to open in the user's browser (OpenID Connect RP-Initiated Logout:
    /// `id_token_hint` and `state`). The session lives in the browser's cookie: a
    /// request from here would carry none and end nothing, so none is made. A step the
    /// discovery document names no endpoint for (or, for the URL, a set without an ID
    /// token) is left out, and [`Logout`] says so.
    ///
    /// # Errors
    /// [`Error::Api`] when the revocation endpoint refuses (with the status and what it
    /// said, made safe to show), [`Error::Timeout`], [`Error::Transport`].
    pub async fn logout(&self, set: &TokenSet) -> Result<Logout> {
        self.logout_with(set, None).await
    }

    /// [`logout`](Self::logout), with the browser sent back to
    /// `post_logout_redirect_uri` (which must be registered for the client at HelseID)
    /// once the session has ended.
    ///
    /// # Errors
    /// As [`logout`](Self::logout); [`Error::Config`] naming `post_logout_redirect_uri`
    /// when it is not an `https` URL (or `http` to loopback).
    pub async fn logout_to(
        &self,
        set: &TokenSet,
        post_logout_redirect_uri: &str,
    ) -> Result<Logout> {
        let uri = check_url("post_logout_redirect_uri", post_logout_redirect_uri)?;
        self.logout_with(set, Some(uri.as_str())).await
    }

    async fn logout_with(&self, set: &TokenSet, redirect: Option<&str>) -> Result<Logout> {
        let endpoint = &self.inner.endpoint;
        let discovery = endpoint.discovery().await?;
        let mut logout = Logout {
            revoked: false,
            end_session: None,
        };
        if discovery.revocation_endpoint.is_some() {
            let url = discovered(&discovery, "revocation_endpoint", |d| {
                d.revocation_endpoint.as_deref()
            })?;
            let refresh = set.refresh_token();
            let fields = [
                ("token", refresh.secret()),
                ("token_type_hint", "refresh_token"),
            ];
            let (answer, assertion) = endpoint
                .post_authenticated(REVOCATION, url.as_str(), &fields)
                .await?;
            if !answer.status.is_success() {
                return Err(refused(
                    REVOCATION,
                    &answer.status,
                    &answer.body,
                    &[assertion.as_str(), refresh.secret()],
                ));
            }
            logout.revoked = true;
        }
        if let (Some(_), Some(id_token)) = (&discovery.end_session_endpoint, set.id_token()) {
            let mut url = discovered(&discovery, "end_session_endpoint", |d| {
                d.end_session_endpoint.as_deref()
            })?;
            let state = random(16, "a logout state")?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("id_token_hint", id_token);
                if let Some(redirect) = redirect {
                    query.append_pair("post_logout_redirect_uri", redirect);
                }
                query.append_pair("state", &state);
            }
            logout.end_session = Some(EndSession {
                url: Zeroizing::new(url.into()),
                state,
            });
        }
        Ok(logout)
    }
}

/// What [`LoginClient::logout`] did, and what is left for the browser.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Logout {
    /// The refresh token was revoked.
    pub revoked: bool,
    /// Where to send the user's browser to end the session at HelseID: the session is
    /// not ended until the browser has been there. `None` when the discovery document
    /// names no end session endpoint or the set has no ID token.
    pub end_session: Option<EndSession>,
}

/// The URL that ends a session at HelseID, for the user's browser. `Debug` shows
/// neither the URL nor the state: the URL carries the ID token (`id_token_hint`),
/// which holds personal data.
#[derive(Clone)]
pub struct EndSession {
    url: Zeroizing<String>,
    state: String,
}

impl EndSession {
    /// The URL to open in the user's browser.
    ///
    /// # Security
    /// It carries the ID token: personal data. Open it; do not log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `state` sent, which HelseID gives back with the redirect to the
    /// `post_logout_redirect_uri`.
    pub fn state(&self) -> &str {
        &self.state
    }
}

impl fmt::Debug for EndSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndSession([redacted])")
    }
}

/// An [`Error::Api`] for an endpoint's refusal.
fn refused(api: &'static str, status: &StatusCode, body: &[u8], secrets: &[&str]) -> Error {
    let text = String::from_utf8_lossy(body);
    let detail = match serde_json::from_slice::<OAuthError>(body) {
        Ok(error) => error.made_safe(secrets).to_string(),
        Err(_) if text.trim().is_empty() => "no explanation".to_owned(),
        Err(_) => untrusted(&text, secrets),
    };
    Error::Api {
        api,
        status: *status,
        detail,
    }
}

/// The key of `keys` for a token with `kid` and `alg`: the one with that `kid`, or
/// without a `kid` the only one that fits. A key fits when its type (and curve) suits
/// `alg`, its own `alg` (when it names one) is `alg`, and its `use` (when it names one)
/// is `sig` (RFC 7517 sections 4.2 and 4.4).
fn pick<'a>(keys: &'a [PublicJwk], kid: Option<&str>, alg: Algorithm) -> Option<&'a PublicJwk> {
    let fits = |key: &&PublicJwk| {
        let kind = match alg.curve() {
            Some(curve) => key.kty == "EC" && key.crv.as_deref() == Some(curve),
            None => key.kty == "RSA",
        };
        kind && key.alg.as_deref().is_none_or(|a| a == alg.as_str())
            && key.use_.as_deref().is_none_or(|u| u == "sig")
    };
    match kid {
        Some(kid) => keys
            .iter()
            .filter(fits)
            .find(|key| key.kid.as_deref() == Some(kid)),
        None => {
            let mut fitting = keys.iter().filter(fits);
            let first = fitting.next();
            fitting.next().is_none().then_some(first).flatten()
        }
    }
}

fn no_key(kid: Option<&str>) -> Error {
    Error::Login(LoginError::IdToken {
        check: IdTokenCheck::Key,
        reason: match kid {
            Some(kid) => format!(
                "the issuer's JWKS has no key `{}` for the token's alg",
                untrusted(kid, &[])
            ),
            None => "the token has no kid, and the issuer's JWKS has no single key for its alg"
                .to_owned(),
        },
    })
}

/// An endpoint the discovery document must name, checked (`https`, or `http` to
/// loopback).
fn discovered(
    discovery: &Discovery,
    member: &'static str,
    get: impl Fn(&Discovery) -> Option<&str>,
) -> Result<url::Url> {
    let url = get(discovery).ok_or_else(|| Error::InvalidResponse {
        endpoint: "discovery document",
        status: StatusCode::OK,
        reason: format!("it names no `{member}`: the issuer does not support logins"),
        retry_after: None,
    })?;
    check_url(member, url)
}

fn listener_error(what: &str, e: &std::io::Error) -> Error {
    Error::Login(LoginError::Listener {
        reason: format!("{what}: {e}"),
    })
}

/// Reads the answer to a pushed authorization request: its `request_uri`.
fn read_par_answer(answer: &crate::endpoint::Answer, secrets: &[&str]) -> Result<String> {
    let status = answer.status;
    if !status.is_success() {
        return match serde_json::from_slice::<OAuthError>(&answer.body) {
            Ok(error) => Err(Error::Login(LoginError::ParRefused {
                status,
                error: error.made_safe(secrets),
            })),
            Err(_) => Err(Error::InvalidResponse {
                endpoint: PAR_ENDPOINT,
                status,
                reason: format!(
                    "expected an OAuth error object, got {} bytes",
                    answer.body.len()
                ),
                retry_after: None,
            }),
        };
    }
    #[derive(Deserialize)]
    struct ParResponse {
        request_uri: String,
    }
    serde_json::from_slice::<ParResponse>(&answer.body)
        .ok()
        .map(|r| r.request_uri)
        .filter(|uri| !uri.is_empty())
        .ok_or_else(|| Error::InvalidResponse {
            endpoint: PAR_ENDPOINT,
            status,
            reason: "expected a JSON object with a `request_uri` string".to_owned(),
            retry_after: None,
        })
}

/// The issuer's JWKS, kept for its lifetime.
struct JwksCache {
    state: Mutex<JwksState>,
    lifetime: Duration,
}

#[derive(Default)]
struct JwksState {
    keys: Option<Arc<Vec<PublicJwk>>>,
    fetched_at: Option<Instant>,
    refetching: bool,
    fetches: u64,
}

impl JwksCache {
    fn new(lifetime: Duration) -> Self {
        JwksCache {
            state: Mutex::new(JwksState::default()),
            lifetime,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JwksState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A started login: the authorization request was pushed, and the loopback listener
/// waits for the browser's redirect. `Debug` shows neither the verifier nor the nonce.
pub struct PendingLogin {
    client: LoginClient,
    authorize_url: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    verifier: Zeroizing<String>,
    dpop: DpopKey,
    dpop_jwk: PrivateJwk,
    listener: Option<TcpListener>,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("authorize_url", &self.authorize_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

/// The code a login's redirect carried. `Debug` never shows it.
#[derive(Clone)]
pub struct AuthorizationCode(Zeroizing<String>);

impl AuthorizationCode {
    /// The code.
    ///
    /// # Security
    /// With the verifier, a code gives the user's tokens. Never log or print it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthorizationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationCode([redacted])")
    }
}

impl PendingLogin {
    /// Where to send the user's browser: the authorize endpoint with the client id and
    /// the pushed request's `request_uri`.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    /// The loopback redirect URI: `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the login, exchanges its code, and validates the ID token:
    /// [`receive`](Self::receive), then [`exchange`](Self::exchange).
    ///
    /// # Errors
    /// As those two.
    pub async fn finish(mut self) -> Result<LoggedIn> {
        let code = self.receive().await?;
        self.exchange(&code).await
    }

    /// Waits (at most the client's timeout) for the browser's redirect to the loopback
    /// listener, checks it, and answers it with a small page: `state` must be this
    /// login's, `iss` (when present) the issuer, and it must carry a code. A redirect
    /// with another `state` (a local process or a web page probing the port) gets 400 and
    /// the wait goes on; other requests to the listener (a browser's `/favicon.ico`) get
    /// 404. The page says "Logged in" only for a redirect that passed every check. When
    /// the wait ends or is dropped, the port is closed and its connections with it.
    ///
    /// # Errors
    /// [`LoginError::WrongIssuer`],
    /// [`LoginError::AccessDenied`] (the user cancelled), [`LoginError::RequestExpired`]
    /// (`invalid_request_uri`), [`LoginError::Authorization`] (another error),
    /// [`LoginError::NoCode`], [`LoginError::Timeout`]; [`LoginError::Listener`] when
    /// called a second time.
    pub async fn receive(&mut self) -> Result<AuthorizationCode> {
        let listener = self.listener.take().ok_or_else(|| {
            Error::Login(LoginError::Listener {
                reason: "the redirect was received already".to_owned(),
            })
        })?;
        let timeout = self.client.inner.timeout;
        let expected = Redirect {
            state: self.state.clone(),
            issuer: self
                .client
                .inner
                .endpoint
                .config()
                .authority()
                .issuer()
                .to_owned(),
        };
        tokio::time::timeout(
            timeout,
            redirect::receive(listener, move |query| expected.check(query)),
        )
        .await
        .map_err(|_| Error::Login(LoginError::Timeout { after: timeout }))?
    }
}

/// What a login's redirect must carry.
struct Redirect {
    state: String,
    issuer: String,
}

impl Redirect {
    /// Checks a redirect's query: one for another login (another or no `state`) is not
    /// ours, and the wait goes on; otherwise its verdict.
    fn check(&self, query: &str) -> redirect::Checked {
        match self.verdict(query) {
            Err(Error::Login(LoginError::WrongState)) => redirect::Checked::NotOurs,
            verdict => redirect::Checked::Ends(verdict),
        }
    }

    fn verdict(&self, query: &str) -> Result<AuthorizationCode> {
        let mut code = None;
        let mut state = None;
        let mut iss = None;
        let mut error = None;
        let mut description = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut code,
                "state" => &mut state,
                "iss" => &mut iss,
                "error" => &mut error,
                "error_description" => &mut description,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(Zeroizing::new(value.into_owned()));
            }
        }
        if state.as_deref().map(String::as_str) != Some(self.state.as_str()) {
            return Err(Error::Login(LoginError::WrongState));
        }
        if iss.is_some_and(|iss| *iss != self.issuer) {
            return Err(Error::Login(LoginError::WrongIssuer));
        }
        let description = description.map(|d| untrusted(&d, &[]));
        if let Some(error) = error {
            let code = OAuthErrorCode::from(error.as_str());
            return Err(Error::Login(match code {
                OAuthErrorCode::AccessDenied => LoginError::AccessDenied { description },
                OAuthErrorCode::Other(other) if other == "invalid_request_uri" => {
                    LoginError::RequestExpired { description }
                }
                other => LoginError::Authorization {
                    error: OAuthError {
                        error: other,
                        error_description: description,
                        error_uri: None,
                    }
                    .made_safe(&[]),
                },
            }));
        }
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(Error::Login(LoginError::NoCode))?;
        Ok(AuthorizationCode(code))
    }
}

impl PendingLogin {
    /// Exchanges `code` at the token endpoint (the PKCE verifier, a new client
    /// assertion, a DPoP proof with the login's key, the nonce challenge answered), and
    /// validates the ID token.
    ///
    /// # Errors
    /// The token endpoint's errors ([`Error::OAuth`] `invalid_grant` for a used,
    /// expired or foreign code or a verifier that does not match);
    /// [`LoginError::IdToken`] for an ID token that is missing or fails a check.
    pub async fn exchange(&self, code: &AuthorizationCode) -> Result<LoggedIn> {
        let request = TokenRequest::authorization_code(CodeGrant {
            code: code.0.clone(),
            verifier: self.verifier.clone(),
            redirect_uri: self.redirect_uri.clone(),
        })
        .with_dpop(self.dpop.clone());
        let (token, body) = self
            .client
            .inner
            .endpoint
            .request_with_body(&request)
            .await?;
        #[derive(Deserialize)]
        struct IdTokenMember {
            id_token: Option<Zeroizing<String>>,
        }
        let id_token = serde_json::from_slice::<IdTokenMember>(&body)
            .ok()
            .and_then(|m| m.id_token)
            .ok_or(Error::Login(LoginError::IdToken {
                check: IdTokenCheck::Missing,
                reason: "the token response has no id_token".to_owned(),
            }))?;
        let claims = self
            .client
            .validate_id_token(&id_token, &self.nonce)
            .await?;
        let token_set = match token.refresh_token() {
            Some(_) => Some(
                TokenSet::from_access_token(&token)?
                    .with_dpop_jwk(self.dpop_jwk.clone())?
                    .with_id_token(id_token.as_str()),
            ),
            None => None,
        };
        tracing::debug!("the login's code was exchanged and its ID token validated");
        Ok(LoggedIn {
            access_token: token,
            token_set,
            claims,
        })
    }
}

/// A finished login: the DPoP-bound tokens and the ID token's claims.
#[derive(Debug)]
pub struct LoggedIn {
    access_token: AccessToken,
    token_set: Option<TokenSet>,
    claims: IdTokenClaims,
}

impl LoggedIn {
    /// The access token (DPoP-bound).
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The token set for a [`RefreshSession`](crate::refresh::RefreshSession): the
    /// tokens, the DPoP key and the ID token; `None` when HelseID issued no refresh
    /// token (the login did not ask for `offline_access`).
    pub fn token_set(&self) -> Option<&TokenSet> {
        self.token_set.as_ref()
    }

    /// The validated ID token's claims.
    pub fn claims(&self) -> &IdTokenClaims {
        &self.claims
    }
}

/// The claims of a validated ID token, with accessors for HelseID's person claims.
/// `Debug` shows HelseID's pseudonym (`sub`) and the security level only: the name,
/// the HPR number and the national identity number are personal data and stay out of
/// `Debug` (and so out of logs that print it).
#[derive(Clone)]
pub struct IdTokenClaims {
    claims: Map<String, Value>,
}

impl fmt::Debug for IdTokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenClaims")
            .field("sub", &self.subject())
            .field("security_level", &self.security_level())
            .finish_non_exhaustive()
    }
}

impl IdTokenClaims {
    fn string(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Any claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// `sub`: HelseID's pseudonym of the person.
    pub fn subject(&self) -> Option<&str> {
        self.string("sub")
    }

    /// `name`: the full name.
    pub fn name(&self) -> Option<&str> {
        self.string("name")
    }

    /// `helseid://claims/hpr/hpr_number`: the person's number in the Health Personnel
    /// Register, when the person has one.
    pub fn hpr_number(&self) -> Option<&str> {
        self.string("helseid://claims/hpr/hpr_number")
    }

    /// `helseid://claims/identity/security_level`: `"4"` for a high-assurance login.
    pub fn security_level(&self) -> Option<&str> {
        self.string("helseid://claims/identity/security_level")
    }

    /// `helseid://claims/identity/pid`: the national identity number.
    ///
    /// # Security
    /// Personal data: do not log it.
    pub fn pid(&self) -> Option<&str> {
        self.string("helseid://claims/identity/pid")
    }

    /// `sid`: the session, for ending it.
    pub fn session_id(&self) -> Option<&str> {
        self.string("sid")
    }
}

/// The loopback listener that receives the browser's redirect.
mod redirect {
    use super::*;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;

    /// The page the browser shows after the redirect.
    fn page(done: bool) -> String {
        let (title, text) = if done {
            (
                "Logged in",
                "The login is complete. You may close this window and return to the application.",
            )
        } else {
            (
                "Login not completed",
                "The login was not completed. You may close this window; the application says why.",
            )
        };
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1 id=\"title\">{title}</h1><p>{text}</p></body></html>\n"
        )
    }

    /// How long a connection to the listener may take to send its request's headers.
    pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

    /// How long connections that are still writing their page may run once the wait
    /// has ended.
    const GRACE: Duration = Duration::from_secs(5);

    /// What a redirect's check decided: a redirect for another login (another or no
    /// `state`) is answered 400 and the wait goes on; anything else ends the wait.
    pub(super) enum Checked {
        NotOurs,
        Ends(Result<AuthorizationCode>),
    }

    /// Answers one request to the listener: for the callback, the check's verdict (the
    /// page says "Logged in" only for a redirect that passed every check); 404 for
    /// anything else.
    fn answer(
        request: &http::Request<Incoming>,
        check: &(dyn Fn(&str) -> Checked + Send + Sync),
        sender: &tokio::sync::mpsc::Sender<Result<AuthorizationCode>>,
    ) -> std::result::Result<Response<Full<Bytes>>, http::Error> {
        if request.uri().path() != CALLBACK_PATH {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::new()));
        }
        let query = Zeroizing::new(request.uri().query().unwrap_or_default().to_owned());
        let (status, done) = match check(&query) {
            Checked::NotOurs => (StatusCode::BAD_REQUEST, false),
            Checked::Ends(result) => {
                let done = result.is_ok();
                let _ = sender.try_send(result);
                (StatusCode::OK, done)
            }
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from(page(done))))
    }

    /// Aborts the accepting task (and with it every connection it tracks, and the
    /// listener, so the port is free again) when the wait is dropped before its end.
    struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.abort();
            }
        }
    }

    /// Accepts connections until one brings a redirect that `check` does not call
    /// another login's; returns that redirect's verdict. Each connection has a header
    /// read timeout; connections are tracked, and dropped with the wait. When the wait
    /// ends, the listener closes at once and connections still writing their page get a
    /// short grace.
    pub(super) async fn receive(
        listener: TcpListener,
        check: impl Fn(&str) -> Checked + Send + Sync + 'static,
    ) -> Result<AuthorizationCode> {
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let check: Arc<dyn Fn(&str) -> Checked + Send + Sync> = Arc::new(check);
        let accepting = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                // The wait ended, or a connection came; finished connections are reaped
                // on the way so that the set does not grow.
                let accepted = std::future::poll_fn(|cx| {
                    if std::pin::Pin::new(&mut stopped).poll(cx).is_ready() {
                        return std::task::Poll::Ready(None);
                    }
                    while let std::task::Poll::Ready(Some(_)) = connections.poll_join_next(cx) {}
                    listener.poll_accept(cx).map(Some)
                })
                .await;
                let stream = match accepted {
                    None => break,
                    Some(Ok((stream, _))) => stream,
                    Some(Err(e)) => {
                        // A listener that cannot accept will not recover: the wait ends
                        // with `Listener` once no connection holds a sender.
                        tracing::warn!(error = %e, "the loopback redirect listener failed");
                        break;
                    }
                };
                let sender = sender.clone();
                let check = check.clone();
                connections.spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request: http::Request<Incoming>| {
                            std::future::ready(answer(&request, &*check, &sender))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            drop(listener);
            drop(sender);
            let _ = tokio::time::timeout(GRACE, async {
                while connections.join_next().await.is_some() {}
            })
            .await;
            // Dropping the set aborts what is left.
        });
        let mut guard = AbortOnDrop(Some(accepting));
        let verdict = receiver.recv().await;
        let _ = stop.send(());
        // The accepting task ends by itself within the grace: no longer aborted on drop.
        drop(guard.0.take());
        verdict.unwrap_or_else(|| {
            Err(Error::Login(LoginError::Listener {
                reason: "the listener stopped".to_owned(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISSUER: &str = "https://helseid.example";

    /// An in-memory issuer: its discovery document and a JWKS of `keys`, counting the
    /// JWKS requests.
    #[derive(Clone)]
    struct Issuer {
        keys: Arc<Vec<PublicJwk>>,
        jwks_requests: Arc<AtomicUsize>,
    }

    impl Issuer {
        fn new(keys: Vec<PublicJwk>) -> Self {
            Issuer {
                keys: Arc::new(keys),
                jwks_requests: Arc::new(AtomicUsize::new(0)),
            }
        }

        fn client(&self) -> LoginClient {
            let config = crate::config::test_config("c", ISSUER);
            let issuer = self.clone();
            let service = tower::service_fn(move |request: http::Request<Full<Bytes>>| {
                let body = if request.uri().path().ends_with("/jwks") {
                    issuer.jwks_requests.fetch_add(1, Ordering::SeqCst);
                    serde_json::json!({ "keys": *issuer.keys })
                } else {
                    serde_json::json!({
                        "issuer": ISSUER,
                        "token_endpoint": format!("{ISSUER}/connect/token"),
                        "jwks_uri": format!("{ISSUER}/.well-known/openid-configuration/jwks"),
                    })
                };
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                }
            });
            let endpoint = TokenEndpoint::builder(config)
                .http_service(service)
                .build()
                .expect("endpoint");
            LoginClient::new(endpoint)
        }

        fn jwks_requests(&self) -> usize {
            self.jwks_requests.load(Ordering::SeqCst)
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("key")).expect("key")
    }

    fn id_token(key: &SigningKey) -> String {
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": "c", "sub": "s", "nonce": "n", "iat": now, "exp": now + 60,
        });
        key.sign_jwt("JWT", &claims).expect("sign")
    }

    /// Lets a background refetch run to its end.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_jwks_is_kept_for_a_day_then_fetched_again_without_anyone_waiting() {
        let key = key();
        let issuer = Issuer::new(vec![key.public_jwk().clone()]);
        let client = issuer.client();
        let token = id_token(&key);
        for _ in 0..3 {
            client.validate_id_token(&token, "n").await.expect("valid");
        }
        assert_eq!(issuer.jwks_requests(), 1, "kept");
        tokio::time::advance(DEFAULT_JWKS_LIFETIME).await;
        client
            .validate_id_token(&token, "n")
            .await
            .expect("the stale copy, with no wait");
        settle().await;
        assert_eq!(issuer.jwks_requests(), 2, "fetched again in the background");
        client.validate_id_token(&token, "n").await.expect("valid");
        settle().await;
        assert_eq!(issuer.jwks_requests(), 2, "the new copy is fresh");
        assert_eq!(client.jwks_fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_by_an_unknown_key_fetches_the_jwks_again_at_most_once_a_minute() {
        let known = key();
        let issuer = Issuer::new(vec![known.public_jwk().clone()]);
        let client = issuer.client();
        client
            .validate_id_token(&id_token(&known), "n")
            .await
            .expect("valid");
        let stranger = id_token(&key());
        let check = |result: Result<IdTokenClaims>| match result {
            Err(Error::Login(LoginError::IdToken { check, .. })) => check,
            other => panic!("expected an ID token error, got {other:?}"),
        };
        assert_eq!(
            check(client.validate_id_token(&stranger, "n").await),
            IdTokenCheck::Key
        );
        assert_eq!(issuer.jwks_requests(), 1, "fetched less than a minute ago");
        tokio::time::advance(UNKNOWN_KID_REFETCH).await;
        assert_eq!(
            check(client.validate_id_token(&stranger, "n").await),
            IdTokenCheck::Key
        );
        assert_eq!(
            issuer.jwks_requests(),
            2,
            "the issuer may have rotated its keys"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let code = AuthorizationCode(Zeroizing::new("the-code-1234567890".to_owned()));
        assert!(!format!("{code:?}").contains("the-code"));
        let mut claims = Map::new();
        claims.insert("helseid://claims/identity/pid".into(), "13116900216".into());
        claims.insert("name".into(), "Kari Dahl".into());
        claims.insert("helseid://claims/hpr/hpr_number".into(), "565501872".into());
        claims.insert("sub".into(), "pseudonym-1".into());
        let claims = IdTokenClaims { claims };
        let debug = format!("{claims:?}");
        assert!(debug.contains("pseudonym-1"), "{debug}");
        for personal in ["13116900216", "Kari Dahl", "565501872"] {
            assert!(!debug.contains(personal), "{debug}");
        }
    }

    #[test]
    fn a_key_is_picked_by_kid_and_type() {
        let rsa = PublicJwk {
            kty: "RSA".into(),
            kid: Some("a".into()),
            ..PublicJwk::default()
        };
        let ec = PublicJwk {
            kty: "EC".into(),
            kid: Some("b".into()),
            crv: Some("P-256".into()),
            ..PublicJwk::default()
        };
        let keys = [rsa, ec];
        assert_eq!(
            pick(&keys, Some("a"), Algorithm::RS256).and_then(|k| k.kid.as_deref()),
            Some("a")
        );
        assert!(
            pick(&keys, Some("a"), Algorithm::ES256).is_none(),
            "wrong type"
        );
        assert!(pick(&keys, Some("c"), Algorithm::RS256).is_none());
        // A key that names another alg, or another use, is not the token's key.
        let named = |alg: Option<&str>, use_: Option<&str>| PublicJwk {
            kty: "RSA".into(),
            kid: Some("r".into()),
            alg: alg.map(Into::into),
            use_: use_.map(Into::into),
            ..PublicJwk::default()
        };
        assert!(
            pick(
                &[named(Some("RS256"), Some("sig"))],
                Some("r"),
                Algorithm::RS256
            )
            .is_some()
        );
        assert!(pick(&[named(Some("PS256"), None)], Some("r"), Algorithm::RS256).is_none());
        assert!(pick(&[named(None, Some("enc"))], Some("r"), Algorithm::RS256).is_none());
        assert!(pick(&[named(Some("RS512"), None)], None, Algorithm::RS256).is_none());
        assert_eq!(
            pick(&keys, None, Algorithm::ES256).and_then(|k| k.kid.as_deref()),
            Some("b")
        );
    }

    fn check(result: Result<IdTokenClaims>) -> (IdTokenCheck, String) {
        match result {
            Err(Error::Login(LoginError::IdToken { check, reason })) => (check, reason),
            other => panic!("expected an ID token error, got {other:?}"),
        }
    }

    fn claims_now() -> serde_json::Value {
        let now = unix_now();
        serde_json::json!({
            "iss": ISSUER, "aud": "c", "sub": "s", "nonce": "n", "iat": now, "exp": now + 60,
        })
    }

    #[tokio::test]
    async fn azp_is_required_for_several_audiences_and_must_name_the_client() {
        let key = key();
        let client = Issuer::new(vec![key.public_jwk().clone()]).client();
        let sign = |claims: &serde_json::Value| key.sign_jwt("JWT", claims).expect("sign");
        let mut claims = claims_now();
        claims["aud"] = serde_json::json!(["c", "other-api"]);
        let (failed, reason) = check(client.validate_id_token(&sign(&claims), "n").await);
        assert_eq!(failed, IdTokenCheck::Audience);
        assert!(reason.contains("azp"), "{reason}");
        claims["azp"] = "other-client".into();
        let (failed, _) = check(client.validate_id_token(&sign(&claims), "n").await);
        assert_eq!(failed, IdTokenCheck::Audience);
        claims["azp"] = "c".into();
        client
            .validate_id_token(&sign(&claims), "n")
            .await
            .expect("several audiences, azp the client");
        // One audience: azp may be absent, and must be the client when present.
        let mut claims = claims_now();
        client
            .validate_id_token(&sign(&claims), "n")
            .await
            .expect("no azp");
        claims["azp"] = "other-client".into();
        let (failed, _) = check(client.validate_id_token(&sign(&claims), "n").await);
        assert_eq!(failed, IdTokenCheck::Audience);
    }

    #[tokio::test]
    async fn a_token_not_yet_valid_is_refused() {
        let key = key();
        let client = Issuer::new(vec![key.public_jwk().clone()]).client();
        let mut claims = claims_now();
        claims["nbf"] = (unix_now() + 600).into();
        let token = key.sign_jwt("JWT", &claims).expect("sign");
        let (failed, reason) = check(client.validate_id_token(&token, "n").await);
        assert_eq!(failed, IdTokenCheck::Expiry);
        assert!(reason.contains("nbf"), "{reason}");
        claims["nbf"] = "soon".into();
        let token = key.sign_jwt("JWT", &claims).expect("sign");
        assert_eq!(
            check(client.validate_id_token(&token, "n").await).0,
            IdTokenCheck::Expiry
        );
        claims["nbf"] = unix_now().into();
        let token = key.sign_jwt("JWT", &claims).expect("sign");
        client
            .validate_id_token(&token, "n")
            .await
            .expect("valid from now");
    }

    #[tokio::test]
    async fn a_critical_header_extension_is_refused() {
        let key = key();
        let client = Issuer::new(vec![key.public_jwk().clone()]).client();
        let kid = key.public_jwk().kid.clone().expect("kid");
        for crit in [serde_json::json!(["exp"]), serde_json::json!([])] {
            let header =
                serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid, "crit": crit });
            let header = b64(header.to_string());
            // Signed by the issuer's own key: only crit is wrong.
            let token = key.sign_with_header(&header, &claims_now()).expect("sign");
            assert_eq!(
                check(client.validate_id_token(&token, "n").await).0,
                IdTokenCheck::Critical
            );
        }
    }

    #[tokio::test]
    async fn a_key_published_for_another_alg_or_use_does_not_verify() {
        let key = key();
        for (alg, use_) in [(Some("ES384"), None), (None, Some("enc"))] {
            let mut published = key.public_jwk().clone();
            published.alg = alg.map(Into::into);
            published.use_ = use_.map(Into::into);
            let client = Issuer::new(vec![published]).client();
            let token = id_token(&key);
            assert_eq!(
                check(client.validate_id_token(&token, "n").await).0,
                IdTokenCheck::Key,
                "{alg:?} {use_:?}"
            );
        }
    }

    /// A listener on a free loopback port, and its address.
    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    fn accept_state(query: &str) -> redirect::Checked {
        Redirect {
            state: "s1".to_owned(),
            issuer: ISSUER.to_owned(),
        }
        .check(query)
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange_raw(addr: SocketAddr, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn another_state_gets_400_and_the_wait_goes_on_to_the_real_redirect() {
        let (listener, addr) = listener().await;
        let waiting = tokio::spawn(redirect::receive(listener, accept_state));
        let forged = exchange_raw(
            addr,
            "GET /callback?code=x&state=forged HTTP/1.1\r\nHost: l\r\n\r\n",
        )
        .await;
        assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
        assert!(forged.contains("Login not completed"), "{forged}");
        assert!(!waiting.is_finished());
        let real = exchange_raw(
            addr,
            "GET /callback?code=c1&state=s1 HTTP/1.1\r\nHost: l\r\n\r\n",
        )
        .await;
        assert!(
            real.starts_with("HTTP/1.1 200") && real.contains("Logged in"),
            "{real}"
        );
        let code = waiting.await.expect("task").expect("code");
        assert_eq!(code.secret(), "c1");
    }

    #[tokio::test]
    async fn a_redirect_that_fails_a_later_check_ends_the_wait_without_saying_logged_in() {
        let (listener, addr) = listener().await;
        let waiting = tokio::spawn(redirect::receive(listener, accept_state));
        let answer = exchange_raw(
            addr,
            "GET /callback?state=s1&iss=https%3A%2F%2Fevil HTTP/1.1\r\nHost: l\r\n\r\n",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("Login not completed"),
            "{answer}"
        );
        assert!(matches!(
            waiting.await.expect("task"),
            Err(Error::Login(LoginError::WrongIssuer))
        ));
    }

    #[tokio::test]
    async fn a_dropped_wait_closes_the_port_and_its_connections() {
        use tokio::io::AsyncReadExt;
        let (listener, addr) = listener().await;
        let waiting = tokio::spawn(redirect::receive(listener, accept_state));
        // A connection that sends nothing, held open.
        let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Wait until the listener has accepted it: a 404 on a second connection is
        // answered only by a running accept loop.
        let answer = exchange_raw(addr, "GET /favicon.ico HTTP/1.1\r\nHost: l\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        waiting.abort();
        let _ = waiting.await;
        // The idle connection is closed from the server's side (EOF or reset), not left
        // to hang: read returns.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
        // And the port is free: nothing listens there any more.
        let mut refused = false;
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            refused,
            "the listener still accepts after the wait was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_finishes_its_headers_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (listener, addr) = listener().await;
        let _waiting = tokio::spawn(redirect::receive(listener, accept_state));
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /callback?state=s1&code=c HTTP/1.1\r\nHost: l\r\n")
            .await
            .expect("write");
        // The paused clock moves on while every task waits: the header read timeout fires
        // long before this one, which ends the test when there is no timer at all.
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            redirect::HEADER_READ_TIMEOUT * 100,
            slow.read_to_end(&mut answer),
        )
        .await;
        assert!(read.is_ok(), "the slow connection was never closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
}
