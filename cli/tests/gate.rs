//! `helseid gate`, the built binary, over real sockets on 127.0.0.1: the emulator as
//! the issuer, and an upstream started here that records the headers it got.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
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
    child: Child,
    addr: SocketAddr,
    /// The stderr lines up to the listening line.
    before: Vec<String>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gate {
    /// Starts `helseid gate --listen 127.0.0.1:0` with `args`, and waits for the address
    /// it prints.
    async fn start(args: &[&str]) -> Gate {
        let mut child = Command::new(BIN)
            .args(["gate", "--listen", "127.0.0.1:0"])
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
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            before: Vec::new(),
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
                // Keeps the pipe read, so the gate never blocks on stderr.
                tokio::spawn(async move { while lines.recv().await.is_some() {} });
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

/// An upstream that answers 200 and records the headers of each request.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let service = hyper::service::service_fn(move |request: Request<_>| {
                    record.lock().expect("lock").push(request.headers().clone());
                    async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"upstream",
                        ))))
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
    };
    let gate = Gate::with(&emulator, &upstream, &["--dpop", "allowed"]).await;
    let (status, _, body) = get(&gate.url("/healthz"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let health: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(health["status"], "ok");

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
