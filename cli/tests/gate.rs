//! `helseid gate`, the built binary, over real sockets on 127.0.0.1: the emulator as
//! the issuer, and an upstream started here that records the headers it got.

mod sidecar;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
#[cfg(feature = "metrics")]
use sidecar::sample;
use sidecar::{generated, hex, peak_memory};
use tower::{ServiceBuilder, ServiceExt};

use helseid_emulator::Emulator;

const BIN: &str = env!("CARGO_BIN_EXE_helseid");
const SCOPE: &str = "nhn:cp-api/access";
const AUD: &str = "nhn:cp-api";
const PID: &str = "13116900216";

// ---------------------------------------------------------------------------------------
// The gate process

/// `helseid gate`, running; killed when the test ends.
struct Gate {
    child: Option<Child>,
    addr: SocketAddr,
    /// The stderr lines up to the listening line.
    before: Vec<String>,
    /// Its stderr, line by line, after the listening line.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Gate {
    /// Starts `helseid gate --listen 127.0.0.1:0` with `args`, and waits for the address
    /// it prints.
    async fn start(args: &[&str]) -> Gate {
        let mut command = Command::new(BIN);
        command.arg("gate");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("helseid gate starts");
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
        // Killed on drop, however the wait below ends.
        let mut gate = Gate {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            before: Vec::new(),
            lines: tokio::sync::mpsc::unbounded_channel().1,
        };
        let marker = "helseid: gate listening on http://";
        loop {
            let line = lines.recv().await.unwrap_or_else(|| {
                panic!(
                    "the gate prints its address before anything fails: {:#?}",
                    gate.before
                )
            });
            if let Some(addr) = line.strip_prefix(marker) {
                gate.addr = addr.parse().expect("an address");
                // The thread above keeps reading the pipe, so the gate never blocks on
                // stderr; the lines wait here until a test reads them.
                gate.lines = lines;
                return gate;
            }
            gate.before.push(line);
        }
    }

    /// With the emulator as the issuer, the gate's audience, the upstream, and `args`.
    async fn with(emulator: &Emulator, upstream: &Upstream, args: &[&str]) -> Gate {
        let mut all = vec![
            "--issuer",
            emulator.issuer(),
            "--audience",
            AUD,
            "--upstream",
            &upstream.url,
        ];
        all.extend_from_slice(args);
        Gate::start(&all).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
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

    /// Waits (off the runtime's threads) for the process to end.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("the gate ends")
    }
}

/// Runs `helseid gate` with `args`, expecting it to fail at once: its status and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(BIN)
        .arg("gate")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("helseid gate runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// The upstream and the caller

/// What an upstream answers with: bytes, or a body made as it is sent.
type UpstreamBody = UnsyncBoxBody<Bytes, Infallible>;
type Answered = Pin<Box<dyn Future<Output = Response<UpstreamBody>> + Send>>;
/// How an upstream answers a request (whose headers it has recorded).
type Answer = Arc<dyn Fn(Request<Incoming>) -> Answered + Send + Sync>;

/// An upstream that records the path, query and headers of each request.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    uris: Arc<Mutex<Vec<Uri>>>,
}

impl Upstream {
    /// One that answers 200 `upstream` at once.
    async fn start() -> Upstream {
        Upstream::serving(Arc::new(|_| {
            Box::pin(async {
                Response::new(Full::new(Bytes::from_static(b"upstream")).boxed_unsync())
            })
        }))
        .await
    }

    /// One that answers with `answer`.
    async fn serving(answer: Answer) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let uris = Arc::new(Mutex::new(Vec::new()));
        let (record, record_uri) = (seen.clone(), uris.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, record_uri) = (record.clone(), record_uri.clone());
                let answer = answer.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    record.lock().expect("lock").push(request.headers().clone());
                    record_uri.lock().expect("lock").push(request.uri().clone());
                    let answered = answer(request);
                    async move { Ok::<_, Infallible>(answered.await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Upstream { url, seen, uris }
    }

    fn uris(&self) -> Vec<Uri> {
        self.uris.lock().expect("lock").clone()
    }

    fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().expect("lock").clone()
    }

    /// The headers of the only request so far.
    fn only(&self) -> HeaderMap {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "one request reached the upstream");
        seen.into_iter().next().expect("one")
    }
}

/// Sends `GET url` with `headers`: the status, headers and body.
async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn emulator() -> Emulator {
    Emulator::builder()
        .test_client("epj", [SCOPE])
        .start()
        .await
        .expect("emulator")
}

/// A Bearer token the emulator signs, with every claim the gate forwards.
fn signed_token(emulator: &Emulator, scope: &str) -> String {
    let now = now();
    let claims = json!({
        "iss": emulator.issuer(),
        "aud": AUD,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "client_id": "epj",
        "scope": [scope],
        "helseid://claims/client/client_name": "EPJ",
        "helseid://claims/client/claims/orgnr_parent": "999999999",
        "helseid://claims/client/claims/orgnr_child": "888888888",
        "helseid://claims/client/claims/orgnr_supplier": "777777777",
        "helseid://claims/identity/pid": PID,
        "helseid://claims/identity/security_level": "4",
        "helseid://claims/hpr/hpr_number": "565501872",
        "act": {"client_id": "sfm"},
    });
    emulator.sign_access_token(&claims).expect("token")
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn a_bearer_token_reaches_the_upstream_with_the_claims_and_no_forged_header() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let gate = Gate::with(
        &emulator,
        &upstream,
        &["--dpop", "allowed", "--scope", SCOPE],
    )
    .await;
    let token = signed_token(&emulator, SCOPE);
    let bearer = format!("Bearer {token}");
    let (status, _, body) = get(
        &gate.url("/api/things?x=1"),
        &[
            ("authorization", &bearer),
            ("X-HelseID-Client-Id", "forged"),
            ("x-helseid-PID", "forged"),
            ("X-HELSEID-ACT-CLIENT-ID", "forged"),
            ("X-HelseId-Anything", "forged"),
            ("accept", "text/plain"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"upstream");
    assert_eq!(upstream.uris()[0], "/api/things?x=1");
    let seen = upstream.only();
    for (name, expected) in [
        ("x-helseid-client-id", "epj"),
        ("x-helseid-client-name", "EPJ"),
        ("x-helseid-orgnr-parent", "999999999"),
        ("x-helseid-orgnr-child", "888888888"),
        ("x-helseid-orgnr-supplier", "777777777"),
        ("x-helseid-scopes", SCOPE),
        ("x-helseid-hpr-number", "565501872"),
        ("x-helseid-security-level", "4"),
        ("x-helseid-act-client-id", "sfm"),
        ("accept", "text/plain"),
    ] {
        assert_eq!(value(&seen, name), Some(expected), "{name}: {seen:?}");
        assert_eq!(seen.get_all(name).iter().count(), 1, "{name}");
    }
    assert!(seen.get("x-helseid-pid").is_none(), "{seen:?}");
    assert!(seen.get("x-helseid-anything").is_none(), "{seen:?}");
    assert!(seen.get("authorization").is_none(), "{seen:?}");

    // The emulator's own client-credentials token passes as well.
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let token = endpoint.client_credentials().await.expect("token");
    let bearer = format!("Bearer {}", token.secret());
    let (status, _, _) = get(&gate.url("/"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.seen();
    assert_eq!(value(&seen[1], "x-helseid-client-id"), Some("epj"));
}

#[tokio::test]
async fn the_token_and_the_pid_go_on_only_when_asked_for() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let gate = Gate::with(
        &emulator,
        &upstream,
        &[
            "--dpop",
            "allowed",
            "--forward-token",
            "--forward-personal-data",
        ],
    )
    .await;
    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));
    let (status, _, _) = get(
        &gate.url("/"),
        &[("authorization", &bearer), ("X-HelseID-Pid", "forged")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = upstream.only();
    assert_eq!(value(&seen, "authorization"), Some(bearer.as_str()));
    assert_eq!(value(&seen, "x-helseid-pid"), Some(PID));
    assert_eq!(seen.get_all("x-helseid-pid").iter().count(), 1);
}

#[tokio::test]
async fn a_dpop_request_passes_a_gate_that_requires_dpop_and_a_bearer_one_does_not() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let gate = Gate::with(&emulator, &upstream, &["--dpop", "required"]).await;
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let client = ServiceBuilder::new()
        .layer(
            HelseIdLayer::builder(endpoint)
                .dpop(DpopKey::generate().expect("key"))
                .build(),
        )
        .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
    for _ in 0..2 {
        let request = Request::post(gate.url("/messages?page=2"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request");
        let response = client.clone().oneshot(request).await.expect("answer");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(value(&seen[0], "x-helseid-client-id"), Some("epj"));
    assert!(seen[0].get("authorization").is_none());
    assert!(seen[0].get("dpop").is_none());

    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));
    let (status, headers, _) = get(&gate.url("/"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(value(&headers, "www-authenticate").is_some_and(|c| c.starts_with("DPoP")));
    assert_eq!(upstream.seen().len(), 2);
}

#[tokio::test]
async fn refusals_are_the_gates_own_and_the_upstream_sees_none() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let gate = Gate::with(
        &emulator,
        &upstream,
        &["--dpop", "allowed", "--scope", SCOPE],
    )
    .await;

    // No token: 401 with a challenge.
    let (status, headers, _) = get(&gate.url("/"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect();
    assert!(!challenges.is_empty());
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );

    // A bad token: 401 invalid_token.
    let (status, headers, _) = get(&gate.url("/"), &[("authorization", "Bearer a.b.c")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<&str> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.contains("error=\"invalid_token\"")),
        "{challenges:?}"
    );

    // A token without the gate's scope: 403 insufficient_scope.
    let bearer = format!("Bearer {}", signed_token(&emulator, "nhn:cp-api/other"));
    let (status, headers, _) = get(&gate.url("/"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = value(&headers, "www-authenticate").expect("a challenge");
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn health_follows_the_keys_and_an_unreachable_upstream_is_a_502_problem() {
    let emulator = emulator().await;
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let upstream = Upstream {
        url: closed.clone(),
        seen: Arc::default(),
        uris: Arc::default(),
    };
    let gate = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let (status, _, body) = get(&gate.url("/healthz"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let health: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["keys"], "loaded");
    // Once the keys are loaded, a polling probe fetches nothing.
    let fetches = health["key_fetches"].as_u64().expect("a count");
    assert!(fetches >= 1, "{health}");
    for _ in 0..3 {
        let (status, _, body) = get(&gate.url("/healthz"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let health: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(health["key_fetches"], fetches, "{health}");
    }

    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));
    let (status, headers, body) = get(&gate.url("/"), &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        value(&headers, "content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(problem["side"], "upstream");
    assert_eq!(problem["status"], 502);

    // An issuer whose keys cannot be fetched: not ready.
    let gate = Gate::start(&[
        "--issuer",
        &closed,
        "--audience",
        AUD,
        "--upstream",
        &closed,
    ])
    .await;
    let (status, _, body) = get(&gate.url("/healthz"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    let health: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(health["keys"], "unavailable", "{health}");
}

#[tokio::test]
async fn without_issuer_the_embedded_emulator_issues_and_the_gate_says_how_to_get_a_token() {
    let upstream = Upstream::start().await;
    let gate = Gate::start(&["--upstream", &upstream.url]).await;
    assert!(
        gate.before
            .iter()
            .any(|line| line.contains("helseid token --config") && line.contains(SCOPE)),
        "{:#?}",
        gate.before
    );
    let (status, _, _) = get(&gate.url("/healthz"), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_has_its_status_and_challenge_and_the_upstream_sees_none() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let allowed = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let disabled = Gate::with(&emulator, &upstream, &["--dpop", "disabled"]).await;
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let key = DpopKey::generate().expect("key");
    let bound = endpoint
        .request(&TokenRequest::client_credentials([SCOPE]).with_dpop(key.clone()))
        .await
        .expect("a DPoP-bound token");
    let bound = bound.secret().to_owned();
    let dpop = format!("DPoP {bound}");
    let url = allowed.url("/things");
    let proof = |url: &str| {
        let uri: Uri = url.parse().expect("uri");
        key.proof(&Method::GET, &uri, Some(&bound))
            .expect("proof")
            .as_str()
            .to_owned()
    };
    let now = now();
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = json!({
            "iss": emulator.issuer(),
            "aud": AUD,
            "exp": now + 300,
            "iat": now,
            "client_id": "epj",
            "scope": [SCOPE],
        });
        change(&mut claims);
        format!(
            "Bearer {}",
            emulator.sign_access_token(&claims).expect("token")
        )
    };
    let expired = claims(&|c| {
        c["exp"] = json!(now - 3600);
        c["iat"] = json!(now - 7200);
    });
    let other_audience = claims(&|c| c["aud"] = json!("someone:else"));
    let other_issuer = claims(&|c| c["iss"] = json!("https://helseid-sts.example"));
    let replayed = proof(&url);
    let (status, _, _) = get(&url, &[("authorization", &dpop), ("dpop", &replayed)]).await;
    assert_eq!(status, StatusCode::OK, "a fresh proof passes");
    assert_eq!(upstream.seen().len(), 1);

    let wrong_url = proof(&format!("{url}/elsewhere"));
    let for_disabled = proof(&disabled.url("/things"));
    let bound_as_bearer = format!("Bearer {bound}");
    let valid = claims(&|_| {});
    // (the gate, the request's headers, status, first challenge's scheme, error code)
    type Case<'a> = (
        &'a Gate,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (&allowed, vec![], StatusCode::UNAUTHORIZED, "DPoP", None),
        (
            &allowed,
            vec![("authorization", "Basic ZXBqOnNlY3JldA==")],
            StatusCode::UNAUTHORIZED,
            "DPoP",
            None,
        ),
        (
            &allowed,
            vec![("authorization", &expired)],
            StatusCode::UNAUTHORIZED,
            "Bearer",
            Some("invalid_token"),
        ),
        (
            &allowed,
            vec![("authorization", &other_audience)],
            StatusCode::UNAUTHORIZED,
            "Bearer",
            Some("invalid_token"),
        ),
        (
            &allowed,
            vec![("authorization", &other_issuer)],
            StatusCode::UNAUTHORIZED,
            "Bearer",
            Some("invalid_token"),
        ),
        (
            &allowed,
            vec![("authorization", &valid), ("authorization", &valid)],
            StatusCode::BAD_REQUEST,
            "DPoP",
            Some("invalid_request"),
        ),
        (
            &allowed,
            vec![("authorization", &bound_as_bearer)],
            StatusCode::UNAUTHORIZED,
            "Bearer",
            Some("invalid_token"),
        ),
        (
            &allowed,
            vec![("authorization", &dpop)],
            StatusCode::UNAUTHORIZED,
            "DPoP",
            Some("invalid_dpop_proof"),
        ),
        (
            &allowed,
            vec![("authorization", &dpop), ("dpop", &wrong_url)],
            StatusCode::UNAUTHORIZED,
            "DPoP",
            Some("invalid_dpop_proof"),
        ),
        (
            &allowed,
            vec![("authorization", &dpop), ("dpop", &replayed)],
            StatusCode::UNAUTHORIZED,
            "DPoP",
            Some("invalid_dpop_proof"),
        ),
        (
            &disabled,
            vec![("authorization", &dpop), ("dpop", &for_disabled)],
            StatusCode::UNAUTHORIZED,
            "Bearer",
            None,
        ),
    ];
    for (i, (gate, headers, status, scheme, error)) in cases.into_iter().enumerate() {
        let (actual, answer, _) = get(&gate.url("/things"), &headers).await;
        assert_eq!(actual, status, "case {i}: {answer:?}");
        let challenges: Vec<&str> = answer
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ASCII"))
            .collect();
        let first = challenges.first().copied().unwrap_or_default();
        assert!(
            first == scheme || first.starts_with(&format!("{scheme} ")),
            "case {i}: {challenges:?}"
        );
        match error {
            Some(code) => assert!(
                first.contains(&format!("error=\"{code}\"")),
                "case {i}: {challenges:?}"
            ),
            None => assert!(
                challenges.iter().all(|c| !c.contains("error=")),
                "case {i}: {challenges:?}"
            ),
        }
    }
    assert_eq!(upstream.seen().len(), 1, "no refused request reached it");

    // The issuer's keys out of reach: 503 with Retry-After and no challenge.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("address"))
    };
    let unreachable = Gate::start(&[
        "--issuer",
        &closed,
        "--audience",
        AUD,
        "--upstream",
        &upstream.url,
        "--dpop",
        "allowed",
    ])
    .await;
    let stranger = format!(
        "Bearer {}",
        emulator
            .sign_access_token(&json!({
                "iss": closed, "aud": AUD, "exp": now + 300, "client_id": "epj"
            }))
            .expect("token")
    );
    let (status, headers, _) = get(&unreachable.url("/"), &[("authorization", &stranger)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(value(&headers, "retry-after").is_some(), "{headers:?}");
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_requests_in_flight_finish_refuses_new_ones_and_the_gate_exits_0() {
    let emulator = emulator().await;
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let held = release.clone();
    let upstream = Upstream::serving(Arc::new(move |_| {
        let arrived = arrived_tx.clone();
        let release = held.clone();
        Box::pin(async move {
            let _ = arrived.send(());
            release.acquire().await.expect("open").forget();
            Response::new(Full::new(Bytes::from_static(b"finished after SIGTERM")).boxed_unsync())
        })
    }))
    .await;
    let mut gate = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));

    // Two requests, each on a connection of its own, held by the upstream.
    let in_flight: Vec<_> = (0..2)
        .map(|i| {
            let url = gate.url(&format!("/slow/{i}"));
            let bearer = bearer.clone();
            tokio::spawn(async move { get(&url, &[("authorization", &bearer)]).await })
        })
        .collect();
    for _ in 0..2 {
        arrived
            .recv()
            .await
            .expect("the request reaches the upstream");
    }

    let killed = Command::new("kill")
        .args(["-TERM", &gate.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Once the gate says it stops, it accepts no new connection.
    let lines = gate.wait_for_line("gate stopping").await;
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("2 open connection")),
        "{lines:#?}"
    );
    assert!(
        tokio::net::TcpStream::connect(gate.addr).await.is_err(),
        "no longer listening"
    );

    release.add_permits(2);
    for request in in_flight {
        let (status, _, body) = request.await.expect("join");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "finished after SIGTERM");
    }
    gate.wait_for_line("gate stopped").await;
    let exit = gate.exit_status().await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// The length and SHA-256 of a body, read frame by frame.
async fn digest_of<B>(mut body: B) -> (u64, String)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body arrives").into_data() {
            digest.update(&data);
            length += data.len() as u64;
        }
    }
    (length, hex(digest.finish().as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_body_streams_through_whole_both_ways_in_bounded_memory() {
    let emulator = emulator().await;
    let upstream = Upstream::serving(Arc::new(|request: Request<Incoming>| {
        Box::pin(async move {
            if request.uri().path() == "/download" {
                // 100 MiB made as it is sent.
                let (chunk, _) = generated(0);
                let frames = futures_util::stream::iter(
                    (0..100).map(move |i| Ok::<_, Infallible>(Frame::data(chunk(i)))),
                );
                return Response::new(StreamBody::new(frames).boxed_unsync());
            }
            // The length and digest of what arrived, in the answer.
            let (length, sha256) = digest_of(request.into_body()).await;
            Response::builder()
                .header("x-length", length)
                .header("x-sha256", sha256)
                .body(Full::new(Bytes::new()).boxed_unsync())
                .expect("response")
        })
    }))
    .await;
    let gate = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));
    let client = Client::builder(TokioExecutor::new()).build_http();

    let (chunk, expected) = generated(100);
    let download_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let frames = futures_util::stream::iter(
        (0..100).map(move |i| Ok::<_, Infallible>(Frame::data(chunk(i)))),
    );
    let request = Request::post(gate.url("/upload"))
        .header(header::AUTHORIZATION, &bearer)
        .header(header::CONTENT_LENGTH, 100u64 << 20)
        .body(StreamBody::new(frames))
        .expect("request");
    let response = client.request(request).await.expect("the gate answers");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(value(headers, "x-length"), Some("104857600"));
    assert_eq!(value(headers, "x-sha256"), Some(expected.as_str()));

    let download = Request::get(gate.url("/download"))
        .header(header::AUTHORIZATION, &bearer)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = download_client
        .request(download)
        .await
        .expect("the gate answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(digest_of(response.into_body()).await, (100 << 20, expected));

    // 200 MiB went through; the gate never held more than a fraction of one.
    #[cfg(target_os = "linux")]
    {
        let peak = peak_memory(gate.pid());
        assert!(peak < 48 << 20, "the gate's peak memory: {peak} bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_listen_needs_allow_remote_and_then_warns() {
    let (code, stderr) = refused(&["--listen", "0.0.0.0:0", "--upstream", "http://127.0.0.1:9"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --listen 0.0.0.0:0 ") && stderr.contains("--allow-remote"),
        "{stderr}"
    );

    let upstream = Upstream::start().await;
    let mut gate = Gate::start(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-remote",
        "--upstream",
        &upstream.url,
    ])
    .await;
    assert!(gate.addr.ip().is_unspecified());
    let lines = gate.wait_for_line("warning").await;
    assert!(
        lines.last().is_some_and(|l| l.contains("not loopback")),
        "{lines:#?}"
    );
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag() {
    let upstream = "http://127.0.0.1:9";
    for (args, flag) in [
        (
            vec!["--listen", "0.0.0.0:0", "--upstream", upstream],
            "--listen",
        ),
        (
            vec!["--upstream", upstream, "--dpop", "sometimes"],
            "--dpop",
        ),
        (vec!["--upstream", "ftp://example.no"], "--upstream"),
        (
            vec![
                "--upstream",
                upstream,
                "--issuer",
                "https://helseid.example",
            ],
            "--audience",
        ),
        (
            vec![
                "--upstream",
                upstream,
                "--issuer",
                "not a url",
                "--audience",
                AUD,
            ],
            "--issuer",
        ),
        (
            vec!["--upstream", upstream, "--public-url", "example.no"],
            "--public-url",
        ),
    ] {
        let (code, stderr) = refused(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        if flag != "--dpop" && flag != "--upstream" {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_outcome_status_and_refusal_on_get_metrics() {
    let emulator = emulator().await;
    let upstream = Upstream::start().await;
    let gate = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let bearer = format!("Bearer {}", signed_token(&emulator, SCOPE));
    assert_eq!(
        get(&gate.url("/a"), &[("authorization", &bearer)]).await.0,
        StatusCode::OK
    );
    assert_eq!(get(&gate.url("/b"), &[]).await.0, StatusCode::UNAUTHORIZED);
    let bad = get(&gate.url("/c"), &[("authorization", "Bearer a.b.c")]).await;
    assert_eq!(bad.0, StatusCode::UNAUTHORIZED);

    // Without a token: the gate's own path, not forwarded.
    let (status, headers, body) = get(&gate.url("/metrics"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        value(&headers, "content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{headers:?}"
    );
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let requests = "helseid_gate_requests_total";
    for (labels, count) in [
        (
            &[
                ("outcome", "forwarded"),
                ("http_response_status_code", "200"),
            ][..],
            1.0,
        ),
        (
            &[
                ("outcome", "refused"),
                ("http_response_status_code", "401"),
                ("error_type", "no_credentials"),
            ],
            1.0,
        ),
        (
            &[
                ("outcome", "refused"),
                ("http_response_status_code", "401"),
                ("error_type", "invalid_token"),
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
    assert_eq!(
        sample(&text, "helseid_gate_upstream_duration_seconds_count", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(upstream.seen().len(), 1, "/metrics is not forwarded");
}
