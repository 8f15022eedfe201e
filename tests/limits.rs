//! Answers that never end: a typed client's body is capped after decompression (a gzip
//! bomb fails the call, it does not fill memory), and a Selvbetjening call that gets no
//! answer ends in a timeout. Real servers on 127.0.0.1.
#![cfg(all(feature = "cpapi", feature = "transport"))]

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use axum::response::IntoResponse;
use http::{StatusCode, header};
use serde_json::json;

use helseid::config::ClientConfig;
use helseid::cpapi::{self, Client};
use helseid::key::{Algorithm, PrivateJwk};
use helseid::selvbetjening::Selvbetjening;
use helseid_emulator::{Emulator, SELVBETJENING_SCOPE};
use support::{CP_SCOPE, TestClient};

/// A JSON party whose name is `spaces` spaces, gzip-compressed (a few hundred KB for
/// tens of MB).
fn gzip_party(spaces: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(br#"{"herId": 3, "type": "Person", "amqpTransportStatus": "Enabled", "name": ""#)
        .expect("gzip");
    let chunk = vec![b' '; 1024 * 1024];
    let mut left = spaces;
    while left > 0 {
        let n = left.min(chunk.len());
        encoder.write_all(&chunk[..n]).expect("gzip");
        left -= n;
    }
    encoder.write_all(br#""}"#).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A bare HelseID (discovery and a token endpoint for anyone) and a CP API v2 whose
/// party 3 comes gzip-compressed, `spaces` long; returns the base URL.
async fn serve(spaces: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let issuer = url.clone();
    let body = gzip_party(spaces);
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move {
                axum::Json(json!({
                    "issuer": issuer,
                    "token_endpoint": format!("{issuer}/connect/token"),
                    "dpop_signing_alg_values_supported": ["ES256"],
                }))
            }),
        )
        .route(
            "/connect/token",
            axum::routing::post(|| async {
                axum::Json(
                    json!({ "access_token": "the-token", "token_type": "DPoP", "expires_in": 600 }),
                )
            }),
        )
        .route(
            "/api/v1/communicationparty/{herId}",
            axum::routing::get(move || async move {
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    body,
                )
                    .into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn client(url: &str) -> Client {
    let config = ClientConfig::builder()
        .client_id("c")
        .authority_url(url)
        .scopes([cpapi::SCOPE])
        .private_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("key"))
        .build()
        .expect("config");
    Client::builder(config).build().expect("client")
}

#[tokio::test]
async fn a_gzip_body_that_unpacks_past_the_cap_fails_the_call() {
    let url = serve(cpapi::MAX_BODY + 1024).await;
    let error = client(&url)
        .get_communication_party_by_her_id(3)
        .await
        .expect_err("past the cap");
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        chain.push_str(" / ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    assert!(chain.contains("length limit exceeded"), "{chain}");
}

#[tokio::test]
async fn a_gzip_body_under_the_cap_is_read() {
    let url = serve(1024 * 1024).await;
    let party = client(&url)
        .get_communication_party_by_her_id(3)
        .await
        .expect("under the cap")
        .into_inner();
    assert_eq!(party.name.map(|n| n.len()), Some(1024 * 1024));
}

#[tokio::test]
async fn a_selvbetjening_that_never_answers_ends_in_a_timeout() {
    let client = TestClient::ec("rotating");
    let emulator = Emulator::builder()
        .client(client.registration(&[SELVBETJENING_SCOPE, CP_SCOPE]))
        .start()
        .await
        .expect("emulator");
    // Accepts connections and never answers them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", silent.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let endpoint =
        helseid::endpoint::TokenEndpoint::new(client.config(emulator.issuer(), &[CP_SCOPE]))
            .expect("endpoint");
    let api = Selvbetjening::new(endpoint, &base)
        .expect("api")
        .with_timeout(Duration::from_millis(300));
    match api.key_expiration().await {
        Err(helseid::Error::Timeout {
            endpoint, after, ..
        }) => {
            assert_eq!(after, Duration::from_millis(300));
            assert_eq!(endpoint, "selvbetjening");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}
