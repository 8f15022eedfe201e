//! The layer against a failing token endpoint, with the emulator's fault injection over
//! real HTTP on 127.0.0.1: in every fault mode, while a valid token is cached, no request
//! fails (the background refresh meets the fault instead); once the token has expired,
//! every request fails with a typed error (the endpoint timeout bounds a hang); once the
//! endpoint answers again, requests succeed.
//!
//! Time is tokio's, paused while the cached token ages and the faults act, so that no
//! test waits for a real clock and none depends on how fast the machine is: a hung
//! request ends at the endpoint timeout because paused time jumps to it. Durations are
//! never asserted.

#[path = "support/capture.rs"]
mod capture;

use std::time::Duration;

use capture::Capture;

use bytes::Bytes;
use helseid::Error;
use helseid::auth::HelseIdLayer;
use helseid::cache::{CacheSettings, TokenCache};
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::error::BoxError;
use helseid_emulator::{CPAPI_SCOPE, Emulator, Fault, FaultTarget};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

const CPE_SCOPE: &str = "nhn:cp-api/access";
const CLIENT: &str = "faults-client";

/// The emulator's token lifetime (its default).
const LIFETIME: Duration = Duration::from_secs(3600);
/// The background refresh starts this long before the token stops being used (at most a
/// quarter of the lifetime): long, so that the paused clock's jumps to the endpoint
/// timeout while the faults act cannot run the token out.
const REFRESH_WINDOW: Duration = Duration::from_secs(900);
/// The endpoint timeout, and the fetch timeout: long enough that no real request can
/// reach it on a slow machine; paused time jumps to it when nothing else can happen.
const TIMEOUT: Duration = Duration::from_secs(30);

type Api = BoxCloneService<Request<Full<Bytes>>, http::Response<hyper::body::Incoming>, BoxError>;

/// Which API the layer calls, with which kind of token.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// CPE with Bearer tokens.
    Bearer,
    /// The CommunicationParty API v2 with DPoP-bound tokens.
    Dpop,
}

struct Rig {
    emulator: Emulator,
    api: Api,
    url: String,
    cache: TokenCache,
}

async fn rig(kind: Kind) -> Rig {
    let emulator = Emulator::builder()
        .test_client(CLIENT, [CPE_SCOPE, CPAPI_SCOPE])
        .start()
        .await
        .expect("emulator");
    let (scope, url) = match kind {
        Kind::Bearer => (
            CPE_SCOPE,
            format!("{}/CommunicationPartyEvents", emulator.cpe_base_url()),
        ),
        Kind::Dpop => (
            CPAPI_SCOPE,
            format!("{}/api/v1/event/latest", emulator.cpapi_base_url()),
        ),
    };
    let config = emulator.client_config(CLIENT).expect("config");
    let endpoint = TokenEndpoint::builder(config)
        .timeout(TIMEOUT)
        .build()
        .expect("endpoint");
    let mut settings = CacheSettings::default();
    settings.refresh_window = REFRESH_WINDOW;
    settings.fetch_timeout = TIMEOUT;
    let cache = TokenCache::with_settings(settings);
    let mut layer = HelseIdLayer::builder(endpoint)
        .scopes([scope])
        .cache(cache.clone());
    if let Kind::Dpop = kind {
        layer = layer.dpop(DpopKey::generate().expect("DPoP key"));
    }
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let api = ServiceBuilder::new()
        .layer(layer.build())
        .service(http)
        .boxed_clone();
    Rig {
        emulator,
        api,
        url,
        cache,
    }
}

impl Rig {
    /// One API call through the layer: the status, or the layer's error.
    async fn call(&self) -> Result<StatusCode, BoxError> {
        let request = Request::get(&self.url)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = self.api.clone().oneshot(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// The crate's error behind a layer error, after any back-off: the failure itself.
fn failure(error: &BoxError) -> &Error {
    let error = error
        .downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a helseid::Error: {error:?}"));
    match error {
        Error::BackingOff { last, .. } => last.as_ref(),
        other => other,
    }
}

/// Every rendering of `error` and its sources: no control character, no JWT.
fn assert_shown_safely(error: &BoxError) {
    let mut shown = format!("{error:?}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = source {
        shown.push_str(&e.to_string());
        source = e.source();
    }
    assert!(!shown.chars().any(char::is_control), "{shown}");
    assert!(!shown.contains("eyJ"), "a JWT in an error: {shown}");
}

/// The whole story for one fault of the token endpoint: a token is cached; the fault is
/// switched on; requests in the refresh window all succeed; after expiry every request
/// fails, with an error `expected` accepts; the fault is cleared; requests succeed.
async fn survives(kind: Kind, fault: Fault, expected: impl Fn(&Error) -> bool) {
    // Every log line at every level, the emulator's included, checked at the end.
    let logs = Capture::default();
    let _capture = logs.install();
    let rig = rig(kind).await;
    assert_eq!(rig.call().await.expect("first call"), StatusCode::OK);
    assert_eq!(rig.emulator.tokens_issued(), 1);

    rig.emulator
        .faults()
        .token_endpoint(fault.clone())
        .expect("fault");
    tokio::time::pause();
    // Into the refresh window: the cached token is still used, and refreshed behind it.
    tokio::time::advance(LIFETIME - REFRESH_WINDOW).await;
    let mut failed = 0;
    for _ in 0..5 {
        match rig.call().await {
            Ok(StatusCode::OK) => {}
            other => {
                failed += 1;
                eprintln!("{fault:?}: a request with a cached token: {other:?}");
            }
        }
    }
    assert_eq!(
        failed, 0,
        "{fault:?}: failed requests while a token was cached"
    );
    assert!(
        rig.cache.stats().refreshes >= 1,
        "{fault:?}: no background refresh"
    );

    // Past the token's expiry: typed errors, the endpoint's timeout bounding a hang.
    tokio::time::advance(REFRESH_WINDOW).await;
    for _ in 0..3 {
        let error = rig.call().await.expect_err("no token to send");
        assert_shown_safely(&error);
        let failure = failure(&error);
        assert!(expected(failure), "{fault:?}: {failure:?}");
    }
    assert!(rig.emulator.faults().injected(FaultTarget::TokenEndpoint) >= 1);
    // (A delayed or mistyped answer may carry a token the emulator counts as issued.)
    let issued = rig.emulator.tokens_issued();

    // HelseID answers again: past any back-off, the next request gets a new token.
    rig.emulator.faults().clear();
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
    assert_eq!(rig.call().await.expect("recovered"), StatusCode::OK);
    assert!(rig.emulator.tokens_issued() > issued, "{fault:?}");
    let logs = logs.text();
    assert!(
        logs.contains("token fetch failed"),
        "{fault:?}: the log was captured"
    );
    for line in logs.lines() {
        assert!(
            !line.chars().any(char::is_control),
            "{fault:?}: a raw control character in the log: {line:?}"
        );
        // Assertions, access tokens and proofs are JWTs: none reaches a log line.
        assert!(
            !line.contains("eyJ"),
            "{fault:?}: a JWT in the log: {line:?}"
        );
    }
}

fn invalid_response(status: u16) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::InvalidResponse { status: s, .. } if s.as_u16() == status)
}

fn timeout(e: &Error) -> bool {
    matches!(e, Error::Timeout { after, .. } if *after == TIMEOUT)
}

fn transport(e: &Error) -> bool {
    matches!(e, Error::Transport { .. })
}

#[tokio::test]
async fn status_500() {
    survives(Kind::Bearer, Fault::status(500), invalid_response(500)).await;
}

#[tokio::test]
async fn status_503_with_retry_after() {
    survives(
        Kind::Bearer,
        Fault::retry_after(503, "30"),
        invalid_response(503),
    )
    .await;
}

#[tokio::test]
async fn status_429_with_an_http_date() {
    survives(
        Kind::Bearer,
        Fault::retry_after(429, "Wed, 21 Oct 2026 07:28:00 GMT"),
        invalid_response(429),
    )
    .await;
}

#[tokio::test]
async fn hang() {
    survives(Kind::Bearer, Fault::Hang, timeout).await;
}

#[tokio::test]
async fn delay_past_the_timeout() {
    survives(
        Kind::Bearer,
        Fault::Delay(Duration::from_secs(3600)),
        timeout,
    )
    .await;
}

#[tokio::test]
async fn garbage() {
    survives(Kind::Bearer, Fault::Garbage, invalid_response(200)).await;
}

#[tokio::test]
async fn truncated() {
    survives(Kind::Bearer, Fault::Truncated, transport).await;
}

#[tokio::test]
async fn connection_closed() {
    survives(Kind::Bearer, Fault::Close, transport).await;
}

#[tokio::test]
async fn huge() {
    survives(
        Kind::Bearer,
        Fault::Huge {
            bytes: 4 * 1024 * 1024,
        },
        |e| matches!(e, Error::InvalidResponse { reason, .. } if reason.contains("larger than")),
    )
    .await;
}

#[tokio::test]
async fn a_bearer_token_for_a_dpop_request() {
    survives(Kind::Dpop, Fault::WrongTokenType, invalid_response(200)).await;
}

#[tokio::test]
async fn a_dpop_token_for_a_bearer_request() {
    survives(Kind::Bearer, Fault::WrongTokenType, invalid_response(200)).await;
}

#[tokio::test]
async fn dpop_layer_hang_and_close() {
    survives(Kind::Dpop, Fault::Hang, timeout).await;
    survives(Kind::Dpop, Fault::Close, transport).await;
}
