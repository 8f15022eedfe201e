//! What the generated API clients share: [`cpe`](crate::cpe), [`cpapi`](crate::cpapi)
//! and every client `helseid-codegen` generates for a service (feature `codegen`).
//!
//! - [`Stack`]: the tower stack a generated call goes through, the tenant it acts for
//!   and the headers every call sends;
//! - [`Error`]: one error type for every generated client, with the API, the
//!   operation, the status and problem details, or the [`helseid::Error`](crate::Error)
//!   of the stack;
//! - [`ClientBuilder`]: the builder of a generated client's default stack
//!   ([`HelseIdLayer`] with the API's scopes, DPoP where asked, a timeout, hyper-util
//!   over rustls);
//! - [`DateTimeOffset`]: date-times as .NET writes them.
//!
//! A service generates a client in its `build.rs` with `helseid-codegen` and includes
//! it with [`include_client!`](crate::include_client):
//! ```ignore
//! mod melde {
//!     helseid::include_client!("melde.rs");
//! }
//! let melde = melde::Client::builder(config).base_url(url).build()?;
//! ```

#[doc(hidden)]
pub mod codegen;
mod datetime;
mod error;
mod request;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

pub use self::datetime::{DateTimeOffset, ParseDateTimeError};
pub use self::error::{Error, ProblemDetails};
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
    headers: http::HeaderMap,
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
    #[doc(hidden)]
    pub fn new<S, B>(api: &'static str, service: S) -> Self
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
            headers: http::HeaderMap::new(),
        }
    }

    /// The tenant the calls act for.
    #[doc(hidden)]
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Acts for `tenant` from now on.
    #[doc(hidden)]
    pub fn set_tenant(&mut self, tenant: Tenant) {
        self.tenant = Some(tenant);
    }

    /// Sends `headers` on every call (unless the call sets them itself).
    #[doc(hidden)]
    pub fn set_headers(&mut self, headers: http::HeaderMap) {
        self.headers = headers;
    }

    /// What the generated client's `ClientHooks::exec` does: sends `request` through the
    /// stack, and carries the stack's error as the source of a `reqwest::Error`.
    #[doc(hidden)]
    pub async fn exec(&self, request: reqwest::Request) -> reqwest::Result<reqwest::Response> {
        match self.send_reqwest(request).await {
            Ok(response) => Ok(response),
            Err(error) => Err(into_reqwest_error(error).await),
        }
    }

    /// Sends one request, built by reqwest, through the stack.
    async fn send_reqwest(
        &self,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, crate::Error> {
        let request = into_http(request)?;
        Ok(reqwest::Response::from(self.send_http(request).await?))
    }

    /// Sends one request through the stack, with the tenant and the default headers.
    async fn send_http(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<reqwest::Body>, crate::Error> {
        if let Some(tenant) = self.tenant {
            request.extensions_mut().insert(tenant);
        }
        for (name, value) in &self.headers {
            if !request.headers().contains_key(name) {
                request.headers_mut().insert(name.clone(), value.clone());
            }
        }
        self.service.clone().oneshot(request).await
    }
}

#[cfg(any(feature = "cpe", feature = "cpapi"))]
/// The generated client of the calling module: `$OUT_DIR/$file` (from `build.rs`, by
/// `helseid-codegen` with the runtime `crate`) in a module of its own, its public
/// items re-exported.
macro_rules! stack_client {
    ($file:literal) => {
        #[allow(
            warnings,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            clippy::restriction
        )]
        mod generated {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }

        pub use generated::{ByteStream, Client, ClientInfo, ResponseValue, types};
    };
}
#[cfg(any(feature = "cpe", feature = "cpapi"))]
pub(crate) use stack_client;

/// The base URL without its trailing slash, and the `reqwest::Client` that only builds
/// the requests: what a generated client is made of besides its [`Stack`].
///
/// # Errors
/// [`crate::Error::Config`] naming `base_url` if it is not an `https` URL (or `http`
/// to a loopback address), or has a query.
#[doc(hidden)]
pub fn client_parts(base_url: &str) -> crate::Result<(String, reqwest::Client)> {
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
        scopes: &[&str],
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
        let mut builder = HelseIdLayer::builder(endpoint);
        if !scopes.is_empty() {
            builder = builder.scopes(scopes.iter().copied());
        }
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

/// What a generated client knows of its API, from `helseid-codegen`: its name in
/// errors, the scopes its tokens are asked with, whether they are DPoP-bound, and the
/// headers every call sends. Each generated module has one, `API`.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// What [`Error`] names the API as.
    pub name: &'static str,
    /// The HelseID scopes (none: the configuration's).
    pub scopes: &'static [&'static str],
    /// Whether the tokens are DPoP-bound (a proof on every call).
    pub dpop: bool,
    /// Headers every call sends (name in lower case, value).
    pub headers: &'static [(&'static str, &'static str)],
    /// Headers the document requires on every call that have no value yet: the
    /// builder's [`default_header`](ClientBuilder::default_header) must give them.
    pub required_headers: &'static [&'static str],
}

/// `headers` as a header map, each name and value checked.
fn header_map<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> crate::Result<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            crate::Error::config("default_header", format!("`{name}` is not a header name"))
        })?;
        let value = http::HeaderValue::from_str(value).map_err(|_| {
            crate::Error::config(
                "default_header",
                format!("the value of `{name}` is not a header value"),
            )
        })?;
        map.insert(header, value);
    }
    Ok(map)
}

/// The headers of `api` as a header map (for `from_service`).
#[doc(hidden)]
pub fn api_headers(api: &Api) -> crate::Result<http::HeaderMap> {
    header_map(api.headers.iter().copied())
}

/// Builds a generated client with the default stack: [`HelseIdLayer`] asking for the
/// API's scopes (DPoP-bound where the API takes them), a timeout, and hyper-util over
/// rustls; every call sends the API's default headers. Made by the generated
/// `Client::builder(config)`.
///
/// # Example
/// ```ignore
/// let msh = msh::Client::builder(ClientConfig::from_file("helseid-client.json")?)
///     .base_url("https://msh.test.nhn.no")
///     .default_header("nhn-source-system", "my-epj")
///     .build()?;
/// ```
pub struct ClientBuilder<C> {
    settings: Settings,
    api: &'static Api,
    dpop_key: Option<crate::dpop::DpopKey>,
    headers: Vec<(String, String)>,
    make: fn(&str, reqwest::Client, Stack) -> C,
}

impl<C> fmt::Debug for ClientBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api", &self.api.name)
            .field("settings", &self.settings)
            .field("dpop_key", &self.dpop_key)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl<C> ClientBuilder<C> {
    /// A builder of the client of `api`, which `make` makes from its base URL, request
    /// builder and stack (the generated code calls this).
    #[doc(hidden)]
    pub fn new(
        config: ClientConfig,
        api: &'static Api,
        make: fn(&str, reqwest::Client, Stack) -> C,
    ) -> Self {
        ClientBuilder {
            settings: Settings::new(config),
            api,
            dpop_key: None,
            headers: Vec::new(),
            make,
        }
    }

    /// The API's base URL. Default: the configuration's authority when it is a loopback
    /// address (the emulator); otherwise it must be set.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.settings.base_url = Some(url.into());
        self
    }

    /// How long a call may take until the response headers arrive, token fetch
    /// included. Default: [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Shares `cache` with other layers. Default: a new cache.
    pub fn cache(mut self, cache: TokenCache) -> Self {
        self.settings.cache = Some(cache);
        self
    }

    /// Binds the tokens to `key` when the API takes DPoP-bound tokens. Default: a new
    /// P-256 key, made by [`build`](Self::build), that lives as long as the client.
    pub fn dpop_key(mut self, key: crate::dpop::DpopKey) -> Self {
        self.dpop_key = Some(key);
        self
    }

    /// A header every call sends, such as `nhn-source-system: <your system>`; it
    /// replaces the generated default of the same name. Default: the generated ones.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming `default_header` when a header the API requires
    /// has no value, or a name or value is not one; `base_url` when it is malformed, or
    /// when none was set and the configuration's authority is not a loopback address;
    /// `timeout` when it is zero; `tls` if rustls refuses its configuration;
    /// [`crate::Error::Sign`] if a DPoP key is needed and none can be made.
    pub fn build(self) -> crate::Result<C> {
        let api = self.api;
        let mut headers = header_map(api.headers.iter().copied())?;
        let given = header_map(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
        for (name, value) in &given {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(missing) = api
            .required_headers
            .iter()
            .find(|r| !headers.contains_key(**r))
        {
            return Err(crate::Error::config(
                "default_header",
                format!(
                    "the {} requires the header `{missing}` on every call: set it with default_header",
                    api.name
                ),
            ));
        }
        let key = if api.dpop {
            Some(match self.dpop_key {
                Some(key) => key,
                None => crate::dpop::DpopKey::generate()?,
            })
        } else {
            None
        };
        let urls = Urls {
            api: api.name,
            in_environment: |_| None,
        };
        let (url, reqwest, mut stack) =
            self.settings.build(&urls, api.scopes, |layer| match key {
                Some(key) => layer.dpop(key),
                None => layer,
            })?;
        stack.set_headers(headers);
        Ok((self.make)(&url, reqwest, stack))
    }
}

/// Includes a client generated by `helseid-codegen` (`$OUT_DIR/<file>`) in the
/// current module, and re-exports its items: `Client`, `types`, `API`, `Error` (this
/// crate's [`typed::Error`](crate::typed::Error)), `ResponseValue`.
///
/// ```ignore
/// mod melde {
///     helseid::include_client!("melde.rs");
/// }
/// ```
#[macro_export]
macro_rules! include_client {
    ($file:literal) => {
        // Generated code: no lint of the including crate applies.
        #[allow(
            warnings,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            clippy::restriction
        )]
        mod generated {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
        pub use generated::*;
    };
}

/// What `helseid` adds to every generated client: the hook that sends its calls through
/// the [`Stack`], `from_service`, tenancy and (with `builder`) `builder`. The generated
/// code invokes it; not for use by hand.
#[doc(hidden)]
#[macro_export]
macro_rules! __codegen_client {
    (builder) => {
        $crate::__codegen_client!(no_builder);

        impl Client {
            /// Starts building a client that gets its tokens with `config`: see
            /// `helseid::typed::ClientBuilder` for the settings.
            pub fn builder(
                config: $crate::config::ClientConfig,
            ) -> $crate::typed::ClientBuilder<Client> {
                $crate::typed::ClientBuilder::new(config, &API, Client::new_with_client)
            }
        }
    };
    (no_builder) => {
        impl $crate::__codegen::progenitor_client::ClientHooks<$crate::__codegen::Stack>
            for Client
        {
            async fn exec(
                &self,
                request: $crate::__codegen::reqwest::Request,
                _: &$crate::__codegen::progenitor_client::OperationInfo,
            ) -> $crate::__codegen::reqwest::Result<$crate::__codegen::reqwest::Response> {
                self.inner.exec(request).await
            }
        }

        impl Client {
            /// A client that sends through `service`, a tower stack of your own that
            /// attaches the token (with `HelseIdLayer`) and
            /// reaches the network. Every call sends the API's default headers.
            ///
            /// # Errors
            /// `helseid::Error::Config` naming `base_url` if it is not an `https` URL
            /// (or `http` to a loopback address), or has a query.
            pub fn from_service<S, B>(base_url: &str, service: S) -> $crate::Result<Self>
            where
                S: $crate::__codegen::tower_service::Service<
                        $crate::__codegen::http::Request<
                            $crate::__codegen::http_body_util::Full<
                                $crate::__codegen::bytes::Bytes,
                            >,
                        >,
                        Response = $crate::__codegen::http::Response<B>,
                    > + Clone
                    + Send
                    + Sync
                    + 'static,
                S::Error: Into<$crate::error::BoxError>,
                S::Future: Send + 'static,
                B: $crate::__codegen::http_body::Body + Send + Sync + 'static,
                B::Data: Into<$crate::__codegen::bytes::Bytes>,
                B::Error: Into<$crate::error::BoxError>,
            {
                let (url, reqwest) = $crate::__codegen::client_parts(base_url)?;
                let mut stack = $crate::__codegen::Stack::new(API.name, service);
                stack.set_headers($crate::__codegen::api_headers(&API)?);
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
