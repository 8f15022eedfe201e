//! Key rotation against a HelseID that binds every token to DPoP (as HelseID does for
//! Selvbetjening's scope): the new key is proven with the request that registered it
//! (DPoP-bound, Selvbetjening's scope), and the configuration's API scopes are a check
//! apart whose failure is reported and undoes nothing. Real HTTP on 127.0.0.1.
#![cfg(feature = "transport")]

#[path = "support/mod.rs"]
mod support;

use helseid::config::ClientConfig;
use helseid::selvbetjening::{Selvbetjening, rotate_config_file};
use helseid_emulator::{Emulator, SELVBETJENING_SCOPE};
use support::{CP_SCOPE, TempDir, TestClient};

#[tokio::test]
async fn a_rotation_is_proven_with_a_dpop_bound_selvbetjening_token_and_stands() {
    let client = TestClient::ec("rotating");
    // Every token request of this client must carry a DPoP proof: a Bearer request for
    // any scope is refused.
    let emulator = Emulator::builder()
        .client(
            client
                .registration(&[SELVBETJENING_SCOPE, CP_SCOPE])
                .require_dpop(),
        )
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("rotation-dpop");
    let path = dir.path("helseid-client.json");
    let file = serde_json::json!({
        "clientId": client.id,
        "authority": emulator.issuer(),
        "scopes": [SELVBETJENING_SCOPE, CP_SCOPE],
        "privateJwk": serde_json::from_str::<serde_json::Value>(&client.jwk.to_json()).expect("jwk"),
    });
    std::fs::write(&path, file.to_string()).expect("write");

    let rotation = rotate_config_file(&path, Some(emulator.selvbetjening_base_url()), None)
        .await
        .expect("the rotation completes");
    // The configuration holds the new key, which works where the old one did.
    let rotated = ClientConfig::from_file(&path).expect("rotated configuration");
    assert_ne!(
        rotated.signing_key().public_jwk().thumbprint(),
        client.key.public_jwk().thumbprint()
    );
    let endpoint = helseid::endpoint::TokenEndpoint::new(rotated).expect("endpoint");
    let expiration = Selvbetjening::new(endpoint, emulator.selvbetjening_base_url())
        .expect("api")
        .key_expiration()
        .await
        .expect("the new key gets a DPoP-bound token");
    assert_eq!(expiration, rotation.expiration);
    assert!(rotation.backup.exists());
    // The API scope, asked for as Bearer, was refused: reported, not undone.
    let refused = rotation
        .api_scopes_error
        .as_ref()
        .expect("a Bearer request is refused by this HelseID");
    assert!(refused.to_string().contains("invalid_request"), "{refused}");
}

#[tokio::test]
async fn a_rotation_whose_api_scopes_work_reports_no_error() {
    let client = TestClient::ec("rotating");
    let emulator = Emulator::builder()
        .client(client.registration(&[SELVBETJENING_SCOPE, CP_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("rotation-bearer");
    let path = dir.path("helseid-client.json");
    let file = serde_json::json!({
        "clientId": client.id,
        "authority": emulator.issuer(),
        "scopes": [SELVBETJENING_SCOPE, CP_SCOPE],
        "privateJwk": serde_json::from_str::<serde_json::Value>(&client.jwk.to_json()).expect("jwk"),
    });
    std::fs::write(&path, file.to_string()).expect("write");
    let rotation = rotate_config_file(&path, Some(emulator.selvbetjening_base_url()), None)
        .await
        .expect("the rotation completes");
    assert!(
        rotation.api_scopes_error.is_none(),
        "{:?}",
        rotation.api_scopes_error
    );
}
