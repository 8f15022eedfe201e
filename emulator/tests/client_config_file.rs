//! `Emulator::write_client_config`: the file Selvbetjening gives, written owner-only, read
//! back by the library's reader, and good for a token that the emulator's CPE accepts
//! (real HTTP on 127.0.0.1).

use std::path::PathBuf;

use bytes::Bytes;
use helseid::HelseIdLayer;
use helseid::config::ClientConfig;
use helseid::endpoint::TokenEndpoint;
use helseid_emulator::{Emulator, Error};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

const CPE_SCOPE: &str = "nhn:cp-api/access";

/// A fresh directory of this test's own under the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "helseid-emulator-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

#[tokio::test]
async fn the_written_file_is_read_back_and_gets_a_token_that_cpe_accepts() {
    let emulator = Emulator::builder()
        .test_client("my-service", [CPE_SCOPE, "nhn:cp-api/access-v2-dpop"])
        .start()
        .await
        .expect("emulator starts");
    let dir = scratch("config");
    let path = dir.join("my-service.json");
    emulator
        .write_client_config("my-service", &path)
        .expect("written");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only: {mode:o}");
    }
    // The portal's shape: the private JWK as a JSON string inside the JSON.
    let text = std::fs::read_to_string(&path).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["clientId"], "my-service");
    assert_eq!(json["authority"], emulator.issuer());
    assert!(json["privateJwk"].is_string(), "{}", json["privateJwk"]);
    assert_eq!(
        json["scopes"],
        serde_json::json!([CPE_SCOPE, "nhn:cp-api/access-v2-dpop"]),
        "every scope the client has"
    );

    // The library's reader, as a service reads its configuration at startup.
    let config = ClientConfig::from_file(&path)
        .expect("read back")
        .with_scopes([CPE_SCOPE]);
    assert_eq!(config.client_id(), "my-service");
    assert_eq!(config.authority().issuer(), emulator.issuer());

    // A token with it, and a CPE call that the emulator's CPE accepts.
    let endpoint = TokenEndpoint::new(config).expect("endpoint");
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(HelseIdLayer::new(endpoint))
        .service(http);
    let request = Request::get(format!(
        "{}/CommunicationPartyEvents",
        emulator.cpe_base_url()
    ))
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
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let page: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        page["CommunicationParties"].as_array().map(Vec::len),
        Some(100)
    );
    assert_eq!(emulator.tokens_issued(), 1);

    std::fs::remove_dir_all(&dir).expect("clean up");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_unknown_client_is_named_and_no_file_is_written() {
    let emulator = Emulator::builder()
        .test_client("my-service", [CPE_SCOPE])
        .start()
        .await
        .expect("emulator starts");
    let dir = scratch("unknown");
    let path = dir.join("nobody.json");
    let error = emulator
        .write_client_config("nobody", &path)
        .expect_err("unknown client");
    assert!(
        matches!(&error, Error::NoClientKey { client_id, .. } if client_id == "nobody"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("`nobody`") && message.contains("no client with this id"),
        "{message}"
    );
    assert!(!path.exists(), "no file for an unknown client");

    // A directory that does not exist: the I/O error, with the path.
    let missing = dir.join("no-such-dir").join("client.json");
    let error = emulator
        .write_client_config("my-service", &missing)
        .expect_err("no directory");
    assert!(matches!(&error, Error::WriteFile { .. }), "{error:?}");
    assert!(std::error::Error::source(&error).is_some());

    std::fs::remove_dir_all(&dir).expect("clean up");
    emulator.shutdown().await;
}
