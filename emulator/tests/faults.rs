//! Fault injection, each fault observed over real HTTP on 127.0.0.1 by a plain
//! hyper-util client: what reaches the wire (status, headers, bytes, a connection closed
//! early or never answered), switched at run time and cleared again.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use helseid_emulator::{CPAPI_SCOPE, Emulator, Error, Fault, FaultTarget};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use support::*;

const CPE_EVENTS: &str = "/CommunicationPartyEvents";
const CPAPI_LATEST: &str = "/api/v1/event/latest";

/// An emulator with one client holding the CPE and the CP API v2 scopes.
async fn emulator() -> (Emulator, TestClient) {
    let client = TestClient::ec("faults-client");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE, CPAPI_SCOPE]))
        .start()
        .await
        .expect("emulator starts");
    (emulator, client)
}

/// Sends `request` with a new hyper-util client (no pooled connection to retry on):
/// the response head, or the client's error.
async fn raw(
    request: Request<Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(request)
        .await
}

/// A client credentials token request for `client` with a fresh assertion.
fn token_request(emulator: &Emulator, client: &TestClient) -> Request<Full<Bytes>> {
    let assertion = client.assertion(emulator);
    let form = form_body(&[
        ("grant_type", "client_credentials"),
        ("client_id", &client.id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
        ("scope", CP_SCOPE),
    ]);
    Request::post(emulator.token_endpoint())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .expect("request")
}

fn get(url: String, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Full::new(Bytes::new())).expect("request")
}

/// Status, headers and the whole body of an answer that arrived complete.
async fn whole(request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let response = raw(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes();
    (parts.status, parts.headers, body)
}

/// Whether hyper says the connection closed before the message was complete.
fn is_incomplete(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled())
        {
            return true;
        }
        source = e.source();
    }
    false
}

#[tokio::test]
async fn a_status_fault_answers_with_its_status_and_retry_after_then_clears() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::retry_after(503, "30"))
        .expect("fault");
    let (status, headers, body) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "30");
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|ct| ct.starts_with("text/plain"))
    );
    assert!(
        String::from_utf8_lossy(&body).contains("HTTP 503"),
        "{body:?}"
    );

    let date = "Wed, 21 Oct 2026 07:28:00 GMT";
    emulator
        .faults()
        .token_endpoint(Fault::retry_after(429, date))
        .expect("fault");
    let (status, headers, _) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], date);

    emulator
        .faults()
        .token_endpoint(Fault::status(500))
        .expect("fault");
    let (status, headers, _) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.get(header::RETRY_AFTER).is_none());

    // Faulted requests are counted, as token requests and as faults.
    assert_eq!(emulator.faults().injected(FaultTarget::TokenEndpoint), 3);
    assert_eq!(emulator.token_requests(), 3);
    assert_eq!(emulator.tokens_issued(), 0);

    emulator.faults().clear();
    assert_eq!(emulator.faults().get(FaultTarget::TokenEndpoint), None);
    let (status, _, body) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(emulator.faults().injected(FaultTarget::TokenEndpoint), 3);
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn discovery_and_the_apis_take_status_faults_of_their_own() {
    let (emulator, client) = emulator().await;
    let token = access_token(&emulator, &client).await;
    emulator
        .faults()
        .discovery(Fault::status(502))
        .expect("fault");
    emulator
        .faults()
        .cpe(Fault::retry_after(429, "7"))
        .expect("fault");
    emulator.faults().cpapi(Fault::status(503)).expect("fault");

    let discovery = format!("{}/.well-known/openid-configuration", emulator.issuer());
    assert_eq!(whole(get(discovery, None)).await.0, StatusCode::BAD_GATEWAY);
    let url = format!("{}{CPE_EVENTS}", emulator.cpe_base_url());
    let (status, headers, _) = whole(get(url, Some(&token))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "7");
    let url = format!("{}{CPAPI_LATEST}", emulator.cpapi_base_url());
    assert_eq!(
        whole(get(url, None)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The token endpoint and the documents without a target are untouched.
    let openapi = format!("{}/openapi.json", emulator.issuer());
    assert_eq!(whole(get(openapi, None)).await.0, StatusCode::OK);
    assert_eq!(
        whole(token_request(&emulator, &client)).await.0,
        StatusCode::OK
    );
    for target in [FaultTarget::Discovery, FaultTarget::Cpe, FaultTarget::Cpapi] {
        assert_eq!(emulator.faults().injected(target), 1, "{target:?}");
    }
    assert_eq!(emulator.faults().injected(FaultTarget::TokenEndpoint), 0);

    emulator.faults().remove(FaultTarget::Cpe);
    let url = format!("{}{CPE_EVENTS}", emulator.cpe_base_url());
    assert_eq!(whole(get(url, Some(&token))).await.0, StatusCode::OK);
    assert!(emulator.faults().get(FaultTarget::Cpapi).is_some());
}

#[tokio::test]
async fn a_hang_never_answers_until_the_fault_is_cleared_then_closes() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::Hang)
        .expect("fault");
    let request = token_request(&emulator, &client);
    let pending = tokio::spawn(raw(request));
    while emulator.faults().injected(FaultTarget::TokenEndpoint) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!pending.is_finished(), "a hung request got an answer");

    emulator.faults().clear();
    let error = pending
        .await
        .expect("task")
        .expect_err("closed without an answer");
    assert!(is_incomplete(&error), "{error:?}");
    // The next request is answered as usual.
    assert_eq!(
        whole(token_request(&emulator, &client)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_hang_does_not_hold_up_shutdown() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::Hang)
        .expect("fault");
    let pending = tokio::spawn(raw(token_request(&emulator, &client)));
    while emulator.faults().injected(FaultTarget::TokenEndpoint) == 0 {
        tokio::task::yield_now().await;
    }
    emulator.shutdown().await;
    let error = pending.await.expect("task").expect_err("no answer");
    assert!(is_incomplete(&error), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_delay_answers_as_usual_once_the_delay_has_passed() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::Delay(Duration::from_secs(3600)))
        .expect("fault");
    let pending = tokio::spawn(whole(token_request(&emulator, &client)));
    while emulator.tokens_issued() == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // The token is issued, and held back: paused time has not moved.
    assert!(!pending.is_finished(), "answered before the delay");
    tokio::time::advance(Duration::from_secs(3600)).await;
    let (status, _, body) = pending.await.expect("task");
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(emulator.token_requests(), 1);
}

#[tokio::test]
async fn garbage_is_neither_json_nor_utf8() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::Garbage)
        .expect("fault");
    let (status, headers, body) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(std::str::from_utf8(&body).is_err());
    assert!(body.contains(&0x1b) && body.contains(&b'\n'), "{body:?}");
}

#[tokio::test]
async fn a_truncated_body_promises_more_than_it_sends_and_the_connection_closes() {
    let (emulator, client) = emulator().await;
    let token = access_token(&emulator, &client).await;
    emulator.faults().cpe(Fault::Truncated).expect("fault");
    let url = format!("{}{CPE_EVENTS}", emulator.cpe_base_url());
    let response = raw(get(url, Some(&token))).await.expect("the head arrives");
    assert_eq!(response.status(), StatusCode::OK);
    let promised: u64 = response.headers()[header::CONTENT_LENGTH]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    let mut body = response.into_body();
    let mut received = Vec::new();
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => received.extend(frame.into_data().unwrap_or_default()),
            Some(Err(e)) => break e,
            None => panic!("the body ended cleanly after {} bytes", received.len()),
        }
    };
    // hyper: the connection closed before `Content-Length` bytes came.
    let eof = std::error::Error::source(&error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(eof, Some(std::io::ErrorKind::UnexpectedEof), "{error:?}");
    assert!(!received.is_empty());
    assert!((received.len() as u64) < promised);
    assert!(received.starts_with(b"{\"access_token\":"), "{received:?}");
}

#[tokio::test]
async fn close_ends_the_connection_without_a_byte() {
    let (emulator, client) = emulator().await;
    for target in [FaultTarget::TokenEndpoint, FaultTarget::Discovery] {
        emulator.faults().set(target, Fault::Close).expect("fault");
    }
    let error = raw(token_request(&emulator, &client))
        .await
        .expect_err("no answer");
    assert!(is_incomplete(&error), "{error:?}");
    let discovery = format!("{}/.well-known/openid-configuration", emulator.issuer());
    let error = raw(get(discovery, None)).await.expect_err("no answer");
    assert!(is_incomplete(&error), "{error:?}");
}

#[tokio::test]
async fn a_huge_body_is_sent_whole() {
    let (emulator, client) = emulator().await;
    let bytes = 5 * 1024 * 1024 + 17;
    emulator
        .faults()
        .token_endpoint(Fault::Huge { bytes })
        .expect("fault");
    let (status, headers, body) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_LENGTH], bytes.to_string().as_str());
    assert_eq!(body.len() as u64, bytes);
    assert!(body.starts_with(b"{\"access_token\":\"aaa"));
}

#[tokio::test]
async fn a_wrong_token_type_swaps_bearer_and_dpop() {
    let (emulator, client) = emulator().await;
    emulator
        .faults()
        .token_endpoint(Fault::WrongTokenType)
        .expect("fault");
    // A Bearer request is told DPoP; the token is an ordinary unbound one.
    let (status, _, body) = whole(token_request(&emulator, &client)).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let claims = emulator
        .verify_access_token(body["access_token"].as_str().expect("token"))
        .expect("a valid token");
    assert!(claims.get("cnf").is_none(), "{claims}");

    // A DPoP request (after the nonce handshake, which passes untouched) is told Bearer.
    let nonce = token_endpoint_nonce(&emulator, &client).await;
    let proof = sign_proof(
        &dpop_key(),
        &proof_claims("POST", &emulator.token_endpoint(), Some(&nonce)),
    );
    let assertion = client.assertion(&emulator);
    let (status, _, body) = request_token_with_proof(
        &emulator,
        &client,
        &assertion,
        Some(&proof),
        &[("scope", CPAPI_SCOPE)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let claims = emulator
        .verify_access_token(body["access_token"].as_str().expect("token"))
        .expect("a valid token");
    assert!(claims["cnf"]["jkt"].is_string(), "still bound: {claims}");
    // Errors pass as they are.
    let (status, body) = request_token(&emulator, "nobody", "x.y.z", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client", "{body}");
}

#[tokio::test]
async fn an_api_that_refuses_every_token_says_invalid_token_in_its_scheme() {
    let (emulator, client) = emulator().await;
    let token = access_token(&emulator, &client).await;
    let url = format!("{}{CPE_EVENTS}", emulator.cpe_base_url());
    assert_eq!(
        whole(get(url.clone(), Some(&token))).await.0,
        StatusCode::OK
    );

    emulator.faults().cpe(Fault::RejectTokens).expect("fault");
    emulator.faults().cpapi(Fault::RejectTokens).expect("fault");
    let (status, headers, _) = whole(get(url.clone(), Some(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().expect("ASCII");
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );

    let key = dpop_key();
    let bound = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    let latest = format!("{}{CPAPI_LATEST}", emulator.cpapi_base_url());
    let proof = sign_proof(&key, &{
        let mut claims = proof_claims("GET", &latest, None);
        claims["ath"] = ath(&bound).into();
        claims
    });
    let (status, headers, _) =
        get_with_proof(&latest, Some(&format!("DPoP {bound}")), Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().expect("ASCII");
    assert!(
        challenge.starts_with("DPoP error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains("algs=\""), "{challenge}");

    emulator.faults().clear();
    assert_eq!(whole(get(url, Some(&token))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_fault_that_cannot_act_at_a_target_is_refused() {
    let (emulator, _) = emulator().await;
    let faults = emulator.faults();
    for (target, fault) in [
        (FaultTarget::Cpe, Fault::WrongTokenType),
        (FaultTarget::Discovery, Fault::WrongTokenType),
        (FaultTarget::TokenEndpoint, Fault::RejectTokens),
        (FaultTarget::Discovery, Fault::RejectTokens),
        (FaultTarget::TokenEndpoint, Fault::retry_after(503, "30\n")),
    ] {
        let error = faults.set(target, fault.clone()).expect_err("refused");
        assert!(
            matches!(
                &error,
                Error::Setting {
                    setting: "fault",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(faults.get(target), None, "{fault:?}");
    }
}
