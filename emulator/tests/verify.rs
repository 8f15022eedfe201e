//! The emulator's tokens as HelseID shapes them (header `kid` and `x5t`, `scope` as an
//! array, the client and organisation claims, the security level as a string, `act`
//! after exchanges, SFM's claims), and its APIs verifying them with
//! `helseid::verify`: every refusal, and the rotation of its signing key. Over real
//! HTTP on 127.0.0.1, with real signatures.

#[path = "../../tests/support/mod.rs"]
mod support;

use http::StatusCode;
use serde_json::{Value, json};

use helseid_emulator::{Emulator, SFM_AUDIENCE, Tenancy, TestTokenRequest};
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
