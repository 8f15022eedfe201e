//! A service's Melde.no client, generated from NHN's document unchanged, makes a call:
//! the emulator plays HelseID (a DPoP-bound token for the client's scope), and a
//! recorded double plays Melde.no (it checks the token and its proof as the API would,
//! and answers what the API answered).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use helseid::config::ClientConfig;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_any_api::melde;
use helseid_emulator::{ClientRegistration, Emulator};

/// Melde.no as recorded: `GET /api/v2/dialog/{reportRef}` with a DPoP-bound token.
async fn dialog(
    State(emulator): State<Arc<Emulator>>,
    Path(report_ref): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(token) = header("authorization").and_then(|a| a.strip_prefix("DPoP ")) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let claims = match emulator.verify_access_token(token) {
        Ok(claims) => claims,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let bound = claims["cnf"]["jkt"].is_string();
    // HelseID writes `scope` as an array.
    let scoped = claims["scope"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == "nhn:melde/dialog/opprett"));
    if !bound || !scoped || header("dpop").is_none() {
        return StatusCode::FORBIDDEN.into_response();
    }
    if report_ref != "U1234" {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/problem+json")],
            r#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.5","title":"Not Found","status":404,"detail":"no report U9999"}"#,
        )
            .into_response();
    }
    (
        [("content-type", "application/json; charset=utf-8")],
        r#"{"DialogRef":"D5678"}"#,
    )
        .into_response()
}

#[tokio::test]
async fn a_generated_melde_client_calls_through_helseid() {
    let key = PrivateJwk::generate_ec(Algorithm::ES256).unwrap();
    let public = SigningKey::from_jwk(&key).unwrap().public_jwk().clone();
    let emulator = Arc::new(
        Emulator::builder()
            .client(ClientRegistration::new("epj", public).scopes(["nhn:melde/dialog/opprett"]))
            .start()
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/api/v2/dialog/{report_ref}", get(dialog))
        .with_state(Arc::clone(&emulator));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // What docs/any-api.md shows: the builder, then a typed call.
    let config = ClientConfig::builder()
        .client_id("epj")
        .authority_url(emulator.issuer())
        .private_jwk(&key)
        .build()
        .unwrap();
    let melde = melde::Client::builder(config)
        .base_url(&url)
        .build()
        .unwrap();
    let dialog = melde.get_dialog_by_report_ref("U1234").await.unwrap();
    assert_eq!(dialog.into_inner().dialog_ref.as_deref(), Some("D5678"));

    // An error: one line with the API, the operation, the status and the problem.
    let e = melde.get_dialog_by_report_ref("U9999").await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        e.to_string(),
        "Melde API get_dialog_by_report_ref: 404 Not Found: Not Found: no report U9999"
    );
    assert_eq!(
        e.problem().and_then(|p| p.detail.as_deref()),
        Some("no report U9999")
    );
}

#[test]
fn a_required_header_without_a_value_is_named_by_the_builder() {
    let key = PrivateJwk::generate_ec(Algorithm::ES256).unwrap();
    let config = ClientConfig::builder()
        .client_id("epj")
        .authority_url("http://127.0.0.1:1")
        .private_jwk(&key)
        .build()
        .unwrap();
    // MSH requires `nhn-source-system` on every call; the build gave `api-version` only.
    let e = helseid_any_api::msh::Client::builder(config.clone())
        .build()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("requires the header `nhn-source-system`"),
        "{e}"
    );
    let msh = helseid_any_api::msh::Client::builder(config)
        .default_header("nhn-source-system", "my-epj")
        .build();
    assert!(msh.is_ok(), "{msh:?}");
}
