//! A hostile or broken HelseID and API on 127.0.0.1, over real HTTP: no token storm when
//! an API refuses every token, `Retry-After` honoured, a token of the wrong type
//! refused, and nothing a server sends (control characters, the client's own
//! assertion) reaching an error or a log line raw.

#[path = "support/capture.rs"]
mod capture;
mod support;

use capture::Capture;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::cache::{CacheSettings, TokenCache};
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::TestClient;
use tower::{Service, ServiceBuilder, ServiceExt};

const SCOPE: &str = support::CP_SCOPE;

/// What a stub token endpoint answers: status, headers, body. `{assertion}` in the body
/// is replaced by the client assertion the request carried.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
}

/// A token endpoint on 127.0.0.1 that gives `answer` to every request and counts them.
/// Returns its URL and the count.
async fn stub_token_endpoint(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/connect/token",
        axum::routing::post(move |form: axum::extract::Form<HashMap<String, String>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            async move {
                let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                let mut response = Response::new(answer.body.replace("{assertion}", &assertion));
                *response.status_mut() = answer.status;
                for (name, value) in answer.headers {
                    response
                        .headers_mut()
                        .insert(name, value.parse().expect("header value"));
                }
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, count)
}

/// A token endpoint for a test client, sending to the stub at `url` (no discovery).
fn endpoint_at(url: &str) -> TokenEndpoint {
    let client = TestClient::ec("hostile");
    TokenEndpoint::builder(client.config(url, &[SCOPE]))
        .token_endpoint(format!("{url}/connect/token"))
        .build()
        .expect("endpoint")
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

/// The emulator with client `name`, its endpoint, and a cache whose storm guard's
/// interval is far longer than the test: what is checked is the count, not time.
async fn storm_setup(name: &str) -> (helseid_emulator::Emulator, TokenEndpoint, TokenCache) {
    let client = TestClient::ec(name);
    let emulator = support::emulator_with(&client).await;
    let endpoint =
        TokenEndpoint::new(client.config(emulator.issuer(), &[SCOPE])).expect("endpoint");
    let mut settings = CacheSettings::default();
    settings.invalid_token_interval = Duration::from_secs(3600);
    (emulator, endpoint, TokenCache::with_settings(settings))
}

#[tokio::test]
async fn an_api_that_refuses_every_token_gets_one_new_token_not_one_per_request() {
    let (emulator, endpoint, cache) = storm_setup("storm").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let api = tower::service_fn(move |_request: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(());
        support::challenge(
            &mut response,
            r#"Bearer error="invalid_token", error_description="wrong audience""#,
        );
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let layer = HelseIdLayer::builder(endpoint).cache(cache.clone()).build();
    let service = ServiceBuilder::new().layer(layer).service(api);
    for _ in 0..600 {
        let response = service
            .clone()
            .oneshot(Request::new(Full::new(Bytes::from_static(b"x"))))
            .await
            .expect("response");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "returned as it is"
        );
    }
    assert_eq!(
        emulator.token_requests(),
        2,
        "the first token, and one replacement in the interval"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 601, "one retry in all");
    assert_eq!(cache.stats().invalid_token_suppressed, 599);
}

#[tokio::test]
async fn an_api_that_turns_to_refusing_an_accepted_token_gets_one_new_token() {
    let (emulator, endpoint, cache) = storm_setup("storm-after").await;
    // The API accepts the first three calls, then refuses every token.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let api = tower::service_fn(move |_request: Request<Full<Bytes>>| {
        let mut response = Response::new(());
        if counter.fetch_add(1, Ordering::SeqCst) >= 3 {
            support::challenge(&mut response, r#"Bearer error="invalid_token""#);
        }
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let layer = HelseIdLayer::builder(endpoint).cache(cache.clone()).build();
    let mut service = ServiceBuilder::new().layer(layer).service(api);
    for i in 0..303 {
        let response = service
            .ready()
            .await
            .expect("ready")
            .call(Request::new(Full::new(Bytes::from_static(b"x"))))
            .await
            .expect("response");
        let expected = if i < 3 {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(response.status(), expected, "request {i}");
    }
    assert_eq!(
        emulator.token_requests(),
        2,
        "the first token, and one replacement in the interval"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 303, "no request sent twice");
}

#[tokio::test]
async fn retry_after_sets_the_back_off() {
    for (status, retry_after, at_least, at_most) in [
        (StatusCode::TOO_MANY_REQUESTS, "30".to_owned(), 29, 30),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            // An HTTP date two minutes ahead: capped by the back-off maximum (60 s).
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120)),
            50,
            60,
        ),
    ] {
        let answer = Answer {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                ("retry-after", retry_after),
            ],
            body: r#"{"error":"temporarily_unavailable"}"#.into(),
        };
        let (url, requests) = stub_token_endpoint(answer).await;
        let endpoint = endpoint_at(&url);
        let cache = TokenCache::new();
        let request = TokenRequest::client_credentials([SCOPE]);
        let first = cache.get(&endpoint, &request).await.expect_err("refused");
        let asked = first.retry_after().expect("the server's Retry-After");
        assert!(asked > Duration::from_secs(at_least), "{asked:?}");
        // Asked again at once: not sent, backing off for what the server asked.
        let second = cache
            .get(&endpoint, &request)
            .await
            .expect_err("backing off");
        let helseid::Error::BackingOff { retry_in, .. } = &second else {
            panic!("expected a back-off, got {second:?}");
        };
        assert!(
            *retry_in > Duration::from_secs(at_least) && *retry_in <= Duration::from_secs(at_most),
            "{status}: {retry_in:?}"
        );
        assert_eq!(requests.load(Ordering::SeqCst), 1, "{status}: one request");
    }
}

#[tokio::test]
async fn a_token_of_the_wrong_type_is_refused_and_not_cached() {
    let answer = json_answer(
        StatusCode::OK,
        serde_json::json!({"access_token": "eyJ.a.b", "token_type": "DPoP", "expires_in": 3600}),
    );
    let (url, requests) = stub_token_endpoint(answer).await;
    let endpoint = endpoint_at(&url);
    let cache = TokenCache::new();
    let request = TokenRequest::client_credentials([SCOPE]);
    for attempt in 1..=2 {
        let err = cache
            .get(&endpoint, &request)
            .await
            .expect_err("wrong type");
        assert!(
            matches!(err, helseid::Error::InvalidResponse { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("a Bearer token was asked for") && text.contains("`DPoP`"),
            "{text}"
        );
        assert_eq!(
            requests.load(Ordering::SeqCst),
            attempt,
            "nothing was cached"
        );
    }
}

#[tokio::test]
async fn a_servers_text_never_reaches_errors_or_logs_raw_nor_the_assertion() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let answer = json_answer(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "error": "invalid_client",
            "error_description": "bad assertion {assertion}\nERROR forged log line\u{1b}[31m red",
        }),
    );
    let (url, _) = stub_token_endpoint(answer).await;
    let endpoint = endpoint_at(&url);
    let cache = TokenCache::new();
    let request = TokenRequest::client_credentials([SCOPE]);
    let mut rendered = String::new();
    for _ in 0..3 {
        // Failure, failure, then backing off: every rendering of each.
        let err = cache.get(&endpoint, &request).await.expect_err("refused");
        let _ = write!(rendered, "\n{err}\n{err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            let _ = write!(rendered, "\n{e}");
            source = e.source();
        }
    }
    let logs = capture.0.lock().expect("lock").clone();
    assert!(
        logs.contains("token fetch failed"),
        "the log was captured: {logs}"
    );
    for (what, text) in [("errors", &rendered), ("logs", &logs)] {
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "a raw control character in the {what}: {line:?}"
            );
            assert!(
                !line.trim_start().starts_with("ERROR forged"),
                "a forged line in the {what}: {line:?}"
            );
            // The assertion is a JWT (three base64url parts); none reached the text.
            assert!(
                !line.contains("eyJ"),
                "the assertion in the {what}: {line:?}"
            );
        }
        assert!(text.contains("[redacted]"), "the marker in the {what}");
        assert!(
            text.contains(r"\nERROR forged log line\u{1b}[31m"),
            "{what}: {text}"
        );
    }
}

#[tokio::test]
async fn a_server_clock_a_minute_off_is_warned_about_once() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let ahead = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
    let mut answer = json_answer(
        StatusCode::OK,
        serde_json::json!({"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 3600}),
    );
    answer.headers.push(("date", ahead));
    let (url, requests) = stub_token_endpoint(answer).await;
    let endpoint = endpoint_at(&url);
    for _ in 0..3 {
        endpoint
            .request(&TokenRequest::client_credentials([SCOPE]))
            .await
            .expect("a token");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    let logs = capture.0.lock().expect("lock").clone();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("the server's clock is"))
        .collect();
    assert_eq!(warnings.len(), 1, "once: {logs}");
    let skew: i64 = warnings[0]
        .split("skew_seconds=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the skew in seconds");
    assert!((55..=61).contains(&skew), "{}", warnings[0]);
    assert!(
        warnings[0].contains("ahead of this machine's"),
        "{}",
        warnings[0]
    );

    // A server in step: no warning.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let (url, _) = stub_token_endpoint(json_answer(
        StatusCode::OK,
        serde_json::json!({"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 3600}),
    ))
    .await;
    endpoint_at(&url)
        .request(&TokenRequest::client_credentials([SCOPE]))
        .await
        .expect("a token");
    assert!(
        !capture
            .0
            .lock()
            .expect("lock")
            .contains("the server's clock is")
    );
}

#[tokio::test]
async fn a_key_that_expires_soon_is_warned_about_once() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let (url, _) = stub_token_endpoint(json_answer(
        StatusCode::OK,
        serde_json::json!({"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 3600}),
    ))
    .await;
    let client = TestClient::ec("expiring");
    let soon = std::time::SystemTime::now() + Duration::from_secs(3 * 86_400 + 3600);
    let config = || {
        helseid::config::ClientConfig::builder()
            .client_id(&client.id)
            .authority_url(&url)
            .private_jwk(&client.jwk)
            .key_expires_at(soon)
            .build()
            .expect("config")
    };
    let endpoint = TokenEndpoint::builder(config())
        .token_endpoint(format!("{url}/connect/token"))
        .build()
        .expect("endpoint");
    for _ in 0..2 {
        endpoint
            .request(&TokenRequest::client_credentials([SCOPE]))
            .await
            .expect("a token");
    }
    let logs = capture.0.lock().expect("lock").clone();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("the client's key expires soon"))
        .collect();
    assert_eq!(warnings.len(), 1, "once: {logs}");
    assert!(warnings[0].contains("days_left=3"), "{}", warnings[0]);

    // Outside the window: no warning.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    TokenEndpoint::builder(config())
        .token_endpoint(format!("{url}/connect/token"))
        .key_expiry_warning(Duration::from_secs(86_400))
        .build()
        .expect("endpoint")
        .request(&TokenRequest::client_credentials([SCOPE]))
        .await
        .expect("a token");
    assert!(!capture.0.lock().expect("lock").contains("expires soon"));
}
