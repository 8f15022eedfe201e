//! The token endpoint: one token request over any HTTP service.
//!
//! [`TokenEndpoint`] finds HelseID's token endpoint through the discovery document
//! (fetched once, then kept), signs a fresh client assertion for every request, posts
//! the form, and turns the answer into an [`AccessToken`] or a precise [`Error`].
//!
//! # Example
//! ```no_run
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::{TokenEndpoint, TokenRequest};
//!
//! # async fn run() -> Result<(), helseid::Error> {
//! let config = ClientConfig::from_file("helseid-client.json")?;
//! let endpoint = TokenEndpoint::new(config)?;
//! let token = endpoint
//!     .request(&TokenRequest::client_credentials(["nhn:cp-api/access"]))
//!     .await?;
//! println!("token valid for {:?}", token.expires_in());
//! # Ok(()) }
//! ```

mod discovery;
mod request;
mod response;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::OnceCell;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use zeroize::Zeroizing;

pub use discovery::{DEFAULT_DISCOVERY_LIFETIME, Discovery};
#[cfg(feature = "login")]
pub(crate) use request::CodeGrant;
pub use request::{Grant, TokenRequest};

use crate::assertion::{ASSERTION_TYPE, ClientAssertion, SignedAssertion};
use crate::config::{ClientConfig, check_url};
use crate::dpop::{DPOP, DpopKey, Target};
use crate::error::{BoxError, Error, OAuthErrorCode, Result};
use crate::exchange::ACCESS_TOKEN_TYPE;
use crate::token::AccessToken;
use response::{bound_as_asked, parse_token_response, read_limited};

/// The default timeout of one request to HelseID.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `expires_in` accepted from a token endpoint: one day.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest `rt_expires_in` (refresh token lifetime) believed: a year.
const MAX_RT_EXPIRES_IN: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// The largest response body read from HelseID.
const MAX_BODY: usize = 1024 * 1024;

const TOKEN_ENDPOINT: &str = "token endpoint";

/// A response body of the type-erased HTTP service.
pub(crate) type HttpBody = UnsyncBoxBody<Bytes, BoxError>;

/// The type-erased HTTP service the token endpoint sends through.
pub(crate) type HttpService =
    BoxCloneSyncService<Request<Full<Bytes>>, Response<HttpBody>, BoxError>;

/// Sends token requests to HelseID for one client.
///
/// Cheap to clone: clones share the HTTP service and the discovered token endpoint.
#[derive(Clone)]
pub struct TokenEndpoint {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    assertions: ClientAssertion,
    http: HttpService,
    timeout: Duration,
    discovery: discovery::DiscoveryCache,
    token_endpoint: OnceCell<Arc<str>>,
    /// Whether a clock skew has been warned about (once per endpoint).
    skew_warned: std::sync::atomic::AtomicBool,
    key_expiry_warning: Duration,
    /// Whether the key's expiry has been checked (once per endpoint).
    key_checked: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("client_id", &self.inner.config.client_id())
            .field("authority", self.inner.config.authority())
            .field("token_endpoint", &self.inner.token_endpoint.get())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenEndpoint`].
pub struct TokenEndpointBuilder {
    config: ClientConfig,
    http: Option<HttpService>,
    timeout: Duration,
    token_endpoint: Option<String>,
    key_expiry_warning: Duration,
    discovery_lifetime: Duration,
}

impl fmt::Debug for TokenEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpointBuilder")
            .field("config", &self.config)
            .field("custom_http", &self.http.is_some())
            .field("timeout", &self.timeout)
            .field("token_endpoint", &self.token_endpoint)
            .finish()
    }
}

impl TokenEndpointBuilder {
    /// Sends through `service` instead of the default HTTPS client: any tower service
    /// from `http::Request<Full<Bytes>>` to `http::Response<B>`, such as a hyper-util
    /// client with extra layers, or a [`tower::service_fn`] closure in tests.
    pub fn http_service<S, B>(mut self, service: S) -> Self
    where
        S: tower::Service<Request<Full<Bytes>>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.http = Some(erase(service));
        self
    }

    /// How long before the key expires (the configuration's
    /// [`key_expires_at`](ClientConfig::key_expires_at)) the endpoint starts to warn, once,
    /// at its first token request: an expired key is an outage. Default: 30 days.
    pub fn key_expiry_warning(mut self, before: Duration) -> Self {
        self.key_expiry_warning = before;
        self
    }

    /// How long the discovery document is kept before it is fetched again (in the
    /// background: requests go on with the copy at hand). Default: 24 hours (NHN's FK2).
    pub fn discovery_lifetime(mut self, lifetime: Duration) -> Self {
        self.discovery_lifetime = lifetime;
        self
    }

    /// The timeout of each request, discovery included. Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this token endpoint instead of the one in the discovery document. Default:
    /// discovered.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Builds the endpoint.
    ///
    /// # Errors
    /// [`Error::Config`] naming `tokenEndpoint` for a URL that is not `https` (or
    /// `http` to loopback), `timeout` for a zero timeout, or `tls` if the default client
    /// cannot be built.
    pub fn build(self) -> Result<TokenEndpoint> {
        if self.timeout.is_zero() {
            return Err(Error::config("timeout", "must be more than zero"));
        }
        let token_endpoint = OnceCell::new();
        if let Some(url) = self.token_endpoint {
            let url = check_url("tokenEndpoint", &url)?;
            let _ = token_endpoint.set(Arc::from(url.as_str()));
        }
        let http = match self.http {
            Some(http) => http,
            #[cfg(feature = "transport")]
            None => erase(crate::transport::https_client::<Full<Bytes>>()?),
            #[cfg(not(feature = "transport"))]
            None => {
                return Err(Error::config(
                    "http_service",
                    "no HTTP client: give one with `http_service`, or enable the `transport` feature",
                ));
            }
        };
        Ok(TokenEndpoint {
            inner: Arc::new(Inner {
                assertions: self.config.client_assertion(),
                config: self.config,
                http,
                timeout: self.timeout,
                discovery: discovery::DiscoveryCache::new(self.discovery_lifetime),
                token_endpoint,
                skew_warned: std::sync::atomic::AtomicBool::new(false),
                key_expiry_warning: self.key_expiry_warning,
                key_checked: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

/// Type-erases an HTTP service into the one the endpoint (and the verifier's key
/// fetches) send through.
pub(crate) fn erase<S, B>(service: S) -> HttpService
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = service
        .map_response(|response: Response<B>| {
            response.map(|body| body.map_err(Into::into).boxed_unsync())
        })
        .map_err(Into::into);
    BoxCloneSyncService::new(service)
}

impl TokenEndpoint {
    /// An endpoint for `config` over the default HTTPS client, with a 10 s timeout.
    ///
    /// # Errors
    /// As [`TokenEndpointBuilder::build`].
    pub fn new(config: ClientConfig) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Starts building an endpoint for `config`.
    pub fn builder(config: ClientConfig) -> TokenEndpointBuilder {
        TokenEndpointBuilder {
            config,
            http: None,
            timeout: DEFAULT_TIMEOUT,
            token_endpoint: None,
            key_expiry_warning: DEFAULT_KEY_EXPIRY_WARNING,
            discovery_lifetime: discovery::DEFAULT_DISCOVERY_LIFETIME,
        }
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The token endpoint URL, from the builder or the discovery document (as it is
    /// now: a refetched document may move it).
    ///
    /// # Errors
    /// As [`TokenEndpoint::discovery`].
    pub async fn token_endpoint(&self) -> Result<Arc<str>> {
        if let Some(url) = self.inner.token_endpoint.get() {
            return Ok(url.clone());
        }
        Ok(Arc::from(self.discovery().await?.token_endpoint.as_str()))
    }

    /// A client-credentials token for the configured scopes.
    ///
    /// # Errors
    /// As [`TokenEndpoint::request`].
    pub async fn client_credentials(&self) -> Result<AccessToken> {
        self.request(&TokenRequest::client_credentials(
            self.inner.config.scopes().iter().cloned(),
        ))
        .await
    }

    /// Sends one token request, with a new client assertion, and reads the answer.
    ///
    /// # Errors
    /// - [`Error::OAuth`] when HelseID answers with an OAuth error (`invalid_client`,
    ///   `invalid_scope`, ...), with the HTTP status.
    /// - [`Error::InvalidResponse`] for an answer that is not a token response: not JSON
    ///   (an HTML error page, say), no `access_token`, a missing or unknown
    ///   `token_type`, an implausible `expires_in`.
    /// - [`Error::Timeout`] when no answer came within the timeout.
    /// - [`Error::Transport`] when the HTTP service failed (connection refused, TLS).
    #[tracing::instrument(
        name = "helseid.token_request",
        skip_all,
        fields(client_id = %self.inner.config.client_id(), grant = request.grant.grant_type(), status)
    )]
    pub async fn request(&self, request: &TokenRequest) -> Result<AccessToken> {
        self.request_with_body(request)
            .await
            .map(|(token, _)| token)
    }

    /// As [`request`](Self::request), and the whole JSON body of the token response
    /// (for members the crate does not keep in an [`AccessToken`], such as `id_token`).
    /// Every token request goes through here, so the metrics count each once.
    pub(crate) async fn request_with_body(
        &self,
        request: &TokenRequest,
    ) -> Result<(AccessToken, Bytes)> {
        let started = std::time::Instant::now();
        let outcome = self.request_once(request).await;
        crate::metrics::token_request(request.grant.grant_type(), &outcome, started.elapsed());
        outcome
    }

    async fn request_once(&self, request: &TokenRequest) -> Result<(AccessToken, Bytes)> {
        self.check_key_expiry();
        let grant_token = match request.grant {
            Grant::ClientCredentials => None,
            Grant::TokenExchange => {
                let subject = request
                    .subject
                    .as_ref()
                    .ok_or_else(|| Error::SubjectToken {
                        reason: "the token exchange request has no subject token".into(),
                    })?;
                if subject.is_expired() {
                    return Err(Error::SubjectToken {
                        reason: format!("the subject token {} has expired", subject.fingerprint()),
                    });
                }
                Some(("subject_token", subject.secret()))
            }
            Grant::RefreshToken => {
                let token = request.refresh_token.as_ref().ok_or_else(|| {
                    Error::config("refresh_token", "the refresh request has no refresh token")
                })?;
                Some(("refresh_token", token.secret()))
            }
            Grant::AuthorizationCode => {
                let grant = request.code.as_ref().ok_or_else(|| {
                    Error::config("code", "the authorization code request has no code")
                })?;
                Some(("code", grant.code.as_str()))
            }
        };
        let url = self.token_endpoint().await?;
        // The DPoP key, and the token endpoint as its proofs name it.
        let dpop = match &request.dpop {
            Some(key) => {
                self.check_dpop_algorithm(key)?;
                Some((key, Target::from_url(&url)?))
            }
            None => None,
        };
        let mut challenged = false;
        loop {
            // A new assertion and a new proof every time: HelseID refuses a `jti` it
            // has seen, so the retry after a nonce challenge signs both again.
            let (http_request, assertion) =
                self.token_http_request(request, &url, grant_token, dpop.as_ref())?;
            let answer = self.send(TOKEN_ENDPOINT, http_request).await?;
            // What this request sent that an answer must never carry into an error.
            let mut secrets = vec![assertion.as_str()];
            secrets.extend(grant_token.map(|(_, token)| token));
            secrets.extend(request.code.as_ref().map(|grant| grant.verifier.as_str()));
            tracing::Span::current().record("status", answer.status.as_u16());
            let fresh_nonce = dpop
                .as_ref()
                .is_some_and(|(key, target)| key.remember_nonce(target, &answer.headers));
            let result =
                parse_token_response(answer.status, answer.content_type(), &answer.body, &secrets)
                    .and_then(|token| bound_as_asked(token, request, answer.status))
                    .map_err(|e| e.with_retry_after(answer.retry_after()));
            match result {
                Err(e)
                    if !challenged
                        && fresh_nonce
                        && e.oauth_error()
                            .is_some_and(|e| e.error == OAuthErrorCode::UseDpopNonce) =>
                {
                    tracing::debug!("the token endpoint asked for a DPoP nonce: retrying once");
                    challenged = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "token request failed");
                    return Err(e);
                }
                Ok(token) => return Ok((token, answer.body)),
            }
        }
    }

    /// Refuses a DPoP key whose algorithm the discovery document (when it was read)
    /// does not list in `dpop_signing_alg_values_supported`.
    fn check_dpop_algorithm(&self, key: &DpopKey) -> Result<()> {
        let Some(discovery) = self.inner.discovery.get() else {
            return Ok(());
        };
        let supported = &discovery.dpop_signing_alg_values_supported;
        let alg = key.algorithm().as_str();
        if supported.is_empty() || supported.iter().any(|a| a == alg) {
            return Ok(());
        }
        Err(Error::Dpop {
            reason: format!(
                "the issuer accepts DPoP proofs signed with {}, not {alg}",
                supported.join(", ")
            ),
        })
    }

    /// The HTTP request for `request`, with a new client assertion and, for DPoP, a new
    /// proof carrying the server's last nonce.
    fn token_http_request(
        &self,
        request: &TokenRequest,
        url: &str,
        grant_token: Option<(&str, &str)>,
        dpop: Option<&(&DpopKey, Target)>,
    ) -> Result<(Request<Full<Bytes>>, SignedAssertion)> {
        let assertion = self
            .inner
            .assertions
            .sign_with(request.tenant.as_ref(), request.journal.as_ref())?;
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::with_capacity(2048));
            form.append_pair("grant_type", request.grant.grant_type())
                .append_pair("client_id", self.inner.config.client_id())
                .append_pair("client_assertion_type", ASSERTION_TYPE)
                .append_pair("client_assertion", assertion.as_str());
            if let Some((name, token)) = grant_token {
                form.append_pair(name, token);
            }
            if request.grant == Grant::TokenExchange {
                form.append_pair("subject_token_type", ACCESS_TOKEN_TYPE);
            }
            if let Some(grant) = &request.code {
                form.append_pair("code_verifier", &grant.verifier)
                    .append_pair("redirect_uri", &grant.redirect_uri);
            }
            if !request.scopes.is_empty() {
                form.append_pair("scope", &request.scopes.join(" "));
            }
            if let Some(resource) = &request.resource {
                form.append_pair("resource", resource);
            }
            Zeroizing::new(form.finish())
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some((key, target)) = dpop {
            let proof = key.sign(&Method::POST, target, None)?;
            builder = builder.header(DPOP, proof.into_header_value());
        }
        let http_request = builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| Error::config("tokenEndpoint", e.to_string()))?;
        Ok((http_request, assertion))
    }

    /// Posts `fields` as a form to `url` (`endpoint` names it in errors), authenticated
    /// with a new client assertion: a pushed authorization request, a revocation.
    /// Returns the answer and the assertion (a secret no error may quote).
    #[cfg(feature = "login")]
    pub(crate) async fn post_authenticated(
        &self,
        endpoint: &'static str,
        url: &str,
        fields: &[(&str, &str)],
    ) -> Result<(Answer, SignedAssertion)> {
        let assertion = self.inner.assertions.sign_with(None, None)?;
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::with_capacity(2048));
            form.append_pair("client_id", self.inner.config.client_id())
                .append_pair("client_assertion_type", ASSERTION_TYPE)
                .append_pair("client_assertion", assertion.as_str());
            for (name, value) in fields {
                form.append_pair(name, value);
            }
            Zeroizing::new(form.finish())
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| Error::config(endpoint, e.to_string()))?;
        Ok((self.send(endpoint, request).await?, assertion))
    }

    /// Sends a `GET` to `url` (`endpoint` names it in errors) and reads the answer.
    #[cfg(feature = "login")]
    pub(crate) async fn get(&self, endpoint: &'static str, url: &str) -> Result<Answer> {
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::config(endpoint, e.to_string()))?;
        self.send(endpoint, request).await
    }

    /// Sends `request` through the HTTP service under the timeout, and reads the body.
    /// Warns once when the key expires within the warning window, or has expired.
    fn check_key_expiry(&self) {
        use std::sync::atomic::Ordering;
        let Some(at) = self.inner.config.key_expires_at() else {
            return;
        };
        let days = match at.duration_since(std::time::SystemTime::now()) {
            Ok(left) => left.as_secs_f64() / 86_400.0,
            Err(past) => -past.duration().as_secs_f64() / 86_400.0,
        };
        crate::metrics::key_expiry(self.inner.config.client_id(), days);
        if self.inner.key_checked.swap(true, Ordering::Relaxed) {
            return;
        }
        let expires = crate::rfc3339::format(at);
        match at.duration_since(std::time::SystemTime::now()) {
            Err(_) => tracing::warn!(
                client_id = %self.inner.config.client_id(),
                expires = %expires,
                "the client's key has expired: HelseID refuses it; register a new key (helseid keys rotate)"
            ),
            Ok(left) if left <= self.inner.key_expiry_warning => tracing::warn!(
                client_id = %self.inner.config.client_id(),
                expires = %expires,
                days_left = left.as_secs() / 86_400,
                "the client's key expires soon: rotate it before then (helseid keys rotate)"
            ),
            Ok(_) => {}
        }
    }

    /// Compares the server's `Date` with the local clock, and warns once when they
    /// differ by more than [`MAX_CLOCK_SKEW`]: HelseID checks the assertion's `iat`
    /// and `exp` against its own clock (NHN's FK4).
    fn check_clock(&self, endpoint: &'static str, headers: &http::HeaderMap) {
        use std::sync::atomic::Ordering;
        if self.inner.skew_warned.load(Ordering::Relaxed) {
            return;
        }
        let Some(skew) = clock_skew(headers, std::time::SystemTime::now()) else {
            return;
        };
        if skew.unsigned_abs() > MAX_CLOCK_SKEW.as_secs()
            && !self.inner.skew_warned.swap(true, Ordering::Relaxed)
        {
            let (ahead, by) = if skew > 0 {
                ("ahead of", skew.unsigned_abs())
            } else {
                ("behind", skew.unsigned_abs())
            };
            tracing::warn!(
                endpoint,
                skew_seconds = skew,
                "the server's clock is {by} s {ahead} this machine's: HelseID may refuse client assertions (iat, exp); synchronise the clock (NTP)"
            );
        }
    }

    async fn send(&self, endpoint: &'static str, request: Request<Full<Bytes>>) -> Result<Answer> {
        let exchange = async {
            let response = self
                .inner
                .http
                .clone()
                .oneshot(request)
                .await
                .map_err(|source| Error::Transport {
                    endpoint,
                    source: shared(source),
                })?;
            let (parts, body) = response.into_parts();
            self.check_clock(endpoint, &parts.headers);
            let body = read_limited(body, endpoint, parts.status).await?;
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                endpoint,
                after: self.inner.timeout,
            })?
    }
}

/// A server's whole answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The `Retry-After` of a 429 or 503 answer (RFC 9110 10.2.3): delay seconds, or an
    /// HTTP date (none when the date has passed). Other answers, and values that are
    /// neither, have none.
    fn retry_after(&self) -> Option<Duration> {
        if !matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            return None;
        }
        parse_retry_after(self.headers.get(header::RETRY_AFTER)?.to_str().ok()?)
    }
}

/// The largest difference between a server's clock and this machine's that passes
/// without a warning: `Date` has whole seconds, and an answer takes time.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How long before the key expires a [`TokenEndpoint`] warns: 30 days.
pub const DEFAULT_KEY_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How many seconds the server's `Date` is ahead of `now` (negative: behind), when the
/// answer has a readable `Date`.
fn clock_skew(headers: &http::HeaderMap, now: std::time::SystemTime) -> Option<i64> {
    let date = httpdate::parse_http_date(headers.get(header::DATE)?.to_str().ok()?).ok()?;
    Some(match date.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    })
}

/// Reads a `Retry-After` value: delay seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is a long wait all the same.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    at.duration_since(std::time::SystemTime::now()).ok()
}

/// Shares a service error. A named function: the closure form trips the compiler's
/// higher-ranked `Send` check on the request future.
fn shared(e: BoxError) -> crate::error::SharedError {
    Arc::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_nothing_else() {
        assert_eq!(parse_retry_after("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        let wait = parse_retry_after(&later).expect("a date");
        assert!(wait > Duration::from_secs(80) && wait <= Duration::from_secs(90));
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past), None, "a date that has passed");
        for bad in ["", "-5", "1.5", "soon", "30s"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clock_skew_is_signed_and_needs_a_readable_date() {
        let now = SystemTime::now();
        let mut headers = http::HeaderMap::new();
        assert_eq!(clock_skew(&headers, now), None);
        let behind = httpdate::fmt_http_date(now - Duration::from_secs(120));
        headers.insert(header::DATE, behind.parse().expect("date"));
        let skew = clock_skew(&headers, now).expect("skew");
        assert!((-121..=-119).contains(&skew), "{skew}");
        headers.insert(header::DATE, "yesterday".parse().expect("header"));
        assert_eq!(clock_skew(&headers, now), None);
    }
}
