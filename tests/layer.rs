//! The tower layer end to end: tokens from the emulator over real HTTP, attached to the
//! requests of a hyper-util client calling an API on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use helseid::assertion::Tenant;
use helseid::auth::HelseIdLayer;
use helseid::endpoint::TokenEndpoint;
use helseid_emulator::Emulator;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use support::TestClient;
use tower::{Service, ServiceBuilder, ServiceExt};

const SCOPE: &str = "nhn:cp-api/access";

struct Setup {
    emulator: Arc<Emulator>,
    endpoint: TokenEndpoint,
}

async fn setup() -> Setup {
    let client = TestClient::ec("layer-client");
    let emulator = Emulator::builder()
        .client(client.registration(&[SCOPE]))
        .start()
        .await
        .expect("emulator");
    Setup {
        endpoint: TokenEndpoint::new(client.config(emulator.issuer(), &[SCOPE])).expect("endpoint"),
        emulator: Arc::new(emulator),
    }
}

/// An API on 127.0.0.1 that accepts only the emulator's valid tokens, and answers with
/// the claims of the token it got.
async fn protected_api(emulator: Arc<Emulator>) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let emulator = emulator.clone();
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_owned();
            match emulator.verify_access_token(&token) {
                Ok(claims) => (
                    StatusCode::OK,
                    [(header::WWW_AUTHENTICATE, "")],
                    claims.to_string(),
                ),
                Err(_) => (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
                    String::new(),
                ),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, calls)
}

/// An inner service that answers with the `Authorization` header it got.
async fn echo_authorization(
    request: Request<()>,
) -> Result<Response<Option<http::HeaderValue>>, std::convert::Infallible> {
    Ok(Response::new(
        request.headers().get(header::AUTHORIZATION).cloned(),
    ))
}

async fn claims_of(response: Response<hyper::body::Incoming>) -> serde_json::Value {
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).expect("claims")
}

#[tokio::test]
async fn a_hyper_client_calls_a_protected_api_with_the_emulators_token() {
    let Setup { emulator, endpoint } = setup().await;
    let (api, _) = protected_api(emulator.clone()).await;
    let layer = HelseIdLayer::new(endpoint);
    let mut client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
    for _ in 0..3 {
        let request = Request::get(format!("{api}/CommunicationPartyEvents"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = client
            .ready()
            .await
            .expect("ready")
            .call(request)
            .await
            .expect("response");
        let claims = claims_of(response).await;
        assert_eq!(claims["client_id"], "layer-client");
        assert_eq!(claims["scope"], serde_json::json!([SCOPE]));
    }
    assert_eq!(emulator.token_requests(), 1, "one token for three calls");
    let stats = layer.cache().stats();
    assert_eq!((stats.fetches, stats.hits), (1, 2), "{stats:?}");
}

#[tokio::test]
async fn a_thousand_concurrent_requests_on_a_cold_cache_make_one_token_request() {
    let Setup { emulator, endpoint } = setup().await;
    let service = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service_fn(echo_authorization);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { service.oneshot(Request::new(())).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        let response = task.await.expect("join").expect("response");
        let auth = response.into_body().expect("authorization header");
        tokens.insert(auth.to_str().expect("ascii").to_owned());
    }
    assert_eq!(tokens.len(), 1, "every request got the same token");
    assert_eq!(emulator.token_requests(), 1, "exactly one token request");
    let token = tokens.into_iter().next().expect("token");
    let claims = emulator
        .verify_access_token(token.strip_prefix("Bearer ").expect("bearer"))
        .expect("a token the emulator signed");
    assert_eq!(claims["client_id"], "layer-client");
}

#[tokio::test]
async fn each_tenant_gets_its_own_token_with_its_organisation() {
    let Setup { emulator, endpoint } = setup().await;
    let (api, _) = protected_api(emulator.clone()).await;
    let client = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
    let tenants = [
        ("911111111:922222222", "911111111", Some("922222222")),
        ("933333333", "933333333", None),
    ];
    for round in 0..2 {
        for (tenant, parent, child) in tenants {
            let mut request = Request::get(format!("{api}/x"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            request
                .extensions_mut()
                .insert(tenant.parse::<Tenant>().expect("tenant"));
            let claims = claims_of(client.clone().oneshot(request).await.expect("response")).await;
            assert_eq!(
                claims["helseid://claims/client/claims/orgnr_parent"], parent,
                "round {round}"
            );
            assert_eq!(
                claims
                    .get("helseid://claims/client/claims/orgnr_child")
                    .and_then(|v| v.as_str()),
                child
            );
        }
    }
    // And without a tenant: the client's own token, without organisation claims.
    let request = Request::get(format!("{api}/x"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let claims = claims_of(client.oneshot(request).await.expect("response")).await;
    assert!(
        claims
            .get("helseid://claims/client/claims/orgnr_parent")
            .is_none()
    );
    assert_eq!(
        emulator.token_requests(),
        3,
        "one token per tenant, cached across rounds"
    );
}

/// An inner service that answers call number `reject` (from 0) with
/// `401 invalid_token`, and echoes the `Authorization` it got otherwise.
fn rejects_call(
    reject: usize,
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(support::authorization(request.headers()));
            if n == reject {
                support::challenge(
                    &mut response,
                    r#"Bearer error="invalid_token", error_description="revoked""#,
                );
            }
            Ok(response)
        }
    })
}

#[tokio::test]
async fn a_401_on_an_accepted_token_makes_one_fresh_fetch_and_one_retry_when_asked() {
    let Setup { emulator, endpoint } = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = HelseIdLayer::builder(endpoint)
        .retry_after_acceptance(true)
        .build();
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(rejects_call(1, calls.clone()));
    let first = service
        .clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("first");
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(emulator.token_requests(), 1);

    // The API now rejects the cached token: evicted, fetched anew, retried once.
    let second = service
        .clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("second");
    assert_eq!(second.status(), StatusCode::OK, "the retry succeeded");
    assert_ne!(first.body(), second.body(), "the retry carried a new token");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two calls for the second request"
    );
    assert_eq!(emulator.token_requests(), 2, "exactly one fresh fetch");

    // The fresh token is the cached one from now on.
    let third = service
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("third");
    assert_eq!(third.body(), second.body());
    assert_eq!(emulator.token_requests(), 2);
}

#[tokio::test]
async fn the_retry_sends_a_new_token_and_the_same_body() {
    let Setup { emulator, endpoint } = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (calls.clone(), bodies.clone());
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        async move {
            let auth = request.headers().get(header::AUTHORIZATION).cloned();
            let body = request
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            seen.lock().expect("lock").push((auth, body));
            let mut response = Response::new(());
            if n == 0 {
                support::challenge(&mut response, r#"Bearer error="invalid_token""#);
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let service = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(inner);
    let request = Request::post("http://api.invalid/x")
        .header("x-trace", "abc")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let response = service.oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK, "the retry succeeded");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one retry");
    assert_eq!(emulator.token_requests(), 2, "exactly one fresh fetch");
    let seen = bodies.lock().expect("lock");
    assert_eq!(seen[0].1, seen[1].1, "the body was replayed");
    assert_eq!(&seen[1].1[..], b"payload");
    assert_ne!(seen[0].0, seen[1].0, "the retry carries the fresh token");
}

#[tokio::test]
async fn a_401_without_invalid_token_or_with_a_streaming_body_is_returned_as_is() {
    let Setup { emulator, endpoint } = setup().await;
    // A 401 that does not say invalid_token: returned, no retry.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(move |_request: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(());
            support::challenge(&mut response, r#"Bearer error="insufficient_scope""#);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let layer = HelseIdLayer::new(endpoint);
    let service = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let response = service
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A streaming body cannot be replayed: the 401 invalid_token is returned.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(
        move |_request: Request<
            http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>,
        >| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut response = Response::new(());
                support::challenge(&mut response, r#"Bearer error="invalid_token""#);
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    );
    let service = ServiceBuilder::new().layer(layer).service(inner);
    let body = Full::new(Bytes::from_static(b"stream"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let response = service.oneshot(Request::new(body)).await.expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "no retry without a replayable body"
    );
    assert_eq!(emulator.token_requests(), 1);
}

#[tokio::test]
async fn an_axum_router_works_as_the_inner_service() {
    let Setup { emulator, endpoint } = setup().await;
    let router = axum::Router::new().route(
        "/whoami",
        axum::routing::get(
            |headers: http::HeaderMap| async move { support::authorization(&headers) },
        ),
    );
    let service = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(router);
    let request = Request::get("/whoami")
        .body(axum::body::Body::empty())
        .expect("request");
    let response = service.oneshot(request).await.expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = std::str::from_utf8(&body).expect("utf-8");
    let token = text.strip_prefix("Bearer ").expect("bearer");
    assert!(emulator.verify_access_token(token).is_ok());
}

#[tokio::test]
async fn errors_reach_the_caller_as_helseid_errors() {
    let Setup { emulator, endpoint } = setup().await;
    drop(emulator); // HelseID is gone: connection refused.
    let service = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service_fn(|_request: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        });
    let err = service
        .oneshot(Request::new(()))
        .await
        .expect_err("no HelseID");
    let err = err.downcast::<helseid::Error>().expect("a helseid::Error");
    assert!(matches!(*err, helseid::Error::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn the_layer_and_cache_never_show_the_token() {
    let Setup { emulator, endpoint } = setup().await;
    let layer = HelseIdLayer::new(endpoint);
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo_authorization);
    let response = service
        .clone()
        .oneshot(Request::new(()))
        .await
        .expect("response");
    let auth = response.into_body().expect("authorization");
    let token = auth
        .to_str()
        .expect("ascii")
        .strip_prefix("Bearer ")
        .expect("bearer")
        .to_owned();
    assert!(emulator.verify_access_token(&token).is_ok());
    for text in [
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{:?}", layer.cache()),
        format!("{auth:?}"),
    ] {
        assert!(!text.contains(&token), "the token leaked into: {text}");
    }
}

#[tokio::test]
async fn long_lived_services_follow_another_clones_401_to_the_new_token_when_retrying_after_acceptance()
 {
    let Setup { emulator, endpoint } = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Call 3 (the fourth) is refused with 401 invalid_token.
    let mut a = ServiceBuilder::new()
        .layer(
            HelseIdLayer::builder(endpoint)
                .retry_after_acceptance(true)
                .build(),
        )
        .service(rejects_call(3, calls.clone()));
    let mut b = a.clone();
    // Each service keeps its own copy of the token from its second call on.
    let first = send_as(&mut a, None).await.into_body();
    assert_eq!(send_as(&mut a, None).await.into_body(), first);
    assert_eq!(send_as(&mut b, None).await.into_body(), first);
    // b's copy is refused: evicted, fetched anew, retried once.
    let refused = send_as(&mut b, None).await;
    assert_eq!(refused.status(), StatusCode::OK, "the retry succeeded");
    let second = refused.into_body();
    assert_ne!(second, first, "the retry carried a new token");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // a never saw the 401, but its copy of the refused token is gone with it.
    assert_eq!(send_as(&mut a, None).await.into_body(), second);
    assert_eq!(send_as(&mut a, None).await.into_body(), second);
    assert_eq!(send_as(&mut b, None).await.into_body(), second);
    assert_eq!(calls.load(Ordering::SeqCst), 8, "no other retry");
    assert_eq!(emulator.token_requests(), 2, "exactly one fresh fetch");
}

/// Sends `request` through `service` once it is ready.
async fn send_request<S, T>(service: &mut S, request: Request<Full<Bytes>>) -> Response<T>
where
    S: Service<Request<Full<Bytes>>, Response = Response<T>>,
    S::Error: std::fmt::Debug,
{
    service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("response")
}

/// Sends an empty request through `service`, for `tenant` when given.
async fn send_as<S>(service: &mut S, tenant: Option<&str>) -> Response<String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    let mut request = Request::new(Full::new(Bytes::new()));
    if let Some(tenant) = tenant {
        request
            .extensions_mut()
            .insert(tenant.parse::<Tenant>().expect("tenant"));
    }
    send_request(service, request).await
}

#[tokio::test]
async fn an_accepted_token_refused_later_is_answered_as_it_is_once_then_replaced() {
    let Setup { emulator, endpoint } = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Call 2 (the third) is refused with 401 invalid_token.
    let mut a = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(rejects_call(2, calls.clone()));
    let mut b = a.clone();
    // The first success accepts the token; from then on requests keep no copy.
    let first = send_as(&mut a, None).await.into_body();
    assert_eq!(send_as(&mut a, None).await.into_body(), first);
    // b's request is refused: no copy to send again, so the 401 comes back as it is.
    let refused = send_as(&mut b, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.into_body(), first, "sent with the accepted token");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no retry");
    assert_eq!(emulator.token_requests(), 1);
    // The refused token is out of use for every clone: a, which never saw the 401,
    // gets a new one, fetched once.
    let second = send_as(&mut a, None).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second = second.into_body();
    assert_ne!(second, first, "a new token");
    assert_eq!(send_as(&mut b, None).await.into_body(), second);
    assert_eq!(send_as(&mut a, None).await.into_body(), second);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    assert_eq!(emulator.token_requests(), 2, "exactly one fresh fetch");
}

#[tokio::test]
async fn a_token_refused_before_it_is_accepted_is_retried_and_so_is_a_tenants() {
    let Setup { emulator, endpoint } = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    // Call 0, the token's first use, is refused (a service whose clock is behind, or
    // that does not know HelseID's new key yet): retried with a new token.
    let mut service = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(rejects_call(0, calls.clone()));
    let own = send_as(&mut service, None).await;
    assert_eq!(own.status(), StatusCode::OK, "the retry succeeded");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(emulator.token_requests(), 2);
    // A tenant's first token is sent once and accepted.
    let tenant = Some("911111111:922222222");
    let first = send_as(&mut service, tenant).await.into_body();
    assert_ne!(first, own.into_body());
    assert_eq!(emulator.token_requests(), 3);
    assert_eq!(send_as(&mut service, tenant).await.into_body(), first);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// An inner service that refuses (`401 invalid_token`) the `Authorization` values in
/// `revoked`, and echoes the value it got otherwise.
fn refuses(
    revoked: Revoked,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let auth = support::authorization(request.headers());
        let refused = revoked.lock().expect("lock").contains(&auth);
        async move {
            let mut response = Response::new(auth);
            if refused {
                support::challenge(&mut response, r#"Bearer error="invalid_token""#);
            }
            Ok(response)
        }
    })
}

/// The `Authorization` values an inner service refuses.
type Revoked = Arc<std::sync::Mutex<Vec<String>>>;

/// `layer` over an inner service that refuses the values put in the returned list.
fn refusing(
    layer: HelseIdLayer,
) -> (
    impl Service<Request<Full<Bytes>>, Response = Response<String>, Error = helseid::error::BoxError>,
    Revoked,
) {
    let revoked = Revoked::default();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(refuses(revoked.clone()));
    (service, revoked)
}

#[tokio::test]
async fn a_tenants_accepted_token_refused_later_is_replaced_for_that_tenant_alone() {
    for retry_after_acceptance in [false, true] {
        let Setup { emulator, endpoint } = setup().await;
        let (mut service, revoked) = refusing(
            HelseIdLayer::builder(endpoint)
                .retry_after_acceptance(retry_after_acceptance)
                .build(),
        );
        let (a, b) = (Some("911111111:922222222"), Some("933333333"));
        let token_a = send_as(&mut service, a).await.into_body();
        let token_b = send_as(&mut service, b).await.into_body();
        let own = send_as(&mut service, None).await.into_body();
        assert_eq!(send_as(&mut service, a).await.into_body(), token_a);
        assert_eq!(emulator.token_requests(), 3);
        revoked.lock().expect("lock").push(token_a.clone());
        let refused = send_as(&mut service, a).await;
        if retry_after_acceptance {
            assert_eq!(refused.status(), StatusCode::OK, "retried with a new token");
            assert_ne!(refused.into_body(), token_a);
        } else {
            assert_eq!(
                refused.status(),
                StatusCode::UNAUTHORIZED,
                "answered as it is"
            );
            let again = send_as(&mut service, a).await;
            assert_eq!(again.status(), StatusCode::OK);
            assert_ne!(again.into_body(), token_a, "a new token");
        }
        assert_eq!(emulator.token_requests(), 4, "one fresh fetch, for a alone");
        assert_eq!(send_as(&mut service, b).await.into_body(), token_b);
        assert_eq!(send_as(&mut service, None).await.into_body(), own);
        assert_eq!(emulator.token_requests(), 4);
    }
}

#[tokio::test]
async fn without_retries_a_refused_token_is_still_taken_out_of_use() {
    let Setup { emulator, endpoint } = setup().await;
    let (mut service, revoked) = refusing(
        HelseIdLayer::builder(endpoint)
            .retry_on_invalid_token(false)
            .build(),
    );
    let first = send_as(&mut service, None).await.into_body();
    revoked.lock().expect("lock").push(first.clone());
    let refused = send_as(&mut service, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "not retried");
    let second = send_as(&mut service, None).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_ne!(second.into_body(), first);
    assert_eq!(emulator.token_requests(), 2);
}

/// The status of a GET of `url` through `client`.
async fn status_of<S, B>(client: &mut S, url: &str) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send_request(client, request).await.status()
}

#[tokio::test]
async fn over_http_the_emulators_api_turning_to_refuse_tokens_is_met_by_policy() {
    for retry_after_acceptance in [false, true] {
        let Setup { emulator, endpoint } = setup().await;
        let url = format!("{}/CommunicationPartyEvents", emulator.cpe_base_url());
        let mut client = ServiceBuilder::new()
            .layer(
                HelseIdLayer::builder(endpoint)
                    .retry_after_acceptance(retry_after_acceptance)
                    .build(),
            )
            .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
        let url = url.as_str();
        assert_eq!(status_of(&mut client, url).await, StatusCode::OK);
        assert_eq!(
            status_of(&mut client, url).await,
            StatusCode::OK,
            "the token accepted"
        );
        emulator
            .faults()
            .cpe(helseid_emulator::Fault::RejectTokens)
            .expect("fault");
        assert_eq!(status_of(&mut client, url).await, StatusCode::UNAUTHORIZED);
        let (sent, tokens) = match retry_after_acceptance {
            // Kept a copy: sent again with a new token (refused too).
            true => (2, 2),
            // No copy: answered as it is.
            false => (1, 1),
        };
        assert_eq!(
            emulator
                .faults()
                .injected(helseid_emulator::FaultTarget::Cpe),
            sent,
            "requests the refusing API got"
        );
        assert_eq!(emulator.token_requests(), tokens);
        emulator.faults().clear();
        assert_eq!(
            status_of(&mut client, url).await,
            StatusCode::OK,
            "a new token"
        );
        assert_eq!(status_of(&mut client, url).await, StatusCode::OK);
        assert_eq!(emulator.token_requests(), 2, "one fresh fetch in all");
    }
}

/// Sends a request for each of `tenants` through `service` and gives back the token each
/// carried (the echo answers with its `Authorization` value).
async fn tokens_of<S>(service: &mut S, tenants: &[Tenant]) -> Vec<String>
where
    S: Service<Request<Full<Bytes>>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    let mut tokens = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let mut request = Request::new(Full::new(Bytes::new()));
        request.extensions_mut().insert(*tenant);
        let response = send_request(service, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        tokens.push(response.into_body());
    }
    tokens
}

#[tokio::test(start_paused = true)]
async fn twelve_hundred_tenants_keep_their_own_tokens_through_the_fronts_copies() {
    use helseid::endpoint::TokenRequest;
    use helseid::token::{AccessToken, TokenType};
    // Enough tenants that most of the front's shards copy their values into a buffer
    // of their own; each token names its tenant and the fetch that made it.
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let source = helseid::cache::fetch_fn("tenants", move |request: TokenRequest| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let tenant = request.tenant().map(|t| {
            let child = t.child().map(|c| c.as_str().to_owned()).unwrap_or_default();
            format!(
                "{}.{child}",
                t.parent()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default()
            )
        });
        std::future::ready(AccessToken::new(
            format!("{}.{n}", tenant.unwrap_or_default()),
            TokenType::Bearer,
            std::time::Duration::from_secs(3600),
        ))
    });
    let mut service = ServiceBuilder::new()
        .layer(HelseIdLayer::builder(source).build())
        .service(tower::service_fn(
            |request: Request<Full<Bytes>>| async move {
                let auth = support::authorization(request.headers());
                Ok::<_, std::convert::Infallible>(Response::new(auth))
            },
        ));
    let tenants: Vec<Tenant> = (0..1_200)
        .map(|i| {
            format!("{}:{}", 100_000_000 + i, 200_000_000 + i)
                .parse()
                .expect("tenant")
        })
        .collect();
    let names = |tenant: &Tenant, token: &str| {
        let parent = tenant.parent().expect("parent");
        let child = tenant.child().expect("child");
        token.starts_with(&format!("Bearer {}.{}.", parent.as_str(), child.as_str()))
    };
    let first = tokens_of(&mut service, &tenants).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1_200);
    for (tenant, token) in tenants.iter().zip(&first) {
        assert!(names(tenant, token), "{tenant:?} got {token}");
    }
    // From the front, twice over: the same tokens, no fetch.
    for _ in 0..2 {
        assert_eq!(tokens_of(&mut service, &tenants).await, first);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1_200);
    // Past their expiry: a new token each, again each its tenant's own.
    tokio::time::advance(std::time::Duration::from_secs(3_700)).await;
    tokio::task::yield_now().await;
    let second = tokens_of(&mut service, &tenants).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2_400);
    for ((tenant, token), old) in tenants.iter().zip(&second).zip(&first) {
        assert!(names(tenant, token), "{tenant:?} got {token}");
        assert_ne!(token, old);
    }
    assert_eq!(tokens_of(&mut service, &tenants).await, second);
    assert_eq!(fetches.load(Ordering::SeqCst), 2_400);
}
