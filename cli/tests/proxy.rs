//! `helseid proxy`, the built binary, over real sockets on 127.0.0.1: an emulator for
//! the tokens, and upstreams started here that record what reached them.

mod sidecar;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
#[cfg(feature = "metrics")]
use sidecar::sample;
use sidecar::{generated, hex, peak_memory};

use helseid_emulator::Emulator;
use support::{CP_SCOPE, CPAPI_SCOPE, TestClient};

const BIN: &str = env!("CARGO_BIN_EXE_helseid");
/// A third scope the test client may ask for: a route with it has a token of its own.
const OTHER_SCOPE: &str = "nhn:proxy-test/other";
const PARENT: &str = "helseid://claims/client/claims/orgnr_parent";
const CHILD: &str = "helseid://claims/client/claims/orgnr_child";

// ---------------------------------------------------------------------------------------
// The proxy process

/// `helseid proxy`, running; killed when the test ends, however it ends.
struct Proxy {
    child: Option<Child>,
    /// The address it printed.
    addr: SocketAddr,
    /// Its stderr, line by line, after the listening line.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Proxy {
    /// Starts `helseid proxy --listen 127.0.0.1:0` with `args` and `env`, and waits for
    /// the address it prints.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut command = Command::new(BIN);
        command.arg("proxy");
        if !env.iter().any(|(name, _)| *name == "HELSEID_PROXY_LISTEN") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("helseid proxy starts");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proxy = Proxy {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines: tokio::sync::mpsc::unbounded_channel().1,
        };
        let marker = "helseid: proxy listening on http://";
        loop {
            let line = lines
                .recv()
                .await
                .expect("the proxy prints its address before anything fails");
            if let Some(addr) = line.strip_prefix(marker) {
                proxy.addr = addr.parse().expect("an address");
                break;
            }
        }
        proxy.lines = lines;
        proxy
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Reads stderr up to the first line that contains `text`; returns the lines read.
    async fn wait_for_line(&mut self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line =
                self.lines.recv().await.unwrap_or_else(|| {
                    panic!("stderr ended before a line with {text:?}: {seen:#?}")
                });
            let found = line.contains(text);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    /// Kills the process (the test is done with it).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (off the runtime's threads) for the process to end.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("the proxy ends")
    }
}

/// The emulator with a multi-tenant client that may ask for CPE's and CP API v2's
/// scopes, and that client's configuration file (scope: CPE's).
async fn emulator(require_nonce: bool) -> (Emulator, TestClient, support::TempDir, PathBuf) {
    let client = TestClient::ec("proxy-client");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE, CPAPI_SCOPE, OTHER_SCOPE]))
        .cpapi_require_nonce(require_nonce)
        .start()
        .await
        .expect("emulator");
    let dir = support::TempDir::new("cli-proxy");
    let config = dir.path("client.json");
    let file = json!({
        "clientId": client.id,
        "authority": emulator.issuer(),
        "scopes": [CP_SCOPE],
        "privateJwk": client.jwk.to_json().as_str(),
    });
    std::fs::write(&config, file.to_string()).expect("write config");
    (emulator, client, dir, config)
}

fn arg(path: &std::path::Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

// ---------------------------------------------------------------------------------------
// An upstream that records what reached it

/// One request as the upstream received it; the body by its length and SHA-256 (and
/// itself, when it is small).
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    length: u64,
    sha256: String,
    body: Option<Bytes>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }

    /// The token of `Authorization: <scheme> <token>`.
    fn token(&self, scheme: &str) -> &str {
        let value = self.header("authorization").expect("an Authorization");
        value
            .strip_prefix(scheme)
            .and_then(|v| v.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{scheme} scheme: {value:.12}.."))
    }
}

/// What the upstream answers with: bytes, or a body made as it is sent.
type UpstreamBody = UnsyncBoxBody<Bytes, Infallible>;
type Answered = Pin<Box<dyn Future<Output = Response<UpstreamBody>> + Send>>;
/// How the upstream answers its `n`th request (from 0).
type Answer = Arc<dyn Fn(usize, &Seen) -> Answered + Send + Sync>;

struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

fn respond(
    status: StatusCode,
    headers: &[(&'static str, &'static str)],
    body: &'static str,
) -> Answered {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    Box::pin(async move { response })
}

/// An upstream that answers 200 `upstream says hi` to everything.
async fn ok_upstream() -> Upstream {
    upstream(Arc::new(|_, _| {
        respond(StatusCode::OK, &[], "upstream says hi")
    }))
    .await
}

/// An HTTP/1 server on 127.0.0.1 that records every request and answers with `answer`.
async fn upstream(answer: Answer) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let recorded = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = recorded.clone();
            let answer = answer.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let seen = seen.clone();
                let answer = answer.clone();
                async move {
                    let record = record(request).await;
                    let n = {
                        let mut seen = seen.lock().expect("lock");
                        seen.push(record.clone());
                        seen.len() - 1
                    };
                    Ok::<_, Infallible>(answer(n, &record).await)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Upstream { url, seen }
}

/// Reads a request's body frame by frame, hashing it, keeping it only when small.
async fn record(request: Request<Incoming>) -> Seen {
    let (parts, mut body) = request.into_parts();
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut length = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body arrives");
        if let Ok(data) = frame.into_data() {
            digest.update(&data);
            length += data.len() as u64;
            if kept.len() + data.len() <= 1 << 16 {
                kept.extend_from_slice(&data);
            }
        }
    }
    Seen {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        length,
        sha256: hex(digest.finish().as_ref()),
        body: (length as usize == kept.len()).then(|| Bytes::from(kept)),
    }
}

// ---------------------------------------------------------------------------------------
// Requests to the proxy

/// Sends `method url` with `headers` and `body`; returns the status, headers and body.
async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    support::send(
        request
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request"),
    )
    .await
}

async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    call(Method::GET, url, &[], "").await
}

fn json_of(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Asserts one of the proxy's own refusals: `status`, a problem+json body with
/// `type`, `title`, `status` and a `detail` containing `fragment`, and `side`.
#[track_caller]
fn assert_refusal(
    answer: &(StatusCode, HeaderMap, Bytes),
    status: StatusCode,
    side: &str,
    fragment: &str,
) -> Value {
    let (actual, headers, body) = answer;
    let problem = json_of(body);
    assert_eq!(*actual, status, "{problem}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(problem["status"], status.as_u16(), "{problem}");
    assert!(
        problem["type"].as_str().is_some_and(|t| t.contains(':')),
        "{problem}"
    );
    assert!(problem["title"].is_string(), "{problem}");
    assert_eq!(problem["side"], side, "{problem}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains(fragment),
        "{detail:?} should contain {fragment:?}"
    );
    problem
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread")]
async fn routes_strip_the_prefix_keep_the_query_attach_a_verified_bearer_token_and_drop_the_callers_credentials()
 {
    let (emulator, client, _dir, config) = emulator(false).await;
    let a = ok_upstream().await;
    let b = upstream(Arc::new(|_, _| {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            &[("retry-after", "7"), ("x-upstream", "b")],
            "{\"busy\":true}",
        )
    }))
    .await;
    let route_a = format!("/a={}", a.url);
    let route_b = format!("/b/deep/={}/base/,scope={CP_SCOPE}", b.url);
    let mut proxy = Proxy::start(
        &[
            "--config",
            arg(&config),
            "--route",
            &route_a,
            "--route",
            &route_b,
            "--log",
            "debug",
        ],
        &[],
    )
    .await;

    // Forged credentials and hop-by-hop headers are not forwarded; others are.
    let answer = call(
        Method::GET,
        &proxy.url("/a/x/y?q=1&r=two"),
        &[
            ("authorization", "Bearer forged"),
            ("dpop", "forged.proof.jwt"),
            ("connection", "x-private"),
            ("x-private", "hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("expect", "100-continue"),
            ("x-trace", "abc"),
        ],
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(answer.2, "upstream says hi");
    let seen = a.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.uri, "/x/y?q=1&r=two");
    assert_eq!(request.header("host"), Some(a.authority()));
    assert_eq!(request.header("x-trace"), Some("abc"));
    for gone in [
        "dpop",
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(request.header(gone), None, "{gone} was forwarded");
    }
    let claims = emulator
        .verify_access_token(request.token("Bearer"))
        .expect("the emulator's token");
    assert_eq!(claims["client_id"], client.id);
    assert_eq!(claims["scope"], json!([CP_SCOPE]));

    // One line per request at debug: method, route, status, duration; no token in any
    // line (the library's debug lines included).
    let lines = proxy.wait_for_line("route=/a status=200").await;
    let line = lines.last().expect("a line");
    assert!(
        line.contains("method=GET") && line.contains("duration_us="),
        "{line}"
    );
    support::assert_quotes_no_secret(&lines.join("\n"), &[request.token("Bearer")]);

    // The longest prefix wins over a shorter one that is not a whole segment; the
    // upstream's path replaces the prefix; a body goes along; the upstream's refusal
    // and its Retry-After pass through as they are.
    let answer = call(
        Method::POST,
        &proxy.url("/b/deep/z?x=%20y"),
        &[("content-type", "application/json")],
        "{\"n\":1}",
    )
    .await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.1["retry-after"], "7");
    assert_eq!(answer.1["x-upstream"], "b");
    assert_eq!(answer.2, "{\"busy\":true}");
    let seen = b.seen();
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].uri, "/base/z?x=%20y");
    assert_eq!(seen[0].body.as_deref(), Some(&b"{\"n\":1}"[..]));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    emulator
        .verify_access_token(seen[0].token("Bearer"))
        .expect("a token here too");

    // The prefix alone goes to the upstream's path; `/bx` is not under `/b/deep`, `/a`
    // does not match `/ab`.
    assert_eq!(
        get(&proxy.url("/b/deep")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(b.seen()[1].uri, "/base");
    assert_refusal(
        &get(&proxy.url("/ab")).await,
        StatusCode::NOT_FOUND,
        "proxy",
        "/b/deep, /a",
    );
    assert_eq!(a.seen().len(), 1);

    // The token is cached: the second request to /a reuses it.
    let issued = emulator.tokens_issued();
    assert_eq!(get(&proxy.url("/a/again")).await.0, StatusCode::OK);
    assert_eq!(emulator.tokens_issued(), issued);
    assert_eq!(a.seen()[1].token("Bearer"), a.seen()[0].token("Bearer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_connection_is_kept_alive_between_requests() {
    let (_emulator, _client, _dir, config) = emulator(false).await;
    let a = ok_upstream().await;
    let route_a = format!("/a={}", a.url);
    let proxy = Proxy::start(&["--config", arg(&config), "--route", &route_a], &[]).await;

    // Three requests, one after the other, on one connection (blocking I/O, off the
    // runtime's threads: the upstream runs on them).
    let addr = proxy.addr;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        for n in 0..3 {
            let request = format!("GET /a/{n} HTTP/1.1\r\nHost: proxy\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .expect("the connection is still open");
            let mut answer = Vec::new();
            while !answer.ends_with(b"upstream says hi") {
                let mut buffer = [0u8; 4096];
                let read = stream.read(&mut buffer).expect("read");
                assert!(read > 0, "closed after {n} answers: {answer:?}");
                answer.extend_from_slice(&buffer[..read]);
            }
            assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
    })
    .await
    .expect("join");
    let paths: Vec<String> = a.seen().iter().map(|s| s.uri.to_string()).collect();
    assert_eq!(paths, ["/0", "/1", "/2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_a_problem_that_names_the_side_that_failed() {
    let (emulator, _client, _dir, config) = emulator(false).await;
    let a = ok_upstream().await;
    // A port nobody listens on: bound, then closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let route_a = format!("/a={}", a.url);
    let route_gone = format!("/gone=http://{closed}");
    let mut proxy = Proxy::start(
        &[
            "--config",
            arg(&config),
            "--route",
            &route_a,
            "--route",
            &route_gone,
        ],
        &[],
    )
    .await;

    // /healthz: a token for every route.
    let (status, headers, body) = get(&proxy.url("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let health = json_of(&body);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["routes"].as_array().map(Vec::len),
        Some(2),
        "{health}"
    );
    // It fetched the routes' tokens into the cache the routes use.
    let issued = emulator.tokens_issued();
    assert_eq!(get(&proxy.url("/a/warm")).await.0, StatusCode::OK);
    assert_eq!(
        emulator.tokens_issued(),
        issued,
        "the health check's token is used"
    );

    assert_refusal(
        &get(&proxy.url("/elsewhere")).await,
        StatusCode::NOT_FOUND,
        "proxy",
        "no route",
    );
    for bad in ["12345", "974589095:1", "974589095:912345678:1", "x"] {
        assert_refusal(
            &call(
                Method::GET,
                &proxy.url("/a/x"),
                &[("x-helseid-tenant", bad)],
                "",
            )
            .await,
            StatusCode::BAD_REQUEST,
            "client",
            "x-helseid-tenant",
        );
    }
    let twice = Request::get(proxy.url("/a/x"))
        .header("x-helseid-tenant", "974589095")
        .header("x-helseid-tenant", "912345678")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_refusal(
        &support::send(twice).await,
        StatusCode::BAD_REQUEST,
        "client",
        "more than one",
    );
    assert_refusal(
        &get(&proxy.url("/a/x/../../admin")).await,
        StatusCode::BAD_REQUEST,
        "client",
        "..",
    );
    assert_eq!(a.seen().len(), 1, "no refused request reached the upstream");

    // The upstream is unreachable: 502, the upstream's side; no token in the answer.
    let answer = get(&proxy.url("/gone/x")).await;
    let problem = assert_refusal(
        &answer,
        StatusCode::BAD_GATEWAY,
        "upstream",
        &format!("http://{closed}"),
    );
    let token = a.seen()[0].token("Bearer").to_owned();
    support::assert_quotes_no_secret(&problem.to_string(), &[&token]);

    // HelseID is down: 503 (or 502), HelseID's side, and /healthz says so.
    proxy.kill();
    emulator.shutdown().await;
    let mut proxy = Proxy::start(&["--config", arg(&config), "--route", &route_a], &[]).await;
    // At start it tries, and says so.
    let lines = proxy.wait_for_line("no token for /a yet").await;
    assert!(
        lines.last().is_some_and(|l| l.contains("warn")),
        "{lines:#?}"
    );
    let answer = get(&proxy.url("/a/x")).await;
    assert!(
        [StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY].contains(&answer.0),
        "{answer:?}"
    );
    assert_refusal(&answer, answer.0, "helseid", "token");
    let (status, _, body) = get(&proxy.url("/healthz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let health = json_of(&body);
    assert_eq!(health["status"], "unavailable", "{health}");
    assert_eq!(health["routes"][0]["token"], "unavailable", "{health}");
    assert_eq!(
        a.seen().len(),
        1,
        "the upstream was not called without a token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dpop_routes_send_a_fresh_proof_for_the_upstream_url_and_the_emulators_api_accepts_them() {
    let (emulator, _client, _dir, config) = emulator(true).await;
    let a = ok_upstream().await;
    let route_a = format!("/dp={}/v2,scope={CPAPI_SCOPE},dpop", a.url);
    let route_api = format!(
        "/cpapi={},scope={CPAPI_SCOPE},dpop",
        emulator.cpapi_base_url()
    );
    let proxy = Proxy::start(
        &[
            "--config",
            arg(&config),
            "--route",
            &route_a,
            "--route",
            &route_api,
        ],
        &[],
    )
    .await;

    assert_eq!(get(&proxy.url("/dp/p?x=1")).await.0, StatusCode::OK);
    let answer = call(
        Method::POST,
        &proxy.url("/dp/q"),
        &[("dpop", "forged")],
        "body",
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    let seen = a.seen();
    assert_eq!(seen.len(), 2);
    let mut jtis = Vec::new();
    for (request, method, path) in [(&seen[0], "GET", "/v2/p"), (&seen[1], "POST", "/v2/q")] {
        let token = request.token("DPoP");
        let claims = emulator
            .verify_access_token(token)
            .expect("the emulator's token");
        let proof = request.header("dpop").expect("a DPoP proof");
        let (header, proof_claims) = support::decode_jwt(proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert!(header["jwk"].is_object());
        assert_eq!(proof_claims["htm"], method);
        assert_eq!(proof_claims["htu"], format!("{}{path}", a.url));
        assert_eq!(proof_claims["ath"], support::ath(token));
        assert!(claims["cnf"]["jkt"].is_string(), "{claims}");
        jtis.push(proof_claims["jti"].clone());
    }
    assert_ne!(jtis[0], jtis[1], "a fresh proof per request");

    // The emulator's CP API v2 checks the proof (and asks for its own nonce first).
    let challenges = emulator.dpop_nonce_challenges();
    let (status, _, body) =
        get(&proxy.url("/cpapi/api/v1/event?fromSequenceNumber=1&maxEvents=2")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["results"].as_array().map(Vec::len), Some(2));
    assert!(
        emulator.dpop_nonce_challenges() > challenges,
        "the API's nonce was asked for"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_nonce_challenge_and_invalid_token_are_each_answered_once() {
    let (emulator, _client, _dir, config) = emulator(false).await;
    // DPoP: the first request is told to use a nonce.
    let nonce = upstream(Arc::new(|n, _| match n {
        0 => respond(
            StatusCode::UNAUTHORIZED,
            &[
                ("www-authenticate", "DPoP error=\"use_dpop_nonce\""),
                ("dpop-nonce", "nonce-from-upstream"),
            ],
            "",
        ),
        _ => respond(StatusCode::OK, &[], "with nonce"),
    }))
    .await;
    // Bearer: the first token is refused as invalid.
    let invalid = upstream(Arc::new(|n, _| match n {
        0 => respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            "",
        ),
        _ => respond(StatusCode::OK, &[], "fresh token"),
    }))
    .await;
    // Bearer, always refused: the retry is answered as it is.
    let refusing = upstream(Arc::new(|_, _| {
        respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            "",
        )
    }))
    .await;
    let route_nonce = format!("/n={},scope={CPAPI_SCOPE},dpop", nonce.url);
    let route_invalid = format!("/i={}", invalid.url);
    // Another scope: a token of its own (routes with the same scopes share one, and the
    // cache forgets a refused token at most once in a while).
    let route_refusing = format!("/r={},scope={OTHER_SCOPE}", refusing.url);
    let proxy = Proxy::start(
        &[
            "--config",
            arg(&config),
            "--route",
            &route_nonce,
            "--route",
            &route_invalid,
            "--route",
            &route_refusing,
        ],
        &[],
    )
    .await;

    let (status, _, body) = call(Method::PUT, &proxy.url("/n/x"), &[], "replayed").await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::OK, &b"with nonce"[..])
    );
    let seen = nonce.seen();
    assert_eq!(seen.len(), 2, "once, then once more with the nonce");
    let (_, first) = support::decode_jwt(seen[0].header("dpop").expect("proof"));
    let (_, second) = support::decode_jwt(seen[1].header("dpop").expect("proof"));
    assert!(first.get("nonce").is_none(), "{first}");
    assert_eq!(second["nonce"], "nonce-from-upstream");
    assert_ne!(first["jti"], second["jti"]);
    for request in &seen {
        assert_eq!(request.body.as_deref(), Some(&b"replayed"[..]));
    }

    let (status, _, body) = call(Method::POST, &proxy.url("/i/x"), &[], "again").await;
    assert_eq!(
        (status, body.as_ref()),
        (StatusCode::OK, &b"fresh token"[..])
    );
    let seen = invalid.seen();
    assert_eq!(seen.len(), 2, "once, then once more with a new token");
    let (old, new) = (seen[0].token("Bearer"), seen[1].token("Bearer"));
    assert_ne!(old, new, "a fresh token");
    emulator
        .verify_access_token(new)
        .expect("a token of the emulator");
    assert_eq!(seen[1].body.as_deref(), Some(&b"again"[..]));

    let (status, headers, _) = get(&proxy.url("/r/x")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(refusing.seen().len(), 2, "one retry, no more");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_header_selects_the_tenants_token_and_is_not_forwarded() {
    let (emulator, _client, _dir, config) = emulator(false).await;
    let a = ok_upstream().await;
    let route_a = format!("/a={}", a.url);
    // Every setting from the environment, the tenant header renamed.
    let proxy = Proxy::start(
        &[],
        &[
            ("HELSEID_PROXY_CONFIG", arg(&config)),
            ("HELSEID_PROXY_ROUTES", &route_a),
            ("HELSEID_PROXY_TENANT_HEADER", "X-Org"),
        ],
    )
    .await;

    let answer = call(
        Method::GET,
        &proxy.url("/a/t"),
        &[("X-Org", "974589095:912345678")],
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(get(&proxy.url("/a/none")).await.0, StatusCode::OK);
    let answer = call(
        Method::GET,
        &proxy.url("/a/p"),
        &[("x-org", " 974589095 ")],
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);

    let seen = a.seen();
    let claims: Vec<Value> = seen
        .iter()
        .map(|r| {
            assert_eq!(
                r.header("x-org"),
                None,
                "the tenant header is not forwarded"
            );
            emulator
                .verify_access_token(r.token("Bearer"))
                .expect("token")
        })
        .collect();
    assert_eq!(claims[0][PARENT], "974589095", "{}", claims[0]);
    assert_eq!(claims[0][CHILD], "912345678");
    assert!(
        claims[1].get(PARENT).is_none(),
        "no tenant: the client's own token"
    );
    assert_eq!(claims[2][PARENT], "974589095");
    assert!(claims[2].get(CHILD).is_none());
    // The default header name is not special once it is renamed.
    let answer = call(
        Method::GET,
        &proxy.url("/a/d"),
        &[("x-helseid-tenant", "x")],
        "",
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    assert_eq!(a.seen()[3].header("x-helseid-tenant"), Some("x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_body_streams_through_whole_both_ways_and_a_streamed_body_is_sent_once() {
    let (_emulator, _client, _dir, config) = emulator(false).await;
    let a = upstream(Arc::new(|_, seen| {
        if seen.uri.path() == "/download" {
            // 100 MiB made as it is sent.
            let (chunk, _) = generated(0);
            let frames = futures_util::stream::iter(
                (0..100).map(move |i| Ok::<_, Infallible>(Frame::data(chunk(i)))),
            );
            let response = Response::new(StreamBody::new(frames).boxed_unsync());
            return Box::pin(async move { response });
        }
        let status = match seen.uri.path() {
            "/refuse" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        };
        let headers: &[(&str, &str)] = match status {
            StatusCode::UNAUTHORIZED => &[("www-authenticate", "Bearer error=\"invalid_token\"")],
            _ => &[],
        };
        respond(status, headers, "")
    }))
    .await;
    let route_a = format!("/a={}", a.url);
    let proxy = Proxy::start(&["--config", arg(&config), "--route", &route_a], &[]).await;

    let client = Client::builder(TokioExecutor::new()).build_http();
    let send = |path: &str, chunks: u64, content_length: bool| {
        let (chunk, _) = generated(0);
        let frames = futures_util::stream::iter(
            (0..chunks).map(move |i| Ok::<_, Infallible>(Frame::data(chunk(i)))),
        );
        let mut request = Request::post(proxy.url(path));
        if content_length {
            request = request.header(header::CONTENT_LENGTH, chunks << 20);
        }
        let request = request.body(StreamBody::new(frames)).expect("request");
        client.request(request)
    };

    // 100 MiB with a Content-Length, then 3 MiB chunked: both stream (neither is read
    // whole by the proxy), and each arrives whole.
    let (_, expected_100) = generated(100);
    let response = send("/a/big", 100, true).await.expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, expected_3) = generated(3);
    let response = send("/a/chunked", 3, false)
        .await
        .expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::OK);
    let seen = a.seen();
    assert_eq!(
        (seen[0].length, seen[0].sha256.as_str()),
        (100 << 20, expected_100.as_str())
    );
    assert_eq!(seen[0].header("content-length"), Some("104857600"));
    assert_eq!(
        (seen[1].length, seen[1].sha256.as_str()),
        (3 << 20, expected_3.as_str())
    );
    assert!(
        seen[0]
            .header("authorization")
            .is_some_and(|v| v.starts_with("Bearer "))
    );

    // A streamed body cannot be sent again: its 401 comes back as it is.
    let response = send("/a/refuse", 2, true).await.expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(a.seen().len(), 3, "sent once");
    drop(response.into_body().collect().await);

    // And the other way: 100 MiB from the upstream arrive whole, read frame by frame.
    let response = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(
            Request::get(proxy.url("/a/download"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("the proxy answers");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body arrives").into_data() {
            digest.update(&data);
            length += data.len() as u64;
        }
    }
    assert_eq!(
        (length, hex(digest.finish().as_ref())),
        (100 << 20, expected_100)
    );

    // 200 MiB went through; the proxy never held more than a fraction of one.
    #[cfg(target_os = "linux")]
    {
        let pid = proxy.child.as_ref().expect("running").id();
        let peak = peak_memory(pid);
        assert!(peak < 48 << 20, "the proxy's peak memory: {peak} bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_request_in_flight_finish_then_the_proxy_exits_0() {
    let (_emulator, _client, _dir, config) = emulator(false).await;
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let a = upstream(Arc::new(move |_, _| {
        let arrived = arrived_tx.clone();
        let release = held.clone();
        Box::pin(async move {
            let released = release.notified();
            let _ = arrived.send(());
            released.await;
            Response::new(Full::new(Bytes::from_static(b"finished after SIGTERM")).boxed_unsync())
        })
    }))
    .await;
    let route_a = format!("/a={}", a.url);
    let mut proxy = Proxy::start(&["--config", arg(&config), "--route", &route_a], &[]).await;

    let url = proxy.url("/a/slow");
    let in_flight = tokio::spawn(async move { get(&url).await });
    arrived
        .recv()
        .await
        .expect("the request reaches the upstream");

    let pid = proxy.child.as_ref().expect("running").id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Once the proxy says it stops, it accepts no new connection.
    proxy.wait_for_line("proxy stopping").await;
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "no longer listening"
    );

    release.notify_one();
    let (status, _, body) = in_flight.await.expect("join");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "finished after SIGTERM");
    let exit = proxy.exit_status().await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_an_idle_proxy_with_0_and_a_taken_port_fails_with_1() {
    let (_emulator, _client, _dir, config) = emulator(false).await;
    let route = "/a=https://a.test";
    let mut proxy = Proxy::start(&["--config", arg(&config), "--route", route], &[]).await;
    let pid = proxy.child.as_ref().expect("running").id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    proxy.wait_for_line("proxy stopped").await;
    assert_eq!(proxy.exit_status().await.code(), Some(0));

    // Another process has the port: one line saying so, exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            &addr,
            "--config",
            arg(&config),
            "--route",
            route,
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: cannot listen on {addr}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_listen_needs_allow_remote_and_then_warns() {
    let output = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            "0.0.0.0:0",
            "--route",
            "/a=https://a.test",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --listen 0.0.0.0:0 ") && stderr.contains("--allow-remote"),
        "{stderr}"
    );

    // With --allow-remote (here from the environment) it listens, and warns. No
    // --config: the embedded emulator, its routes.
    let mut proxy = Proxy::start(
        &[],
        &[
            ("HELSEID_PROXY_LISTEN", "0.0.0.0:0"),
            ("HELSEID_PROXY_ALLOW_REMOTE", "true"),
        ],
    )
    .await;
    assert!(proxy.addr.ip().is_unspecified());
    let lines = proxy.wait_for_line("warning").await;
    let warning = lines.last().expect("a line");
    assert!(
        warning.contains("anyone who reaches this port"),
        "{warning}"
    );
    assert!(lines.iter().any(|l| l.contains("/cpe -> ")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/cpapi -> ") && l.contains("DPoP")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_config_the_embedded_emulators_cpe_and_cp_api_v2_answer_at_once() {
    let proxy = Proxy::start(&[], &[]).await;
    let (status, _, body) = get(&proxy.url("/cpe/CommunicationPartyEvents")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let events = json_of(&body);
    assert!(
        events["CommunicationParties"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{events}"
    );
    let (status, _, body) =
        get(&proxy.url("/cpapi/api/v1/event?fromSequenceNumber=1&maxEvents=3")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["results"].as_array().map(Vec::len), Some(3));
    assert_eq!(get(&proxy.url("/healthz")).await.0, StatusCode::OK);
}

#[test]
fn bad_flags_and_bad_routes_exit_2_with_one_line_naming_the_flag() {
    for (args, env, flag, says) in [
        (&["--route", "/x"][..], &[][..], "--route", "PREFIX=URL"),
        (
            &["--route", "/x=not a url"],
            &[],
            "--route",
            "not an http(s) URL",
        ),
        (
            &["--route", "/x=https://a.test,gzip"],
            &[],
            "--route",
            "unknown route option `gzip`",
        ),
        (
            &["--route", "/x=http://api.example.no"],
            &[],
            "--route",
            "https",
        ),
        (
            &["--route", "x=https://a.test"],
            &[],
            "--route",
            "starts with /",
        ),
        (
            &[
                "--route",
                "/x=https://a.test",
                "--route",
                "/x/=https://b.test",
            ],
            &[],
            "--route",
            "twice",
        ),
        (&["--listen", "nowhere"], &[], "--listen", ""),
        (
            &["--tenant-header", "bad header"],
            &[],
            "--tenant-header",
            "header name",
        ),
        (&["--max-replay-body", "lots"], &[], "--max-replay-body", ""),
        (
            &["--config", "client.json"],
            &[],
            "--route",
            "at least one route",
        ),
        (
            &[],
            &[("HELSEID_PROXY_ROUTES", "/x")],
            "--route",
            "PREFIX=URL",
        ),
    ] as [(&[&str], &[(&str, &str)], &str, &str); 11]
    {
        let output = Command::new(BIN)
            .arg("proxy")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(flag) && first.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_outcome_and_status_with_the_librarys_on_get_metrics() {
    let (_emulator, _client, _dir, config) = emulator(false).await;
    let a = ok_upstream().await;
    let route_a = format!("/a={}", a.url);
    let proxy = Proxy::start(&["--config", arg(&config), "--route", &route_a], &[]).await;
    for _ in 0..2 {
        assert_eq!(get(&proxy.url("/a/x")).await.0, StatusCode::OK);
    }
    assert_eq!(get(&proxy.url("/nowhere")).await.0, StatusCode::NOT_FOUND);
    let bad_tenant = call(
        Method::GET,
        &proxy.url("/a/x"),
        &[("x-helseid-tenant", "1")],
        "",
    )
    .await;
    assert_eq!(bad_tenant.0, StatusCode::BAD_REQUEST);
    assert_eq!(get(&proxy.url("/healthz")).await.0, StatusCode::OK);

    let (status, headers, body) = get(&proxy.url("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{headers:?}"
    );
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let requests = "helseid_proxy_requests_total";
    for (labels, count) in [
        (
            &[
                ("http_route", "/a"),
                ("outcome", "forwarded"),
                ("http_response_status_code", "200"),
            ][..],
            2.0,
        ),
        (
            &[
                ("outcome", "refused"),
                ("http_response_status_code", "404"),
                ("error_type", "no-route"),
            ],
            1.0,
        ),
        (
            &[
                ("http_route", "/a"),
                ("outcome", "refused"),
                ("http_response_status_code", "400"),
                ("error_type", "bad-tenant-header"),
            ],
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&text, requests, labels),
            Some(count),
            "{labels:?}\n{text}"
        );
    }
    // /healthz and /metrics are not counted.
    assert_eq!(
        text.matches("helseid_proxy_requests_total{").count(),
        3,
        "{text}"
    );
    let duration = "helseid_proxy_upstream_duration_seconds";
    assert_eq!(
        sample(&text, &format!("{duration}_count"), &[("http_route", "/a")]),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("{duration}_bucket"),
            &[("http_route", "/a"), ("le", "+Inf")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains(&format!("# TYPE {duration} histogram")),
        "{text}"
    );
    // The library's, from the same provider: the token request made at start.
    assert!(
        text.lines()
            .any(|l| l.starts_with("helseid_token_requests_total{")
                && l.contains("outcome=\"success\"")),
        "{text}"
    );

    // /metrics cannot be a route's prefix then.
    let output = Command::new(BIN)
        .args(["proxy", "--route", "/metrics=https://a.test"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--route"));
}
