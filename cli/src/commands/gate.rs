//! `helseid gate`: an ingress sidecar. NHN's clients call the gate; the gate verifies
//! every request with [`helseid::verify::VerifyLayer`] (answering refusals itself, with
//! the verifier's RFC 6750 and RFC 9449 answers) and forwards the verified ones to the
//! service behind it, with the token's claims as `X-HelseID-*` headers.
//!
//! Every incoming `X-HelseID-*` header is removed before anything else, so a caller
//! cannot forge one; `Authorization` and `DPoP` are removed unless `--forward-token`.
//! Bodies stream both ways.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use helseid::text::escape;
use helseid::transport::{HttpsClient, https_client};
use helseid::verify::{Dpop, HelseIdClaims, VerifyLayer};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tower::{Layer, ServiceExt};

use super::proxy::{
    LogLevel, Metrics, Outcome, Route, Signals, StderrLog, Upstream, for_upstream,
    metrics_response, parse_upstream, problem_of, serve, strip_hop_by_hop, upstream_request,
    usage_error,
};
use super::{BoxError, CliResult};
use crate::demo::{CPE_SCOPE, Demo, Scratch, config_file_or_demo};
use crate::output::report;

/// The body the gate answers with and sends on.
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The audience of the embedded emulator's CPE tokens (the default without --issuer).
const DEMO_AUDIENCE: &str = "nhn:cp-api";

/// The prefix of the headers the gate sets (and removes from every request).
const PREFIX: &str = "x-helseid-";

#[derive(clap::Args)]
pub(crate) struct GateArgs {
    /// The address to listen on (port 0: any free port; the address is printed on
    /// stderr). An address other than loopback needs --allow-remote.
    #[arg(
        long,
        env = "HELSEID_GATE_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8443"
    )]
    listen: SocketAddr,
    /// Where verified requests go: the service's base URL (https, or http to loopback).
    #[arg(long, env = "HELSEID_GATE_UPSTREAM", value_name = "URL", value_parser = parse_upstream)]
    upstream: Upstream,
    /// An issuer whose tokens pass (repeat for several; in the environment variable,
    /// separate them with spaces). Without it, the embedded emulator is the issuer.
    #[arg(
        long = "issuer",
        env = "HELSEID_GATE_ISSUERS",
        value_name = "URL",
        value_delimiter = ' '
    )]
    issuers: Vec<String>,
    /// The audience tokens must name (the API's). Needed with --issuer; without it,
    /// the embedded emulator's CPE audience (nhn:cp-api).
    #[arg(long, env = "HELSEID_GATE_AUDIENCE", value_name = "AUD")]
    audience: Option<String>,
    /// A scope that lets a token in (repeat for several: any one of them passes; in the
    /// environment variable, separate them with spaces). Default: any scope.
    #[arg(
        long = "scope",
        env = "HELSEID_GATE_SCOPES",
        value_name = "SCOPE",
        value_delimiter = ' '
    )]
    scopes: Vec<String>,
    /// Which schemes pass: `required` (DPoP only, NHN's profile), `allowed` (DPoP or
    /// Bearer), `disabled` (Bearer only).
    #[arg(
        long,
        env = "HELSEID_GATE_DPOP",
        value_name = "MODE",
        value_enum,
        default_value = "required"
    )]
    dpop: DpopMode,
    /// The URL callers use to reach the gate (a TLS terminator's), which DPoP proofs'
    /// `htu` must name. Default: http://<the address the gate listens on>.
    #[arg(long, env = "HELSEID_GATE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Forward the person's national identity number in X-HelseID-Pid.
    #[arg(
        long,
        env = "HELSEID_GATE_FORWARD_PERSONAL_DATA",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    forward_personal_data: bool,
    /// Forward the caller's Authorization and DPoP headers to the upstream.
    #[arg(
        long,
        env = "HELSEID_GATE_FORWARD_TOKEN",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    forward_token: bool,
    /// Listen on an address other than loopback.
    #[arg(
        long,
        env = "HELSEID_GATE_ALLOW_REMOTE",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    allow_remote: bool,
    /// What to log on stderr: `debug` adds one line per request (method, status,
    /// duration, the refusal's reason; never a token).
    #[arg(
        long,
        env = "HELSEID_GATE_LOG",
        value_name = "LEVEL",
        value_enum,
        default_value = "info"
    )]
    log: LogLevel,
}

/// `--dpop`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DpopMode {
    Required,
    Allowed,
    Disabled,
}

impl DpopMode {
    fn dpop(self) -> Dpop {
        match self {
            DpopMode::Required => Dpop::Required,
            DpopMode::Allowed => Dpop::Allowed,
            DpopMode::Disabled => Dpop::Disabled,
        }
    }
}

/// Whether `url` is an absolute http(s) URL.
fn is_http_url(url: &str) -> bool {
    url.parse::<Uri>().is_ok_and(|uri| {
        uri.authority().is_some() && matches!(uri.scheme_str(), Some("http" | "https"))
    })
}

/// `helseid gate`.
pub(crate) async fn gate(args: GateArgs) -> CliResult {
    let remote = !args.listen.ip().is_loopback();
    if remote && !args.allow_remote {
        usage_error(&format!(
            "--listen {} is not a loopback address: add --allow-remote to listen there",
            args.listen
        ));
    }
    if let Some(issuer) = args.issuers.iter().find(|i| !is_http_url(i)) {
        usage_error(&format!(
            "--issuer: `{}` is not an http(s) URL",
            escape(issuer)
        ));
    }
    if !args.issuers.is_empty() && args.audience.is_none() {
        usage_error("--audience: give the audience tokens must name (the API's) with --issuer");
    }
    if let Some(url) = args.public_url.as_deref().filter(|u| !is_http_url(u)) {
        usage_error(&format!(
            "--public-url: `{}` is not an http(s) URL",
            escape(url)
        ));
    }
    let _ = tracing::subscriber::set_global_default(StderrLog {
        max: args.log.level(),
    });
    let metrics = Metrics::install("gate");

    // Keeps the embedded emulator (and its client's file) while the gate runs.
    let mut demo: Option<Demo> = None;
    let mut scratch = Scratch(None);
    let (issuers, audience) = if args.issuers.is_empty() {
        let file = config_file_or_demo(None, &mut demo, &mut scratch.0).await?;
        let issuer = demo
            .as_ref()
            .map(|d| d.emulator.issuer().to_owned())
            .ok_or("the embedded emulator did not start")?;
        let scope = args.scopes.first().map_or(CPE_SCOPE, String::as_str);
        eprintln!(
            "helseid: a token for the gate: helseid token --config {} --scope {}",
            escape(&file.display().to_string()),
            escape(scope),
        );
        let audience = args
            .audience
            .clone()
            .unwrap_or_else(|| DEMO_AUDIENCE.into());
        (vec![issuer], audience)
    } else {
        let audience = args.audience.clone().unwrap_or_default();
        (args.issuers.clone(), audience)
    };

    let signals = Signals::new().map_err(|e| format!("cannot listen for signals: {e}"))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let mut builder = VerifyLayer::builder(issuers[0].clone())
        .audience(audience.clone())
        .dpop(args.dpop.dpop())
        .public_base_url(public_url.clone());
    for issuer in &issuers[1..] {
        builder = builder.issuer(issuer.clone());
    }
    if !args.scopes.is_empty() {
        builder = builder.scopes_any_of(args.scopes.clone());
    }
    let verify = builder.build()?;
    let gate = Arc::new(Gate {
        route: Route {
            prefix: "/".into(),
            upstream: args.upstream.clone(),
            scopes: None,
            dpop: false,
        },
        client: https_client::<Incoming>()?,
        forward_token: args.forward_token,
        forward_personal_data: args.forward_personal_data,
        verify,
        metrics,
    });

    eprintln!("helseid: gate listening on http://{addr}");
    eprintln!(
        "helseid:   -> {} (issuer {}, audience {}, scope {}, DPoP {}, public URL {})",
        escape(&args.upstream.to_string()),
        escape(&issuers.join(" ")),
        escape(&audience),
        escape(&if args.scopes.is_empty() {
            "(any)".to_owned()
        } else {
            args.scopes.join(" ")
        }),
        match args.dpop {
            DpopMode::Required => "required",
            DpopMode::Allowed => "allowed",
            DpopMode::Disabled => "disabled",
        },
        escape(&public_url),
    );
    eprintln!(
        "helseid:   health at http://{addr}/healthz{}",
        if cfg!(feature = "metrics") {
            format!(", metrics at http://{addr}/metrics")
        } else {
            String::new()
        }
    );
    if remote {
        eprintln!("helseid: warning: listening on {addr}, not loopback");
    }

    // Loads the keys now, so that the first requests need not wait.
    let warm = gate.clone();
    tokio::spawn(async move {
        if !warm.ready().await {
            tracing::warn!(target: "helseid::gate", "the issuer's keys cannot be loaded yet");
        }
    });
    let service = hyper::service::service_fn(move |request| {
        let gate = gate.clone();
        async move { Ok::<_, Infallible>(gate.handle(request).await) }
    });
    serve(listener, service, signals, "gate").await;
    if let Some(demo) = demo {
        demo.emulator.shutdown().await;
    }
    drop(scratch);
    Ok(())
}

/// What every request shares.
struct Gate {
    /// The upstream, as a route of the whole path.
    route: Route,
    client: HttpsClient<Incoming>,
    forward_token: bool,
    forward_personal_data: bool,
    verify: VerifyLayer,
    metrics: Metrics,
}

/// Set on an answer by the forwarder (a request the verifier let through): `None` when
/// the upstream answered, else the kind of the gate's problem.
#[derive(Clone, Copy)]
struct Reached(Option<&'static str>);

impl Gate {
    /// Answers one request, counts it, and logs it at debug.
    async fn handle(self: Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        match request.uri().path() {
            "/healthz" => return self.health().await,
            "/metrics" => {
                if let Some(response) = metrics_response(&self.metrics) {
                    return response.map(BodyExt::boxed_unsync);
                }
            }
            _ => {}
        }
        remove_claim_headers(request.headers_mut());
        let service = self.verify.layer(Forwarder(self.clone()));
        let response = match service.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let (outcome, error) = match response.extensions().get::<Reached>() {
            Some(Reached(None)) => (Outcome::Forwarded, None),
            Some(Reached(Some(kind @ "upstream-unreachable"))) => (Outcome::Failed, Some(*kind)),
            Some(Reached(Some(kind))) => (Outcome::Refused, Some(*kind)),
            // The verifier's refusal.
            None if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                (Outcome::Failed, Some("unavailable"))
            }
            None => (Outcome::Refused, Some(refusal_code(response.headers()))),
        };
        self.metrics.request(None, outcome, error, status);
        tracing::debug!(
            target: "helseid::gate",
            method = %method,
            status,
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    /// Sends a verified request to the upstream.
    async fn forward(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let claims = request.extensions().get::<Arc<HelseIdClaims>>().cloned();
        let (mut parts, body) = request.into_parts();
        let uri = match for_upstream(&self.route, &mut parts) {
            Ok(uri) => uri,
            Err(detail) => {
                let mut response = problem(
                    StatusCode::BAD_REQUEST,
                    "bad-path",
                    "Bad path",
                    "client",
                    detail,
                );
                response.extensions_mut().insert(Reached(Some("bad-path")));
                return response;
            }
        };
        let headers = &mut parts.headers;
        if !self.forward_token {
            headers.remove(header::AUTHORIZATION);
            headers.remove("dpop");
        }
        if let Some(claims) = &claims {
            claim_headers(claims, self.forward_personal_data, headers);
        }
        let outgoing = upstream_request(parts, uri, body);
        let sent = Instant::now();
        let answer = self.client.request(outgoing);
        match answer.await {
            Ok(response) => {
                self.metrics.upstream(None, sent.elapsed());
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts.extensions.insert(Reached(None));
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
            Err(e) => {
                let detail = format!(
                    "the gate could not get an answer from the upstream {}: {}",
                    self.route.upstream,
                    report(&e)
                );
                tracing::warn!(target: "helseid::gate", "{detail}");
                let mut response = problem(
                    StatusCode::BAD_GATEWAY,
                    "upstream-unreachable",
                    "Upstream unreachable",
                    "upstream",
                    &detail,
                );
                let reached = Reached(Some("upstream-unreachable"));
                response.extensions_mut().insert(reached);
                response
            }
        }
    }

    /// Whether every issuer's keys are loaded: those not loaded yet are fetched now
    /// (within the verifier's cooldown after a failed fetch, nothing is fetched again,
    /// so a probe that polls cannot flood the issuer).
    async fn ready(&self) -> bool {
        self.verify.keys_loaded() || self.verify.ready().await.is_ok()
    }

    /// `GET /healthz`: 200 when the issuers' keys are loaded, 503 otherwise.
    async fn health(&self) -> Response<Body> {
        let (status, text) = match self.ready().await {
            true => (StatusCode::OK, "ok"),
            false => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let body = serde_json::json!({
            "status": text,
            "keys": if status == StatusCode::OK { "loaded" } else { "unavailable" },
            "key_fetches": self.verify.key_fetches(),
        });
        let mut response = Response::new(
            http_body_util::Full::new(Bytes::from(body.to_string()))
                .map_err(BoxError::from)
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The service behind the verifier: sends a verified request to the upstream.
#[derive(Clone)]
struct Forwarder(Arc<Gate>);

impl tower::Service<Request<Incoming>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let gate = self.0.clone();
        Box::pin(async move { Ok(gate.forward(request).await) })
    }
}

/// The OAuth error code of the verifier's refusal (`invalid_token`,
/// `invalid_dpop_proof`, `use_dpop_nonce`, `insufficient_scope`, `invalid_request`), or
/// `no_credentials` for a challenge without one.
fn refusal_code(headers: &HeaderMap) -> &'static str {
    const CODES: [&str; 5] = [
        "invalid_token",
        "invalid_dpop_proof",
        "use_dpop_nonce",
        "insufficient_scope",
        "invalid_request",
    ];
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|challenge| {
            CODES
                .into_iter()
                .find(|code| challenge.contains(&format!("error=\"{code}\"")))
        })
        .unwrap_or("no_credentials")
}

/// Removes every `X-HelseID-*` header (header names are lowercase in a `HeaderMap`).
fn remove_claim_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sets the claims' headers; a value that cannot be a header value is left out.
fn claim_headers(claims: &HelseIdClaims, personal_data: bool, headers: &mut HeaderMap) {
    let scopes = claims.scopes.join(" ");
    let level = claims.security_level.map(|l| l.to_string());
    let act = claims.act.as_ref().and_then(|a| a.client_id.as_deref());
    let values = [
        ("x-helseid-client-id", claims.client_id.as_deref()),
        ("x-helseid-client-name", claims.client_name.as_deref()),
        ("x-helseid-orgnr-parent", claims.orgnr_parent.as_deref()),
        ("x-helseid-orgnr-child", claims.orgnr_child.as_deref()),
        ("x-helseid-orgnr-supplier", claims.orgnr_supplier.as_deref()),
        (
            "x-helseid-scopes",
            Some(scopes.as_str()).filter(|s| !s.is_empty()),
        ),
        ("x-helseid-hpr-number", claims.hpr_number.as_deref()),
        ("x-helseid-security-level", level.as_deref()),
        ("x-helseid-act-client-id", act),
    ];
    for (name, value) in values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if personal_data
        && let Some(mut value) = claims
            .pid
            .as_ref()
            .and_then(|pid| HeaderValue::from_str(pid.expose()).ok())
    {
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-helseid-pid"), value);
    }
}

/// The gate's own answers: RFC 9457 problems.
fn problem(
    status: StatusCode,
    kind: &str,
    title: &str,
    side: &str,
    detail: &str,
) -> Response<Body> {
    problem_of("gate", status, kind, title, side, detail).map(BodyExt::boxed_unsync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_headers_go_whatever_their_case() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("X-HelseID-Client-Id", "forged"),
            ("x-helseid-pid", "forged"),
            ("X-HELSEID-SCOPES", "forged"),
            ("accept", "*/*"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static(value),
            );
        }
        remove_claim_headers(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn a_value_that_cannot_be_a_header_is_left_out() {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://issuer".into());
        claims.insert("exp".into(), 1.into());
        claims.insert("client_id".into(), "line\nbreak".into());
        claims.insert("helseid://claims/client/client_name".into(), "EPJ".into());
        let claims = HelseIdClaims::unverified(claims).expect("claims");
        let mut headers = HeaderMap::new();
        claim_headers(&claims, false, &mut headers);
        assert!(headers.get("x-helseid-client-id").is_none());
        assert_eq!(headers["x-helseid-client-name"], "EPJ");
    }
}
