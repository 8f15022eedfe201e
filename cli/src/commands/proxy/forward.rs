//! Forwarding: a route's layer over the shared client, what is removed from and set on
//! a request, the health check, and the proxy's own answers (RFC 9457 problems).

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
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};
use tower::{Layer, ServiceExt};

use super::metrics::{Label, Metrics, Outcome};
use super::route::{Route, upstream_uri};
use crate::commands::BoxError;
use crate::output::report;

/// The body the proxy sends and answers with: bytes it holds (a small request body read
/// for replay, its own answers) or a body streaming from the other side.
type Body = Either<Full<Bytes>, Incoming>;

/// The routes and what they share.
pub(super) struct Proxy {
    /// Longest prefix first.
    pub(super) routes: Vec<Forward>,
    pub(super) tenant_header: HeaderName,
    max_replay_body: u64,
    cache: TokenCache,
    endpoint: TokenEndpoint,
    metrics: Metrics,
}

/// One route's layer over the shared client.
pub(super) struct Forward {
    pub(super) route: Route,
    pub(super) scopes: Vec<String>,
    /// What the route's layer asks HelseID for (the health check asks the same).
    token_request: TokenRequest,
    service: HelseId<HttpsClient<Body>>,
    /// The route's prefix as a metric attribute.
    label: Label,
}

impl Proxy {
    pub(super) fn new(
        endpoint: TokenEndpoint,
        mut routes: Vec<Route>,
        tenant_header: HeaderName,
        max_replay_body: u64,
        metrics: Metrics,
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
                    label: Label::new(&route.prefix),
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
            metrics,
        })
    }

    /// Answers one request, counts it, and logs it at debug.
    pub(super) async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        match request.uri().path() {
            "/healthz" => return self.health().await,
            "/metrics" => {
                if let Some(response) = metrics_response(&self.metrics) {
                    return response;
                }
            }
            _ => {}
        }
        let (forward, response, error) = self.answer(request).await;
        let status = response.status().as_u16();
        self.metrics
            .request(forward.map(|f| &f.label), outcome(error), error, status);
        tracing::debug!(
            target: "helseid::proxy",
            method = %method,
            route = forward.map_or("-", |f| f.route.prefix.as_str()),
            status,
            duration_us = started.elapsed().as_micros() as u64,
            "request"
        );
        response
    }

    /// The route (for the log and the metrics), the answer, and the kind of the
    /// proxy's problem when it answered itself.
    async fn answer(
        &self,
        request: Request<Incoming>,
    ) -> (Option<&Forward>, Response<Body>, Option<&'static str>) {
        let Some(forward) = self.route(request.uri().path()) else {
            let prefixes: Vec<&str> = self
                .routes
                .iter()
                .map(|f| f.route.prefix.as_str())
                .collect();
            return (
                None,
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
                Some("no-route"),
            );
        };
        let (response, error) = self.forward(forward, request).await;
        (Some(forward), response, error)
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

    /// The upstream's answer, or the proxy's problem and its kind.
    async fn forward(
        &self,
        forward: &Forward,
        request: Request<Incoming>,
    ) -> (Response<Body>, Option<&'static str>) {
        let (mut parts, body) = request.into_parts();
        let tenant = match tenant(&parts.headers, &self.tenant_header) {
            Ok(tenant) => tenant,
            Err(detail) => {
                let kind = "bad-tenant-header";
                let title = "Bad tenant header";
                let response = problem(StatusCode::BAD_REQUEST, kind, title, "client", &detail);
                return (response, Some(kind));
            }
        };
        let uri = match for_upstream(&forward.route, &mut parts) {
            Ok(uri) => uri,
            Err(detail) => {
                let kind = "bad-path";
                let response = problem(StatusCode::BAD_REQUEST, kind, "Bad path", "client", detail);
                return (response, Some(kind));
            }
        };
        let headers = &mut parts.headers;
        headers.remove(&self.tenant_header);
        // The service never chooses the credentials.
        headers.remove(header::AUTHORIZATION);
        headers.remove("dpop");

        let body = match body.size_hint().exact() {
            Some(length) if length <= self.max_replay_body => match body.collect().await {
                Ok(collected) => Either::Left(Full::new(collected.to_bytes())),
                Err(e) => {
                    let kind = "request-body";
                    let response = problem(
                        StatusCode::BAD_REQUEST,
                        kind,
                        "Request body unreadable",
                        "client",
                        &format!("the proxy could not read the request body: {e}"),
                    );
                    return (response, Some(kind));
                }
            },
            _ => Either::Right(body),
        };
        let mut outgoing = upstream_request(parts, uri, body);
        if let Some(tenant) = tenant {
            outgoing.extensions_mut().insert(tenant);
        }

        let sent = Instant::now();
        match forward.service.clone().oneshot(outgoing).await {
            Ok(response) => {
                self.metrics.upstream(Some(&forward.label), sent.elapsed());
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                (Response::from_parts(parts, Either::Right(body)), None)
            }
            Err(e) => {
                let (response, kind) = failure(&forward.route, e.as_ref());
                (response, Some(kind))
            }
        }
    }

    /// Gets every route's token into the cache; warns of each route that cannot have one.
    pub(super) async fn warm_up(&self) {
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

/// Removes the hop-by-hop headers (RFC 9110 section 7.6.1): those `Connection` names,
/// `Connection` itself, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
/// and every `Proxy-*`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// What became of a request the proxy answered with the problem of kind `error`, or
/// forwarded (`None`).
fn outcome(error: Option<&str>) -> Outcome {
    match error {
        None => Outcome::Forwarded,
        Some("no-token" | "upstream-unreachable") => Outcome::Failed,
        Some(_) => Outcome::Refused,
    }
}

/// `GET /metrics`, when the CLI has the `metrics` feature: every metric in Prometheus'
/// text format (503 if they cannot be collected).
pub(crate) fn metrics_response(metrics: &Metrics) -> Option<Response<Body>> {
    if !cfg!(feature = "metrics") {
        return None;
    }
    let (status, text) = match metrics.render() {
        Some(text) => (StatusCode::OK, text),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "# the metrics cannot be collected\n".to_owned(),
        ),
    };
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// The answer when the request could not be forwarded: the token side (HelseID) or the
/// upstream failed; and the problem's kind.
fn failure(
    route: &Route,
    error: &(dyn std::error::Error + 'static),
) -> (Response<Body>, &'static str) {
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
        return (response, "no-token");
    }
    let detail = format!(
        "the proxy could not get an answer from the upstream {}: {}",
        route.upstream,
        report(error)
    );
    tracing::warn!(target: "helseid::proxy", "{detail}");
    let response = problem(
        StatusCode::BAD_GATEWAY,
        "upstream-unreachable",
        "Upstream unreachable",
        "upstream",
        &detail,
    );
    (response, "upstream-unreachable")
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
    problem_of("proxy", status, kind, title, side, detail)
}

/// Makes `parts` a request for `route`'s upstream, as both sidecars forward: the
/// upstream's URI (or why the path cannot go there), hop-by-hop headers and `Expect`
/// removed (the sidecar answered the expectation itself: hyper sends `100 Continue` when
/// the body is read, and the upstream gets the body without waiting), and `Host` set.
/// What else a sidecar removes or adds is its own.
pub(crate) fn for_upstream(
    route: &Route,
    parts: &mut http::request::Parts,
) -> Result<http::Uri, &'static str> {
    let uri = upstream_uri(route, &parts.uri)?;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    if let Ok(host) = HeaderValue::from_str(route.upstream.authority.as_str()) {
        headers.insert(header::HOST, host);
    }
    Ok(uri)
}

/// The HTTP/1.1 request to the upstream at `uri`, with `parts`' method and headers.
pub(crate) fn upstream_request<B>(
    parts: http::request::Parts,
    uri: http::Uri,
    body: B,
) -> Request<B> {
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = uri;
    *outgoing.version_mut() = Version::HTTP_11;
    *outgoing.headers_mut() = parts.headers;
    outgoing
}

/// An RFC 9457 problem of the sidecar `sidecar` (`proxy` or `gate`), as [`problem`].
pub(crate) fn problem_of(
    sidecar: &str,
    status: StatusCode,
    kind: &str,
    title: &str,
    side: &str,
    detail: &str,
) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("tag:helseid-rs,2026:{sidecar}:{kind}"),
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

#[cfg(test)]
mod tests {
    use super::*;

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
