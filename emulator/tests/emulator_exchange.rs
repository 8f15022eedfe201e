//! Token exchange (RFC 8693, the SFM pattern), rotating refresh tokens and the test token
//! endpoint of the emulator. Everything goes over real HTTP on 127.0.0.1, with client
//! assertions signed by the test clients' own keys; no test depends on timing.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_emulator::{Emulator, Tenancy, TestTokenRequest};
use support::*;

/// The SFM API's scope: tokens with it have `aud: e-helse:sfm.api`.
const SFM_SCOPE: &str = "e-helse:sfm.api/sfm.api";
/// The audience SFM serves.
const SFM_AUDIENCE: &str = "e-helse:sfm.api";
/// A downstream API SFM calls.
const RF_SCOPE: &str = "nhn:reseptformidleren/access";
/// Another scope of the downstream API.
const RF_READ_SCOPE: &str = "nhn:reseptformidleren/read";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const DEFAULT_PID: &str = "13116900216";
const PARENT: &str = "912345678";
const CHILD: &str = "987654321";

/// The EPJ (the original client), the SFM actor, and an emulator with both.
struct Setup {
    epj: TestClient,
    sfm: TestClient,
    emulator: Emulator,
}

async fn setup() -> Setup {
    let epj = TestClient::ec("epj");
    let sfm = TestClient::ec("sfm");
    let emulator = Emulator::builder()
        .client(epj.registration(&[SFM_SCOPE, CP_SCOPE]))
        .client(
            sfm.registration(&[RF_SCOPE, RF_READ_SCOPE])
                .audience(SFM_AUDIENCE),
        )
        .start()
        .await
        .expect("emulator starts");
    Setup { epj, sfm, emulator }
}

/// An `assertion_details` claim naming a parent and a child organisation.
fn details(parent: &str, child: &str) -> Value {
    json!({
        "type": "helseid_authorization",
        "practitioner_role": {"organization": {"identifier": {
            "system": "urn:oid:1.0.6523", "type": "ENH",
            "value": format!("NO:ORGNR:{parent}:{child}")
        }}}
    })
}

/// A client credentials token for `client` with `scope`.
async fn client_token(emulator: &Emulator, client: &TestClient, scope: &str) -> String {
    let (status, body) = request_token(
        emulator,
        &client.id,
        &client.assertion(emulator),
        &[("scope", scope)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A token exchange by `actor`: the usual fields, with `changes` applied (`None` removes
/// a field, `Some` sets it).
async fn exchange_with(
    emulator: &Emulator,
    actor: &TestClient,
    subject: &str,
    changes: &[(&str, Option<&str>)],
) -> (StatusCode, Value) {
    let assertion = actor.assertion(emulator);
    let mut fields: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("client_id", &actor.id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", &assertion),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("scope", RF_SCOPE),
    ];
    for &(name, value) in changes {
        fields.retain(|(field, _)| *field != name);
        if let Some(value) = value {
            fields.push((name, value));
        }
    }
    post_form(&emulator.token_endpoint(), &fields).await
}

/// A token exchange by `actor` with the usual fields.
async fn exchange(emulator: &Emulator, actor: &TestClient, subject: &str) -> (StatusCode, Value) {
    exchange_with(emulator, actor, subject, &[]).await
}

/// A refresh by `client`, adding `extra` form fields.
async fn refresh(
    emulator: &Emulator,
    client: &TestClient,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let assertion = client.assertion(emulator);
    let mut fields = vec![
        ("grant_type", "refresh_token"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("refresh_token", refresh_token),
    ];
    fields.extend_from_slice(extra);
    post_form(&emulator.token_endpoint(), &fields).await
}

/// Posts a JSON body to `POST /test-token`; returns status, headers and JSON body.
async fn post_test_token(
    emulator: &Emulator,
    body: &Value,
) -> (StatusCode, http::HeaderMap, Value) {
    post_raw(
        &format!("{}/test-token", emulator.issuer()),
        Some("application/json"),
        body.to_string(),
    )
    .await
}

/// A user token set for `client_id` from `POST /test-token`.
async fn user_tokens(emulator: &Emulator, client_id: &str, scopes: &[&str]) -> Value {
    let (status, _, body) =
        post_test_token(emulator, &json!({"clientId": client_id, "scopes": scopes})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn text<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

// ---- token exchange ----

#[tokio::test]
async fn exchange_keeps_the_original_client_and_adds_act() {
    let Setup { epj, sfm, emulator } = setup().await;
    let mut claims = epj.claims(emulator.issuer());
    claims["assertion_details"] = details(PARENT, CHILD);
    let (status, body) = request_token(
        &emulator,
        &epj.id,
        &epj.sign(&claims),
        &[("scope", SFM_SCOPE)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let subject = text(&body, "access_token").to_owned();
    let subject_claims = emulator.verify_access_token(&subject).expect("subject");
    assert_eq!(subject_claims["aud"], SFM_AUDIENCE);

    let (status, body) = exchange(&emulator, &sfm, &subject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], RF_SCOPE);
    assert!(body.get("refresh_token").is_none(), "{body}");
    let token = text(&body, "access_token");
    let (header, _) = decode_jwt(token);
    assert_eq!(header["typ"], "at+jwt");

    let claims = emulator
        .verify_access_token(token)
        .expect("exchanged token");
    assert_eq!(claims["iss"], emulator.issuer());
    assert_eq!(claims["client_id"], epj.id);
    assert_eq!(claims["act"], json!({"client_id": sfm.id}));
    assert_eq!(claims["aud"], "nhn:reseptformidleren");
    assert_eq!(claims["scope"], json!([RF_SCOPE]));
    assert_eq!(claims["client_amr"], "private_key_jwt");
    assert_eq!(claims["helseid://claims/client/client_tenancy"], "multi");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        PARENT
    );
    assert_eq!(claims["helseid://claims/client/claims/orgnr_child"], CHILD);
    assert!(claims.get("sub").is_none(), "no user in a client token");
    assert!(claims["exp"].as_i64() <= subject_claims["exp"].as_i64());
    assert_ne!(claims["jti"], subject_claims["jti"]);
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((1..=3600).contains(&expires_in), "{expires_in}");

    assert_eq!(emulator.token_exchanges(), 1);
    assert_eq!(emulator.tokens_issued(), 2);
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test]
async fn exchange_keeps_the_user() {
    let Setup { epj, sfm, emulator } = setup().await;
    let tokens = user_tokens(&emulator, &epj.id, &[SFM_SCOPE]).await;
    let subject = text(&tokens, "access_token");
    let subject_claims = emulator.verify_access_token(subject).expect("subject");

    let (status, body) = exchange(&emulator, &sfm, subject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("exchanged token");
    for name in [
        "sub",
        "amr",
        "helseid://claims/identity/pid",
        "helseid://claims/identity/security_level",
        "client_id",
    ] {
        assert_eq!(claims[name], subject_claims[name], "{name}");
    }
    assert_eq!(claims["helseid://claims/identity/pid"], DEFAULT_PID);
    assert_eq!(claims["act"]["client_id"], sfm.id);
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test]
async fn exchanged_token_never_outlives_the_subject_token() {
    let Setup { epj, sfm, emulator } = setup().await;
    let exp = now() + 100;
    let subject = emulator
        .sign_access_token(&json!({
            "iss": emulator.issuer(), "aud": SFM_AUDIENCE, "scope": [SFM_SCOPE],
            "client_id": epj.id, "iat": now(), "exp": exp, "jti": random_jti(),
        }))
        .expect("sign");
    let (status, body) = exchange(&emulator, &sfm, &subject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("exchanged token");
    assert_eq!(claims["exp"], exp);
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((1..=100).contains(&expires_in), "{expires_in}");
}

#[tokio::test]
async fn an_earlier_act_is_nested() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = emulator
        .sign_access_token(&json!({
            "iss": emulator.issuer(), "aud": [SFM_AUDIENCE, "nhn:other"],
            "scope": [SFM_SCOPE], "client_id": epj.id, "iat": now(),
            "exp": now() + 600, "jti": random_jti(),
            "act": {"client_id": "first-api"},
        }))
        .expect("sign");
    let (status, body) = exchange(&emulator, &sfm, &subject).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("exchanged token");
    assert_eq!(
        claims["act"],
        json!({"client_id": sfm.id, "act": {"client_id": "first-api"}})
    );
}

#[tokio::test]
async fn subject_token_of_another_issuer_is_invalid_grant() {
    let Setup { epj, sfm, emulator } = setup().await;
    // Another emulator, with the same registrations: its key is not this one's.
    let other = Emulator::builder()
        .client(epj.registration(&[SFM_SCOPE]))
        .start()
        .await
        .expect("other emulator");
    let foreign = client_token(&other, &epj, SFM_SCOPE).await;
    let result = exchange(&emulator, &sfm, &foreign).await;
    assert_refused(&result, "invalid_grant", "subject_token", &[&foreign]);
    assert_refused(
        &result,
        "invalid_grant",
        "not the emulator's signing key",
        &[&foreign],
    );

    // This emulator's kid over changed claims: the signature does not verify.
    let genuine = client_token(&emulator, &epj, SFM_SCOPE).await;
    let signature = genuine.rsplit('.').next().expect("signature");
    let (header, mut claims) = decode_jwt(&genuine);
    claims["client_id"] = json!("someone-else");
    let forged = format!("{}{signature}", raw_jwt(&header, &claims, b""));
    let result = exchange(&emulator, &sfm, &forged).await;
    assert_refused(
        &result,
        "invalid_grant",
        "signature does not verify",
        &[&forged],
    );

    // A token signed by another RSA key.
    let stranger =
        SigningKey::from_jwk(&PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("RSA key"))
            .expect("key");
    let stranger_token = stranger.sign_jwt("at+jwt", &claims).expect("sign");
    let result = exchange(&emulator, &sfm, &stranger_token).await;
    assert_refused(
        &result,
        "invalid_grant",
        "subject_token",
        &[&stranger_token],
    );

    // A client assertion is no access token.
    let assertion = epj.assertion(&emulator);
    let result = exchange(&emulator, &sfm, &assertion).await;
    assert_refused(&result, "invalid_grant", "at+jwt", &[&assertion]);

    let result = exchange(&emulator, &sfm, "not-a-jwt").await;
    assert_refused(&result, "invalid_grant", "not a well-formed JWT", &[]);
    assert_eq!(emulator.invalid_grants(), 5);
    assert_eq!(emulator.token_exchanges(), 0);
}

#[tokio::test]
async fn expired_subject_token_is_invalid_grant() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = emulator
        .sign_access_token(&json!({
            "iss": emulator.issuer(), "aud": SFM_AUDIENCE, "scope": [SFM_SCOPE],
            "client_id": epj.id, "iat": now() - 4000, "exp": now() - 60,
            "jti": random_jti(),
        }))
        .expect("sign");
    let result = exchange(&emulator, &sfm, &subject).await;
    assert_refused(&result, "invalid_grant", "expired", &[&subject]);
    assert_refused(&result, "invalid_grant", "subject_token", &[&subject]);
    assert_eq!(emulator.invalid_grants(), 1);
}

#[tokio::test]
async fn subject_token_type_other_than_access_token_is_invalid_request() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = client_token(&emulator, &epj, SFM_SCOPE).await;
    let result = exchange_with(
        &emulator,
        &sfm,
        &subject,
        &[(
            "subject_token_type",
            Some("urn:ietf:params:oauth:token-type:id_token"),
        )],
    )
    .await;
    assert_refused(
        &result,
        "invalid_request",
        "subject_token_type `urn:ietf:params:oauth:token-type:id_token` is not supported",
        &[&subject],
    );
    let result = exchange_with(&emulator, &sfm, &subject, &[("subject_token_type", None)]).await;
    assert_refused(
        &result,
        "invalid_request",
        "subject_token_type is missing",
        &[&subject],
    );
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test]
async fn subject_token_for_another_api_is_invalid_grant() {
    let Setup { epj, sfm, emulator } = setup().await;
    // A token for the CommunicationParty API is not meant for SFM.
    let subject = client_token(&emulator, &epj, CP_SCOPE).await;
    let result = exchange(&emulator, &sfm, &subject).await;
    assert_refused(
        &result,
        "invalid_grant",
        "the subject_token is not meant for client `sfm`: its aud `nhn:cp-api` holds none of the client's audiences `e-helse:sfm.api`",
        &[&subject],
    );

    // A client registered with no audience is no API: nothing is meant for it.
    let epj2 = TestClient::ec("epj");
    let plain = TestClient::ec("plain");
    let emulator = Emulator::builder()
        .client(epj2.registration(&[SFM_SCOPE]))
        .client(plain.registration(&[RF_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let subject = client_token(&emulator, &epj2, SFM_SCOPE).await;
    let result = exchange(&emulator, &plain, &subject).await;
    assert_refused(
        &result,
        "invalid_grant",
        "not meant for client `plain`: the client is registered as no API (no audience)",
        &[&subject],
    );
}

#[tokio::test]
async fn downstream_scope_not_granted_to_the_actor_is_invalid_scope() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = client_token(&emulator, &epj, SFM_SCOPE).await;
    // The EPJ has the CP scope, the actor does not: the actor's grants count.
    let result = exchange_with(&emulator, &sfm, &subject, &[("scope", Some(CP_SCOPE))]).await;
    assert_refused(
        &result,
        "invalid_scope",
        "scope `nhn:cp-api/access` is not granted to client `sfm`",
        &[&subject],
    );
    let result = exchange_with(&emulator, &sfm, &subject, &[("scope", None)]).await;
    assert_refused(&result, "invalid_request", "scope is missing", &[&subject]);
    assert_eq!(emulator.token_exchanges(), 0);
}

#[tokio::test]
async fn missing_subject_token_and_unsupported_parameters_are_refused() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = client_token(&emulator, &epj, SFM_SCOPE).await;
    let result = exchange_with(&emulator, &sfm, &subject, &[("subject_token", None)]).await;
    assert_refused(
        &result,
        "invalid_request",
        "subject_token is missing",
        &[&subject],
    );
    let result = exchange_with(
        &emulator,
        &sfm,
        &subject,
        &[
            ("actor_token", Some(subject.as_str())),
            ("actor_token_type", Some(ACCESS_TOKEN_TYPE)),
        ],
    )
    .await;
    assert_refused(
        &result,
        "invalid_request",
        "actor_token is not supported",
        &[&subject],
    );
    let result = exchange_with(
        &emulator,
        &sfm,
        &subject,
        &[(
            "requested_token_type",
            Some("urn:ietf:params:oauth:token-type:refresh_token"),
        )],
    )
    .await;
    assert_refused(
        &result,
        "invalid_request",
        "requested_token_type `urn:ietf:params:oauth:token-type:refresh_token` is not supported",
        &[&subject],
    );
    let result = exchange_with(
        &emulator,
        &sfm,
        &subject,
        &[("requested_token_type", Some(ACCESS_TOKEN_TYPE))],
    )
    .await;
    assert_eq!(result.0, StatusCode::OK, "{}", result.1);
}

#[tokio::test]
async fn the_actor_authenticates_as_strictly_as_for_client_credentials() {
    let Setup { epj, sfm, emulator } = setup().await;
    let subject = client_token(&emulator, &epj, SFM_SCOPE).await;
    // The EPJ's own assertion does not make it the actor SFM.
    let assertion = epj.assertion(&emulator);
    let result = exchange_with(
        &emulator,
        &sfm,
        &subject,
        &[("client_assertion", Some(assertion.as_str()))],
    )
    .await;
    assert_refused(
        &result,
        "invalid_client",
        "signature does not verify with the key registered for client `sfm`",
        &[&subject, &assertion],
    );
    // A replayed assertion.
    let assertion = sfm.assertion(&emulator);
    let fields = &[("client_assertion", Some(assertion.as_str()))];
    let first = exchange_with(&emulator, &sfm, &subject, fields).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    let result = exchange_with(&emulator, &sfm, &subject, fields).await;
    assert_refused(
        &result,
        "invalid_client",
        "has been used before",
        &[&subject, &assertion],
    );
    assert_eq!(emulator.token_exchanges(), 1);
}

// ---- refresh tokens ----

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_keeps_the_user() {
    let Setup { epj, emulator, .. } = setup().await;
    let tokens = user_tokens(&emulator, &epj.id, &[SFM_SCOPE]).await;
    let first = text(&tokens, "refresh_token").to_owned();
    let original = emulator
        .verify_access_token(text(&tokens, "access_token"))
        .expect("access token");

    let (status, body) = refresh(&emulator, &epj, &first, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], SFM_SCOPE);
    let second = text(&body, "refresh_token").to_owned();
    assert_ne!(second, first, "refresh tokens rotate");
    let rt_expires_in = body["rt_expires_in"].as_i64().expect("rt_expires_in");
    assert!(
        rt_expires_in > 0 && rt_expires_in <= tokens["rt_expires_in"].as_i64().expect("first"),
        "{rt_expires_in}"
    );
    let access_token = text(&body, "access_token");
    assert_ne!(access_token, text(&tokens, "access_token"));
    let claims = emulator
        .verify_access_token(access_token)
        .expect("refreshed");
    for name in [
        "sub",
        "amr",
        "auth_time",
        "helseid://claims/identity/pid",
        "helseid://claims/identity/security_level",
        "client_id",
        "aud",
        "scope",
    ] {
        assert_eq!(claims[name], original[name], "{name}");
    }

    // The second refresh token works once too.
    let (status, body) = refresh(&emulator, &epj, &second, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let third = text(&body, "refresh_token").to_owned();
    assert_eq!(emulator.refreshes(), 2);
    assert_eq!(emulator.invalid_grants(), 0);

    // The first one again: used, and the session's newest refresh token is revoked.
    let result = refresh(&emulator, &epj, &first, &[]).await;
    assert_refused(&result, "invalid_grant", "has been used already", &[&first]);
    let result = refresh(&emulator, &epj, &third, &[]).await;
    assert_refused(&result, "invalid_grant", "has been revoked", &[&third]);
    let result = refresh(&emulator, &epj, &second, &[]).await;
    assert_refused(
        &result,
        "invalid_grant",
        "has been used already",
        &[&second],
    );
    assert_eq!(emulator.refreshes(), 2);
    assert_eq!(emulator.invalid_grants(), 3);
}

#[tokio::test]
async fn unknown_refresh_token_is_invalid_grant() {
    let Setup { epj, emulator, .. } = setup().await;
    let unknown = "A".repeat(43);
    let result = refresh(&emulator, &epj, &unknown, &[]).await;
    assert_refused(
        &result,
        "invalid_grant",
        "refresh_token is unknown",
        &[&unknown],
    );
    let result = refresh(&emulator, &epj, "", &[]).await;
    assert_refused(&result, "invalid_request", "refresh_token is missing", &[]);
    assert_eq!(emulator.invalid_grants(), 1);
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let Setup { epj, sfm, emulator } = setup().await;
    let tokens = user_tokens(&emulator, &epj.id, &[SFM_SCOPE]).await;
    let refresh_token = text(&tokens, "refresh_token");
    let result = refresh(&emulator, &sfm, refresh_token, &[]).await;
    assert_refused(
        &result,
        "invalid_grant",
        "was not issued to client `sfm`",
        &[refresh_token],
    );
    assert_eq!(emulator.invalid_grants(), 1);
    // The other client's attempt did not spend it.
    let (status, body) = refresh(&emulator, &epj, refresh_token, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn expired_refresh_token_is_invalid_grant() {
    let Setup { epj, emulator, .. } = setup().await;
    let tokens = user_tokens(&emulator, &epj.id, &[SFM_SCOPE]).await;
    let refresh_token = text(&tokens, "refresh_token");
    assert!(emulator.expire_refresh_token(refresh_token));
    assert!(!emulator.expire_refresh_token("unknown"));
    let result = refresh(&emulator, &epj, refresh_token, &[]).await;
    assert_refused(
        &result,
        "invalid_grant",
        "the refresh_token expired",
        &[refresh_token],
    );
    assert_eq!(emulator.invalid_grants(), 1);
    assert_eq!(emulator.refreshes(), 0);
}

#[tokio::test]
async fn refresh_may_narrow_the_scopes_but_not_widen_them() {
    let Setup { sfm, emulator, .. } = setup().await;
    let tokens = user_tokens(&emulator, &sfm.id, &[RF_SCOPE]).await;
    let refresh_token = text(&tokens, "refresh_token");
    let result = refresh(
        &emulator,
        &sfm,
        refresh_token,
        &[("scope", &format!("{RF_SCOPE} {RF_READ_SCOPE}"))],
    )
    .await;
    assert_refused(
        &result,
        "invalid_scope",
        "scope `nhn:reseptformidleren/read` was not granted with the refresh_token",
        &[refresh_token],
    );
    // Refused scopes do not spend the refresh token.
    let (status, body) = refresh(&emulator, &sfm, refresh_token, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let tokens = user_tokens(&emulator, &sfm.id, &[]).await;
    assert_eq!(tokens["scope"], format!("{RF_SCOPE} {RF_READ_SCOPE}"));
    let (status, body) = refresh(
        &emulator,
        &sfm,
        text(&tokens, "refresh_token"),
        &[("scope", RF_READ_SCOPE)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], RF_READ_SCOPE);
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("narrowed");
    assert_eq!(claims["scope"], json!([RF_READ_SCOPE]));
    // The session keeps its scopes: the next refresh without scope gets them all.
    let (status, body) = refresh(&emulator, &sfm, text(&body, "refresh_token"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], format!("{RF_SCOPE} {RF_READ_SCOPE}"));
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test]
async fn refresh_keeps_the_organisations_of_the_session() {
    let epj = TestClient::ec("single-epj");
    let emulator = Emulator::builder()
        .client(epj.registration(&[SFM_SCOPE]).tenancy(Tenancy::Single {
            parent_orgnr: PARENT.into(),
        }))
        .start()
        .await
        .expect("emulator");
    let tokens = emulator
        .mint_test_token(
            &TestTokenRequest::new(&epj.id, [SFM_SCOPE]).organisation(None, Some(CHILD)),
        )
        .expect("test token");
    let (status, body) = refresh(&emulator, &epj, text(&tokens, "refresh_token"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("refreshed");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        PARENT
    );
    assert_eq!(claims["helseid://claims/client/claims/orgnr_child"], CHILD);
    assert_eq!(claims["helseid://claims/client/client_tenancy"], "single");

    // An assertion naming another child organisation gets a token for that one (NHN's
    // pattern since 2026: one user session, tokens per organisation).
    let refresh_token = text(&body, "refresh_token").to_owned();
    let mut assertion_claims = epj.claims(emulator.issuer());
    assertion_claims["assertion_details"] = json!({
        "type": "helseid_authorization",
        "practitioner_role": {"organization": {"identifier": {
            "system": "urn:oid:2.16.578.1.12.4.1.4.101", "type": "ENH", "value": "123456789"
        }}}
    });
    let assertion = epj.sign(&assertion_claims);
    let fields = [
        ("grant_type", "refresh_token"),
        ("client_id", epj.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("refresh_token", refresh_token.as_str()),
    ];
    let (status, body) = post_form(&emulator.token_endpoint(), &fields).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("refreshed for the other child");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        PARENT
    );
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_child"],
        "123456789"
    );
    // The session keeps its own organisations for a refresh that names none.
    let (status, body) = refresh(&emulator, &epj, text(&body, "refresh_token"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("refreshed");
    assert_eq!(claims["helseid://claims/client/claims/orgnr_child"], CHILD);
}

#[tokio::test]
async fn refresh_token_lifetime_is_configurable() {
    let client = TestClient::ec("short");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .refresh_token_lifetime(Duration::from_secs(120))
        .start()
        .await
        .expect("emulator");
    let tokens = emulator
        .mint_user_tokens(&client.id, &[])
        .expect("test token");
    let rt_expires_in = tokens["rt_expires_in"].as_i64().expect("rt_expires_in");
    assert!((110..=120).contains(&rt_expires_in), "{rt_expires_in}");

    let err = Emulator::builder()
        .refresh_token_lifetime(Duration::from_millis(300))
        .start()
        .await
        .expect_err("lifetime");
    assert!(err.to_string().contains("refresh_token_lifetime"), "{err}");
    let err = Emulator::builder()
        .client(client.registration(&[]).audience(""))
        .start()
        .await
        .expect_err("audience");
    assert!(err.to_string().contains("audience"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn token_delay_holds_exchange_and_refresh_answers() {
    let Setup { epj, sfm, emulator } = setup().await;
    let tokens = user_tokens(&emulator, &epj.id, &[SFM_SCOPE]).await;
    emulator.set_token_delay(Duration::from_secs(20));
    let started = tokio::time::Instant::now();
    let (status, body) = refresh(&emulator, &epj, text(&tokens, "refresh_token"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(20));
    let started = tokio::time::Instant::now();
    let (status, body) = exchange(&emulator, &sfm, text(&body, "access_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(20));
}

// ---- the test token endpoint ----

#[tokio::test]
async fn test_token_endpoint_mints_a_user_token_set() {
    let Setup { epj, emulator, .. } = setup().await;
    let (status, headers, body) = post_test_token(
        &emulator,
        &json!({"clientId": epj.id, "scopes": [SFM_SCOPE]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], SFM_SCOPE);
    assert_eq!(body["rt_expires_in"], 8 * 3600);
    let refresh_token = text(&body, "refresh_token");
    assert!(refresh_token.len() >= 43 && !refresh_token.contains('.'));

    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("test token");
    assert_eq!(claims["client_id"], epj.id);
    assert_eq!(claims["aud"], SFM_AUDIENCE);
    assert_eq!(claims["scope"], json!([SFM_SCOPE]));
    assert_eq!(claims["helseid://claims/identity/pid"], DEFAULT_PID);
    assert_eq!(claims["helseid://claims/identity/security_level"], "4");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["client_amr"], "private_key_jwt");
    let sub = claims["sub"].as_str().expect("sub");
    assert!(!sub.is_empty() && !sub.contains(DEFAULT_PID));

    // The same person gets the same pseudonym; another person another one.
    let again = emulator.mint_user_tokens(&epj.id, &[]).expect("again");
    let again = emulator
        .verify_access_token(text(&again, "access_token"))
        .expect("again");
    assert_eq!(again["sub"], sub);
    assert_eq!(again["scope"], json!([SFM_SCOPE, CP_SCOPE]));
    let (_, _, other) = post_test_token(
        &emulator,
        &json!({"clientId": epj.id, "pid": "01018012371"}),
    )
    .await;
    let other = emulator
        .verify_access_token(text(&other, "access_token"))
        .expect("other");
    assert_ne!(other["sub"], sub);
    assert_eq!(emulator.token_requests(), 0, "not the token endpoint");
}

#[tokio::test]
async fn test_token_takes_pid_security_level_and_organisations() {
    let Setup { epj, emulator, .. } = setup().await;
    let (status, _, body) = post_test_token(
        &emulator,
        &json!({
            "clientId": epj.id, "scopes": [SFM_SCOPE], "pid": "41018012365",
            "securityLevel": "3", "parentOrgnr": PARENT, "childOrgnr": CHILD,
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = emulator
        .verify_access_token(text(&body, "access_token"))
        .expect("test token");
    assert_eq!(claims["helseid://claims/identity/pid"], "41018012365");
    assert_eq!(claims["helseid://claims/identity/security_level"], "3");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        PARENT
    );
    assert_eq!(claims["helseid://claims/client/claims/orgnr_child"], CHILD);
}

#[tokio::test]
async fn test_token_refuses_unknown_clients_and_scopes_not_granted() {
    let Setup { epj, emulator, .. } = setup().await;
    let refused = |body: Value| {
        let emulator = &emulator;
        async move {
            let (status, headers, body) = post_test_token(emulator, &body).await;
            assert_eq!(headers["cache-control"], "no-store");
            (status, body)
        }
    };
    let result = refused(json!({"clientId": "nobody", "scopes": [SFM_SCOPE]})).await;
    assert_refused(
        &result,
        "invalid_client",
        "clientId `nobody` is not a registered client",
        &[],
    );
    let result = refused(json!({"clientId": epj.id, "scopes": [RF_SCOPE]})).await;
    assert_refused(
        &result,
        "invalid_scope",
        "scope `nhn:reseptformidleren/access` is not granted to client `epj`",
        &[],
    );
    let result = refused(json!({"clientId": epj.id, "scopes": ["a b"]})).await;
    assert_refused(&result, "invalid_request", "`a b` is not a scope", &[]);
    let result = refused(json!({"clientId": epj.id, "pid": "01018012372"})).await;
    assert_refused(&result, "invalid_request", "pid `01018012372`", &[]);
    let result = refused(json!({"clientId": epj.id, "securityLevel": "2"})).await;
    assert_refused(&result, "invalid_request", "securityLevel `2`", &[]);
    let result = refused(json!({"clientId": epj.id, "childOrgnr": CHILD})).await;
    assert_refused(
        &result,
        "invalid_request",
        "childOrgnr needs parentOrgnr",
        &[],
    );
    let result = refused(json!({"clientId": epj.id, "parentOrgnr": "12345"})).await;
    assert_refused(
        &result,
        "invalid_request",
        "parentOrgnr `12345` is not an organisation number",
        &[],
    );
    let result = refused(json!({"clientId": epj.id, "scope": SFM_SCOPE})).await;
    assert_refused(&result, "invalid_request", "unknown field `scope`", &[]);
    let result = refused(json!({"scopes": [SFM_SCOPE]})).await;
    assert_refused(&result, "invalid_request", "missing field `clientId`", &[]);

    let (status, _, body) = post_raw(
        &format!("{}/test-token", emulator.issuer()),
        Some("application/x-www-form-urlencoded"),
        form_body(&[("clientId", &epj.id)]),
    )
    .await;
    assert_refused(
        &(status, body),
        "invalid_request",
        "Content-Type application/json",
        &[],
    );
    assert_eq!(emulator.tokens_issued(), 0);
}

#[tokio::test]
async fn mint_user_tokens_answers_like_the_endpoint() {
    let Setup { epj, emulator, .. } = setup().await;
    let tokens = emulator
        .mint_user_tokens(&epj.id, &[SFM_SCOPE])
        .expect("tokens");
    for name in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "rt_expires_in",
        "scope",
    ] {
        assert!(tokens.get(name).is_some(), "{name} in {tokens}");
    }
    let err = emulator
        .mint_user_tokens("nobody", &[])
        .expect_err("unknown client");
    assert_eq!(err.error, "invalid_client");
    let err = emulator
        .mint_user_tokens(&epj.id, &[RF_SCOPE])
        .expect_err("scope");
    assert_eq!(err.error, "invalid_scope");
    assert!(
        err.error_description
            .as_deref()
            .is_some_and(|d| d.contains(RF_SCOPE)),
        "{err:?}"
    );
}
