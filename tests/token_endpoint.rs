//! The client side end to end: configuration, client assertions and the token endpoint,
//! against the emulator over real HTTP on 127.0.0.1.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::token::TokenType;
use helseid::{Error, OAuthErrorCode};
use helseid_emulator::{ClientRegistration, Emulator, Tenancy};
use http_body_util::Full;
use support::decode_jwt;

const SCOPE: &str = "nhn:cp-api/access";

async fn emulator_with(client_id: &str, jwk: &PrivateJwk, tenancy: Tenancy) -> Emulator {
    let public = SigningKey::from_jwk(jwk).expect("key").public_jwk().clone();
    Emulator::builder()
        .client(
            ClientRegistration::new(client_id, public)
                .scopes([SCOPE, "nhn:other/read"])
                .tenancy(tenancy),
        )
        .start()
        .await
        .expect("emulator")
}

fn config(emulator: &Emulator, client_id: &str, jwk: &PrivateJwk) -> ClientConfig {
    ClientConfig::builder()
        .client_id(client_id)
        .authority_url(emulator.issuer())
        .scopes([SCOPE])
        .private_jwk(jwk)
        .build()
        .expect("config")
}

#[tokio::test]
async fn client_credentials_with_rsa_2048_rsa_4096_and_p256() {
    let keys = [
        (
            "rsa2048",
            PrivateJwk::generate_rsa(2048, Algorithm::RS256),
            "RS256",
        ),
        (
            "rsa4096",
            PrivateJwk::generate_rsa(4096, Algorithm::RS512),
            "RS512",
        ),
        (
            "ps256",
            PrivateJwk::generate_rsa(2048, Algorithm::PS256),
            "PS256",
        ),
        ("p256", PrivateJwk::generate_ec(Algorithm::ES256), "ES256"),
    ];
    for (client_id, jwk, alg) in keys {
        let jwk = jwk.expect("generate");
        let emulator = emulator_with(client_id, &jwk, Tenancy::Multi).await;
        let endpoint = TokenEndpoint::new(config(&emulator, client_id, &jwk)).expect("endpoint");
        let token = endpoint.client_credentials().await.expect("token");
        assert_eq!(token.token_type(), &TokenType::Bearer);
        assert!(token.expires_in() > Duration::from_secs(3500), "{token:?}");
        assert_eq!(token.scopes().collect::<Vec<_>>(), [SCOPE]);

        let claims = emulator
            .verify_access_token(token.secret())
            .expect("the emulator's own token");
        assert_eq!(claims["iss"], emulator.issuer(), "{alg}");
        assert_eq!(claims["client_id"], client_id);
        assert_eq!(claims["aud"], "nhn:cp-api");
        assert_eq!(claims["scope"], serde_json::json!([SCOPE]));
        assert_eq!(claims["helseid://claims/client/client_tenancy"], "multi");
        assert!(
            claims
                .get("helseid://claims/client/claims/orgnr_parent")
                .is_none()
        );
        let (header, _) = decode_jwt(token.secret());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(emulator.tokens_issued(), 1);
    }
}

#[tokio::test]
async fn multi_tenant_and_single_tenant_tokens_carry_the_organisation() {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let emulator = emulator_with("multi", &jwk, Tenancy::Multi).await;
    let endpoint = TokenEndpoint::new(config(&emulator, "multi", &jwk)).expect("endpoint");
    for (tenant, parent, child) in [
        ("999999999:888888888", "999999999", Some("888888888")),
        ("912345678", "912345678", None),
    ] {
        let request = TokenRequest::client_credentials([SCOPE])
            .with_tenant(tenant.parse::<Tenant>().expect("tenant"));
        let token = endpoint.request(&request).await.expect("token");
        let claims = emulator
            .verify_access_token(token.secret())
            .expect("claims");
        assert_eq!(
            claims["helseid://claims/client/claims/orgnr_parent"],
            parent
        );
        match child {
            Some(child) => assert_eq!(claims["helseid://claims/client/claims/orgnr_child"], child),
            None => assert!(
                claims
                    .get("helseid://claims/client/claims/orgnr_child")
                    .is_none()
            ),
        }
    }

    let emulator = emulator_with(
        "single",
        &jwk,
        Tenancy::Single {
            parent_orgnr: "911111111".into(),
        },
    )
    .await;
    let endpoint = TokenEndpoint::new(config(&emulator, "single", &jwk)).expect("endpoint");
    let request = TokenRequest::client_credentials([SCOPE]).with_tenant(Tenant::Single {
        child: "922222222".parse().expect("orgnr"),
    });
    let token = endpoint.request(&request).await.expect("token");
    let claims = emulator
        .verify_access_token(token.secret())
        .expect("claims");
    assert_eq!(claims["helseid://claims/client/client_tenancy"], "single");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        "911111111"
    );
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_child"],
        "922222222"
    );
}

#[tokio::test]
async fn resource_and_scope_choice_reach_the_token() {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let emulator = emulator_with("c", &jwk, Tenancy::Multi).await;
    let endpoint = TokenEndpoint::new(config(&emulator, "c", &jwk)).expect("endpoint");
    let request =
        TokenRequest::client_credentials(["nhn:other/read", SCOPE]).with_resource("nhn:extra");
    let token = endpoint.request(&request).await.expect("token");
    let claims = emulator
        .verify_access_token(token.secret())
        .expect("claims");
    let aud: HashSet<&str> = claims["aud"]
        .as_array()
        .expect("several audiences")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(aud, HashSet::from(["nhn:cp-api", "nhn:other", "nhn:extra"]));

    // A scope the client does not have is refused by the emulator, as HelseID does.
    let err = endpoint
        .request(&TokenRequest::client_credentials(["nhn:not-granted/x"]))
        .await
        .expect_err("scope not granted");
    assert_eq!(
        err.oauth_error().map(|e| &e.error),
        Some(&OAuthErrorCode::InvalidScope),
        "{err}"
    );
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
}

/// Records the `client_assertion` of every request sent through it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[tokio::test]
async fn every_request_sends_a_new_assertion_for_the_issuer() {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let emulator = emulator_with("c", &jwk, Tenancy::Multi).await;
    let recorder = Recorder::default();
    let seen = recorder.clone();
    let client = helseid::transport::https_client::<Full<Bytes>>().expect("client");
    let recording = tower::service_fn(move |request: http::Request<Full<Bytes>>| {
        let client = client.clone();
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .expect("body")
                .to_bytes();
            for (k, v) in url::form_urlencoded::parse(&bytes) {
                if k == "client_assertion" {
                    seen.0.lock().expect("lock").push(v.into_owned());
                }
            }
            client
                .request(http::Request::from_parts(parts, Full::new(bytes)))
                .await
        }
    });
    let endpoint = TokenEndpoint::builder(config(&emulator, "c", &jwk))
        .http_service(recording)
        .build()
        .expect("endpoint");
    for _ in 0..3 {
        endpoint.client_credentials().await.expect("token");
    }
    let assertions = recorder.0.lock().expect("lock").clone();
    assert_eq!(assertions.len(), 3);
    let jtis: HashSet<String> = assertions
        .iter()
        .map(|a| {
            let (header, claims) = decode_jwt(a);
            assert_eq!(header["typ"], "client-authentication+jwt");
            assert_eq!(
                claims["aud"],
                emulator.issuer(),
                "aud is the issuer, not the token endpoint"
            );
            assert_ne!(claims["aud"], emulator.token_endpoint());
            claims["jti"].as_str().expect("jti").to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 3, "each assertion has its own jti");
    assert_eq!(emulator.token_requests(), 3);
}

#[tokio::test]
async fn a_selvbetjening_download_works_as_is() {
    let jwk = PrivateJwk::generate_rsa(2048, Algorithm::RS512).expect("generate");
    let emulator = emulator_with("4f0c-selvbetjening", &jwk, Tenancy::Multi).await;
    let dir = tempdir();
    let path = dir.join("HelseID Configuration 4f0c.json");
    // As the portal writes it: the JWK as a JSON string, the token endpoint as authority.
    let file = serde_json::json!({
        "clientName": "EPJ Vendor test client",
        "authority": emulator.token_endpoint(),
        "clientId": "4f0c-selvbetjening",
        "grantTypes": ["client_credentials"],
        "scopes": [SCOPE],
        "redirectUris": [],
        "postLogoutRedirectUris": [],
        "secretType": "private_key_jwt:RsaPrivateKeyJwtSecret",
        "rsaKeySizeBits": 2048,
        "privateJwk": jwk.to_json().as_str(),
        "pkceRequired": false,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&file).expect("json")).expect("write");
    let config = ClientConfig::from_file(&path).expect("config");
    assert_eq!(config.authority().issuer(), emulator.issuer());
    let token = TokenEndpoint::new(config)
        .expect("endpoint")
        .client_credentials()
        .await
        .expect("token");
    assert!(emulator.verify_access_token(token.secret()).is_ok());
    let _ = std::fs::remove_dir_all(dir);

    let err = ClientConfig::from_file("/nonexistent/helseid.json").expect_err("no file");
    assert!(matches!(err, Error::ConfigFile { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/helseid.json"));
}

/// A configuration for client `c` whose authority is `addr`.
fn config_at(addr: std::net::SocketAddr, jwk: &PrivateJwk) -> ClientConfig {
    ClientConfig::builder()
        .client_id("c")
        .authority_url(&format!("http://{addr}"))
        .private_jwk(jwk)
        .build()
        .expect("config")
}

fn tempdir() -> std::path::PathBuf {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).expect("random");
    let dir = std::env::temp_dir().join(format!("helseid-test-{}", u64::from_le_bytes(random)));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

#[tokio::test]
async fn unregistered_key_is_invalid_client() {
    let registered = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let other = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let emulator = emulator_with("c", &registered, Tenancy::Multi).await;
    let err = TokenEndpoint::new(config(&emulator, "c", &other))
        .expect("endpoint")
        .client_credentials()
        .await
        .expect_err("wrong key");
    assert_eq!(
        err.oauth_error().map(|e| &e.error),
        Some(&OAuthErrorCode::InvalidClient),
        "{err}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_with_its_source() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let config = config_at(addr, &jwk);
    let endpoint = TokenEndpoint::new(config).expect("endpoint");
    let err = endpoint
        .client_credentials()
        .await
        .expect_err("nothing listens");
    match &err {
        Error::Transport {
            endpoint, source, ..
        } => {
            assert_eq!(*endpoint, "discovery document");
            assert!(
                std::error::Error::source(source.as_ref()).is_some()
                    || !source.to_string().is_empty()
            );
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out() {
    let (addr, task) = silent_server().await;
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let config = config_at(addr, &jwk);
    let endpoint = TokenEndpoint::builder(config)
        .token_endpoint(format!("http://{addr}/connect/token"))
        .timeout(Duration::from_secs(3))
        .build()
        .expect("endpoint");
    let err = endpoint.client_credentials().await.expect_err("no answer");
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_secs(3)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "token endpoint request timed out after 3s");
    task.abort();
}

/// A server that answers every request with `status`, `content_type` and `body`.
async fn canned_server(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || async move {
        (
            http::StatusCode::from_u16(status).expect("status"),
            [(http::header::CONTENT_TYPE, content_type)],
            body,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test]
async fn unusable_answers_over_http_keep_their_status() {
    let cases = [
        (
            502,
            "text/html",
            "<html><body>Bad Gateway</body></html>",
            "expected an OAuth error object",
        ),
        (
            200,
            "text/html",
            "<html>Sign in</html>",
            "expected a JSON token response",
        ),
        (
            200,
            "application/json",
            r#"{"token_type":"Bearer","expires_in":300}"#,
            "no `access_token`",
        ),
        (
            200,
            "application/json",
            r#"{"access_token":"x","token_type":"Bearer","expires_in":99999999}"#,
            "plausible",
        ),
        (
            401,
            "application/json",
            r#"{"error":"invalid_client"}"#,
            "returned invalid_client",
        ),
    ];
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    for (status, content_type, body, expected) in cases {
        let addr = canned_server(status, content_type, body).await;
        let config = config_at(addr, &jwk);
        let endpoint = TokenEndpoint::builder(config)
            .token_endpoint(format!("http://{addr}/connect/token"))
            .build()
            .expect("endpoint");
        let err = endpoint.client_credentials().await.expect_err(body);
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err}");
        assert!(err.to_string().contains(expected), "{body}: {err}");
    }
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let addr = canned_server(
        200,
        "application/json",
        r#"{"issuer":"https://evil.example","token_endpoint":"https://evil.example/connect/token"}"#,
    )
    .await;
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let config = config_at(addr, &jwk);
    let err = TokenEndpoint::new(config)
        .expect("endpoint")
        .client_credentials()
        .await
        .expect_err("issuer mismatch");
    assert!(err.to_string().contains("https://evil.example"), "{err}");
    assert!(err.to_string().contains("discovery document"), "{err}");
}

#[tokio::test]
async fn a_missing_or_mistyped_discovery_member_is_named() {
    let cases = [
        (
            r#"{"issuer":"https://helseid.example"}"#,
            "the `token_endpoint` member is missing",
        ),
        (
            r#"{"issuer":"https://helseid.example","token_endpoint":["SECRET"]}"#,
            "`token_endpoint` is an array, expected a string",
        ),
        (
            r#"{"issuer":"https://helseid.example","token_endpoint":"https://helseid.example/t","grant_types_supported":[1]}"#,
            "`grant_types_supported` holds an element that is not a string",
        ),
        (
            r#"{"token_endpoint":"x"}"#,
            "the `issuer` member is missing",
        ),
    ];
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    for (body, expected) in cases {
        let addr = canned_server(200, "application/json", body).await;
        let err = TokenEndpoint::new(config_at(addr, &jwk))
            .expect("endpoint")
            .client_credentials()
            .await
            .expect_err(body);
        assert!(
            matches!(
                &err,
                Error::InvalidResponse {
                    endpoint: "discovery document",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{body}: {err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }
}

#[tokio::test]
async fn no_secret_in_debug_or_display() {
    let jwk = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("generate");
    let jwk_json: serde_json::Value = serde_json::from_str(&jwk.to_json()).expect("json");
    let private_members: Vec<String> = ["d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .map(|m| jwk_json[m].as_str().expect("member").to_owned())
        .collect();
    let emulator = emulator_with("c", &jwk, Tenancy::Multi).await;
    let config = config(&emulator, "c", &jwk);
    let endpoint = TokenEndpoint::new(config.clone()).expect("endpoint");
    let token = endpoint.client_credentials().await.expect("token");
    let assertion = config.client_assertion().sign(None).expect("assertion");
    let err = endpoint
        .request(&TokenRequest::client_credentials(["nhn:not-granted/x"]))
        .await
        .expect_err("invalid scope");

    let texts = [
        format!("{jwk:?}"),
        format!("{config:?}"),
        format!("{:?}", config.signing_key()),
        format!("{endpoint:?}"),
        format!("{token:?}"),
        format!("{:?}", token.authorization()),
        format!("{assertion:?}"),
        format!("{err:?} {err}"),
        format!("{:?}", config.client_assertion()),
    ];
    for text in &texts {
        for secret in private_members
            .iter()
            .map(String::as_str)
            .chain([token.secret(), assertion.as_str()])
        {
            assert!(!text.contains(secret), "a secret leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn scopes_helseid_leaves_out_are_typed_on_the_token() {
    const LEFT_OUT: &str = "nhn:terms-not-accepted/api";
    let client = support::TestClient::ec("rejected-scope");
    let emulator = Emulator::builder()
        .client(
            client
                .registration(&[SCOPE, LEFT_OUT])
                .rejected_scopes([LEFT_OUT]),
        )
        .start()
        .await
        .expect("emulator");
    let endpoint =
        TokenEndpoint::new(client.config(emulator.issuer(), &[SCOPE, LEFT_OUT])).expect("endpoint");
    let token = endpoint
        .request(&TokenRequest::client_credentials([SCOPE, LEFT_OUT]))
        .await
        .expect("a token without the rejected scope");
    assert_eq!(token.scopes().collect::<Vec<_>>(), [SCOPE]);
    assert_eq!(token.rejected_scopes().collect::<Vec<_>>(), [LEFT_OUT]);

    // Only the rejected scope: nothing to issue.
    let err = endpoint
        .request(&TokenRequest::client_credentials([LEFT_OUT]))
        .await
        .expect_err("every scope rejected");
    assert_eq!(
        err.oauth_error().map(|e| &e.error),
        Some(&OAuthErrorCode::InvalidScope)
    );
    // A token with nothing left out says so.
    let token = endpoint
        .request(&TokenRequest::client_credentials([SCOPE]))
        .await
        .expect("token");
    assert_eq!(token.rejected_scopes().count(), 0);
}

#[tokio::test]
async fn a_tenant_and_an_sfm_journal_id_travel_as_an_array_of_details() {
    use helseid::assertion::JournalId;
    let client = support::TestClient::ec("sfm-journal");
    let emulator = Emulator::builder()
        .client(client.registration(&[SCOPE]))
        .start()
        .await
        .expect("emulator");
    let log = Arc::new(Mutex::new(Vec::new()));
    let record = log.clone();
    // A recording HTTP client: the form of every token request.
    let http = tower::service_fn(move |request: http::Request<Full<Bytes>>| {
        let record = record.clone();
        async move {
            use http_body_util::BodyExt;
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.expect("body").to_bytes();
            record.lock().expect("log").push(bytes.clone());
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
            client
                .request(http::Request::from_parts(parts, Full::new(bytes)))
                .await
        }
    });
    let endpoint = TokenEndpoint::builder(client.config(emulator.issuer(), &[SCOPE]))
        .http_service(http)
        .build()
        .expect("endpoint");
    let tenant: Tenant = "912345678:987654321".parse().expect("tenant");
    let journal = JournalId::new("J-4711").expect("journal id");
    let token = endpoint
        .request(
            &TokenRequest::client_credentials([SCOPE])
                .with_tenant(tenant)
                .with_journal_id(journal.clone()),
        )
        .await
        .expect("a token");
    let claims = emulator.verify_access_token(token.secret()).expect("valid");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        "912345678"
    );
    let forms = log.lock().expect("log").clone();
    let assertion = form_urlencoded::parse(forms.last().expect("a request"))
        .find(|(k, _)| k == "client_assertion")
        .map(|(_, v)| v.into_owned())
        .expect("assertion");
    let (_, assertion_claims) = decode_jwt(&assertion);
    let details = assertion_claims["assertion_details"]
        .as_array()
        .expect("an array of two details");
    assert_eq!(details.len(), 2);
    assert_eq!(details[0]["type"], "helseid_authorization");
    assert_eq!(details[1]["type"], "nhn:sfm:journal-id");
    assert_eq!(details[1]["value"]["journal_id"], "J-4711");

    // One detail alone stays an object; bad journal ids are refused before any request.
    let token = endpoint
        .request(&TokenRequest::client_credentials([SCOPE]).with_journal_id(journal))
        .await
        .expect("a token");
    assert!(!token.secret().is_empty());
    let forms = log.lock().expect("log").clone();
    let assertion = form_urlencoded::parse(forms.last().expect("a request"))
        .find(|(k, _)| k == "client_assertion")
        .map(|(_, v)| v.into_owned())
        .expect("assertion");
    assert!(decode_jwt(&assertion).1["assertion_details"].is_object());
    for bad in ["", "a b", "x\ny"] {
        assert!(JournalId::new(bad).is_err(), "{bad:?}");
    }
}
