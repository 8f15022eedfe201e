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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tokio::sync::OnceCell;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use zeroize::Zeroizing;

use crate::assertion::{ASSERTION_TYPE, ClientAssertion, Tenant};
use crate::config::{ClientConfig, check_url};
use crate::dpop::{DPOP, DpopKey, Target};
use crate::error::{BoxError, Error, OAuthError, Result};
use crate::exchange::{ACCESS_TOKEN_TYPE, SubjectToken, TOKEN_EXCHANGE_GRANT};
use crate::key::json_error_without_input;
use crate::token::{AccessToken, RefreshToken, TokenType};

/// The default timeout of one request to HelseID.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `expires_in` accepted from a token endpoint: one day.
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest `rt_expires_in` (refresh token lifetime) believed: a year.
const MAX_RT_EXPIRES_IN: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// The largest response body read from HelseID.
const MAX_BODY: usize = 1024 * 1024;

const TOKEN_ENDPOINT: &str = "token endpoint";
const DISCOVERY: &str = "discovery document";

/// A response body of the type-erased HTTP service.
pub type HttpBody = UnsyncBoxBody<Bytes, BoxError>;

/// The type-erased HTTP service the token endpoint sends through.
type HttpService = BoxCloneSyncService<Request<Full<Bytes>>, Response<HttpBody>, BoxError>;

/// The parts of HelseID's discovery document (OpenID Connect Discovery 1.0) this crate
/// uses.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Discovery {
    /// The issuer; must equal the configured authority.
    pub issuer: String,
    /// Where token requests go.
    pub token_endpoint: String,
    /// Where the issuer's signing keys are.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The grant types the issuer supports.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// The DPoP proof algorithms the issuer supports.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
}

/// The grant of a token request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Grant {
    /// `client_credentials`: the client acts for itself (or for a [`Tenant`]).
    ClientCredentials,
    /// Token exchange (RFC 8693): the client exchanges a token it received (the
    /// [`SubjectToken`]) for a token to a downstream API.
    TokenExchange,
    /// `refresh_token`: a new access token for a user's session.
    RefreshToken,
}

impl Grant {
    /// The `grant_type` form value.
    pub fn grant_type(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::TokenExchange => TOKEN_EXCHANGE_GRANT,
            Grant::RefreshToken => "refresh_token",
        }
    }
}

/// What to ask the token endpoint for.
///
/// `Debug` never shows the subject or refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    grant: Grant,
    scopes: Vec<String>,
    resource: Option<String>,
    tenant: Option<Tenant>,
    subject: Option<SubjectToken>,
    refresh_token: Option<RefreshToken>,
    dpop: Option<DpopKey>,
}

impl TokenRequest {
    /// A client-credentials request for `scopes` (none: the client's default scopes at
    /// HelseID).
    pub fn client_credentials(scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::with_grant(Grant::ClientCredentials, scopes)
    }

    /// A token exchange (RFC 8693) of `subject` for a token with the downstream
    /// `scopes`.
    pub fn token_exchange(
        subject: SubjectToken,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self::with_grant(Grant::TokenExchange, scopes).with_subject(subject)
    }

    /// A refresh with `refresh_token`, for `scopes` (none: the session's scopes).
    pub fn refresh(
        refresh_token: RefreshToken,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let mut request = Self::with_grant(Grant::RefreshToken, scopes);
        request.refresh_token = Some(refresh_token);
        request
    }

    /// A request of `grant` for `scopes`, without the grant's token yet.
    pub(crate) fn with_grant(
        grant: Grant,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        TokenRequest {
            grant,
            scopes: scopes.into_iter().map(Into::into).collect(),
            resource: None,
            tenant: None,
            subject: None,
            refresh_token: None,
            dpop: None,
        }
    }

    /// This request with another subject token (token exchange).
    pub fn with_subject(mut self, subject: SubjectToken) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The subject token of a token exchange.
    pub fn subject(&self) -> Option<&SubjectToken> {
        self.subject.as_ref()
    }

    /// Asks for a token for one resource (RFC 8707 `resource`).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Acts for an organisation (sent as `assertion_details` in the client assertion).
    pub fn with_tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The grant.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The scopes asked for.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The resource asked for.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The tenant acted for.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Asks for a DPoP-bound token (RFC 9449): the request carries a proof made with
    /// `key`, HelseID's nonce challenge is answered, and the token that comes back must
    /// be `token_type: DPoP`.
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The DPoP key the token is to be bound to.
    pub fn dpop(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }
}

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
    discovery: OnceCell<Arc<Discovery>>,
    token_endpoint: OnceCell<Arc<str>>,
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
                discovery: OnceCell::new(),
                token_endpoint,
            }),
        })
    }
}

/// Type-erases an HTTP service into the one the endpoint sends through.
fn erase<S, B>(service: S) -> HttpService
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

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    scope: Option<String>,
    refresh_token: Option<Zeroizing<String>>,
    rt_expires_in: Option<serde_json::Value>,
}

fn invalid(endpoint: &'static str, status: StatusCode, reason: impl Into<String>) -> Error {
    Error::InvalidResponse {
        endpoint,
        status,
        reason: reason.into(),
    }
}

/// Reads a lifetime in seconds: a JSON number, or a string holding one.
fn seconds(
    field: &str,
    value: &serde_json::Value,
    status: StatusCode,
    max: Duration,
) -> Result<Duration> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s >= 1.0 && s <= max.as_secs_f64() => Ok(Duration::from_secs(s as u64)),
        Some(s) => Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "`{field}` of {s} seconds is not a plausible lifetime (1 s to {} h)",
                max.as_secs() / 3600
            ),
        )),
        None => Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!("`{field}` is not a number"),
        )),
    }
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
        }
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The discovery document, fetched on first use and kept. A failed fetch is not
    /// kept: the next call tries again.
    ///
    /// # Errors
    /// [`Error::Transport`], [`Error::Timeout`], or [`Error::InvalidResponse`] for a
    /// document that is not JSON, lacks `issuer` or `token_endpoint`, names another
    /// issuer, or names a token endpoint that is not `https`.
    pub async fn discovery(&self) -> Result<Arc<Discovery>> {
        self.inner
            .discovery
            .get_or_try_init(|| async {
                let issuer = self.inner.config.authority().issuer();
                let request = Request::get(self.inner.config.authority().discovery_url())
                    .header(header::ACCEPT, "application/json")
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| Error::config("authority", e.to_string()))?;
                let answer = self.send(DISCOVERY, request).await?;
                let (status, content_type, body) =
                    (answer.status, answer.content_type(), &answer.body);
                if !status.is_success() {
                    return Err(invalid(DISCOVERY, status, "expected HTTP 200"));
                }
                let doc: Discovery = serde_json::from_slice(body).map_err(|e| {
                    invalid(
                        DISCOVERY,
                        status,
                        format!(
                            "{} ({})",
                            json_error_without_input(&e),
                            describe(content_type)
                        ),
                    )
                })?;
                if doc.issuer.trim_end_matches('/') != issuer {
                    return Err(invalid(
                        DISCOVERY,
                        status,
                        format!("it names issuer `{}`, expected `{issuer}`", doc.issuer),
                    ));
                }
                check_url("token_endpoint", &doc.token_endpoint)
                    .map_err(|e| invalid(DISCOVERY, status, e.to_string()))?;
                Ok(Arc::new(doc))
            })
            .await
            .cloned()
    }

    /// The token endpoint URL, from the builder or the discovery document.
    ///
    /// # Errors
    /// As [`TokenEndpoint::discovery`].
    pub async fn token_endpoint(&self) -> Result<Arc<str>> {
        self.inner
            .token_endpoint
            .get_or_try_init(|| async {
                Ok(Arc::from(self.discovery().await?.token_endpoint.as_str()))
            })
            .await
            .cloned()
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
            let http_request =
                self.token_http_request(request, &url, grant_token, dpop.as_ref())?;
            let answer = self.send(TOKEN_ENDPOINT, http_request).await?;
            tracing::Span::current().record("status", answer.status.as_u16());
            let fresh_nonce = dpop
                .as_ref()
                .is_some_and(|(key, target)| key.remember_nonce(target, &answer.headers));
            let result = parse_token_response(answer.status, answer.content_type(), &answer.body)
                .and_then(|token| bound_as_asked(token, request, answer.status));
            match result {
                Err(e)
                    if !challenged
                        && fresh_nonce
                        && e.oauth_error().is_some_and(|e| e.error == "use_dpop_nonce") =>
                {
                    tracing::debug!("the token endpoint asked for a DPoP nonce: retrying once");
                    challenged = true;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "token request failed");
                    return Err(e);
                }
                Ok(token) => return Ok(token),
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
    ) -> Result<Request<Full<Bytes>>> {
        let assertion = self.inner.assertions.sign(request.tenant.as_ref())?;
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
        builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| Error::config("tokenEndpoint", e.to_string()))
    }

    /// Sends `request` through the HTTP service under the timeout, and reads the body.
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
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }
}

/// `token`, when it is bound as `request` asked: a DPoP request must get a DPoP token
/// (a Bearer token sent with `Authorization: DPoP` would fail at every API).
fn bound_as_asked(
    token: AccessToken,
    request: &TokenRequest,
    status: StatusCode,
) -> Result<AccessToken> {
    if request.dpop.is_some() && *token.token_type() != TokenType::DPoP {
        return Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "a DPoP-bound token was asked for, and the answer is token_type `{}`",
                token.token_type().scheme()
            ),
        ));
    }
    Ok(token)
}

/// Reads a whole body of at most `MAX_BODY` bytes.
async fn read_limited(
    mut body: HttpBody,
    endpoint: &'static str,
    status: StatusCode,
) -> Result<Bytes> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Transport {
            endpoint,
            source: shared(e),
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY {
                return Err(invalid(
                    endpoint,
                    status,
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Shares a service error. A named function: the closure form trips the compiler's
/// higher-ranked `Send` check on the request future.
fn shared(e: BoxError) -> crate::error::SharedError {
    Arc::from(e)
}

fn describe(content_type: Option<&str>) -> String {
    match content_type {
        Some(ct) => format!("content-type {ct}"),
        None => "no content-type".to_owned(),
    }
}

fn parse_token_response(
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<AccessToken> {
    if !status.is_success() {
        // RFC 6749 5.2: a JSON object with `error`.
        return match serde_json::from_slice::<OAuthError>(body) {
            Ok(error) => Err(Error::OAuth { status, error }),
            Err(_) => Err(invalid(
                TOKEN_ENDPOINT,
                status,
                format!(
                    "expected an OAuth error object, got {} bytes of {}",
                    body.len(),
                    describe(content_type)
                ),
            )),
        };
    }
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "expected a JSON token response: {} ({})",
                json_error_without_input(&e),
                describe(content_type)
            ),
        )
    })?;
    let secret = response
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(TOKEN_ENDPOINT, status, "the response has no `access_token`"))?;
    let token_type = match response.token_type.as_deref() {
        Some(t) => TokenType::parse(t).ok_or_else(|| {
            invalid(
                TOKEN_ENDPOINT,
                status,
                format!("unknown `token_type` `{t}`"),
            )
        })?,
        None => {
            return Err(invalid(
                TOKEN_ENDPOINT,
                status,
                "the response has no `token_type`",
            ));
        }
    };
    let expires_in = match &response.expires_in {
        Some(v) => seconds("expires_in", v, status, MAX_EXPIRES_IN)?,
        None => {
            return Err(invalid(
                TOKEN_ENDPOINT,
                status,
                "the response has no `expires_in`",
            ));
        }
    };
    let rt_expires_in = response
        .rt_expires_in
        .as_ref()
        .map(|v| seconds("rt_expires_in", v, status, MAX_RT_EXPIRES_IN))
        .transpose()?;
    let refresh_token = response
        .refresh_token
        .filter(|t| !t.is_empty())
        .map(|t| RefreshToken::new(t.as_str()));
    Ok(AccessToken::new(secret.as_str(), token_type, expires_in)?
        .with_scope(response.scope)
        .with_refresh_token(refresh_token, rt_expires_in))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, ct: &str, body: &str) -> Result<AccessToken> {
        parse_token_response(
            StatusCode::from_u16(status).expect("status"),
            Some(ct),
            body.as_bytes(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn reads_a_token_response() {
        let token = parse(
            200,
            "application/json",
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"scope":"a b",
                "refresh_token":"r1","rt_expires_in":"86400"}"#,
        )
        .expect("token");
        assert_eq!(token.secret(), "abc");
        assert_eq!(token.token_type(), &TokenType::Bearer);
        assert_eq!(token.expires_in(), Duration::from_secs(3600));
        assert_eq!(token.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(token.refresh_token().map(RefreshToken::secret), Some("r1"));
        assert!(token.refresh_token_expires_at().is_some());
    }

    #[test]
    fn bad_answers_keep_the_status_and_say_what_is_wrong() {
        let cases = [
            (
                400,
                "application/json",
                r#"{"error":"invalid_client","error_description":"x"}"#,
                "invalid_client",
            ),
            (
                502,
                "text/html",
                "<html>Bad gateway</html>",
                "got 24 bytes of content-type text/html",
            ),
            (
                500,
                "application/json",
                r#"{"message":"oops"}"#,
                "expected an OAuth error object",
            ),
            (
                200,
                "text/html",
                "<html>login</html>",
                "expected a JSON token response",
            ),
            (
                200,
                "application/json",
                r#"{"token_type":"Bearer","expires_in":60}"#,
                "no `access_token`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","expires_in":60}"#,
                "no `token_type`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"mac","expires_in":60}"#,
                "unknown `token_type`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer"}"#,
                "no `expires_in`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":0}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":1e12}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#,
                "not a number",
            ),
        ];
        for (status, ct, body, expected) in cases {
            let err = parse(status, ct, body).expect_err(body);
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err}");
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn a_token_never_reaches_an_error_message() {
        let err = parse(
            200,
            "application/json",
            r#"{"access_token":"SECRET-TOKEN","token_type":"Bearer","expires_in":true}"#,
        )
        .expect_err("bad expires_in");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = parse(
            200,
            "application/json",
            r#"{"access_token":["SECRET-TOKEN"]}"#,
        )
        .expect_err("bad type");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}
