//! `helseid proxy`: an egress sidecar. A service that cannot link this crate sends plain
//! HTTP to the proxy on loopback; the proxy forwards each request to the route's upstream
//! through [`helseid::HelseIdLayer`], which attaches the token (and a fresh DPoP proof),
//! answers the upstream's nonce and `invalid_token` challenges, and caches the tokens.
//!
//! Every route has a layer of its own (its scopes, Bearer or DPoP); all of them share one
//! [`TokenCache`](helseid::cache::TokenCache) and one pooled HTTPS client. Request bodies stream through; a body
//! whose length is known and at most `--max-replay-body` bytes is read first, so that the
//! layer can send it again after a challenge (see [`helseid::auth::Replay`]); a longer
//! one, or one without a length, is streamed and sent once.

mod forward;
mod log;
mod metrics;
mod route;

pub(crate) use forward::{
    for_upstream, metrics_response, problem_of, strip_hop_by_hop, upstream_request,
};
pub(crate) use log::StderrLog;
pub(crate) use metrics::{Metrics, Outcome};
pub(crate) use route::{Route, Upstream, parse_upstream};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use helseid::endpoint::TokenEndpoint;
use helseid::text::escape;
use http::header::HeaderName;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use super::CliResult;
use crate::demo::{CPE_SCOPE, Demo, config_or_demo};
use forward::Proxy;
use route::{parse_header_name, parse_route};

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
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub(crate) fn level(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

/// A usage error found after parsing: one line naming the flag, exit status 2 (as
/// clap's own).
pub(crate) fn usage_error(message: &str) -> ! {
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
    // Before the library makes its instruments (at the first token request).
    let metrics = Metrics::install("proxy");

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
        metrics,
    )?);

    let signals = Signals::new().map_err(|e| format!("cannot listen for signals: {e}"))?;
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
        "helseid:   tenant header {}; health at http://{addr}/healthz{}",
        proxy.tenant_header,
        if cfg!(feature = "metrics") {
            format!(", metrics at http://{addr}/metrics")
        } else {
            String::new()
        }
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
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(request).await) }
    });
    serve(listener, service, signals, "proxy").await;
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
/// requests in flight (a second signal stops at once). `name` is the sidecar's, for the
/// lines on stderr.
pub(crate) async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    mut signals: Signals,
    name: &str,
) where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<super::BoxError>,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
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
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = signals.recv() => break,
        }
    }
    drop(listener);
    eprintln!(
        "helseid: {name} stopping: no new connections; waiting for {} open connection(s) to finish their requests",
        graceful.count()
    );
    tokio::select! {
        () = graceful.shutdown() => eprintln!("helseid: {name} stopped"),
        () = signals.recv() => eprintln!("helseid: {name} stopped at a second signal, with requests in flight"),
    }
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from the moment this is made: a signal
/// that arrives once the proxy has said where it listens stops it gracefully.
pub(crate) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal. Cancel safe.
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
