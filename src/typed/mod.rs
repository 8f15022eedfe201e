//! What the typed API clients ([`cpe`](crate::cpe), [`cpapi`](crate::cpapi)) share: the
//! tower stack their generated calls go through, the way a stack's error reaches the
//! caller, the default stack, and .NET date-times.
//!
//! `build.rs` generates each client with `<module>::Stack` as its inner type and
//! `<module>::DateTimeOffset` for date-times; both modules re-export the types here.

mod datetime;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

pub use self::datetime::{DateTimeOffset, ParseDateTimeError};
use crate::assertion::Tenant;
use crate::auth::{HelseIdLayer, HelseIdLayerBuilder};
use crate::cache::TokenCache;
use crate::config::{ClientConfig, Environment};
use crate::endpoint::TokenEndpoint;
use crate::error::BoxError;

/// Where an unanswered call gives up, by default: token fetch and API call together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

type Service =
    BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<reqwest::Body>, crate::Error>;

/// The most a typed client reads of one answer's body, after decompression: 64 MiB
/// (NHN's largest answers, the register's export among them, are a fraction of it). A
/// longer body (or a small gzip body that unpacks past it) fails the call with a body
/// error whose source says the length limit was exceeded, instead of filling memory.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// The tower stack a generated client sends through, and the tenant it acts for.
///
/// Made by the client's `builder` or `from_service`.
#[derive(Clone)]
pub struct Stack {
    service: Service,
    tenant: Option<Tenant>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// `service` as the stack of the API named `api`: its errors become
    /// [`crate::Error`]s (see [`stack_error`]), and its bodies are read to at most
    /// [`MAX_BODY`] bytes.
    pub(crate) fn new<S, B>(api: &'static str, service: S) -> Self
    where
        S: tower_service::Service<http::Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body + Send + Sync + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|response: http::Response<B>| {
                response
                    .map(|body| reqwest::Body::wrap(http_body_util::Limited::new(body, MAX_BODY)))
            })
            .map_err(move |e| stack_error(api, e));
        Stack {
            service: BoxCloneSyncService::new(service),
            tenant: None,
        }
    }

    /// The tenant the calls act for.
    pub(crate) fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Acts for `tenant` from now on.
    pub(crate) fn set_tenant(&mut self, tenant: Tenant) {
        self.tenant = Some(tenant);
    }

    /// What the generated client's `ClientHooks::exec` does: sends `request` through the
    /// stack, and carries the stack's error as the source of a `reqwest::Error`.
    pub(crate) async fn exec(
        &self,
        request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        match self.send(request).await {
            Ok(response) => Ok(response),
            Err(error) => Err(into_reqwest_error(error).await),
        }
    }

    /// Sends one request through the stack.
    async fn send(&self, request: reqwest::Request) -> Result<reqwest::Response, crate::Error> {
        let mut request = into_http(request)?;
        if let Some(tenant) = self.tenant {
            request.extensions_mut().insert(tenant);
        }
        let response = self.service.clone().oneshot(request).await?;
        Ok(reqwest::Response::from(response))
    }
}

/// The generated client of the calling module: `$OUT_DIR/$file` (from `build.rs`) in a
/// module of its own, its public items re-exported, and what its `Client` gets on top
/// of progenitor's code: the hook that sends its calls through the [`Stack`], the
/// constructor `from_service`, and tenancy. `$api` names the API in errors,
/// `$attaches` says in `from_service`'s docs what the caller's stack attaches.
///
/// Each generated client is its own type, so these inherent methods are written once
/// here, not once per client.
macro_rules! stack_client {
    ($file:literal, $api:expr, $attaches:literal) => {
        #[allow(
            missing_docs,
            missing_debug_implementations,
            unreachable_pub,
            unused_qualifications,
            clippy::all,
            clippy::pedantic,
            clippy::unwrap_used
        )]
        mod generated {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }

        pub use generated::{ByteStream, Client, ClientInfo, Error, ResponseValue, types};

        impl progenitor_client::ClientHooks<$crate::typed::Stack> for Client {
            async fn exec(
                &self,
                request: reqwest::Request,
                _: &progenitor_client::OperationInfo,
            ) -> reqwest::Result<reqwest::Response> {
                self.inner.exec(request).await
            }
        }

        impl Client {
            #[doc = concat!(
                "A client that sends through `service`, a tower stack of your own that attaches ",
                $attaches,
                " (with [`HelseIdLayer`](crate::HelseIdLayer)) and reaches the network."
            )]
            ///
            /// # Errors
            /// [`crate::Error::Config`] naming `base_url` if it is not an `https` URL (or
            /// `http` to a loopback address), or has a query.
            pub fn from_service<S, B>(base_url: &str, service: S) -> $crate::Result<Self>
            where
                S: tower_service::Service<
                        http::Request<http_body_util::Full<bytes::Bytes>>,
                        Response = http::Response<B>,
                    > + Clone
                    + Send
                    + Sync
                    + 'static,
                S::Error: Into<$crate::error::BoxError>,
                S::Future: Send + 'static,
                B: http_body::Body + Send + Sync + 'static,
                B::Data: Into<bytes::Bytes>,
                B::Error: Into<$crate::error::BoxError>,
            {
                let (url, reqwest) = $crate::typed::client_parts(base_url)?;
                let stack = $crate::typed::Stack::new($api, service);
                Ok(Client::new_with_client(&url, reqwest, stack))
            }

            /// The same client acting for `tenant`: its calls carry that organisation's
            /// token (a multi-tenant system names the parent and child organisation in
            /// the client assertion). The stack and the token cache are shared.
            pub fn with_tenant(&self, tenant: $crate::assertion::Tenant) -> Self {
                let mut client = self.clone();
                client.inner.set_tenant(tenant);
                client
            }

            /// The tenant this client acts for, if any.
            pub fn tenant(&self) -> Option<&$crate::assertion::Tenant> {
                self.inner.tenant()
            }
        }
    };
}
pub(crate) use stack_client;

/// The base URL without its trailing slash, and the `reqwest::Client` that only builds
/// the requests: what a generated client is made of besides its [`Stack`].
///
/// # Errors
/// [`crate::Error::Config`] naming `base_url` if it is not an `https` URL (or `http`
/// to a loopback address), or has a query.
pub(crate) fn client_parts(base_url: &str) -> crate::Result<(String, reqwest::Client)> {
    let url = crate::config::check_url("base_url", base_url)?;
    let reqwest = reqwest::Client::builder()
        .build()
        .map_err(|e| crate::Error::config("reqwest", e.to_string()))?;
    Ok((url.as_str().trim_end_matches('/').to_owned(), reqwest))
}

/// The stack's error as a [`crate::Error`]: token failures are one already; any other
/// failure (a refused connection, a layer of yours) becomes [`crate::Error::Transport`]
/// with the original as its source.
fn stack_error(api: &'static str, error: impl Into<BoxError>) -> crate::Error {
    match error.into().downcast::<crate::Error>() {
        Ok(error) => *error,
        Err(error) => crate::Error::Transport {
            endpoint: api,
            source: Arc::from(error),
        },
    }
}

/// The timeout layer's error, with the timeout that elapsed.
fn timed_out(api: &'static str, error: BoxError, after: Duration) -> crate::Error {
    if error.is::<tower::timeout::error::Elapsed>() {
        crate::Error::Timeout {
            endpoint: api,
            after,
        }
    } else {
        stack_error(api, error)
    }
}

/// The request progenitor built, as an `http::Request` for the stack.
fn into_http(mut request: reqwest::Request) -> Result<http::Request<Full<Bytes>>, crate::Error> {
    let body = match request.body() {
        None => Bytes::new(),
        Some(body) => match body.as_bytes() {
            Some(bytes) => Bytes::copy_from_slice(bytes),
            None => {
                return Err(crate::Error::config(
                    "body",
                    "a streaming request body cannot be sent through the tower stack",
                ));
            }
        },
    };
    let mut headers = std::mem::take(request.headers_mut());
    // progenitor adds `api-version: <info.version>` to every call; the document's version
    // is ours, not the API's, so it is not sent.
    headers.remove("api-version");
    let mut http = http::Request::new(Full::new(body));
    *http.method_mut() = request.method().clone();
    *http.version_mut() = request.version();
    *http.uri_mut() = request.url().as_str().parse().map_err(|e| {
        crate::Error::config("url", format!("`{}` is not a URI: {e}", request.url()))
    })?;
    *http.headers_mut() = headers;
    Ok(http)
}

/// A `reqwest::Error` whose source is `error`: `reqwest::Error` has no public
/// constructor, so this reads a body that fails with `error`.
async fn into_reqwest_error(error: crate::Error) -> reqwest::Error {
    let body = reqwest::Body::wrap(FailingBody(error));
    let mut response = reqwest::Response::from(http::Response::new(body));
    loop {
        // The body yields nothing but its error, so the first chunk is that error.
        if let Err(e) = response.chunk().await {
            return e;
        }
    }
}

/// A body that fails with its error every time it is polled.
struct FailingBody(crate::Error);

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = crate::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, crate::Error>>> {
        std::task::Poll::Ready(Some(Err(self.0.clone())))
    }
}

/// The [`helseid::Error`](crate::Error) behind a failed call, when the tower stack
/// failed (no token, a timeout, a refused connection): `None` for an answer from the API.
/// The same function serves every typed client (`helseid::cpe::helseid_error` and
/// `helseid::cpapi::helseid_error` are this one).
///
/// # Example
/// With the CommunicationParty API v2 (feature `cpapi`):
/// ```no_run
/// # async fn run(cpapi: helseid::cpapi::Client) {
/// match cpapi.get_communication_party_by_her_id(8_142_519).await {
///     Ok(party) => println!("{:?}", party.name),
///     Err(e) => match helseid::cpapi::helseid_error(&e) {
///         Some(helseid::Error::OAuth { error, .. }) => eprintln!("HelseID said {}", error.error),
///         Some(other) => eprintln!("no call: {other}"),
///         None => eprintln!("the API answered: {e}"),
///     },
/// }
/// # }
/// ```
/// With the CommunicationParty Events API (feature `cpe`):
/// ```no_run
/// # async fn run(cpe: helseid::cpe::Client) {
/// match cpe.get_communication_party(8_142_519).await {
///     Ok(party) => println!("{}", party.name),
///     Err(e) => match helseid::cpe::helseid_error(&e) {
///         Some(helseid::Error::OAuth { error, .. }) => eprintln!("HelseID said {}", error.error),
///         Some(other) => eprintln!("no call: {other}"),
///         None => eprintln!("CPE answered: {e}"),
///     },
/// }
/// # }
/// ```
pub fn helseid_error<E>(error: &progenitor_client::Error<E>) -> Option<&crate::Error> {
    use progenitor_client::Error;
    let reqwest = match error {
        Error::CommunicationError(e) | Error::ResponseBodyError(e) | Error::InvalidUpgrade(e) => e,
        _ => return None,
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(reqwest);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<crate::Error>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// What the client builders share: where the tokens come from, how long a call may
/// take, which cache holds the tokens, and the API's base URL if one was set.
pub(crate) struct Settings {
    pub(crate) config: ClientConfig,
    pub(crate) base_url: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) cache: Option<TokenCache>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("client_id", &self.config.client_id())
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where an API is, by HelseID environment: the base URLs of one API.
pub(crate) struct Urls {
    /// What [`crate::Error`] names the API as.
    pub(crate) api: &'static str,
    /// The API's base URL in a HelseID environment, if it has a known one.
    pub(crate) in_environment: fn(Environment) -> Option<&'static str>,
}

impl Settings {
    pub(crate) fn new(config: ClientConfig) -> Self {
        Settings {
            config,
            base_url: None,
            timeout: DEFAULT_TIMEOUT,
            cache: None,
        }
    }

    /// The base URL, `reqwest::Client` and default stack of a client of `urls.api`:
    /// [`HelseIdLayer`] asking for `scope` (and whatever `layer` adds), a timeout, and
    /// hyper-util over rustls.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming `base_url` when it is malformed, or when none was
    /// set and the configuration's authority is neither a HelseID environment with a
    /// known URL for the API nor a loopback address; naming `timeout` when it is zero;
    /// `tls` if rustls refuses its configuration.
    pub(crate) fn build(
        self,
        urls: &Urls,
        scope: &str,
        layer: impl FnOnce(HelseIdLayerBuilder) -> HelseIdLayerBuilder,
    ) -> crate::Result<(String, reqwest::Client, Stack)> {
        let base_url = match self.base_url {
            Some(url) => url,
            None => default_base_url(&self.config, urls)?,
        };
        let (base_url, reqwest) = client_parts(&base_url)?;
        if self.timeout.is_zero() {
            return Err(crate::Error::config("timeout", "must be more than zero"));
        }
        let endpoint = TokenEndpoint::new(self.config)?;
        let mut builder = HelseIdLayer::builder(endpoint).scopes([scope]);
        if let Some(cache) = self.cache {
            builder = builder.cache(cache);
        }
        let (api, timeout) = (urls.api, self.timeout);
        let service = tower::ServiceBuilder::new()
            .map_err(move |e: BoxError| timed_out(api, e, timeout))
            .timeout(timeout)
            .layer(layer(builder).build())
            // NHN's export is large: ask for gzip, and decompress what comes.
            .layer(tower_http::decompression::DecompressionLayer::new())
            .service(crate::transport::https_client::<Full<Bytes>>()?);
        Ok((base_url, reqwest, Stack::new(api, service)))
    }
}

/// The API's URL in the configuration's HelseID environment, or the authority itself
/// when it is a loopback address (the emulator serves the APIs too).
fn default_base_url(config: &ClientConfig, urls: &Urls) -> crate::Result<String> {
    let issuer = config.authority().issuer();
    for environment in [Environment::Test, Environment::Prod] {
        if issuer == environment.issuer() {
            return (urls.in_environment)(environment)
                .map(str::to_owned)
                .ok_or_else(|| {
                    let name = match environment {
                        Environment::Test => "test",
                        Environment::Prod => "production",
                    };
                    crate::Error::config(
                        "base_url",
                        format!(
                            "NHN publishes no {name} URL of the {}: set the base URL",
                            urls.api
                        ),
                    )
                });
        }
    }
    let url = crate::config::check_url("authority", issuer)?;
    if url.scheme() == "http" {
        // Only a loopback address passes `check_url` with http: the emulator.
        return Ok(issuer.to_owned());
    }
    Err(crate::Error::config(
        "base_url",
        format!(
            "the authority `{issuer}` is not a HelseID environment: set the {} base URL",
            urls.api
        ),
    ))
}
