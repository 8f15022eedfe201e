//! Fuzzing `helseid::verify` on the stable toolchain (proptest), in the style of
//! `tests/fuzz.rs`: the access-token parser and checks, the DPoP proof parser and checks,
//! and the answer's headers. For every input: no panic, a typed refusal
//! ([`helseid::verify::Refusal`] with its [`Reason`]) whose `Display` holds no control
//! character, challenges of visible ASCII whose `error_description` stays in RFC 6750's
//! character set, and nothing of the token or proof echoed.
//!
//! The long run, a million inputs per target:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo nextest run -p helseid --all-features -E 'binary(fuzz_verify)' --release --no-fail-fast
//! ```
#![cfg(feature = "verify")]

#[path = "support/fuzz.rs"]
mod fuzz_support;
#[path = "support/issuer.rs"]
mod issuer;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fuzz_support::*;
use helseid::verify::{Dpop, HelseIdClaims, Reason, Refusal, Scheme, VerifyLayer};
use http::{HeaderValue, Request, Response, StatusCode, header};
use issuer::{IssuerDouble, RawKey, b64, parse_challenges};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

const ISSUER: &str = "https://issuer.test";
const AUD: &str = "nhn:msh";
const BASE: &str = "https://api.example.no";
const PID: &str = "13116900216";

/// A fresh `jti` for each generated proof.
static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

struct Fixture {
    issuer_key: RawKey,
    proof_key: RawKey,
    layer: VerifyLayer,
    /// A good token bound to `proof_key`.
    bound: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer_key = RawKey::new("k");
        let proof_key = RawKey::new("proof");
        let double = IssuerDouble::new(ISSUER, vec![issuer_key.jwk()]);
        let layer = VerifyLayer::builder(ISSUER)
            .audience(AUD)
            .dpop(Dpop::Allowed)
            .public_base_url(BASE)
            .http_service(double.router.clone())
            .build()
            .expect("layer");
        let jkt = serde_json::from_value::<helseid::key::PublicJwk>(proof_key.bare_jwk())
            .expect("jwk")
            .thumbprint();
        let mut c = good_claims();
        c["cnf"] = json!({ "jkt": jkt });
        let bound = issuer_key.token(&c);
        Fixture {
            issuer_key,
            proof_key,
            layer,
            bound,
        }
    })
}

fn good_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUD, "exp": now + 3600, "iat": now, "nbf": now,
        "client_id": "c", "scope": ["a", "b"], "jti": "j",
        "helseid://claims/identity/pid": PID,
        "helseid://claims/identity/security_level": "4",
    })
}

async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
    let shown = format!("{:?}", request.extensions().get::<Arc<HelseIdClaims>>());
    Ok(Response::new(shown))
}

async fn call(request: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(fixture().layer.clone())
        .service_fn(echo)
        .oneshot(request)
        .await
        .expect("infallible")
}

/// A refusal shows no control character, and its status fits its reason.
#[track_caller]
fn assert_refusal_safe(refusal: &Refusal) {
    let shown = refusal.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert_eq!(refusal.status(), refusal.reason().status());
    for value in refusal.challenges() {
        assert_challenge_safe(&value, &[]);
    }
}

/// A challenge is visible ASCII, its description in RFC 6750's set, no secret in it.
#[track_caller]
fn assert_challenge_safe(value: &HeaderValue, secrets: &[&str]) {
    let text = value.to_str().expect("visible ASCII");
    for challenge in parse_challenges(&[text]) {
        assert!(
            matches!(challenge.scheme.as_str(), "Bearer" | "DPoP"),
            "{text}"
        );
        for (name, v) in &challenge.params {
            assert!(
                matches!(
                    name.as_str(),
                    "algs" | "error" | "error_description" | "scope"
                ),
                "{text}"
            );
            assert!(
                v.chars()
                    .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
                "{text}"
            );
        }
    }
    for secret in secrets {
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!text.contains(part), "echoed: {text}");
        }
    }
}

/// An answer: a known status; a refusal with safe challenges and no body; a pass whose
/// claims' `Debug` does not show the pid.
#[track_caller]
fn assert_answer_safe(response: &Response<String>, secrets: &[&str]) {
    let status = response.status();
    assert!(
        matches!(status.as_u16(), 200 | 400 | 401 | 403 | 503),
        "{status}"
    );
    if status == StatusCode::OK {
        assert!(!response.body().contains(PID), "{}", response.body());
        return;
    }
    assert_eq!(response.body(), "");
    for value in response.headers().get_all(header::WWW_AUTHENTICATE) {
        assert_challenge_safe(value, secrets);
    }
    for value in response.headers().values() {
        let text = String::from_utf8_lossy(value.as_bytes());
        for secret in secrets {
            for part in secret.split('.').filter(|p| p.len() >= 16) {
                assert!(!text.contains(part), "echoed: {text}");
            }
        }
    }
}

const HEADER_MEMBERS: &[&str] = &[
    "alg", "typ", "kid", "crit", "jwk", "jku", "x5u", "x5c", "x5t", "cty",
];
const CLAIM_MEMBERS: &[&str] = &[
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "scope",
    "client_id",
    "sub",
    "cnf",
    "act",
    "nonce",
    "at_hash",
    "helseid://claims/identity/pid",
    "helseid://claims/identity/security_level",
    "helseid://claims/hpr/hpr_number",
    "jti",
];
const PROOF_MEMBERS: &[&str] = &["jti", "htm", "htu", "iat", "ath", "nonce"];

/// A JWT signed by `key` from a header and claims, maybe with a byte changed after
/// signing, or any text at all.
fn jwt(
    key: fn() -> &'static RawKey,
    header: impl Strategy<Value = Value>,
    claims: impl Strategy<Value = Value>,
) -> impl Strategy<Value = String> {
    let signed = (header, claims, any::<Index>(), any::<u8>(), 0..6u8).prop_map(
        move |(h, c, at, byte, how)| {
            let mut token = key().sign(&h, &c).into_bytes();
            if how == 0 && !token.is_empty() {
                let i = at.index(token.len());
                token[i] = byte;
            }
            String::from_utf8_lossy(&token).into_owned()
        },
    );
    prop_oneof![
        6 => signed,
        1 => text(),
        1 => "[A-Za-z0-9_=-]{0,40}\\.[A-Za-z0-9_=-]{0,40}\\.[A-Za-z0-9_=-]{0,40}",
    ]
}

fn issuer_key() -> &'static RawKey {
    &fixture().issuer_key
}

fn proof_key() -> &'static RawKey {
    &fixture().proof_key
}

proptest! {
    #![proptest_config(config())]

    /// The access token: any text, or a signed token whose header and claims are tweaked.
    #[test]
    fn fuzz_verify_token(token in jwt(
        issuer_key,
        tweaked(|| json!({"alg": "ES256", "typ": "at+jwt", "kid": "k"}), HEADER_MEMBERS),
        tweaked(good_claims, CLAIM_MEMBERS),
    )) {
        match block_on(fixture().layer.verify_token(&token)) {
            Ok(claims) => {
                let shown = format!("{claims:?}");
                prop_assert!(!shown.contains(PID), "the pid is shown");
            }
            Err(refusal) => {
                assert_refusal_safe(&refusal);
                prop_assert!(refusal.reason() != Reason::NoCredentials);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            let request = Request::get(format!("{BASE}/x"))
                .header(header::AUTHORIZATION, value)
                .body(String::new())
                .expect("request");
            assert_answer_safe(&block_on(call(request)), &[&token]);
        }
    }

    /// The DPoP proof, with a good bound token: any text, or a signed proof whose header
    /// and claims are tweaked.
    #[test]
    fn fuzz_verify_proof(proof in jwt(
        proof_key,
        tweaked(|| json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": proof_key().bare_jwk()}), HEADER_MEMBERS),
        tweaked(|| json!({
            "jti": b64(JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes()),
            "htm": "GET",
            "htu": format!("{BASE}/x"),
            "iat": now(),
            "ath": b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, fixture().bound.as_bytes())),
        }), PROOF_MEMBERS),
    )) {
        let token = &fixture().bound;
        if let Ok(value) = HeaderValue::from_str(&proof) {
            let request = Request::get(format!("{BASE}/x"))
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("dpop", value)
                .body(String::new())
                .expect("request");
            assert_answer_safe(&block_on(call(request)), &[token, &proof]);
        }
    }

    /// The answer to any `Authorization` and `DPoP` headers (several of each, any bytes),
    /// and a refusal naming any scopes.
    #[test]
    fn fuzz_verify_answer_header(
        authorizations in prop::collection::vec(prop_oneof![
            text(),
            text().prop_map(|t| format!("Bearer {t}")),
            text().prop_map(|t| format!("DPoP {t}")),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ], 0..3),
        proofs in prop::collection::vec(text(), 0..3),
        scopes in prop::collection::vec(text(), 0..4),
    ) {
        let mut request = Request::get(format!("{BASE}/x"));
        let mut secrets: Vec<String> = Vec::new();
        for a in &authorizations {
            if let Ok(value) = HeaderValue::from_str(a) {
                request = request.header(header::AUTHORIZATION, value);
                secrets.push(a.clone());
            }
        }
        for p in &proofs {
            if let Ok(value) = HeaderValue::from_str(p) {
                request = request.header("dpop", value);
                secrets.push(p.clone());
            }
        }
        let request = request.body(String::new()).expect("request");
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_answer_safe(&block_on(call(request)), &secrets);

        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        for scheme in [Scheme::Bearer, Scheme::Dpop] {
            let refusal = Refusal::insufficient_scope(scheme, &scopes);
            assert_refusal_safe(&refusal);
            let response = refusal.into_response::<String>();
            prop_assert_eq!(response.status(), StatusCode::FORBIDDEN);
            prop_assert_eq!(response.headers().get_all(header::WWW_AUTHENTICATE).iter().count(), 1);
        }
    }
}
