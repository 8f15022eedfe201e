//! The start the README gives a service's tests: `test_client` and `client_config`. The
//! emulator starts exactly as the README says, helseid's `TokenEndpoint` gets a token
//! with the configuration, and `HelseIdLayer` puts it on CPE calls over hyper-util's
//! HTTP client on 127.0.0.1: real HTTP, real signatures.

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::endpoint::TokenEndpoint;
use helseid::key::{Algorithm, PrivateJwk, PublicJwk, SigningKey};
use helseid_emulator::{ClientRegistration, Emulator, Error};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

const CPE_SCOPE: &str = "nhn:cp-api/access";

#[tokio::test]
async fn the_readme_start_gets_a_token_that_cpe_accepts() {
    // The README's two lines.
    let emulator = Emulator::builder()
        .test_client("my-service", ["nhn:cp-api/access"])
        .start()
        .await
        .expect("emulator starts");
    let config = emulator.client_config("my-service").expect("config");
    assert_eq!(config.client_id(), "my-service");
    assert_eq!(config.authority().issuer(), emulator.issuer());
    assert_eq!(config.scopes(), [CPE_SCOPE]);

    // A token through the token endpoint: discovery, a signed client assertion.
    let endpoint = TokenEndpoint::new(config).expect("endpoint");
    let token = endpoint.client_credentials().await.expect("token");
    let claims = emulator
        .verify_access_token(token.secret())
        .expect("the emulator's own token");
    assert_eq!(claims["client_id"], "my-service");
    assert_eq!(claims["scope"], serde_json::json!([CPE_SCOPE]));

    // CPE calls through the layer, over hyper-util's client.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(http);
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", emulator.cpe_base_url());
        async move {
            let request = Request::get(url)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = client.oneshot(request).await.expect("response");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let body: Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
            body
        }
    };

    let page = get("/CommunicationPartyEvents".to_owned()).await;
    let events = page["CommunicationParties"].as_array().expect("events");
    assert_eq!(events.len(), 100, "a full first page");
    let first = &events[0];
    assert_eq!(first["EventType"], "CommunicationPartyCreated");
    assert_eq!(
        first["CommunicationParty"]["Name"],
        "Oslo universitetssykehus HF"
    );
    let her_id = first["HerId"].as_i64().expect("HerId");

    let party = get(format!("/CommunicationParties/{her_id}")).await;
    assert_eq!(party["HerId"], her_id);
    assert_eq!(party["Name"], "Oslo universitetssykehus HF");

    // One token for the endpoint's own request, one for the layer, used for both calls.
    assert_eq!(emulator.tokens_issued(), 2);
    assert_eq!(emulator.cpe_requests(), 2);
    emulator.shutdown().await;
}

#[tokio::test]
async fn each_test_client_has_its_own_key_and_its_granted_scopes() {
    let emulator = Emulator::builder()
        .test_client("first", [CPE_SCOPE, CPE_SCOPE])
        .test_client("second", [CPE_SCOPE, "e-helse:sfm.api/access"])
        .start()
        .await
        .expect("emulator starts");
    let first = emulator.client_config("first").expect("first");
    let second = emulator.client_config("second").expect("second");
    assert_eq!(first.scopes(), [CPE_SCOPE], "granted once");
    assert_eq!(second.scopes(), [CPE_SCOPE, "e-helse:sfm.api/access"]);
    let (first_key, second_key) = (first.signing_key(), second.signing_key());
    assert_eq!(first_key.public_jwk().crv.as_deref(), Some("P-256"));
    assert_eq!(first_key.public_jwk().alg.as_deref(), Some("ES256"));
    assert_ne!(first_key.thumbprint(), second_key.thumbprint());
    // Asked again, the same key.
    let again = emulator.client_config("first").expect("first again");
    assert_eq!(again.signing_key().thumbprint(), first_key.thumbprint());
    emulator.shutdown().await;
}

/// The public half of a key the test keeps to itself.
fn own_key() -> PublicJwk {
    SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("key"))
        .expect("signing key")
        .public_jwk()
        .clone()
}

#[tokio::test]
async fn client_config_names_the_client_it_holds_no_key_for() {
    let emulator = Emulator::builder()
        .test_client("my-service", [CPE_SCOPE])
        .client(ClientRegistration::new("own-key", own_key()).scopes([CPE_SCOPE]))
        .start()
        .await
        .expect("emulator starts");
    for (unknown, reason) in [
        ("someone-else", "no client with this id"),
        ("own-key", "a key of its own"),
    ] {
        let error = emulator.client_config(unknown).expect_err(unknown);
        assert!(
            matches!(&error, Error::NoClientKey { client_id, .. } if client_id == unknown),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&format!("`{unknown}`")), "{message}");
        assert!(message.contains(reason), "{message}");
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn test_clients_are_checked_as_registrations_are() {
    let refused = [
        (
            Emulator::builder()
                .test_client("twice", [CPE_SCOPE])
                .client(ClientRegistration::new("twice", own_key())),
            "client_id",
            "registered twice",
        ),
        (
            Emulator::builder().test_client("", [CPE_SCOPE]),
            "client_id",
            "must not be empty",
        ),
        (
            Emulator::builder().test_client("spaced", ["a b"]),
            "scopes",
            "not a valid scope",
        ),
    ];
    for (builder, expected, fragment) in refused {
        match builder.start().await {
            Err(Error::Setting {
                setting, reason, ..
            }) => {
                assert_eq!(setting, expected, "{reason}");
                assert!(reason.contains(fragment), "{reason}");
            }
            other => panic!("expected a setting error about {expected}: {other:?}"),
        }
    }
}
