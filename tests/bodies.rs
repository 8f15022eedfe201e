//! Any request body passes through the layer: the bodies of other clients (a `Limited`
//! body, a stream, tonic's boxed body, reqwest's body) are sent by a hyper-util client
//! over real HTTP to an API on 127.0.0.1, with tokens from the emulator. Only the retry
//! after `401 invalid_token` depends on the body: the replayable ones are sent again
//! once, the others are not, and a replay function of the caller's is used when given.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use helseid::auth::{HelseIdLayer, Replay};
use helseid::endpoint::TokenEndpoint;
use helseid::error::BoxError;
use helseid_emulator::Emulator;
use http::{Request, StatusCode, header};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::TestClient;
use tower::{ServiceBuilder, ServiceExt};

const SCOPE: &str = support::CP_SCOPE;

/// What the API saw of each call: the `Authorization` header and the body.
type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// An API on 127.0.0.1 that answers its first call `401 invalid_token` and every later
/// one 200, and records what each call carried.
async fn api_rejecting_the_first_call() -> (String, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let record = record.clone();
        async move {
            let auth = support::authorization(request.headers());
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let first = {
                let mut seen = record.lock().expect("lock");
                seen.push((auth, body));
                seen.len() == 1
            };
            if first {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
                )
            } else {
                (StatusCode::OK, [(header::CONTENT_LOCATION, "/done")])
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/api", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, seen)
}

/// The emulator, and a token endpoint of a client registered there.
async fn emulator() -> (Emulator, TokenEndpoint) {
    let client = TestClient::ec("bodies");
    let emulator = support::emulator_with(&client).await;
    let endpoint =
        TokenEndpoint::new(client.config(emulator.issuer(), &[SCOPE])).expect("endpoint");
    (emulator, endpoint)
}

/// What one request through the layer came to.
struct Outcome {
    status: StatusCode,
    seen: Vec<(String, Bytes)>,
    token_requests: u64,
}

/// Posts `body` through a fresh layer (from `build`) over a hyper-util client to an API
/// that rejects its first call.
async fn post<B>(body: B, build: impl FnOnce(TokenEndpoint) -> HelseIdLayer) -> Outcome
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (emulator, endpoint) = emulator().await;
    let (url, seen) = api_rejecting_the_first_call().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<B>();
    let service = ServiceBuilder::new().layer(build(endpoint)).service(client);
    let request = Request::post(url).body(body).expect("request");
    let response = service.oneshot(request).await.expect("response");
    let seen = seen.lock().expect("lock").clone();
    Outcome {
        status: response.status(),
        seen,
        token_requests: emulator.token_requests(),
    }
}

fn default_layer(endpoint: TokenEndpoint) -> HelseIdLayer {
    HelseIdLayer::new(endpoint)
}

/// The request was sent twice with the same body, the second time with a new token.
fn assert_retried_once(outcome: &Outcome, body: &[u8]) {
    assert_eq!(outcome.status, StatusCode::OK, "the retry succeeded");
    assert_eq!(outcome.seen.len(), 2, "one retry");
    assert_eq!(outcome.token_requests, 2, "one fresh token");
    assert_ne!(outcome.seen[0].0, outcome.seen[1].0, "a new token");
    assert!(outcome.seen[1].0.starts_with("Bearer "));
    for (_, seen) in &outcome.seen {
        assert_eq!(&seen[..], body, "the same body both times");
    }
}

/// The request was sent once and its 401 returned as it is.
fn assert_sent_once(outcome: &Outcome, body: &[u8]) {
    assert_eq!(outcome.status, StatusCode::UNAUTHORIZED, "the 401 as it is");
    assert_eq!(outcome.seen.len(), 1, "no retry");
    assert_eq!(outcome.token_requests, 1, "no second token");
    assert!(outcome.seen[0].0.starts_with("Bearer "), "it had a token");
    assert_eq!(&outcome.seen[0].1[..], body);
}

#[tokio::test]
async fn a_limited_body_is_replayed() {
    let body = Limited::new(Full::new(Bytes::from_static(b"limited")), 1024);
    assert_retried_once(&post(body, default_layer).await, b"limited");
}

fn stream_of(chunks: &'static [&'static [u8]]) -> UnsyncBoxBody<Bytes, BoxError> {
    let frames = futures_util::stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c)))),
    );
    StreamBody::new(frames).boxed_unsync()
}

#[tokio::test]
async fn a_stream_body_is_sent_once() {
    let frames = futures_util::stream::iter([
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"str"))),
        Ok(Frame::data(Bytes::from_static(b"eam"))),
    ]);
    assert_sent_once(
        &post(StreamBody::new(frames), default_layer).await,
        b"stream",
    );
}

#[tokio::test]
async fn a_boxed_body_like_tonics_is_sent_once_unless_empty() {
    // tonic's request body is an `UnsyncBoxBody<Bytes, _>`: a stream of unknown length.
    assert_sent_once(&post(stream_of(&[b"grpc"]), default_layer).await, b"grpc");
    // An empty one is rebuilt empty for the retry.
    let empty: UnsyncBoxBody<Bytes, BoxError> = Full::new(Bytes::new())
        .map_err(BoxError::from)
        .boxed_unsync();
    assert_retried_once(&post(empty, default_layer).await, b"");
}

#[tokio::test]
async fn a_reqwest_body_is_replayed_by_the_callers_function() {
    let bytes: &[u8] = b"from reqwest";
    // Without a replay function for it: sent once.
    let outcome = post(reqwest::Body::from(bytes), default_layer).await;
    assert_sent_once(&outcome, bytes);

    // With one: the function is called, and its copy is what the retry sends.
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let outcome = post(reqwest::Body::from(bytes), move |endpoint| {
        HelseIdLayer::builder(endpoint)
            .replay_body(move |body: &reqwest::Body| {
                *counter.lock().expect("lock") += 1;
                body.as_bytes().map(|b| reqwest::Body::from(b.to_vec()))
            })
            .build()
    })
    .await;
    assert_retried_once(&outcome, bytes);
    assert_eq!(*calls.lock().expect("lock"), 1, "one copy, for the retry");
}

#[tokio::test]
async fn replay_never_switches_the_retry_off() {
    let body = Full::new(Bytes::from_static(b"side effect"));
    let outcome = post(body, |endpoint| {
        HelseIdLayer::builder(endpoint)
            .replay(Replay::never())
            .build()
    })
    .await;
    assert_sent_once(&outcome, b"side effect");
}

#[tokio::test]
async fn builder_and_new_ask_for_the_configurations_scopes() {
    // The client is granted two scopes, its configuration names one, and neither layer
    // is told any: both ask for the configuration's, and get exactly that one.
    let client = TestClient::ec("scopes");
    let emulator = Emulator::builder()
        .client(client.registration(&[SCOPE, "nhn:other-api/access"]))
        .start()
        .await
        .expect("emulator");
    let endpoint =
        TokenEndpoint::new(client.config(emulator.issuer(), &[SCOPE])).expect("endpoint");
    let (url, seen) = api_rejecting_the_first_call().await;
    for layer in [
        HelseIdLayer::new(endpoint.clone()),
        HelseIdLayer::builder(endpoint.clone()).build(),
    ] {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let service = ServiceBuilder::new().layer(layer).service(client);
        let request = Request::get(&url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        service.oneshot(request).await.expect("response");
    }
    let seen = seen.lock().expect("lock").clone();
    let scopes: Vec<serde_json::Value> = seen
        .iter()
        .map(|(auth, _)| {
            let token = auth.strip_prefix("Bearer ").expect("bearer");
            let claims = emulator.verify_access_token(token).expect("valid");
            claims["scope"].clone()
        })
        .collect();
    assert_eq!(seen.len(), 3, "the first layer's request was retried once");
    for scope in &scopes {
        assert_eq!(scope, &serde_json::json!([SCOPE]), "{scopes:?}");
    }
}
