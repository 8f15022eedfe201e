//! The Swagger UI at `/swagger`: served from the emulator (vendored assets), pointing at
//! the CPE and CP API v2 documents, whose servers are the emulator itself.

use bytes::Bytes;
use helseid_emulator::{Emulator, SWAGGER_PATH};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn get(url: &str) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn swagger_ui_is_served_with_both_api_documents() {
    let emulator = Emulator::builder().start().await.expect("emulator");
    let base = format!("{}{SWAGGER_PATH}", emulator.issuer());

    let (status, headers, _) = get(&base).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(headers[header::LOCATION], format!("{SWAGGER_PATH}/"));

    let (status, _, html) = get(&format!("{base}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("swagger-ui"), "{html}");

    let (status, _, initializer) = get(&format!("{base}/swagger-initializer.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
    assert!(
        initializer.contains("\"/cpapi/openapi.json\""),
        "{initializer}"
    );

    let (status, _, bundle) = get(&format!("{base}/swagger-ui-bundle.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        bundle.len() > 100_000,
        "the vendored bundle, {} bytes",
        bundle.len()
    );

    // The documents the UI loads name the emulator as their server, so that "Try it
    // out" calls it; CPE's takes a bearer token (the Authorize padlock).
    let (_, _, cpe) = get(&format!("{}/openapi.json", emulator.issuer())).await;
    let cpe: serde_json::Value = serde_json::from_str(&cpe).expect("JSON");
    assert_eq!(cpe["servers"][0]["url"], emulator.issuer());
    assert_eq!(
        cpe["components"]["securitySchemes"]["HelseID"]["scheme"],
        "bearer"
    );
    let (_, _, cpapi) = get(&format!("{}/cpapi/openapi.json", emulator.issuer())).await;
    let cpapi: serde_json::Value = serde_json::from_str(&cpapi).expect("JSON");
    assert_eq!(cpapi["servers"][0]["url"], emulator.issuer());
}
