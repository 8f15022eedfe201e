//! `helseid::verify` with the emulator's tokens: its real client-credentials tokens (with
//! `scope` as a JSON array), tokens it signs with any claims, and the crate's own client
//! stack (`HelseIdLayer` with DPoP) calling an API served on 127.0.0.1 behind
//! `VerifyLayer`, nonce challenges included.
#![cfg(feature = "verify")]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::routing::get;
use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::verify::{Dpop, HelseIdClaims, Reason, VerifyLayer};
use helseid_emulator::Emulator;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

const SCOPE: &str = "nhn:cp-api/access";
const AUD: &str = "nhn:cp-api";

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

#[tokio::test]
async fn the_emulators_client_credentials_token_passes() {
    let emulator = emulator().await;
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let token = endpoint.client_credentials().await.expect("token");
    let layer = VerifyLayer::builder(emulator.issuer())
        .audience(AUD)
        .scopes_any_of([SCOPE])
        .dpop(Dpop::Allowed)
        .public_base_url("https://api.example.no")
        .build()
        .expect("layer");
    let claims = layer.verify_token(token.secret()).await.expect("verified");
    assert_eq!(claims.client_id.as_deref(), Some("epj"));
    assert!(claims.has_scope(SCOPE), "{claims:?}");
    assert_eq!(claims.issuer, emulator.issuer());
    assert!(claims.jkt.is_none());
    // Another API's layer refuses it: the audience is not its own.
    let other = VerifyLayer::builder(emulator.issuer())
        .audience("e-helse:sfm.api")
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    assert_eq!(
        other
            .verify_token(token.secret())
            .await
            .expect_err("audience")
            .reason(),
        Reason::WrongAudience
    );
}

#[tokio::test]
async fn tokens_the_emulator_signs_give_typed_helseid_claims() {
    let emulator = emulator().await;
    let iss = emulator.issuer().to_owned();
    let now = now();
    let claims = json!({
        "iss": iss,
        "aud": "e-helse:sfm.api",
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "client_id": "epj",
        "client_amr": "private_key_jwt",
        "scope": ["e-helse:sfm.api/access"],
        "sub": "hashed",
        "helseid://claims/client/client_name": "EPJ",
        "helseid://claims/client/client_tenancy": "multi",
        "helseid://claims/client/claims/orgnr_parent": "999999999",
        "helseid://claims/client/claims/orgnr_child": "888888888",
        "helseid://claims/client/claims/orgnr_supplier": "777777777",
        "helseid://claims/identity/pid": "13116900216",
        "helseid://claims/identity/security_level": "4",
        "helseid://claims/identity/assurance_level": "high",
        "helseid://claims/hpr/hpr_number": "565501872",
        "name": "Kari Nordmann",
        "e-helse:sfm.api/client/claims/sfm-id": "sfm-1",
        "nhn:sfm:journal-id": "journal-1",
        "act": {"client_id": "sfm", "act": {"client_id": "epj"}},
    });
    let token = emulator.sign_access_token(&claims).expect("token");
    let layer = VerifyLayer::builder(&iss)
        .audience("e-helse:sfm.api")
        .strict_single_audience(true)
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    let c = layer.verify_token(&token).await.expect("verified");
    assert_eq!(c.client_name.as_deref(), Some("EPJ"));
    assert_eq!(c.tenancy.as_deref(), Some("multi"));
    assert_eq!(c.orgnr_parent.as_deref(), Some("999999999"));
    assert_eq!(c.orgnr_child.as_deref(), Some("888888888"));
    assert_eq!(c.orgnr_supplier.as_deref(), Some("777777777"));
    assert_eq!(c.pid.as_ref().map(|p| p.expose()), Some("13116900216"));
    assert_eq!(c.security_level, Some(4));
    assert_eq!(c.assurance_level.as_deref(), Some("high"));
    assert_eq!(c.hpr_number.as_deref(), Some("565501872"));
    assert_eq!(c.name.as_deref(), Some("Kari Nordmann"));
    assert_eq!(c.sfm_id.as_deref(), Some("sfm-1"));
    assert_eq!(c.journal_id.as_deref(), Some("journal-1"));
    let act = c.act.as_ref().expect("act");
    assert_eq!(act.client_id.as_deref(), Some("sfm"));
    assert_eq!(
        act.act.as_ref().and_then(|a| a.client_id.as_deref()),
        Some("epj")
    );
    assert!(c.require_security_level(4).is_ok());
    assert!(!format!("{c:?}").contains("13116900216"));
    assert_eq!(c.raw()["sub"], "hashed");

    // Expired, or meant for two APIs under the strict rule: refused.
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 60);
    let expired = emulator.sign_access_token(&expired).expect("token");
    assert_eq!(
        layer
            .verify_token(&expired)
            .await
            .expect_err("expired")
            .reason(),
        Reason::Expired
    );
    let mut two = claims.clone();
    two["aud"] = json!(["e-helse:sfm.api", "nhn:cp-api"]);
    let two = emulator.sign_access_token(&two).expect("token");
    assert_eq!(
        layer.verify_token(&two).await.expect_err("two").reason(),
        Reason::SeveralAudiences
    );
}

async fn whoami(Extension(claims): Extension<Arc<HelseIdClaims>>) -> String {
    format!(
        "{} {}",
        claims.client_id.as_deref().unwrap_or("?"),
        claims.jkt.is_some()
    )
}

/// Serves `/whoami` behind a layer made by `build` (given the server's base URL).
async fn api(build: impl FnOnce(&str) -> VerifyLayer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = axum::Router::new()
        .route("/whoami", get(whoami))
        .layer(build(&base));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

#[tokio::test]
async fn the_crates_own_dpop_client_passes_the_crates_verifier_nonces_included() {
    let emulator = emulator().await;
    for nonce in [false, true] {
        let iss = emulator.issuer().to_owned();
        let base = api(|base| {
            VerifyLayer::builder(&iss)
                .audience(AUD)
                .scopes_any_of([SCOPE])
                .public_base_url(base)
                .dpop_nonce(nonce)
                .build()
                .expect("layer")
        })
        .await;
        let endpoint =
            TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
        let client = ServiceBuilder::new()
            .layer(
                HelseIdLayer::builder(endpoint)
                    .dpop(DpopKey::generate().expect("key"))
                    .build(),
            )
            .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
        for _ in 0..3 {
            let request = Request::get(format!("{base}/whoami"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = client.clone().oneshot(request).await.expect("answer");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(status, StatusCode::OK, "nonce {nonce}: {body:?}");
            assert_eq!(&body[..], b"epj true");
        }

        // A Bearer client is refused by this DPoP-only API.
        let endpoint =
            TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
        let bearer_client = ServiceBuilder::new()
            .layer(HelseIdLayer::new(endpoint))
            .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
        let request = Request::get(format!("{base}/whoami"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = bearer_client.oneshot(request).await.expect("answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[http::header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(challenge.starts_with("DPoP algs="), "{challenge}");
    }
}

#[tokio::test]
async fn reload_keys_drops_a_retired_key_at_once_even_for_a_cached_token() {
    let emulator = emulator().await;
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let old = endpoint.client_credentials().await.expect("token");
    // The default 30 s cooldown: nothing but reload_keys fetches the keys again soon.
    let layer = VerifyLayer::builder(emulator.issuer())
        .audience(AUD)
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    layer.verify_token(old.secret()).await.expect("verified");
    assert_eq!(layer.key_fetches(), 1);

    emulator.rotate_signing_key().expect("rotate");
    emulator.retire_old_signing_keys();
    // Still cached, its kid still in the layer's set: the layer cannot know yet.
    layer.verify_token(old.secret()).await.expect("cached");

    assert_eq!(layer.reload_keys().await.expect("reloaded"), 1);
    assert_eq!(layer.key_fetches(), 2);
    let refused = layer.verify_token(old.secret()).await.expect_err("retired");
    assert_eq!(refused.reason(), Reason::UnknownKey);
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // The new key's tokens pass without another fetch.
    let endpoint =
        TokenEndpoint::new(emulator.client_config("epj").expect("config")).expect("endpoint");
    let new = endpoint.client_credentials().await.expect("token");
    layer.verify_token(new.secret()).await.expect("verified");
    assert_eq!(layer.key_fetches(), 2);

    // A reload that fails keeps the keys at hand, and says the keys are unavailable.
    emulator
        .faults()
        .discovery(helseid_emulator::Fault::status(500))
        .expect("fault");
    let failed = layer.reload_keys().await.expect_err("unreachable");
    assert_eq!(failed.reason(), Reason::Unavailable);
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    layer.verify_token(new.secret()).await.expect("kept");
}
