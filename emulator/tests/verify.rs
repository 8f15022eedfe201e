//! The emulator's tokens as HelseID shapes them (header `kid` and `x5t`, `scope` as an
//! array, the client and organisation claims, the security level as a string, `act`
//! after exchanges, SFM's claims), and its APIs verifying them with
//! `helseid::verify`: every refusal, and the rotation of its signing key. Over real
//! HTTP on 127.0.0.1, with real signatures.

#[path = "../../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use helseid::key::SigningKey;
use helseid_emulator::{Emulator, Fault, FaultTarget, SFM_AUDIENCE, Tenancy, TestTokenRequest};
use support::*;

/// SFM's scope: its tokens have `aud: e-helse:sfm.api`.
const SFM_SCOPE: &str = "e-helse:sfm.api/sfm.api";
/// A downstream API of SFM (a prescription broker).
const RF_SCOPE: &str = "nhn:reseptformidleren/access";
const RF_AUDIENCE: &str = "nhn:reseptformidleren";
/// A third API, downstream of the broker.
const NEXT_SCOPE: &str = "nhn:next/access";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SFM_ID: &str = "e-helse:sfm.api/client/claims/sfm-id";
const JOURNAL_ID: &str = "nhn:sfm:journal-id";
const PARENT: &str = "912345678";
const SUPPLIER: &str = "998877665";

/// A client credentials token for `client` with `scope`.
async fn token_for(emulator: &Emulator, client: &TestClient, scope: &str) -> String {
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

/// A token exchange of `subject` by `actor` for `scope`.
async fn exchange(emulator: &Emulator, actor: &TestClient, subject: &str, scope: &str) -> String {
    let assertion = actor.assertion(emulator);
    let (status, body) = post_form(
        &emulator.token_endpoint(),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("client_id", &actor.id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("scope", scope),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The 40 upper-case hexadecimal digits of a `kid` as bytes.
fn hex_bytes(kid: &str) -> Vec<u8> {
    assert_eq!(kid.len(), 40, "{kid}");
    assert!(
        kid.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "{kid} is upper-case hex"
    );
    (0..40)
        .step_by(2)
        .map(|i| u8::from_str_radix(&kid[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn tokens_have_helseids_header_and_client_claims() {
    let client = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(
            client
                .registration(&[CP_SCOPE])
                .tenancy(Tenancy::Single {
                    parent_orgnr: PARENT.to_owned(),
                })
                .client_name("EPJ Nord")
                .supplier_orgnr(SUPPLIER),
        )
        .start()
        .await
        .expect("emulator");
    let token = token_for(&emulator, &client, CP_SCOPE).await;
    let (header, claims) = decode_jwt(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().expect("kid");
    assert_eq!(
        header["x5t"],
        b64url(&hex_bytes(kid)),
        "x5t is the kid's SHA-1"
    );
    let jwks = get_json(&format!(
        "{}/.well-known/openid-configuration/jwks",
        emulator.issuer()
    ))
    .await;
    assert_eq!(jwks["keys"][0]["kid"], kid);
    assert_eq!(jwks["keys"][0]["x5t"], header["x5t"]);
    assert_eq!(jwks["keys"][0]["use"], "sig");

    assert_eq!(claims["scope"], json!([CP_SCOPE]), "scope is a JSON array");
    assert_eq!(claims["aud"], "nhn:cp-api");
    assert_eq!(claims["client_id"], "epj");
    assert_eq!(claims["client_amr"], "private_key_jwt");
    assert_eq!(claims["helseid://claims/client/client_name"], "EPJ Nord");
    assert_eq!(claims["helseid://claims/client/client_tenancy"], "single");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        PARENT
    );
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_supplier"],
        SUPPLIER
    );
    assert!(claims.get(SFM_ID).is_none(), "not a token for SFM");
    assert!(claims.get(JOURNAL_ID).is_none());

    // Unnamed, the client's name is its id, and no supplier is claimed.
    let other = TestClient::ec("other");
    let emulator = emulator_with(&other).await;
    let (_, claims) = decode_jwt(&token_for(&emulator, &other, CP_SCOPE).await);
    assert_eq!(claims["helseid://claims/client/client_name"], "other");
    assert!(
        claims
            .get("helseid://claims/client/claims/orgnr_supplier")
            .is_none()
    );
}

#[tokio::test]
async fn registrations_with_bad_profile_values_are_refused() {
    let client = TestClient::ec("epj");
    for (registration, setting) in [
        (
            client.registration(&[]).supplier_orgnr("12345"),
            "supplier_orgnr",
        ),
        (client.registration(&[]).client_name(""), "client_name"),
        (client.registration(&[]).sfm_id("a\nb"), "sfm_id"),
        (
            client.registration(&[]).sfm_journal_id(""),
            "sfm_journal_id",
        ),
    ] {
        let error = Emulator::builder()
            .client(registration)
            .start()
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(setting), "{error}");
    }
}

#[tokio::test]
async fn user_tokens_carry_the_security_level_as_a_string() {
    let client = TestClient::ec("epj");
    let emulator = emulator_with(&client).await;
    let body = emulator
        .mint_test_token(&TestTokenRequest::new("epj", [CP_SCOPE]))
        .expect("tokens");
    let (_, claims) = decode_jwt(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["helseid://claims/identity/security_level"], "4");
    assert_eq!(claims["helseid://claims/identity/assurance_level"], "high");
    assert_eq!(claims["scope"], json!([CP_SCOPE]));
}

/// Whether `value` is a string in UUID form (8-4-4-4-12 lower-case hex digits).
fn is_uuid(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| {
            g.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[tokio::test]
async fn tokens_for_sfm_carry_the_sfm_id_and_a_multi_tenant_clients_journal_id() {
    let multi = TestClient::ec("multi");
    let set = TestClient::ec("set");
    let single = TestClient::ec("single");
    let emulator = Emulator::builder()
        .client(multi.registration(&[SFM_SCOPE, CP_SCOPE]))
        .client(
            set.registration(&[SFM_SCOPE])
                .sfm_id("sfm-instance-7")
                .sfm_journal_id("journal-42"),
        )
        .client(
            single
                .registration(&[SFM_SCOPE])
                .tenancy(Tenancy::Single {
                    parent_orgnr: PARENT.to_owned(),
                })
                .sfm_id("sfm-single"),
        )
        .start()
        .await
        .expect("emulator");

    let (_, claims) = decode_jwt(&token_for(&emulator, &multi, SFM_SCOPE).await);
    assert_eq!(claims["aud"], SFM_AUDIENCE);
    assert!(is_uuid(&claims[SFM_ID]), "{claims}");
    assert!(is_uuid(&claims[JOURNAL_ID]), "{claims}");
    assert_ne!(claims[SFM_ID], claims[JOURNAL_ID]);
    // The same on every token of the client.
    let (_, again) = decode_jwt(&token_for(&emulator, &multi, SFM_SCOPE).await);
    assert_eq!(again[SFM_ID], claims[SFM_ID]);
    // A token for another API has none.
    let (_, cp) = decode_jwt(&token_for(&emulator, &multi, CP_SCOPE).await);
    assert!(
        cp.get(SFM_ID).is_none() && cp.get(JOURNAL_ID).is_none(),
        "{cp}"
    );

    let (_, claims) = decode_jwt(&token_for(&emulator, &set, SFM_SCOPE).await);
    assert_eq!(claims[SFM_ID], "sfm-instance-7");
    assert_eq!(claims[JOURNAL_ID], "journal-42");

    let (_, claims) = decode_jwt(&token_for(&emulator, &single, SFM_SCOPE).await);
    assert_eq!(claims[SFM_ID], "sfm-single");
    assert!(
        claims.get(JOURNAL_ID).is_none(),
        "a single-tenant client has no journal id: {claims}"
    );
}

#[tokio::test]
async fn an_exchanged_token_names_its_actors_in_a_nested_act_chain() {
    let epj = TestClient::ec("epj");
    let sfm = TestClient::ec("sfm");
    let broker = TestClient::ec("broker");
    let emulator = Emulator::builder()
        .client(epj.registration(&[SFM_SCOPE]).supplier_orgnr(SUPPLIER))
        .client(sfm.registration(&[RF_SCOPE]).audience(SFM_AUDIENCE))
        .client(broker.registration(&[NEXT_SCOPE]).audience(RF_AUDIENCE))
        .start()
        .await
        .expect("emulator");
    let original = token_for(&emulator, &epj, SFM_SCOPE).await;
    let (_, subject) = decode_jwt(&original);
    assert!(subject.get("act").is_none());

    let first = exchange(&emulator, &sfm, &original, RF_SCOPE).await;
    let (_, claims) = decode_jwt(&first);
    assert_eq!(claims["client_id"], "epj", "the original client stays");
    assert_eq!(claims["aud"], RF_AUDIENCE);
    assert_eq!(claims["scope"], json!([RF_SCOPE]));
    assert_eq!(claims["act"], json!({"client_id": "sfm"}));
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_supplier"],
        SUPPLIER
    );
    assert!(
        claims.get(SFM_ID).is_none(),
        "the broker's token is not SFM's"
    );

    let second = exchange(&emulator, &broker, &first, NEXT_SCOPE).await;
    let (_, claims) = decode_jwt(&second);
    assert_eq!(claims["client_id"], "epj");
    assert_eq!(
        claims["act"],
        json!({"client_id": "broker", "act": {"client_id": "sfm"}}),
        "the latest actor outermost"
    );
}

// --- The APIs verify with helseid::verify ---

const ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512";

/// Sends a GET with these headers; returns the status, the headers and the body.
async fn get_with(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(Full::new(Bytes::new())).expect("request")).await
}

/// Asserts a refusal: the status, the `WWW-Authenticate` challenges exactly, an empty
/// body, and no part of any secret in the challenges.
#[track_caller]
fn assert_answer(
    (status, headers, body): &(StatusCode, HeaderMap, Bytes),
    expected: StatusCode,
    challenges: &[&str],
    secrets: &[&str],
) {
    assert_eq!(*status, expected, "{challenges:?}");
    let got: Vec<&str> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect();
    assert_eq!(got, challenges);
    assert!(body.is_empty(), "a refusal has no body");
    for challenge in got {
        assert_quotes_no_secret(challenge, secrets);
    }
}

/// A refusal case: its name, the request's headers, the status, the challenges.
type Case = (String, Vec<(&'static str, String)>, StatusCode, Vec<String>);

/// A refusal case with one challenge.
type ProofCase = (
    &'static str,
    Vec<(&'static str, String)>,
    StatusCode,
    String,
);

fn bearer_error(error: &str, description: &str) -> String {
    format!("Bearer error=\"{error}\", error_description=\"{description}\"")
}

fn dpop_error(error: &str, description: &str) -> String {
    format!("DPoP algs=\"{ALGS}\", error=\"{error}\", error_description=\"{description}\"")
}

/// Claims of a CPE token from this emulator, `exp` `exp_in` seconds from now.
fn cpe_claims(emulator: &Emulator, exp_in: i64) -> Value {
    let now = now();
    json!({
        "iss": emulator.issuer(), "aud": "nhn:cp-api", "scope": [CP_SCOPE],
        "client_id": "epj", "iat": now - 10, "nbf": now - 10, "exp": now + exp_in,
    })
}

#[tokio::test]
async fn cpe_answers_every_bad_token_as_rfc_6750_says() {
    let client = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE, SFM_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let other = Emulator::builder().start().await.expect("other emulator");
    let url = format!("{}/CommunicationPartyExport", emulator.cpe_base_url());
    let good = token_for(&emulator, &client, CP_SCOPE).await;
    let ok = get_with(&url, &[("authorization", &format!("Bearer {good}"))]).await;
    assert_eq!(ok.0, StatusCode::OK);

    let expired = emulator
        .sign_access_token(&cpe_claims(&emulator, -3600))
        .expect("sign");
    let mut later = cpe_claims(&emulator, 3600);
    later["nbf"] = json!(now() + 600);
    let not_yet = emulator.sign_access_token(&later).expect("sign");
    let mut future = cpe_claims(&emulator, 3600);
    future["iat"] = json!(now() + 600);
    let issued_later = emulator.sign_access_token(&future).expect("sign");
    let sfm = token_for(&emulator, &client, SFM_SCOPE).await;
    // Another emulator's key, this emulator's issuer: a kid it does not publish.
    let unknown_kid = other
        .sign_access_token(&cpe_claims(&emulator, 3600))
        .expect("sign");
    let mut several = cpe_claims(&emulator, 3600);
    several["aud"] = json!(["nhn:cp-api", "nhn:msh"]);
    let several = emulator.sign_access_token(&several).expect("sign");
    let key = dpop_key();
    let bound = dpop_access_token(&emulator, &client, &key, CP_SCOPE).await;

    let invalid = |description: &str| bearer_error("invalid_token", description);
    let cases: Vec<Case> = vec![
        (
            "no credentials".into(),
            vec![],
            StatusCode::UNAUTHORIZED,
            vec!["Bearer".into()],
        ),
        (
            "the token in the query string is never read".into(),
            vec![],
            StatusCode::UNAUTHORIZED,
            vec!["Bearer".into()],
        ),
        (
            "expired".into(),
            vec![("authorization", format!("Bearer {expired}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid("the token has expired")],
        ),
        (
            "nbf in the future".into(),
            vec![("authorization", format!("Bearer {not_yet}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid("the token is not valid yet")],
        ),
        (
            "iat in the future".into(),
            vec![("authorization", format!("Bearer {issued_later}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid("the token was issued in the future")],
        ),
        (
            "another API's audience".into(),
            vec![("authorization", format!("Bearer {sfm}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid("the token is not meant for this API")],
        ),
        (
            "a kid the issuer does not publish".into(),
            vec![("authorization", format!("Bearer {unknown_kid}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid("the token's key is not among the issuer's keys")],
        ),
        (
            "a DPoP-bound token as Bearer".into(),
            vec![("authorization", format!("Bearer {bound}"))],
            StatusCode::UNAUTHORIZED,
            vec![invalid(
                "a DPoP-bound token must be sent with the DPoP scheme",
            )],
        ),
        (
            "a Bearer token with a proof".into(),
            vec![
                ("authorization", format!("Bearer {good}")),
                ("dpop", "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.c2ln".into()),
            ],
            StatusCode::BAD_REQUEST,
            vec![bearer_error(
                "invalid_request",
                "a Bearer token with a DPoP proof",
            )],
        ),
        (
            "two Authorization headers".into(),
            vec![
                ("authorization", format!("Bearer {good}")),
                ("authorization", format!("Bearer {good}")),
            ],
            StatusCode::BAD_REQUEST,
            vec![bearer_error(
                "invalid_request",
                "more than one Authorization header",
            )],
        ),
    ];
    // The multi-audience token passes: CPE's layer is not in strict single-audience
    // mode, and its audience is among them.
    let passes = get_with(&url, &[("authorization", &format!("Bearer {several}"))]).await;
    assert_eq!(passes.0, StatusCode::OK);
    let secrets = [
        good.as_str(),
        &expired,
        &not_yet,
        &issued_later,
        &sfm,
        &unknown_kid,
        &bound,
    ];
    for (name, headers, status, challenges) in cases {
        let target = if name.contains("query") {
            format!("{url}?access_token={good}")
        } else {
            url.clone()
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = get_with(&target, &headers).await;
        let challenges: Vec<&str> = challenges.iter().map(String::as_str).collect();
        eprintln!("{name}");
        assert_answer(&answer, status, &challenges, &secrets);
    }
    other.shutdown().await;
}

/// A proof for `GET url` with `ath` for `token`.
fn proof_for(key: &SigningKey, url: &str, token: &str) -> String {
    let mut claims = proof_claims("GET", url, None);
    claims["ath"] = json!(ath(token));
    sign_proof(key, &claims)
}

#[tokio::test]
async fn cp_api_v2_answers_every_bad_request_as_rfc_9449_says() {
    let client = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(client.registration(&[CPAPI_SCOPE, SFM_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let url = format!("{}/api/v1/event/latest", emulator.cpapi_base_url());
    let key = dpop_key();
    let token = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    let sfm = dpop_access_token(&emulator, &client, &key, SFM_SCOPE).await;
    let dpop = format!("DPoP {token}");
    let proof = proof_for(&key, &url, &token);

    let cases: Vec<ProofCase> = vec![
        (
            "no credentials",
            vec![],
            StatusCode::UNAUTHORIZED,
            format!("DPoP algs=\"{ALGS}\""),
        ),
        (
            "Bearer, which the API does not take",
            vec![("authorization", format!("Bearer {token}"))],
            StatusCode::UNAUTHORIZED,
            format!("DPoP algs=\"{ALGS}\""),
        ),
        (
            "two proofs",
            vec![
                ("authorization", dpop.clone()),
                ("dpop", proof.clone()),
                ("dpop", proof_for(&key, &url, &token)),
            ],
            StatusCode::BAD_REQUEST,
            dpop_error("invalid_request", "more than one DPoP proof"),
        ),
        (
            "another API's token",
            vec![
                ("authorization", format!("DPoP {sfm}")),
                ("dpop", proof_for(&key, &url, &sfm)),
            ],
            StatusCode::UNAUTHORIZED,
            dpop_error("invalid_token", "the token is not meant for this API"),
        ),
        (
            "a proof that is not a JWS",
            vec![
                ("authorization", dpop.clone()),
                ("dpop", "not-a-proof".into()),
            ],
            StatusCode::UNAUTHORIZED,
            dpop_error("invalid_dpop_proof", "the DPoP proof is not a compact JWS"),
        ),
        (
            "a proof signed as something else",
            vec![
                ("authorization", dpop.clone()),
                (
                    "dpop",
                    key.sign_jwt_with_jwk("JWT", &proof_claims("GET", &url, None))
                        .expect("sign"),
                ),
            ],
            StatusCode::UNAUTHORIZED,
            dpop_error("invalid_dpop_proof", "the DPoP proof's typ is not dpop+jwt"),
        ),
    ];
    for (name, headers, status, challenge) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = get_with(&url, &headers).await;
        eprintln!("{name}");
        assert_answer(&answer, status, &[&challenge], &[&token, &sfm, &proof]);
    }
    // The good request passes, once.
    let ok = get_with(&url, &[("authorization", &dpop), ("dpop", &proof)]).await;
    assert_eq!(ok.0, StatusCode::OK);
}

#[tokio::test]
async fn a_rotated_key_is_accepted_until_retired_even_when_cached() {
    let client = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE, CPAPI_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let cpe = format!("{}/CommunicationPartyExport", emulator.cpe_base_url());
    let v2 = format!("{}/api/v1/event/latest", emulator.cpapi_base_url());
    let bearer = |token: &str| format!("Bearer {token}");
    let key = dpop_key();
    let call_v2 = |token: String| {
        let key = &key;
        let v2 = v2.clone();
        async move {
            let proof = proof_for(key, &v2, &token);
            get_with(
                &v2,
                &[
                    ("authorization", &format!("DPoP {token}")),
                    ("dpop", &proof),
                ],
            )
            .await
        }
    };

    let first_kid = emulator.signing_kids()[0].clone();
    let old = token_for(&emulator, &client, CP_SCOPE).await;
    let old_bound = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    assert_eq!(decode_jwt(&old).0["kid"], first_kid.as_str());
    // Verified, and cached, by both APIs.
    assert_eq!(
        get_with(&cpe, &[("authorization", &bearer(&old))]).await.0,
        StatusCode::OK
    );
    assert_eq!(call_v2(old_bound.clone()).await.0, StatusCode::OK);

    let new_kid = emulator.rotate_signing_key().expect("rotate");
    assert_ne!(new_kid, first_kid);
    assert_eq!(
        emulator.signing_kids(),
        [new_kid.clone(), first_kid.clone()]
    );
    let jwks = get_json(&format!(
        "{}/.well-known/openid-configuration/jwks",
        emulator.issuer()
    ))
    .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(
        kids,
        [new_kid.as_str(), first_kid.as_str()],
        "both published"
    );

    // New tokens carry the new kid and pass (the APIs fetch the keys again for it);
    // the old ones still pass.
    let new = token_for(&emulator, &client, CP_SCOPE).await;
    let new_bound = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    assert_eq!(decode_jwt(&new).0["kid"], new_kid.as_str());
    assert_eq!(decode_jwt(&new_bound).0["kid"], new_kid.as_str());
    for token in [&new, &old] {
        assert_eq!(
            get_with(&cpe, &[("authorization", &bearer(token))]).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(call_v2(new_bound.clone()).await.0, StatusCode::OK);
    assert_eq!(call_v2(old_bound.clone()).await.0, StatusCode::OK);
    assert!(emulator.verify_access_token(&old).is_ok());

    // Retired: the old key leaves the JWKS, and its tokens are refused everywhere,
    // the cached ones included.
    assert_eq!(emulator.retire_old_signing_keys(), 1);
    assert_eq!(emulator.signing_kids(), vec![new_kid.clone()]);
    let jwks = get_json(&format!(
        "{}/.well-known/openid-configuration/jwks",
        emulator.issuer()
    ))
    .await;
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 1);
    let refused = get_with(&cpe, &[("authorization", &bearer(&old))]).await;
    assert_answer(
        &refused,
        StatusCode::UNAUTHORIZED,
        &[&bearer_error(
            "invalid_token",
            "the token's key is not among the issuer's keys",
        )],
        &[&old],
    );
    let refused = call_v2(old_bound.clone()).await;
    assert_answer(
        &refused,
        StatusCode::UNAUTHORIZED,
        &[&dpop_error(
            "invalid_token",
            "the token's key is not among the issuer's keys",
        )],
        &[&old_bound],
    );
    assert!(emulator.verify_access_token(&old).is_err());
    assert_eq!(
        get_with(&cpe, &[("authorization", &bearer(&new))]).await.0,
        StatusCode::OK
    );
    assert_eq!(call_v2(new_bound).await.0, StatusCode::OK);
    assert_eq!(
        emulator.retire_old_signing_keys(),
        0,
        "nothing left to retire"
    );
}

#[tokio::test]
async fn the_apis_keys_do_not_travel_through_the_discovery_faults() {
    let client = TestClient::ec("epj");
    let emulator = emulator_with(&client).await;
    let url = format!("{}/CommunicationPartyExport", emulator.cpe_base_url());
    emulator
        .faults()
        .discovery(Fault::status(500))
        .expect("fault");
    let token = token_for(&emulator, &client, CP_SCOPE).await;
    assert_eq!(
        get_with(&url, &[("authorization", &format!("Bearer {token}"))])
            .await
            .0,
        StatusCode::OK
    );
    // A rotated key is found in-process too.
    emulator.rotate_signing_key().expect("rotate");
    let token = token_for(&emulator, &client, CP_SCOPE).await;
    assert_eq!(
        get_with(&url, &[("authorization", &format!("Bearer {token}"))])
            .await
            .0,
        StatusCode::OK
    );
    // An API fault still acts in front of the verifier.
    emulator.faults().cpe(Fault::RejectTokens).expect("fault");
    let refused = get_with(&url, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED);
    assert_eq!(emulator.faults().injected(FaultTarget::Cpe), 1);
}

#[tokio::test]
async fn a_multi_tenant_clients_journal_id_comes_from_its_assertion_when_named() {
    let epj = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(
            epj.registration(&[SFM_SCOPE, CP_SCOPE])
                .sfm_journal_id("registered-journal"),
        )
        .start()
        .await
        .expect("emulator");
    let mut claims = epj.claims(emulator.issuer());
    claims["assertion_details"] = json!([{
        "type": "nhn:sfm:journal-id",
        "value": {"journal_id": "journal-from-the-assertion"}
    }]);
    let named = epj.sign(&claims);
    let token = |assertion: String, scope: &'static str| {
        let emulator = &emulator;
        let epj = &epj;
        async move {
            let (status, body) =
                request_token(emulator, &epj.id, &assertion, &[("scope", scope)]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            decode_jwt(body["access_token"].as_str().expect("token")).1
        }
    };
    let sfm = token(named, SFM_SCOPE).await;
    assert_eq!(sfm[JOURNAL_ID], "journal-from-the-assertion");
    // Not in a token for another API, whatever the assertion names.
    let mut claims = epj.claims(emulator.issuer());
    claims["assertion_details"] = json!([{
        "type": "nhn:sfm:journal-id",
        "value": {"journal_id": "journal-from-the-assertion"}
    }]);
    let cp = token(epj.sign(&claims), CP_SCOPE).await;
    assert!(cp.get(JOURNAL_ID).is_none(), "{cp}");
    // Without one, the registered journal id.
    let sfm = token(epj.assertion(&emulator), SFM_SCOPE).await;
    assert_eq!(sfm[JOURNAL_ID], "registered-journal");
}
