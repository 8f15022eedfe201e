//! Selvbetjening's client-secret API at the emulator, and keys that expire: over real
//! HTTP on 127.0.0.1, with the library's DPoP stack as the client and raw requests for
//! what a client must never send.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use helseid::selvbetjening::Selvbetjening;
use helseid_emulator::{Emulator, SELVBETJENING_SCOPE};
use http::{StatusCode, header};
use support::TestClient;

async fn emulator_for(client: &TestClient, lifetime: Option<Duration>) -> Emulator {
    let mut registration = client.registration(&[SELVBETJENING_SCOPE, CP_SCOPE]);
    if let Some(lifetime) = lifetime {
        registration = registration.key_expires_in(lifetime);
    }
    Emulator::builder()
        .client(registration)
        .start()
        .await
        .expect("emulator")
}

use support::CP_SCOPE;

fn api(client: &TestClient, emulator: &Emulator) -> Selvbetjening {
    let endpoint =
        helseid::endpoint::TokenEndpoint::new(client.config(emulator.issuer(), &[CP_SCOPE]))
            .expect("endpoint");
    Selvbetjening::new(endpoint, emulator.selvbetjening_base_url()).expect("api")
}

#[tokio::test]
async fn the_expiration_is_read_and_a_new_key_replaces_the_old_one() {
    let client = TestClient::ec("rotating");
    let emulator = emulator_for(&client, Some(Duration::from_secs(20 * 86_400))).await;
    let api = api(&client, &emulator);
    let current = api.key_expiration().await.expect("expiration");
    assert_eq!(
        Some(current.expires_at),
        emulator.client_key_expiration(&client.id)
    );
    assert!((19..=20).contains(&current.days_left()), "{current:?}");

    let next = TestClient::ec("rotating");
    let registered = api
        .register_key(next.key.public_jwk())
        .await
        .expect("registered");
    assert!(registered.days_left() >= 364, "a new key lives a year");
    // From now on the old key is refused and the new one accepted.
    let old = access_token_result(&emulator, &client).await;
    assert!(old.contains("invalid_client"), "{old}");
    let new = access_token_result(&emulator, &next).await;
    assert!(new.contains("access_token"), "{new}");

    // The same key again: 400 problem+json naming the fault.
    let api = self::api(&next, &emulator);
    let err = api
        .register_key(next.key.public_jwk())
        .await
        .expect_err("the current key");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    assert!(err.to_string().contains("current key"), "{err}");
}

/// The token endpoint's answer to `client`'s client credentials request, as text.
async fn access_token_result(emulator: &Emulator, client: &TestClient) -> String {
    let assertion = client.assertion(emulator);
    let (status, body) = support::request_token(emulator, &client.id, &assertion, &[]).await;
    format!("{status} {body}")
}

#[tokio::test]
async fn an_expired_key_is_refused_with_invalid_client() {
    let client = TestClient::ec("expired");
    let emulator = emulator_for(&client, Some(Duration::ZERO)).await;
    let answer = access_token_result(&emulator, &client).await;
    assert!(answer.starts_with("400"), "{answer}");
    assert!(
        answer.contains("invalid_client") && answer.contains("expired at"),
        "{answer}"
    );
}

#[tokio::test]
async fn what_a_client_must_not_send_gets_problem_json() {
    let client = TestClient::ec("strict");
    let emulator = emulator_for(&client, None).await;
    let url = format!("{}/v1/client-secret", emulator.selvbetjening_base_url());
    // No token; then a Bearer token for the scope (not DPoP-bound).
    let (status, body) = support::request_token(
        &emulator,
        &client.id,
        &client.assertion(&emulator),
        &[("scope", SELVBETJENING_SCOPE)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bearer = body["access_token"].as_str().expect("token").to_owned();
    for authorization in [
        None,
        Some(format!("Bearer {bearer}")),
        Some(format!("DPoP {bearer}")),
    ] {
        let (status, headers, body) =
            support::get_with_authorization(&url, authorization.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let challenge = headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // The verifier's challenge (RFC 9449): bare without a DPoP token, with an error
        // for the DPoP scheme (here: no proof); the body a problem either way.
        assert!(challenge.starts_with("DPoP algs="), "{challenge}");
        assert_eq!(
            challenge.contains("error="),
            authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("DPoP")),
            "{challenge}"
        );
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem");
        assert_eq!(problem["status"], 401);
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| !d.contains(&bearer))
        );
    }
}
