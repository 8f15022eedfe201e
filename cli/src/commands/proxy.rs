//! `helseid proxy`: an egress sidecar. A service that cannot link this crate sends plain
//! HTTP to the proxy on loopback; the proxy forwards each request to the route's upstream
//! through [`helseid::HelseIdLayer`], which attaches the token (and a fresh DPoP proof),
//! answers the upstream's nonce and `invalid_token` challenges, and caches the tokens.
//!
//! Every route has a layer of its own (its scopes, Bearer or DPoP); all of them share one
//! [`TokenCache`] and one pooled HTTPS client. Request bodies stream through; a body
//! whose length is known and at most `--max-replay-body` bytes is read first, so that the
//! layer can send it again after a challenge (see [`helseid::auth::Replay`]); a longer
//! one, or one without a length, is streamed and sent once.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::assertion::Tenant;
use helseid::auth::{HelseId, Replay};
use helseid::cache::TokenCache;
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::text::escape;
use helseid::transport::{HttpsClient, https_client};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tower::{Layer, ServiceExt};

use super::{BoxError, CliResult};
use crate::demo::{CPE_SCOPE, Demo, config_or_demo};
use crate::output::report;

/// The body the proxy sends and answers with: bytes it holds (a small request body read
/// for replay, its own answers) or a body streaming from the other side.
type Body = Either<Full<Bytes>, Incoming>;

/// The tenant header's default name.
const TENANT_HEADER: &str = "X-HelseID-Tenant";

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// The address to listen on (port 0: any free port; the address is printed on
    /// stderr). An address other than loopback needs --allow-remote.
    #[arg(
        long,
        env = "HELSEID_PROXY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// A client configuration file downloaded from HelseID's self-service portal.
    /// Without it, the proxy runs against the embedded emulator, and the routes default
    /// to its CPE (/cpe) and CP API v2 (/cpapi, DPoP).
    #[arg(long, env = "HELSEID_PROXY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// A route: requests whose path starts with PREFIX go to URL, the prefix replaced by
    /// the URL's path, the query kept. Options: `scope=SCOPE` (repeat for several;
    /// default: the configuration's scopes) and `dpop` (DPoP-bound tokens and a proof per
    /// request). Repeat --route for several; in the environment variable, separate
    /// routes with spaces.
    #[arg(
        long = "route",
        env = "HELSEID_PROXY_ROUTES",
        value_name = "PREFIX=URL[,scope=SCOPE]...[,dpop]",
        value_parser = parse_route,
        value_delimiter = ' '
    )]
    routes: Vec<Route>,
    /// The request header that selects a tenant: PARENT or PARENT:CHILD organisation
    /// numbers. The proxy then sends the tenant's token; the header is not forwarded.
    #[arg(
        long,
        env = "HELSEID_PROXY_TENANT_HEADER",
        value_name = "NAME",
        default_value = TENANT_HEADER,
        value_parser = parse_header_name
    )]
    tenant_header: HeaderName,
    /// Listen on an address other than loopback. Anyone who reaches the port sends
    /// requests with this client's HelseID identity.
    #[arg(
        long,
        env = "HELSEID_PROXY_ALLOW_REMOTE",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    allow_remote: bool,
    /// Request bodies of at most this many bytes (with a Content-Length) are read before
    /// they are sent, so that they can be sent again after a DPoP nonce or
    /// `invalid_token` challenge; longer ones stream through and are sent once.
    #[arg(
        long,
        env = "HELSEID_PROXY_MAX_REPLAY_BODY",
        value_name = "BYTES",
        default_value_t = 64 * 1024
    )]
    max_replay_body: u64,
    /// What to log on stderr: `debug` adds one line per request (method, route,
    /// status, duration; never a token).
    #[arg(
        long,
        env = "HELSEID_PROXY_LOG",
        value_name = "LEVEL",
        value_enum,
        default_value = "info"
    )]
    log: LogLevel,
}

/// How much the proxy logs.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn level(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// One `--route`.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    /// The path prefix, without a trailing slash (`/` for everything).
    prefix: String,
    upstream: Upstream,
    /// `None`: the configuration's scopes.
    scopes: Option<Vec<String>>,
    dpop: bool,
}

/// Where a route's requests go.
#[derive(Clone, Debug)]
struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing slash (empty for the root).
    path: String,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

const ROUTE_FORM: &str =
    "a route is PREFIX=URL[,scope=SCOPE]...[,dpop], as /cpe=https://cpe.test.grunndata.nhn.no";

/// Parses `PREFIX=URL[,scope=SCOPE]...[,dpop]`.
fn parse_route(text: &str) -> Result<Route, String> {
    let (prefix, rest) = text.split_once('=').ok_or(ROUTE_FORM)?;
    if !prefix.starts_with('/')
        || prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "the prefix must be a path that starts with /: {ROUTE_FORM}"
        ));
    }
    let trimmed = prefix.trim_end_matches('/');
    let prefix = if trimmed.is_empty() { "/" } else { trimmed };
    if prefix == "/healthz" {
        return Err("/healthz is the proxy's own health check: choose another prefix".into());
    }
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    let upstream = parse_upstream(url)?;
    let mut scopes: Option<Vec<String>> = None;
    let mut dpop = false;
    for option in parts {
        match option.split_once('=') {
            None if option == "dpop" => dpop = true,
            Some(("scope", scope))
                if !scope.is_empty() && scope.chars().all(|c| c.is_ascii_graphic() && c != '"') =>
            {
                scopes.get_or_insert_with(Vec::new).push(scope.to_owned());
            }
            Some(("scope", _)) => {
                return Err("scope= needs a scope (printable ASCII, no spaces)".into());
            }
            _ => {
                return Err(format!(
                    "unknown route option `{}`: the options are scope=SCOPE and dpop",
                    escape(option)
                ));
            }
        }
    }
    Ok(Route {
        prefix: prefix.to_owned(),
        upstream,
        scopes,
        dpop,
    })
}

/// Parses an upstream URL: https, or http to a loopback address, without a query.
fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let not_url = || format!("`{}` is not an http(s) URL: {ROUTE_FORM}", escape(url));
    let uri: Uri = url.parse().map_err(|_| not_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(not_url());
    };
    if uri.query().is_some() || url.contains('#') {
        return Err(format!(
            "the upstream `{}` has a query or fragment: give the URL the paths go under",
            escape(url)
        ));
    }
    if authority.as_str().contains('@') {
        return Err("the upstream URL must not carry credentials".into());
    }
    if *scheme == Scheme::HTTP {
        if !is_loopback_host(authority.host()) {
            return Err(format!(
                "the upstream `{}` is http to a host that is not loopback: the token would cross the network in the clear (use https)",
                escape(url)
            ));
        }
    } else if *scheme != Scheme::HTTPS {
        return Err(not_url());
    }
    Ok(Upstream {
        scheme: scheme.clone(),
        authority: authority.clone(),
        path: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// Whether `host` (as a URL has it, IPv6 in brackets) is a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| "not a header name".to_owned())
}

/// A usage error found after parsing: one line naming the flag, exit status 2 (as
/// clap's own).
fn usage_error(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// `helseid proxy`.
pub(crate) async fn proxy(args: ProxyArgs) -> CliResult {
    let remote = !args.listen.ip().is_loopback();
    if remote && !args.allow_remote {
        usage_error(&format!(
            "--listen {} is not a loopback address: add --allow-remote to listen there (anyone who reaches the port sends requests with this client's identity)",
            args.listen
        ));
    }
    if args.config.is_some() && args.routes.is_empty() {
        usage_error(
            "--route: give at least one route with --config (PREFIX=URL[,scope=SCOPE]...[,dpop])",
        );
    }
    for (i, route) in args.routes.iter().enumerate() {
        if args.routes[..i].iter().any(|r| r.prefix == route.prefix) {
            usage_error(&format!(
                "--route: the prefix {} is given twice",
                escape(&route.prefix)
            ));
        }
    }
    let _ = tracing::subscriber::set_global_default(StderrLog {
        max: args.log.level(),
    });

    // Keeps the embedded emulator running while the proxy runs.
    let mut demo: Option<Demo> = None;
    let config = config_or_demo(args.config.as_deref(), &mut demo).await?;
    let routes = match &demo {
        Some(demo) if args.routes.is_empty() => demo_routes(demo)?,
        _ => args.routes.clone(),
    };
    let endpoint = TokenEndpoint::new(config)?;
    let proxy = Arc::new(Proxy::new(
        endpoint,
        routes,
        args.tenant_header.clone(),
        args.max_replay_body,
    )?);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!("helseid: proxy listening on http://{addr}");
    for forward in &proxy.routes {
        eprintln!(
            "helseid:   {} -> {} ({}, scope {})",
            escape(&forward.route.prefix),
            escape(&forward.route.upstream.to_string()),
            if forward.route.dpop { "DPoP" } else { "Bearer" },
            escape(&shown_scopes(&forward.scopes)),
        );
    }
    eprintln!(
        "helseid:   tenant header {}; health at http://{addr}/healthz",
        proxy.tenant_header
    );
    if remote {
        eprintln!(
            "helseid: warning: listening on {addr}, not loopback: anyone who reaches this port sends requests with this client's HelseID identity"
        );
    }

    // Fetches every route's token now, so that the first requests need not wait and
    // a client HelseID refuses is reported at once (the proxy runs on either way).
    let warm = proxy.clone();
    tokio::spawn(async move { warm.warm_up().await });
    serve(listener, proxy).await;
    if let Some(demo) = demo {
        demo.emulator.shutdown().await;
    }
    Ok(())
}

/// The embedded emulator's routes: CPE at /cpe (the configuration's scope) and CP API
/// v2 at /cpapi (its scope, DPoP).
fn demo_routes(demo: &Demo) -> Result<Vec<Route>, String> {
    Ok(vec![
        Route {
            prefix: "/cpe".into(),
            upstream: parse_upstream(demo.emulator.cpe_base_url())?,
            scopes: Some(vec![CPE_SCOPE.into()]),
            dpop: false,
        },
        Route {
            prefix: "/cpapi".into(),
            upstream: parse_upstream(demo.emulator.cpapi_base_url())?,
            scopes: Some(vec![helseid::cpapi::SCOPE.into()]),
            dpop: true,
        },
    ])
}

fn shown_scopes(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "(the client's)".into()
    } else {
        scopes.join(" ")
    }
}

/// Accepts connections until SIGTERM or Ctrl-C, then stops accepting and waits for the
/// requests in flight (a second signal stops at once).
async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    let mut signal = pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("cannot accept a connection: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request).await) }
                });
                let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    eprintln!(
        "helseid: proxy stopping: no new connections; waiting for {} open connection(s) to finish their requests",
        graceful.count()
    );
    tokio::select! {
        () = graceful.shutdown() => eprintln!("helseid: proxy stopped"),
        () = shutdown_signal() => eprintln!("helseid: proxy stopped at a second signal, with requests in flight"),
    }
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The routes and what they share.
struct Proxy {
    /// Longest prefix first.
    routes: Vec<Forward>,
    tenant_header: HeaderName,
    max_replay_body: u64,
    cache: TokenCache,
    endpoint: TokenEndpoint,
}

/// One route's layer over the shared client.
struct Forward {
    route: Route,
    scopes: Vec<String>,
    /// What the route's layer asks HelseID for (the health check asks the same).
    token_request: TokenRequest,
    service: HelseId<HttpsClient<Body>>,
}

impl Proxy {
    fn new(
        endpoint: TokenEndpoint,
        mut routes: Vec<Route>,
        tenant_header: HeaderName,
        max_replay_body: u64,
    ) -> Result<Self, BoxError> {
        let client = https_client::<Body>()?;
        let cache = TokenCache::new();
        // One DPoP key for the process: every DPoP route's tokens are bound to it.
        let dpop_key = match routes.iter().any(|r| r.dpop) {
            true => Some(DpopKey::generate()?),
            false => None,
        };
        // A body read in full is copied for a retry; a streaming one is sent once.
        let replay = Replay::new().body(|body: &Body| match body {
            Either::Left(full) => Some(Either::Left(full.clone())),
            Either::Right(_) => None,
        });
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let routes = routes
            .into_iter()
            .map(|route| {
                let scopes = route
                    .scopes
                    .clone()
                    .unwrap_or_else(|| endpoint.config().scopes().to_vec());
                let mut builder = HelseIdLayer::builder(endpoint.clone())
                    .scopes(scopes.clone())
                    .cache(cache.clone())
                    .replay(replay.clone())
                    // The proxy cannot know whether an upstream withdraws tokens it
                    // has accepted; a kept copy of a read body costs a reference count.
                    .retry_after_acceptance(true);
                let mut token_request = TokenRequest::client_credentials(scopes.clone());
                if route.dpop
                    && let Some(key) = &dpop_key
                {
                    builder = builder.dpop(key.clone());
                    token_request = token_request.with_dpop(key.clone());
                }
                Forward {
                    service: builder.build().layer(client.clone()),
                    route,
                    scopes,
                    token_request,
                }
            })
            .collect();
        Ok(Proxy {
            routes,
            tenant_header,
            max_replay_body,
            cache,
            endpoint,
        })
    }

    /// Answers one request, and logs it at debug.
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let (route, response) = self.answer(request).await;
        tracing::debug!(
            target: "helseid::proxy",
            method = %method,
            route,
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    /// The route's name (for the log) and the answer.
    async fn answer(&self, request: Request<Incoming>) -> (&str, Response<Body>) {
        if request.uri().path() == "/healthz" {
            return ("/healthz", self.health().await);
        }
        let Some(forward) = self.route(request.uri().path()) else {
            let prefixes: Vec<&str> = self
                .routes
                .iter()
                .map(|f| f.route.prefix.as_str())
                .collect();
            return (
                "-",
                problem(
                    StatusCode::NOT_FOUND,
                    "no-route",
                    "No route",
                    "proxy",
                    &format!(
                        "no route of the proxy matches this path; the routes are {}",
                        prefixes.join(", ")
                    ),
                ),
            );
        };
        let name = forward.route.prefix.as_str();
        (name, self.forward(forward, request).await)
    }

    /// The route for `path`: the longest prefix that matches whole segments.
    fn route(&self, path: &str) -> Option<&Forward> {
        self.routes.iter().find(|f| {
            let prefix = f.route.prefix.as_str();
            prefix == "/"
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    async fn forward(&self, forward: &Forward, request: Request<Incoming>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let tenant = match tenant(&parts.headers, &self.tenant_header) {
            Ok(tenant) => tenant,
            Err(detail) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-tenant-header",
                    "Bad tenant header",
                    "client",
                    &detail,
                );
            }
        };
        let uri = match upstream_uri(&forward.route, &parts.uri) {
            Ok(uri) => uri,
            Err(detail) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-path",
                    "Bad path",
                    "client",
                    detail,
                );
            }
        };
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        headers.remove(&self.tenant_header);
        // The service never chooses the credentials.
        headers.remove(header::AUTHORIZATION);
        headers.remove("dpop");
        // The proxy answered the expectation itself (hyper sends `100 Continue` when
        // the body is read); the upstream gets the body without waiting.
        headers.remove(header::EXPECT);
        if let Ok(host) = HeaderValue::from_str(forward.route.upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }

        let body = match body.size_hint().exact() {
            Some(length) if length <= self.max_replay_body => match body.collect().await {
                Ok(collected) => Either::Left(Full::new(collected.to_bytes())),
                Err(e) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "request-body",
                        "Request body unreadable",
                        "client",
                        &format!("the proxy could not read the request body: {e}"),
                    );
                }
            },
            _ => Either::Right(body),
        };
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = uri;
        *outgoing.version_mut() = Version::HTTP_11;
        *outgoing.headers_mut() = parts.headers;
        if let Some(tenant) = tenant {
            outgoing.extensions_mut().insert(tenant);
        }

        match forward.service.clone().oneshot(outgoing).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Right(body))
            }
            Err(e) => failure(&forward.route, e.as_ref()),
        }
    }

    /// Gets every route's token into the cache; warns of each route that cannot have one.
    async fn warm_up(&self) {
        for forward in &self.routes {
            if let Err(e) = self.cache.get(&self.endpoint, &forward.token_request).await {
                tracing::warn!(
                    target: "helseid::proxy",
                    "no token for {} yet: {}",
                    forward.route.prefix,
                    report(&e)
                );
            }
        }
    }

    /// `GET /healthz`: 200 when a token can be had for every route, 503 otherwise.
    async fn health(&self) -> Response<Body> {
        let mut ready = true;
        let mut routes = Vec::new();
        for forward in &self.routes {
            let entry = match self.cache.get(&self.endpoint, &forward.token_request).await {
                Ok(_) => serde_json::json!({"prefix": forward.route.prefix, "token": "ok"}),
                Err(e) => {
                    ready = false;
                    serde_json::json!({
                        "prefix": forward.route.prefix,
                        "token": "unavailable",
                        "error": report(&e),
                    })
                }
            };
            routes.push(entry);
        }
        let (status, text) = match ready {
            true => (StatusCode::OK, "ok"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let body = serde_json::json!({"status": text, "routes": routes});
        json_response(status, "application/json", &body)
    }
}

/// The request's tenant from `name`: none, or one header of `PARENT[:CHILD]`.
fn tenant(headers: &HeaderMap, name: &HeaderName) -> Result<Option<Tenant>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("more than one {name} header"));
    }
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<Tenant>().ok())
        .map(Some)
        .ok_or_else(|| {
            format!("{name} must be PARENT or PARENT:CHILD, organisation numbers of nine digits")
        })
}

/// The upstream URL of a request to `route`: the route's prefix replaced by the
/// upstream's path, the query kept. A path with `.` or `..` segments is refused (it
/// could climb out of the upstream's path).
fn upstream_uri(route: &Route, incoming: &Uri) -> Result<Uri, &'static str> {
    let path = incoming.path();
    let rest = if route.prefix == "/" {
        path
    } else {
        &path[route.prefix.len().min(path.len())..]
    };
    let dot = |segment: &str| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    };
    if rest.split('/').any(dot) {
        return Err("the path has a `.` or `..` segment");
    }
    let upstream = &route.upstream;
    let mut target = format!("{}{rest}", upstream.path);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(query) = incoming.query() {
        target.push('?');
        target.push_str(query);
    }
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(target)
        .build()
        .map_err(|_| "the path cannot be sent on")
}

/// Removes the hop-by-hop headers (RFC 9110 section 7.6.1): those `Connection` names,
/// `Connection` itself, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
/// and every `Proxy-*`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxies: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxies {
        headers.remove(name);
    }
}

/// The answer when the request could not be forwarded: the token side (HelseID) or the
/// upstream failed.
fn failure(route: &Route, error: &(dyn std::error::Error + 'static)) -> Response<Body> {
    if let Some(e) = error.downcast_ref::<helseid::Error>() {
        let (status, retry) = match e {
            helseid::Error::BackingOff { retry_in, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_in))
            }
            helseid::Error::Transport { .. }
            | helseid::Error::Timeout { .. }
            | helseid::Error::FetchTask { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, e.retry_after())
            }
            _ => (StatusCode::BAD_GATEWAY, None),
        };
        let detail = format!(
            "the proxy could not get a token for {} from HelseID: {}",
            route.prefix,
            report(e)
        );
        tracing::warn!(target: "helseid::proxy", "{detail}");
        let mut response = problem(
            status,
            "no-token",
            "No token from HelseID",
            "helseid",
            &detail,
        );
        if let Some(retry) = retry {
            let seconds = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        return response;
    }
    let detail = format!(
        "the proxy could not get an answer from the upstream {}: {}",
        route.upstream,
        report(error)
    );
    tracing::warn!(target: "helseid::proxy", "{detail}");
    problem(
        StatusCode::BAD_GATEWAY,
        "upstream-unreachable",
        "Upstream unreachable",
        "upstream",
        &detail,
    )
}

/// An RFC 9457 problem: `type`, `title`, `status`, `detail`, and `side`, which says who
/// failed (`client`: the request; `proxy`; `helseid`: the token side; `upstream`).
fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    side: &str,
    detail: &str,
) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("tag:helseid-rs,2026:proxy:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": escape(detail),
        "side": side,
    });
    json_response(status, "application/problem+json", &body)
}

fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A logger of the `helseid` targets' events on stderr, one escaped line each, at
/// `max` and above. (The workspace has no `tracing-subscriber`.)
struct StderrLog {
    max: tracing::Level,
}

impl tracing::Subscriber for StderrLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max && metadata.target().starts_with("helseid")
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        let mut line = format!(
            "{} {}:",
            metadata.level().as_str().to_ascii_lowercase(),
            metadata.target()
        );
        event.record(&mut Fields(&mut line));
        eprintln!("helseid: {}", escape(&line));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Writes an event's fields as ` message key=value ...`.
struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = match field.name() {
            "message" => write!(self.0, " {value:?}"),
            name => write!(self.0, " {name}={value:?}"),
        };
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        let _ = match field.name() {
            "message" => write!(self.0, " {value}"),
            name => write!(self.0, " {name}={value}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_with_their_options_and_bad_ones_say_why() {
        let route =
            parse_route("/cpapi/=https://cpapi.test/v2/,scope=a:b,scope=c,dpop").expect("route");
        assert_eq!(route.prefix, "/cpapi");
        assert_eq!(route.upstream.to_string(), "https://cpapi.test/v2");
        assert_eq!(route.scopes, Some(vec!["a:b".to_owned(), "c".to_owned()]));
        assert!(route.dpop);
        let route = parse_route("/=http://127.0.0.1:9000").expect("route");
        assert_eq!(route.prefix, "/");
        assert!(!route.dpop && route.scopes.is_none());
        for (bad, says) in [
            ("/x", "PREFIX=URL"),
            ("x=https://a.test", "starts with /"),
            ("/x=not a url", "not an http(s) URL"),
            ("/x=ftp://a.test", "not an http(s) URL"),
            ("/x=https://a.test?q=1", "query"),
            ("/x=http://api.example.no", "in the clear"),
            ("/x=https://a.test,gzip", "unknown route option `gzip`"),
            ("/x=https://a.test,scope=", "scope= needs"),
            ("/healthz=https://a.test", "health"),
        ] {
            let error = parse_route(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_prefix_is_replaced_by_the_upstream_path_and_the_query_kept() {
        let route = parse_route("/cpe=https://cpe.test/base").expect("route");
        let uri = |s: &str| s.parse::<Uri>().expect("uri");
        assert_eq!(
            upstream_uri(&route, &uri("/cpe/CommunicationPartyEvents?a=1&b=2")).expect("ok"),
            "https://cpe.test/base/CommunicationPartyEvents?a=1&b=2"
        );
        assert_eq!(
            upstream_uri(&route, &uri("/cpe")).expect("ok"),
            "https://cpe.test/base"
        );
        let root = parse_route("/cpe=https://cpe.test").expect("route");
        assert_eq!(
            upstream_uri(&root, &uri("/cpe?x")).expect("ok"),
            "https://cpe.test/?x"
        );
        assert!(upstream_uri(&route, &uri("/cpe/../admin")).is_err());
        assert!(upstream_uri(&route, &uri("/cpe/%2E%2e/admin")).is_err());
    }

    #[test]
    fn hop_by_hop_headers_go_and_the_others_stay() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "close"),
            ("accept", "application/json"),
            ("retry-after", "7"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept", "retry-after"]);
    }
}
