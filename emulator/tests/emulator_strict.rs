//! The emulator is at least as strict as HelseID: every rule of client authentication is
//! enforced with the error code HelseID uses and a description that says what is wrong.
//! Everything goes over real HTTP on 127.0.0.1.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use helseid::key::Algorithm;
use helseid_emulator::{ClientRegistration, Emulator, Tenancy};
use support::*;

const PARENT: &str = "912345678";
const CHILD: &str = "987654321";
const MULTI_SYSTEM: &str = "urn:oid:1.0.6523";
const SINGLE_SYSTEM: &str = "urn:oid:2.16.578.1.12.4.1.4.101";

/// An `assertion_details` claim naming an organisation.
fn details(system: &str, value: &str) -> Value {
    json!({
        "type": "helseid_authorization",
        "practitioner_role": {"organization": {"identifier": {
            "system": system, "type": "ENH", "value": value
        }}}
    })
}

/// Requests a token with assertion claims changed by `edit`, signed by the client.
async fn refused_with_claims(edit: impl FnOnce(&mut Value)) -> ((StatusCode, Value), String) {
    let client = TestClient::ec("edited-client");
    let emulator = emulator_with(&client).await;
    let mut claims = client.claims(emulator.issuer());
    edit(&mut claims);
    let assertion = client.sign(&claims);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    (result, assertion)
}

/// Fetches the JWKS through discovery and verifies the access token's signature with it.
async fn verify_with_published_jwks(emulator: &Emulator, token: &str) -> Value {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let discovery = get_json(&format!(
        "{}/.well-known/openid-configuration",
        emulator.issuer()
    ))
    .await;
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(get_json(discovery["jwks_uri"].as_str().expect("jwks_uri")).await)
            .expect("JWKS");
    let header = jsonwebtoken::decode_header(token).expect("header");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[emulator.issuer()]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the access token verifies with the published JWKS")
        .claims
}

/// Gets a token for a client with the given key and checks everything about it.
async fn issues_verifiable_token(client: TestClient) {
    let emulator = emulator_with(&client).await;
    let before = now();
    let (status, body) =
        request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], CP_SCOPE);
    let token = body["access_token"].as_str().expect("access_token");

    let (header, claims) = decode_jwt(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid");
    assert_eq!(emulator.signing_jwks()["keys"][0]["kid"], kid);

    assert_eq!(claims["iss"], emulator.issuer());
    assert_eq!(claims["aud"], "nhn:cp-api");
    assert_eq!(claims["scope"], json!([CP_SCOPE]));
    assert_eq!(claims["client_id"], client.id);
    assert_eq!(claims["client_amr"], "private_key_jwt");
    assert_eq!(claims["helseid://claims/client/client_tenancy"], "multi");
    assert!(
        claims
            .get("helseid://claims/client/claims/orgnr_parent")
            .is_none()
    );
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(iat >= before && iat <= now());
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"], iat + 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));

    assert_eq!(verify_with_published_jwks(&emulator, token).await, claims);
    assert_eq!(emulator.verify_access_token(token), Ok(claims));
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn rsa_2048_client_gets_a_verifiable_token() {
    issues_verifiable_token(TestClient::rsa("rsa-2048", 2048, Algorithm::PS256)).await;
}

#[tokio::test]
async fn rsa_4096_client_gets_a_verifiable_token() {
    issues_verifiable_token(TestClient::rsa("rsa-4096", 4096, Algorithm::RS512)).await;
}

#[tokio::test]
async fn p256_client_gets_a_verifiable_token() {
    issues_verifiable_token(TestClient::ec("p-256")).await;
}

#[tokio::test]
async fn discovery_document_describes_the_emulator() {
    let client = TestClient::ec("discovery");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE, "e-helse:sfm.api/sfm.api"]))
        .start()
        .await
        .expect("start");
    let issuer = emulator.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));
    assert_eq!(issuer, format!("http://{}", emulator.local_addr()));
    let doc = get_json(&format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(doc["token_endpoint"], format!("{issuer}/connect/token"));
    assert_eq!(doc["token_endpoint"], emulator.token_endpoint());
    assert_eq!(
        doc["jwks_uri"],
        format!("{issuer}/.well-known/openid-configuration/jwks")
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!([
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    for (member, path) in [
        ("pushed_authorization_request_endpoint", "/connect/par"),
        ("authorization_endpoint", "/connect/authorize"),
        ("end_session_endpoint", "/connect/endsession"),
        ("revocation_endpoint", "/connect/revocation"),
    ] {
        assert_eq!(doc[member], format!("{issuer}{path}"), "{member}");
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["require_pushed_authorization_requests"], true);
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
        ])
    );
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
        ])
    );
    assert_eq!(
        doc["scopes_supported"],
        json!([
            "e-helse:sfm.api/sfm.api",
            "helseid://scopes/hpr/hpr_number",
            "helseid://scopes/identity/assurance_level",
            "helseid://scopes/identity/pid",
            "helseid://scopes/identity/pid_pseudonym",
            "helseid://scopes/identity/security_level",
            CP_SCOPE,
            "offline_access",
            "openid",
            "profile"
        ])
    );

    let jwks = get_json(doc["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert_eq!(jwks, emulator.signing_jwks());
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert!(
        key.get("d").is_none(),
        "the JWKS must hold public keys only"
    );
}

#[tokio::test]
async fn token_response_is_not_cacheable() {
    let client = TestClient::ec("no-store");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, headers, _) = post_form_with_headers(&emulator.token_endpoint(), &fields).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    // The replay is refused, and the error is not cacheable either.
    let (status, headers, _) = post_form_with_headers(&emulator.token_endpoint(), &fields).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["cache-control"], "no-store");
}

#[tokio::test]
async fn absent_scope_grants_all_registered_scopes() {
    let client = TestClient::ec("all-scopes");
    let emulator = Emulator::builder()
        .client(client.registration(&[
            CP_SCOPE,
            "nhn:cp-api/access-v2-dpop",
            "e-helse:sfm.api/sfm.api",
        ]))
        .access_token_lifetime(Duration::from_secs(300))
        .start()
        .await
        .expect("start");
    let (status, body) =
        request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(
        body["scope"],
        format!("{CP_SCOPE} nhn:cp-api/access-v2-dpop e-helse:sfm.api/sfm.api")
    );
    let (_, claims) = decode_jwt(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], json!(["nhn:cp-api", "e-helse:sfm.api"]));
    assert_eq!(
        claims["exp"].as_i64(),
        claims["iat"].as_i64().map(|iat| iat + 300)
    );

    // A requested subset is what is granted.
    let scope = [("scope", "e-helse:sfm.api/sfm.api")];
    let (status, body) =
        request_token(&emulator, &client.id, &client.assertion(&emulator), &scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "e-helse:sfm.api/sfm.api");
    let (_, claims) = decode_jwt(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], "e-helse:sfm.api");
}

#[tokio::test]
async fn resource_is_added_to_the_audience() {
    let client = TestClient::ec("resource");
    let emulator = emulator_with(&client).await;
    let extra = [("scope", CP_SCOPE), ("resource", "nhn:other-api")];
    let (status, body) =
        request_token(&emulator, &client.id, &client.assertion(&emulator), &extra).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, claims) = decode_jwt(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["aud"], json!(["nhn:cp-api", "nhn:other-api"]));
}

// ---- tenancy ----

/// Requests a token with `assertion_details` (or another details claim) and returns
/// the access token's claims.
async fn org_claims(tenancy: Tenancy, claim: &str, value: Option<Value>) -> Value {
    let client = TestClient::ec("tenant-client");
    let emulator = emulator_with_tenancy(&client, tenancy).await;
    let mut claims = client.claims(emulator.issuer());
    if let Some(value) = value {
        claims[claim] = value;
    }
    let (status, body) = request_token(&emulator, &client.id, &client.sign(&claims), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    decode_jwt(body["access_token"].as_str().expect("token")).1
}

const ORGNR_PARENT: &str = "helseid://claims/client/claims/orgnr_parent";
const ORGNR_CHILD: &str = "helseid://claims/client/claims/orgnr_child";
const TENANCY: &str = "helseid://claims/client/client_tenancy";

#[tokio::test]
async fn multi_tenant_parent_and_child() {
    let value = format!("NO:ORGNR:{PARENT}:{CHILD}");
    let claims = org_claims(
        Tenancy::Multi,
        "assertion_details",
        Some(details(MULTI_SYSTEM, &value)),
    )
    .await;
    assert_eq!(claims[TENANCY], "multi");
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert_eq!(claims[ORGNR_CHILD], CHILD);
}

#[tokio::test]
async fn multi_tenant_parent_only() {
    let value = format!("NO:ORGNR:{PARENT}");
    let claims = org_claims(
        Tenancy::Multi,
        "assertion_details",
        Some(details(MULTI_SYSTEM, &value)),
    )
    .await;
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert!(claims.get(ORGNR_CHILD).is_none());
}

#[tokio::test]
async fn multi_tenant_parent_only_with_a_trailing_colon() {
    // NHN's .NET library writes the parent alone with a trailing colon.
    let value = format!("NO:ORGNR:{PARENT}:");
    let claims = org_claims(
        Tenancy::Multi,
        "assertion_details",
        Some(details(MULTI_SYSTEM, &value)),
    )
    .await;
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert!(claims.get(ORGNR_CHILD).is_none());
}

#[tokio::test]
async fn an_array_of_the_organisation_and_an_sfm_journal_id_is_accepted() {
    let value = format!("NO:ORGNR:{PARENT}:{CHILD}");
    let journal = json!({"type": "nhn:sfm:journal-id", "value": {"journal_id": "J-4711"}});
    for array in [
        json!([details(MULTI_SYSTEM, &value), journal.clone()]),
        json!([journal.clone(), details(MULTI_SYSTEM, &value)]),
    ] {
        let claims = org_claims(Tenancy::Multi, "assertion_details", Some(array)).await;
        assert_eq!(claims[ORGNR_PARENT], PARENT);
        assert_eq!(claims[ORGNR_CHILD], CHILD);
    }
    // The journal id alone: no organisation.
    let claims = org_claims(Tenancy::Multi, "assertion_details", Some(journal)).await;
    assert!(claims.get(ORGNR_PARENT).is_none());
}

#[tokio::test]
async fn older_authorization_details_array_is_accepted() {
    let value = format!("NO:ORGNR:{PARENT}:{CHILD}");
    let claims = org_claims(
        Tenancy::Multi,
        "authorization_details",
        Some(json!([details(MULTI_SYSTEM, &value)])),
    )
    .await;
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert_eq!(claims[ORGNR_CHILD], CHILD);
}

#[tokio::test]
async fn single_tenant_child_with_registered_parent() {
    let tenancy = Tenancy::Single {
        parent_orgnr: PARENT.to_owned(),
    };
    let claims = org_claims(
        tenancy,
        "assertion_details",
        Some(details(SINGLE_SYSTEM, CHILD)),
    )
    .await;
    assert_eq!(claims[TENANCY], "single");
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert_eq!(claims[ORGNR_CHILD], CHILD);
}

#[tokio::test]
async fn single_tenant_without_details_gets_its_parent() {
    let tenancy = Tenancy::Single {
        parent_orgnr: PARENT.to_owned(),
    };
    let claims = org_claims(tenancy, "assertion_details", None).await;
    assert_eq!(claims[TENANCY], "single");
    assert_eq!(claims[ORGNR_PARENT], PARENT);
    assert!(claims.get(ORGNR_CHILD).is_none());
}

// ---- client authentication: every rule ----

#[tokio::test]
async fn signature_by_another_key_is_invalid_client() {
    let client = TestClient::ec("victim");
    let attacker = TestClient::ec("victim");
    let emulator = emulator_with(&client).await;
    let assertion = attacker.assertion(&emulator);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "signature does not verify",
        &[&assertion],
    );
}

#[tokio::test]
async fn tampered_claims_are_invalid_client() {
    let client = TestClient::ec("tampered");
    let emulator = emulator_with(&client).await;
    let good = client.assertion(&emulator);
    let mut claims = client.claims(emulator.issuer());
    claims["scope"] = json!("more");
    let forged = client.sign(&claims);
    let parts: Vec<&str> = good.split('.').collect();
    let forged_parts: Vec<&str> = forged.split('.').collect();
    let assertion = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "signature does not verify",
        &[&assertion],
    );
}

#[tokio::test]
async fn aud_token_endpoint_is_invalid_client() {
    let client = TestClient::ec("old-style");
    let emulator = emulator_with(&client).await;
    let assertion = client.sign(&client.claims(&emulator.token_endpoint()));
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "aud must be the issuer",
        &[&assertion],
    );
    assert_refused(
        &result,
        "invalid_client",
        "not the token endpoint",
        &[&assertion],
    );
}

#[tokio::test]
async fn aud_other_than_exactly_the_issuer_is_invalid_client() {
    let client = TestClient::ec("aud");
    let emulator = emulator_with(&client).await;
    let issuer = emulator.issuer().to_owned();
    for aud in [
        json!(format!("{issuer}/")),
        json!([issuer, "https://elsewhere.example"]),
        json!([]),
        json!(42),
    ] {
        let mut claims = client.claims(&issuer);
        claims["aud"] = aud.clone();
        let assertion = client.sign(&claims);
        let result = request_token(&emulator, &client.id, &assertion, &[]).await;
        assert_refused(
            &result,
            "invalid_client",
            "must be exactly the issuer",
            &[&assertion],
        );
    }
    // Missing aud.
    let mut claims = client.claims(&issuer);
    claims.as_object_mut().expect("object").remove("aud");
    let assertion = client.sign(&claims);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(&result, "invalid_client", "no aud claim", &[&assertion]);
    // An array holding only the issuer is fine.
    let mut claims = client.claims(&issuer);
    claims["aud"] = json!([issuer]);
    let (status, body) = request_token(&emulator, &client.id, &client.sign(&claims), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn iss_other_than_client_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| c["iss"] = json!("someone-else")).await;
    assert_refused(
        &result,
        "invalid_client",
        "iss `someone-else` must equal the client_id",
        &[&assertion],
    );
}

#[tokio::test]
async fn sub_other_than_client_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| c["sub"] = json!("someone-else")).await;
    assert_refused(
        &result,
        "invalid_client",
        "sub `someone-else` must equal the client_id",
        &[&assertion],
    );
}

#[tokio::test]
async fn lifetime_over_60_seconds_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        let now = now();
        c["iat"] = json!(now);
        c["nbf"] = json!(now);
        c["exp"] = json!(now + 120);
    })
    .await;
    assert_refused(
        &result,
        "invalid_client",
        "exp - iat is 120 s; at most 60 s",
        &[&assertion],
    );
}

#[tokio::test]
async fn expired_assertion_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        let now = now();
        c["iat"] = json!(now - 60);
        c["nbf"] = json!(now - 60);
        c["exp"] = json!(now - 30);
    })
    .await;
    assert_refused(&result, "invalid_client", "has expired", &[&assertion]);
}

#[tokio::test]
async fn nbf_in_the_future_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        let now = now();
        c["iat"] = json!(now);
        c["nbf"] = json!(now + 30);
        c["exp"] = json!(now + 40);
    })
    .await;
    assert_refused(
        &result,
        "invalid_client",
        "not valid yet: nbf",
        &[&assertion],
    );
}

#[tokio::test]
async fn iat_in_the_future_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        let now = now();
        c["iat"] = json!(now + 30);
        c["nbf"] = json!(now);
        c["exp"] = json!(now + 40);
    })
    .await;
    assert_refused(
        &result,
        "invalid_client",
        "not valid yet: iat",
        &[&assertion],
    );
}

#[tokio::test]
async fn replayed_jti_is_invalid_client() {
    let client = TestClient::ec("replay");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let (status, body) = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "has been used before",
        &[&assertion],
    );

    // A new assertion that reuses the jti is refused too.
    let (_, first) = decode_jwt(&assertion);
    let mut claims = client.claims(emulator.issuer());
    claims["jti"] = first["jti"].clone();
    let again = client.sign(&claims);
    let result = request_token(&emulator, &client.id, &again, &[]).await;
    assert_refused(&result, "invalid_client", "has been used before", &[&again]);
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn missing_jti_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        c.as_object_mut().expect("object").remove("jti");
    })
    .await;
    assert_refused(&result, "invalid_client", "no jti claim", &[&assertion]);
}

#[tokio::test]
async fn typ_jwt_is_invalid_client() {
    let client = TestClient::ec("typ");
    let emulator = emulator_with(&client).await;
    let assertion = client
        .key
        .sign_jwt("JWT", &client.claims(emulator.issuer()))
        .expect("sign");
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "typ `JWT` is not accepted",
        &[&assertion],
    );
    assert_refused(
        &result,
        "invalid_client",
        "client-authentication+jwt",
        &[&assertion],
    );
}

#[tokio::test]
async fn missing_typ_is_invalid_client() {
    let client = TestClient::ec("no-typ");
    let emulator = emulator_with(&client).await;
    // A well-formed header without typ; the signature does not matter, typ is checked first.
    let header = json!({"alg": "ES256", "kid": client.key.kid()});
    let assertion = raw_jwt(&header, &client.claims(emulator.issuer()), &[0u8; 64]);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(&result, "invalid_client", "no typ", &[&assertion]);
}

#[tokio::test]
async fn forged_hs256_is_invalid_client() {
    let client = TestClient::rsa("hs256", 2048, Algorithm::RS256);
    let emulator = emulator_with(&client).await;
    // The classic confusion attack: an HMAC keyed with the public key.
    let header = json!({"alg": "HS256", "typ": ASSERTION_TYP});
    let claims = client.claims(emulator.issuer());
    let unsigned = raw_jwt(&header, &claims, b"");
    let message = unsigned.trim_end_matches('.');
    let secret = client.key.public_jwk().n.clone().expect("n");
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&hmac_key, message.as_bytes());
    let assertion = raw_jwt(&header, &claims, tag.as_ref());
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "alg `HS256` is not accepted",
        &[&assertion],
    );
}

#[tokio::test]
async fn alg_none_is_invalid_client() {
    let client = TestClient::ec("none");
    let emulator = emulator_with(&client).await;
    let header = json!({"alg": "none", "typ": ASSERTION_TYP});
    let assertion = raw_jwt(&header, &client.claims(emulator.issuer()), b"");
    assert!(assertion.ends_with('.'));
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "alg `none` is not accepted",
        &[&assertion],
    );
}

#[tokio::test]
async fn alg_that_does_not_fit_the_key_is_invalid_client() {
    let client = TestClient::ec("ec-client");
    let rsa = TestClient::rsa("ec-client", 2048, Algorithm::RS256);
    let emulator = emulator_with(&client).await;
    let assertion = rsa.assertion(&emulator);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "alg RS256 does not fit the EC P-256 key",
        &[&assertion],
    );
}

#[tokio::test]
async fn string_iat_is_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| c["iat"] = json!(now().to_string())).await;
    assert_refused(
        &result,
        "invalid_client",
        "iat is a string; it must be a JSON number",
        &[&assertion],
    );
}

#[tokio::test]
async fn missing_or_fractional_times_are_invalid_client() {
    let (result, assertion) = refused_with_claims(|c| {
        c.as_object_mut().expect("object").remove("nbf");
    })
    .await;
    assert_refused(&result, "invalid_client", "no nbf claim", &[&assertion]);
    let (result, assertion) = refused_with_claims(|c| c["exp"] = json!(now() as f64 + 10.5)).await;
    assert_refused(
        &result,
        "invalid_client",
        "exp must be a whole number",
        &[&assertion],
    );
}

#[tokio::test]
async fn malformed_jwt_is_invalid_client() {
    let client = TestClient::ec("garbage");
    let emulator = emulator_with(&client).await;
    for assertion in ["not-a-jwt", "a.b", "a.b.c.d.e", "!!!.e30.e30"] {
        let result = request_token(&emulator, &client.id, assertion, &[]).await;
        assert_eq!(
            result.1["error"], "invalid_client",
            "{assertion}: {}",
            result.1
        );
    }
}

#[tokio::test]
async fn scope_not_granted_is_invalid_scope() {
    let client = TestClient::ec("scoped");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let scope = [("scope", "nhn:cp-api/access e-helse:sfm.api/sfm.api")];
    let result = request_token(&emulator, &client.id, &assertion, &scope).await;
    assert_refused(
        &result,
        "invalid_scope",
        "scope `e-helse:sfm.api/sfm.api` is not granted",
        &[&assertion],
    );
    assert_eq!(emulator.tokens_issued(), 0);
}

#[tokio::test]
async fn malformed_assertion_details_are_invalid_request() {
    let orgnr = format!("NO:ORGNR:{PARENT}:{CHILD}");
    let good = details(MULTI_SYSTEM, &orgnr);
    let mut wrong_type = good.clone();
    wrong_type["type"] = json!("something_else");
    let mut no_identifier = good.clone();
    no_identifier["practitioner_role"]["organization"] = json!({});
    let mut wrong_kind = good.clone();
    wrong_kind["practitioner_role"]["organization"]["identifier"]["type"] = json!("HER");
    let mut numeric_value = good.clone();
    numeric_value["practitioner_role"]["organization"]["identifier"]["value"] = json!(912345678);
    let cases = [
        (
            json!("NO:ORGNR:912345678"),
            "HID-1007: assertion_details must be an object",
        ),
        (
            json!([good.clone(), good.clone()]),
            "holds more than one helseid_authorization detail",
        ),
        (json!([]), "it is an empty array"),
        (
            json!([good.clone(), "x"]),
            "assertion_details[1] must be an object",
        ),
        (
            json!([good.clone(), {"type": "nhn:sfm:journal-id", "value": {}}]),
            "assertion_details[1].value.journal_id is missing",
        ),
        (
            json!([good.clone(), {"type": "nhn:sfm:journal-id", "value": {"journal_id": "a b"}}]),
            "journal_id must be a non-empty string without white space",
        ),
        (
            wrong_type,
            "HID-1007: assertion_details.type is `something_else`",
        ),
        (
            no_identifier,
            "HID-1007: assertion_details.practitioner_role.organization.identifier is missing",
        ),
        (wrong_kind, "identifier.type is `HER`; it must be ENH"),
        (numeric_value, "identifier.value must be a string"),
        (
            details(SINGLE_SYSTEM, &orgnr),
            "a multi-tenant client must use urn:oid:1.0.6523",
        ),
        (details(MULTI_SYSTEM, PARENT), "HID-1004"),
        (details(MULTI_SYSTEM, "NO:ORGNR:12345678"), "HID-1004"),
        (
            details(MULTI_SYSTEM, "NO:ORGNR:912345678:98765432X"),
            "HID-1004",
        ),
        (
            details(MULTI_SYSTEM, "NO:ORGNR:912345678:987654321:1"),
            "HID-1004",
        ),
        (details(MULTI_SYSTEM, "no:orgnr:912345678"), "HID-1004"),
    ];
    let client = TestClient::ec("details");
    let emulator = emulator_with(&client).await;
    for (value, fragment) in cases {
        let mut claims = client.claims(emulator.issuer());
        claims["assertion_details"] = value.clone();
        let assertion = client.sign(&claims);
        let result = request_token(&emulator, &client.id, &assertion, &[]).await;
        assert_refused(&result, "invalid_request", fragment, &[&assertion]);
    }
    assert_eq!(emulator.tokens_issued(), 0);
}

#[tokio::test]
async fn malformed_single_tenant_details_are_invalid_request() {
    let client = TestClient::ec("single");
    let tenancy = Tenancy::Single {
        parent_orgnr: PARENT.to_owned(),
    };
    let emulator = emulator_with_tenancy(&client, tenancy).await;
    let cases = [
        (
            details(MULTI_SYSTEM, &format!("NO:ORGNR:{PARENT}:{CHILD}")),
            "HID-1007: assertion_details.practitioner_role.organization.identifier.system",
        ),
        (
            details(SINGLE_SYSTEM, &format!("NO:ORGNR:{CHILD}")),
            "HID-1004",
        ),
        (
            details(SINGLE_SYSTEM, "98765432"),
            "must be the child organisation's number",
        ),
    ];
    for (value, fragment) in cases {
        let mut claims = client.claims(emulator.issuer());
        claims["assertion_details"] = value;
        let assertion = client.sign(&claims);
        let result = request_token(&emulator, &client.id, &assertion, &[]).await;
        assert_refused(&result, "invalid_request", fragment, &[&assertion]);
    }
}

#[tokio::test]
async fn both_details_claims_are_invalid_request() {
    let value = details(MULTI_SYSTEM, &format!("NO:ORGNR:{PARENT}"));
    let (result, assertion) = refused_with_claims(|c| {
        c["assertion_details"] = value.clone();
        c["authorization_details"] = json!([value]);
    })
    .await;
    assert_refused(
        &result,
        "invalid_request",
        "HID-1007: the client assertion carries both assertion_details and authorization_details",
        &[&assertion],
    );
}

#[tokio::test]
async fn unknown_client_is_invalid_client() {
    let client = TestClient::ec("known");
    let stranger = TestClient::ec("stranger");
    let emulator = emulator_with(&client).await;
    let assertion = stranger.assertion(&emulator);
    let result = request_token(&emulator, &stranger.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_client",
        "unknown client_id `stranger`",
        &[&assertion],
    );
}

#[tokio::test]
async fn wrong_client_assertion_type_is_invalid_client() {
    let client = TestClient::ec("assertion-type");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    let result = post_form(&emulator.token_endpoint(), &fields).await;
    assert_refused(
        &result,
        "invalid_client",
        "saml2-bearer` is not supported",
        &[&assertion],
    );

    let result = post_form(
        &emulator.token_endpoint(),
        &[&fields[..2], &fields[3..]].concat(),
    )
    .await;
    assert_refused(
        &result,
        "invalid_client",
        "client_assertion_type is missing",
        &[&assertion],
    );
}

#[tokio::test]
async fn missing_assertion_or_client_id_is_invalid_client() {
    let client = TestClient::ec("no-assertion");
    let emulator = emulator_with(&client).await;
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
    ];
    let result = post_form(&emulator.token_endpoint(), &fields).await;
    assert_refused(
        &result,
        "invalid_client",
        "client_assertion is missing",
        &[""],
    );
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_secret", "hunter2"),
    ];
    let result = post_form(&emulator.token_endpoint(), &fields).await;
    assert_refused(&result, "invalid_client", "client_id is missing", &[""]);
}

#[tokio::test]
async fn unsupported_grant_type_is_refused() {
    let client = TestClient::ec("grants");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let fields = [
        ("grant_type", "password"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("username", "u"),
        ("password", "p"),
    ];
    let result = post_form(&emulator.token_endpoint(), &fields).await;
    assert_refused(
        &result,
        "unsupported_grant_type",
        "grant_type `password` is not supported",
        &[&assertion],
    );
    let result = post_form(&emulator.token_endpoint(), &fields[1..4]).await;
    assert_refused(
        &result,
        "unsupported_grant_type",
        "grant_type is missing",
        &[&assertion],
    );
}

#[tokio::test]
async fn non_form_request_is_invalid_request() {
    let client = TestClient::ec("json");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let body = json!({
        "grant_type": "client_credentials",
        "client_id": client.id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    })
    .to_string();
    let (status, headers, body) =
        post_raw(&emulator.token_endpoint(), Some("application/json"), body).await;
    assert_refused(
        &(status, body),
        "invalid_request",
        "Content-Type application/x-www-form-urlencoded",
        &[&assertion],
    );
    assert_eq!(headers["cache-control"], "no-store");
    let form = form_body(&[("grant_type", "client_credentials")]);
    let (status, _, body) = post_raw(&emulator.token_endpoint(), None, form).await;
    assert_refused(
        &(status, body),
        "invalid_request",
        "(got none)",
        &[&assertion],
    );
}

#[tokio::test]
async fn repeated_parameter_is_invalid_request() {
    let client = TestClient::ec("twice");
    let emulator = emulator_with(&client).await;
    let assertion = client.assertion(&emulator);
    let result = request_token(&emulator, &client.id, &assertion, &[("client_id", "other")]).await;
    assert_refused(
        &result,
        "invalid_request",
        "parameter `client_id` is given more than once",
        &[&assertion],
    );
}

// ---- counters, delay, verification, lifecycle ----

#[tokio::test]
async fn counters_count_every_request() {
    let client = TestClient::ec("counted");
    let emulator = emulator_with(&client).await;
    assert_eq!(
        (emulator.token_requests(), emulator.tokens_issued()),
        (0, 0)
    );
    let assertion = client.assertion(&emulator);
    request_token(&emulator, &client.id, &assertion, &[]).await;
    request_token(&emulator, &client.id, &assertion, &[]).await; // replay: refused
    post_raw(&emulator.token_endpoint(), Some("text/plain"), "x".into()).await;
    request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    assert_eq!(emulator.token_requests(), 4);
    assert_eq!(emulator.tokens_issued(), 2);
    // Discovery does not count.
    get_json(&format!(
        "{}/.well-known/openid-configuration",
        emulator.issuer()
    ))
    .await;
    assert_eq!(emulator.token_requests(), 4);
    let debug = format!("{emulator:?}");
    assert!(
        debug.contains(emulator.issuer()) && debug.contains("token_requests: 4"),
        "{debug}"
    );
}

#[tokio::test(start_paused = true)]
async fn token_delay_holds_the_answer() {
    let client = TestClient::ec("slow");
    let emulator = emulator_with(&client).await;
    emulator.set_token_delay(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let assertion = client.assertion(&emulator);
    let (status, body) = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(emulator.token_requests(), 1);

    emulator.set_token_delay(Duration::ZERO);
    let started = tokio::time::Instant::now();
    let (status, _) = request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_delayed_request_is_counted_before_it_is_answered() {
    let client = TestClient::ec("in-flight");
    let emulator = std::sync::Arc::new(emulator_with(&client).await);
    emulator.set_token_delay(Duration::from_secs(10));
    let assertion = client.assertion(&emulator);
    let task = tokio::spawn({
        let emulator = std::sync::Arc::clone(&emulator);
        let id = client.id.clone();
        async move { request_token(&emulator, &id, &assertion, &[]).await }
    });
    while emulator.token_requests() == 0 {
        tokio::task::yield_now().await;
    }
    assert!(!task.is_finished());
    let (status, _) = task.await.expect("task");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn verify_access_token_refuses_foreign_and_tampered_tokens() {
    let client = TestClient::ec("verify");
    let emulator = emulator_with(&client).await;
    let other = emulator_with(&client).await;
    let (_, body) = request_token(&other, &client.id, &client.assertion(&other), &[]).await;
    let foreign = body["access_token"].as_str().expect("token").to_owned();
    let error = emulator
        .verify_access_token(&foreign)
        .expect_err("foreign token");
    assert!(!error.contains(&foreign));

    let (_, body) = request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    let token = body["access_token"].as_str().expect("token");
    assert!(emulator.verify_access_token(token).is_ok());
    let parts: Vec<&str> = token.split('.').collect();
    let (header, mut claims) = decode_jwt(token);
    claims["scope"] = json!(["everything"]);
    let tampered = raw_jwt(&header, &claims, b"");
    let tampered = format!("{}{}", tampered, parts[2]);
    let error = emulator
        .verify_access_token(&tampered)
        .expect_err("tampered");
    assert!(error.contains("signature"), "{error}");

    // A client assertion is not an access token (typ).
    let error = emulator
        .verify_access_token(&client.assertion(&emulator))
        .expect_err("assertion");
    assert!(error.contains("at+jwt"), "{error}");
    assert!(emulator.verify_access_token("garbage").is_err());
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let client = TestClient::ec("stop");
    let emulator = emulator_with(&client).await;
    let addr = emulator.local_addr();
    get_json(&format!(
        "{}/.well-known/openid-configuration",
        emulator.issuer()
    ))
    .await;
    emulator.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let emulator = emulator_with(&client).await;
    let addr = emulator.local_addr();
    drop(emulator);
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "dropping the emulator stops the server");
}

#[tokio::test]
async fn bad_registrations_are_refused_at_start() {
    let client = TestClient::ec("dup");
    let err = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .client(client.registration(&[]))
        .start()
        .await
        .expect_err("duplicate");
    assert!(err.to_string().contains("registered twice"), "{err}");

    let err = Emulator::builder()
        .client(client.registration(&[]).tenancy(Tenancy::Single {
            parent_orgnr: "12345".into(),
        }))
        .start()
        .await
        .expect_err("bad parent");
    assert!(err.to_string().contains("parent_orgnr"), "{err}");

    let mut jwk = client.key.public_jwk().clone();
    jwk.crv = Some("P-192".into());
    let err = Emulator::builder()
        .client(ClientRegistration::new("p521", jwk))
        .start()
        .await
        .expect_err("bad key");
    assert!(err.to_string().contains("P-192"), "{err}");

    let mut jwk = client.key.public_jwk().clone();
    jwk.x = Some("AAAA".into());
    let err = Emulator::builder()
        .client(ClientRegistration::new("short-x", jwk))
        .start()
        .await
        .expect_err("bad coordinate");
    assert!(err.to_string().contains("`x` must be 32 bytes"), "{err}");

    let err = Emulator::builder()
        .access_token_lifetime(Duration::from_millis(500))
        .start()
        .await
        .expect_err("lifetime");
    assert!(err.to_string().contains("access_token_lifetime"), "{err}");
}
