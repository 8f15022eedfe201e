//! `helseid::verify` against an issuer double: tokens signed with keys the tests
//! generate, every refusal and its answer (status, `WWW-Authenticate` parsed, nothing
//! secret echoed), keys (rotation, a flood of unknown `kid`s, failing JWKS), the cache
//! of verified tokens, and DPoP proofs made with RSA, RSA-PSS and EC keys.
#![cfg(feature = "verify")]

#[path = "support/issuer.rs"]
mod issuer;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::verify::{Dpop, HelseIdClaims, Reason, VerifyLayer, VerifyLayerBuilder};
use http::{Request, Response, StatusCode, header};
use issuer::{Challenge, IssuerDouble, Jwks, RawKey, b64, parse_challenges};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

const AUD: &str = "nhn:msh";
const SCOPE: &str = "nhn:msh/api";
const BASE: &str = "https://api.example.no";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims of a good client-credentials access token of `iss`.
fn claims(iss: &str) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "aud": AUD,
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "client_id": "client-1",
        "client_amr": "private_key_jwt",
        "scope": format!("{SCOPE} other"),
        "jti": "token-jti",
    })
}

fn builder(issuer: &IssuerDouble) -> VerifyLayerBuilder {
    VerifyLayer::builder(issuer.url())
        .audience(AUD)
        .public_base_url(BASE)
}

/// A layer over the double's router in-process (no socket: tests under a paused clock).
fn in_process(issuer: &IssuerDouble) -> VerifyLayerBuilder {
    builder(issuer).http_service(issuer.router.clone())
}

async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
    let body = match request.extensions().get::<Arc<HelseIdClaims>>() {
        Some(claims) => format!("client={}", claims.client_id.as_deref().unwrap_or("?")),
        None => "anonymous".to_owned(),
    };
    Ok(Response::new(body))
}

async fn call(layer: &VerifyLayer, request: Request<String>) -> Response<String> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(echo)
        .oneshot(request)
        .await
        .expect("infallible")
}

fn get(authorization: Option<&str>) -> http::request::Builder {
    let mut request = Request::get(format!("{BASE}/messages?x=1"));
    if let Some(a) = authorization {
        request = request.header(header::AUTHORIZATION, a);
    }
    request
}

async fn bearer(layer: &VerifyLayer, token: &str) -> Response<String> {
    call(
        layer,
        get(Some(&format!("Bearer {token}")))
            .body(String::new())
            .expect("request"),
    )
    .await
}

/// The challenges of an answer.
fn challenges(response: &Response<String>) -> Vec<Challenge> {
    let values: Vec<&str> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("visible ASCII"))
        .collect();
    parse_challenges(&values)
}

/// Asserts a refusal: the status, the error of the first challenge (none at all when
/// `error` is `None`), an `error_description` in RFC 6750's character set, and no part
/// of any secret in a header or the body.
#[track_caller]
fn refused(
    response: &Response<String>,
    status: StatusCode,
    error: Option<&str>,
    secrets: &[&str],
) -> Vec<Challenge> {
    assert_eq!(response.status(), status, "{:?}", response.headers());
    let found = challenges(response);
    if status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(!found.is_empty(), "a challenge");
    }
    match error {
        Some(error) => {
            assert_eq!(found[0].param("error"), Some(error), "{found:?}");
            let description = found[0].param("error_description").expect("description");
            assert!(
                description
                    .chars()
                    .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
                "{description:?}"
            );
        }
        None => assert!(
            found.iter().all(|c| c.param("error").is_none()),
            "{found:?}"
        ),
    }
    assert_eq!(response.body(), "", "a refusal has no body");
    let shown: Vec<String> = response
        .headers()
        .values()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    for secret in secrets {
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            for value in &shown {
                assert!(!value.contains(part), "a secret is echoed: {value}");
            }
        }
    }
    found
}

fn schemes(found: &[Challenge]) -> Vec<&str> {
    found.iter().map(|c| c.scheme.as_str()).collect()
}

// ---------------------------------------------------------------------------------
// Bearer tokens.

#[tokio::test]
async fn good_tokens_pass_with_typed_claims_rsa_pss_and_ec() {
    let ec = RawKey::new("ec-key");
    let rs = SigningKey::from_jwk(&PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("rsa"))
        .expect("key");
    let ps = SigningKey::from_jwk(&PrivateJwk::generate_rsa(2048, Algorithm::PS256).expect("pss"))
        .expect("key");
    let es384 =
        SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES384).expect("ec")).expect("key");
    let jwk = |k: &SigningKey| {
        let mut v = serde_json::to_value(k.public_jwk()).expect("json");
        v["kid"] = json!(k.kid());
        v
    };
    let issuer = IssuerDouble::serve(vec![ec.jwk(), jwk(&rs), jwk(&ps), jwk(&es384)]).await;
    let layer = builder(&issuer).dpop(Dpop::Allowed).build().expect("layer");
    let mut c = claims(&issuer.url());
    c["helseid://claims/identity/security_level"] = json!("4");
    c["helseid://claims/identity/pid"] = json!("13116900216");
    c["helseid://claims/client/claims/orgnr_parent"] = json!("999999999");
    c["act"] = json!({"client_id": "epj", "act": {"client_id": "first"}});
    for token in [
        ec.token(&c),
        rs.sign_jwt("at+jwt", &c).expect("sign"),
        ps.sign_jwt("at+jwt", &c).expect("sign"),
        es384.sign_jwt("application/at+jwt", &c).expect("sign"),
    ] {
        let response = bearer(&layer, &token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.headers()
        );
        assert_eq!(response.body(), "client=client-1");
    }
    assert_eq!(issuer.jwks_fetches(), 1, "one fetch for every key");
    assert_eq!(issuer.discovery_fetches(), 1);

    let claims = layer.verify_token(&ec.token(&c)).await.expect("claims");
    assert_eq!(claims.scopes, vec![SCOPE.to_owned(), "other".to_owned()]);
    assert_eq!(claims.audience, vec![AUD.to_owned()]);
    assert_eq!(claims.security_level, Some(4));
    assert_eq!(claims.orgnr_parent.as_deref(), Some("999999999"));
    assert_eq!(claims.client_amr.as_deref(), Some("private_key_jwt"));
    assert_eq!(
        claims
            .act
            .as_ref()
            .and_then(|a| a.act.as_ref())
            .and_then(|a| a.client_id.as_deref()),
        Some("first")
    );
    assert!(!format!("{claims:?}").contains("13116900216"));
    assert!(claims.require_scope(SCOPE).is_ok());
    let refusal = claims
        .require_scope("nhn:msh/admin")
        .expect_err("missing scope");
    let answer = refusal.into_response::<String>();
    let found = refused(
        &answer,
        StatusCode::FORBIDDEN,
        Some("insufficient_scope"),
        &[],
    );
    assert_eq!(found[0].param("scope"), Some("nhn:msh/admin"));
    assert!(claims.require_security_level(4).is_ok());
}

#[tokio::test]
async fn no_credentials_get_challenges_without_an_error() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let token = key.token(&claims(&issuer.url()));
    for (mode, expected) in [
        (Dpop::Required, vec!["DPoP"]),
        (Dpop::Allowed, vec!["DPoP", "Bearer"]),
        (Dpop::Disabled, vec!["Bearer"]),
    ] {
        let mut b = builder(&issuer).dpop(mode);
        if mode == Dpop::Disabled {
            b = VerifyLayer::builder(issuer.url()).audience(AUD).dpop(mode);
        }
        let layer = b.build().expect("layer");
        let response = call(&layer, get(None).body(String::new()).expect("request")).await;
        let found = refused(&response, StatusCode::UNAUTHORIZED, None, &[]);
        assert_eq!(schemes(&found), expected, "{mode:?}");
        if mode != Dpop::Disabled {
            assert_eq!(
                found[0].param("algs"),
                Some("RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512")
            );
        }
        // A token in the query string or a form body is never read.
        let query = Request::get(format!("{BASE}/messages?access_token={token}"))
            .body(String::new())
            .expect("request");
        refused(
            &call(&layer, query).await,
            StatusCode::UNAUTHORIZED,
            None,
            &[&token],
        );
        let form = Request::post(format!("{BASE}/messages"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("access_token={token}"))
            .expect("request");
        refused(
            &call(&layer, form).await,
            StatusCode::UNAUTHORIZED,
            None,
            &[&token],
        );
        // Another scheme brings no HelseID credentials.
        let basic = get(Some("Basic dXNlcjpwYXNz"))
            .body(String::new())
            .expect("request");
        refused(
            &call(&layer, basic).await,
            StatusCode::UNAUTHORIZED,
            None,
            &[],
        );
    }
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "nothing to verify, nothing fetched"
    );
}

#[tokio::test]
async fn every_bad_token_is_refused_with_invalid_token() {
    let key = RawKey::new("k");
    let other = RawKey::new("other-key");
    let rsa = SigningKey::from_jwk(&PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("rsa"))
        .expect("key");
    let mut rsa_jwk = serde_json::to_value(rsa.public_jwk()).expect("json");
    rsa_jwk["kid"] = json!("rsa");
    let issuer = IssuerDouble::serve(vec![key.jwk(), rsa_jwk]).await;
    let iss = issuer.url();
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .strict_single_audience(true)
        .build()
        .expect("layer");
    let good = claims(&iss);
    let with = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(name);
        c
    };
    let header = |extra: Value| {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k"});
        for (k, v) in extra.as_object().expect("object") {
            h[k] = v.clone();
        }
        h
    };
    let good_text = good.to_string();
    let body = &good_text[1..good_text.len() - 1];
    let now = now();
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "expired",
            key.token(&with("exp", json!(now - 10))),
            Reason::Expired,
        ),
        ("no exp", key.token(&without("exp")), Reason::NoExpiry),
        (
            "exp a string",
            key.token(&with("exp", json!("soon"))),
            Reason::NoExpiry,
        ),
        (
            "nbf ahead",
            key.token(&with("nbf", json!(now + 60))),
            Reason::NotYetValid,
        ),
        (
            "iat ahead",
            key.token(&with("iat", json!(now + 60))),
            Reason::IssuedInFuture,
        ),
        (
            "another issuer",
            key.token(&with("iss", json!("https://helseid-sts.nhn.no"))),
            Reason::UnknownIssuer,
        ),
        (
            "issuer with a slash",
            key.token(&with("iss", json!(format!("{iss}/")))),
            Reason::UnknownIssuer,
        ),
        (
            "another audience",
            key.token(&with("aud", json!("nhn:other"))),
            Reason::WrongAudience,
        ),
        (
            "no audience",
            key.token(&without("aud")),
            Reason::WrongAudience,
        ),
        (
            "audience case",
            key.token(&with("aud", json!("NHN:MSH"))),
            Reason::WrongAudience,
        ),
        (
            "two audiences",
            key.token(&with("aud", json!([AUD, "nhn:other"]))),
            Reason::SeveralAudiences,
        ),
        (
            "scope a number",
            key.token(&with("scope", json!(5))),
            Reason::MalformedClaim,
        ),
        (
            "security level a word",
            key.token(&with(
                "helseid://claims/identity/security_level",
                json!("high"),
            )),
            Reason::MalformedClaim,
        ),
        (
            "typ JWT",
            key.sign(&header(json!({"typ": "JWT"})), &good),
            Reason::WrongType,
        ),
        (
            "no typ",
            key.sign(&json!({"alg": "ES256", "kid": "k"}), &good),
            Reason::WrongType,
        ),
        (
            "typ of an assertion",
            key.sign(&header(json!({"typ": "client-authentication+jwt"})), &good),
            Reason::WrongType,
        ),
        (
            "typ of a proof",
            key.sign(&header(json!({"typ": "dpop+jwt"})), &good),
            Reason::WrongType,
        ),
        (
            "an ID token",
            key.token(&with("nonce", json!("n"))),
            Reason::IdToken,
        ),
        (
            "an ID token's at_hash",
            key.token(&with("at_hash", json!("h"))),
            Reason::IdToken,
        ),
        (
            "iss as sub",
            key.token(&with("sub", json!(iss))),
            Reason::ClientAssertion,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"at+jwt","kid":"k"}"#),
                b64(&good_text)
            ),
            Reason::MalformedToken,
        ),
        (
            "alg none signed",
            key.sign(&header(json!({"alg": "none"})), &good),
            Reason::UnsupportedAlgorithm,
        ),
        (
            "alg HS256",
            key.sign(&header(json!({"alg": "HS256"})), &good),
            Reason::UnsupportedAlgorithm,
        ),
        (
            "alg missing",
            key.sign(&json!({"typ": "at+jwt", "kid": "k"}), &good),
            Reason::UnsupportedAlgorithm,
        ),
        (
            "crit",
            key.sign(&header(json!({"crit": ["exp"]})), &good),
            Reason::CriticalHeader,
        ),
        (
            "jwk in the header",
            key.sign(&header(json!({"jwk": key.bare_jwk()})), &good),
            Reason::EmbeddedKey,
        ),
        (
            "jku",
            key.sign(&header(json!({"jku": format!("{iss}/jwks")})), &good),
            Reason::EmbeddedKey,
        ),
        (
            "x5u",
            key.sign(&header(json!({"x5u": format!("{iss}/cert")})), &good),
            Reason::EmbeddedKey,
        ),
        (
            "x5c",
            key.sign(&header(json!({"x5c": ["MIIB"]})), &good),
            Reason::EmbeddedKey,
        ),
        (
            "no kid",
            key.sign(&json!({"alg": "ES256", "typ": "at+jwt"}), &good),
            Reason::NoKeyId,
        ),
        ("unknown kid", other.token(&good), Reason::UnknownKey),
        (
            "another key's kid",
            other.sign(&header(json!({})), &good),
            Reason::BadSignature,
        ),
        (
            "an RSA key's kid with ES256",
            key.sign(&header(json!({"kid": "rsa"})), &good),
            Reason::KeyMismatch,
        ),
        (
            "ES key with RS256",
            key.sign(&header(json!({"alg": "RS256"})), &good),
            Reason::KeyMismatch,
        ),
        (
            "a repeated claim",
            key.sign_text(
                &header(json!({})).to_string(),
                &format!("{{{body},\"aud\":\"{AUD}\"}}"),
            ),
            Reason::DuplicateMember,
        ),
        (
            "a repeated header member",
            key.sign_text(
                r#"{"alg":"ES256","typ":"at+jwt","kid":"k","kid":"k"}"#,
                &good_text,
            ),
            Reason::DuplicateMember,
        ),
        (
            "claims not an object",
            key.sign_text(&header(json!({})).to_string(), "[1]"),
            Reason::MalformedToken,
        ),
        (
            "two parts",
            key.token(&good)
                .rsplit_once('.')
                .map(|(a, _)| a.to_owned())
                .unwrap_or_default(),
            Reason::MalformedToken,
        ),
        (
            "four parts",
            format!("{}.x", key.token(&good)),
            Reason::MalformedToken,
        ),
    ];
    for (what, token, reason) in &cases {
        let response = bearer(&layer, token).await;
        let found = refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            &[token],
        );
        assert_eq!(found[0].scheme, "Bearer", "{what}");
        assert_eq!(
            found[0].param("error_description"),
            Some(reason.to_string().as_str()),
            "{what}"
        );
        let alone = layer.verify_token(token).await.expect_err(what);
        assert_eq!(alone.reason(), *reason, "{what}");
    }
    // Non-canonical base64url: stray trailing bits in the signature.
    let token = key.token(&good);
    let (rest, sig) = token.rsplit_once('.').expect("dots");
    let last = sig.chars().last().expect("a character");
    // 64-byte ES256 signature: 86 characters, the last carrying 2 unused bits.
    let bumped = match last {
        'A' => 'B',
        c => ((c as u8) ^ 1) as char,
    };
    let odd = format!("{rest}.{}{bumped}", &sig[..sig.len() - 1]);
    if odd != token {
        let response = bearer(&layer, &odd).await;
        refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            &[&odd],
        );
    }
    // A padded part is not token68 at all: a malformed request.
    let padded = format!(
        "{}=.{}",
        &token[..token.find('.').expect("dot")],
        &token[token.find('.').expect("dot") + 1..]
    );
    refused(
        &bearer(&layer, &padded).await,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        &[&padded],
    );
    // JWT is accepted for an access token only when allowed, and only with client_id.
    let lenient = builder(&issuer)
        .dpop(Dpop::Allowed)
        .allow_jwt_typ(true)
        .build()
        .expect("layer");
    let jwt_typ = key.sign(&header(json!({"typ": "JWT"})), &good);
    assert_eq!(bearer(&lenient, &jwt_typ).await.status(), StatusCode::OK);
    let id_token = key.sign(&header(json!({"typ": "JWT"})), &without("client_id"));
    assert_eq!(
        lenient
            .verify_token(&id_token)
            .await
            .expect_err("id token")
            .reason(),
        Reason::IdToken
    );
    // Leeway: a token expired 3 s ago passes the default 5 s, not a zero leeway.
    let just_expired = key.token(&with("exp", json!(now - 3)));
    assert_eq!(
        bearer(&lenient, &just_expired).await.status(),
        StatusCode::OK
    );
    let strict = builder(&issuer)
        .dpop(Dpop::Allowed)
        .leeway(Duration::ZERO)
        .build()
        .expect("layer");
    assert_eq!(
        strict
            .verify_token(&just_expired)
            .await
            .expect_err("expired")
            .reason(),
        Reason::Expired
    );
    // Not strict: two audiences pass when one is this API.
    let two = key.token(&with("aud", json!(["nhn:other", AUD])));
    assert_eq!(bearer(&lenient, &two).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn scopes_bound_tokens_and_the_requests_shape() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let iss = issuer.url();
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .scopes_any_of([SCOPE, "nhn:msh/read"])
        .build()
        .expect("layer");
    let mut c = claims(&iss);
    c["scope"] = json!(["nhn:msh/other"]);
    let token = key.token(&c);
    let found = refused(
        &bearer(&layer, &token).await,
        StatusCode::FORBIDDEN,
        Some("insufficient_scope"),
        &[&token],
    );
    assert_eq!(found[0].param("scope"), Some("nhn:msh/api nhn:msh/read"));
    // Scopes compare exactly, as an array or a string.
    c["scope"] = json!(["NHN:MSH/API", "nhn:msh/api2"]);
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::FORBIDDEN
    );
    c["scope"] = json!(["nhn:msh/read"]);
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::OK
    );
    c["scope"] = json!("openid nhn:msh/read");
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::OK
    );

    // A DPoP-bound token sent as Bearer.
    let mut bound = claims(&iss);
    bound["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let bound = key.token(&bound);
    let found = refused(
        &bearer(&layer, &bound).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&bound],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::BoundTokenAsBearer.to_string().as_str())
    );

    let token = key.token(&claims(&iss));
    // Two Authorization headers.
    let two = get(None)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .expect("request");
    refused(
        &call(&layer, two).await,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        &[&token],
    );
    // Both schemes: a Bearer token with a DPoP proof.
    let both = get(Some(&format!("Bearer {token}")))
        .header("dpop", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
        .body(String::new())
        .expect("request");
    refused(
        &call(&layer, both).await,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        &[&token],
    );
    // Not `<scheme> <token68>`.
    for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a\tb"] {
        let request = get(Some(bad)).body(String::new()).expect("request");
        refused(
            &call(&layer, request).await,
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            &[],
        );
    }
    // The scheme's name is case-insensitive.
    let lower = get(Some(&format!("bearer {token}")))
        .body(String::new())
        .expect("request");
    assert_eq!(call(&layer, lower).await.status(), StatusCode::OK);

    // DPoP required: a Bearer token is an unsupported method (RFC 6750 section 3.1:
    // no error code), and the challenge asks for DPoP.
    let dpop_only = builder(&issuer).build().expect("layer");
    let found = refused(
        &bearer(&dpop_only, &token).await,
        StatusCode::UNAUTHORIZED,
        None,
        &[&token],
    );
    assert_eq!(schemes(&found), vec!["DPoP"]);
    // DPoP disabled: the DPoP scheme is refused.
    let bearer_only = VerifyLayer::builder(&iss)
        .audience(AUD)
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    let request = get(Some(&format!("DPoP {token}")))
        .header("dpop", "a.b.c")
        .body(String::new())
        .expect("request");
    let found = refused(
        &call(&bearer_only, request).await,
        StatusCode::UNAUTHORIZED,
        None,
        &[&token],
    );
    assert_eq!(schemes(&found), vec!["Bearer"]);
}

#[tokio::test]
async fn optional_authentication_passes_without_credentials_only() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .optional(true)
        .build()
        .expect("layer");
    let response = call(&layer, get(None).body(String::new()).expect("request")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "anonymous");
    let token = key.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &token).await.body(), "client=client-1");
    let expired = {
        let mut c = claims(&issuer.url());
        c["exp"] = json!(now() - 100);
        key.token(&c)
    };
    refused(
        &bearer(&layer, &expired).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&expired],
    );
}

// ---------------------------------------------------------------------------------
// Keys.

#[tokio::test(start_paused = true)]
async fn rotation_a_new_kid_after_one_fetch_and_a_removed_kid_refused_even_when_cached() {
    let old = RawKey::new("old");
    let new = RawKey::new("new");
    let issuer = IssuerDouble::new("https://issuer.test", vec![old.jwk()]);
    let layer = in_process(&issuer)
        .dpop(Dpop::Allowed)
        .build()
        .expect("layer");
    let old_token = old.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &old_token).await.status(), StatusCode::OK);
    assert_eq!(bearer(&layer, &old_token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 1);

    // HelseID publishes the new key next to the old one.
    issuer.set_keys(vec![old.jwk(), new.jwk()]);
    tokio::time::advance(Duration::from_secs(31)).await;
    let new_token = new.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &new_token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 2, "one fetch for the new kid");
    assert_eq!(bearer(&layer, &new_token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 2);

    // The old key is withdrawn; the next fetch (another unknown kid) learns it.
    issuer.set_keys(vec![new.jwk()]);
    tokio::time::advance(Duration::from_secs(31)).await;
    let stranger = RawKey::new("stranger").token(&claims(&issuer.url()));
    assert_eq!(
        bearer(&layer, &stranger).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(issuer.jwks_fetches(), 3);
    // The old token was verified and cached: still refused now that its key is gone.
    let found = refused(
        &bearer(&layer, &old_token).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&old_token],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::UnknownKey.to_string().as_str())
    );
    assert_eq!(bearer(&layer, &new_token).await.status(), StatusCode::OK);
    assert_eq!(issuer.discovery_fetches(), 1, "discovery is kept a day");
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::new("https://issuer.test", vec![key.jwk()]);
    let layer = in_process(&issuer)
        .dpop(Dpop::Allowed)
        .build()
        .expect("layer");
    let c = claims(&issuer.url());
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::OK
    );
    assert_eq!(issuer.jwks_fetches(), 1);
    let stranger = RawKey::new("x");
    let header = |i: usize| json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("random-{i}")});
    for round in 0..3u64 {
        tokio::time::advance(Duration::from_secs(31)).await;
        // Many at once, then many one after another.
        let tokens: Vec<String> = (0..50).map(|i| stranger.sign(&header(i), &c)).collect();
        let calls = tokens.iter().map(|t| bearer(&layer, t));
        for response in futures_util::future::join_all(calls).await {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        for i in 50..100 {
            assert_eq!(
                bearer(&layer, &stranger.sign(&header(i), &c))
                    .await
                    .status(),
                StatusCode::UNAUTHORIZED
            );
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            bearer(&layer, &stranger.sign(&header(1000), &c))
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            issuer.jwks_fetches() as u64,
            2 + round,
            "one fetch per cooldown"
        );
    }
    assert_eq!(layer.key_fetches(), 4);
    // The good key was never lost.
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn a_jwks_that_fails_times_out_is_empty_or_redirects_keeps_the_last_good_set() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::new("https://issuer.test", vec![key.jwk()]);
    let layer = in_process(&issuer)
        .dpop(Dpop::Allowed)
        .build()
        .expect("layer");
    let c = claims(&issuer.url());
    assert_eq!(
        bearer(&layer, &key.token(&c)).await.status(),
        StatusCode::OK
    );
    let mut fetches = 1;
    for mode in [
        Jwks::Fail,
        Jwks::Hang,
        Jwks::Empty,
        Jwks::Redirect,
        Jwks::Huge,
    ] {
        issuer.set_mode(mode.clone());
        tokio::time::advance(Duration::from_secs(31)).await;
        let unknown = RawKey::new(&format!("new-{fetches}")).token(&c);
        let response = bearer(&layer, &unknown).await;
        fetches += 1;
        assert_eq!(issuer.jwks_fetches(), fetches, "{mode:?}");
        refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            &[&unknown],
        );
        // A fresh token of the good key: verified with the set at hand.
        let mut fresh = c.clone();
        fresh["jti"] = json!(format!("fresh-{fetches}"));
        assert_eq!(
            bearer(&layer, &key.token(&fresh)).await.status(),
            StatusCode::OK,
            "{mode:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_key_set_at_all_is_503() {
    let key = RawKey::new("k");
    for mode in [Jwks::Fail, Jwks::Hang, Jwks::Empty, Jwks::Redirect] {
        let issuer = IssuerDouble::new("https://issuer.test", vec![key.jwk()]);
        issuer.set_mode(mode.clone());
        let layer = in_process(&issuer)
            .dpop(Dpop::Allowed)
            .build()
            .expect("layer");
        let token = key.token(&claims(&issuer.url()));
        let response = bearer(&layer, &token).await;
        refused(&response, StatusCode::SERVICE_UNAVAILABLE, None, &[&token]);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        // Once the issuer recovers, the next try (a few seconds on) gets the keys.
        issuer.set_mode(Jwks::Keys);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            bearer(&layer, &token).await.status(),
            StatusCode::OK,
            "{mode:?}"
        );
    }
    // An issuer that does not answer at all.
    let layer = VerifyLayer::builder("http://127.0.0.1:9")
        .audience(AUD)
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    let token = key.token(&claims("http://127.0.0.1:9"));
    assert_eq!(
        bearer(&layer, &token).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn readiness_loads_the_keys_once_and_reports_an_issuer_that_cannot_be_reached() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    issuer.set_mode(Jwks::Fail);
    // Without a cooldown, so that the issuer's recovery is seen at once.
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .refetch_cooldown(Duration::ZERO)
        .build()
        .expect("layer");
    assert!(!layer.keys_loaded(), "nothing is fetched at build");
    assert_eq!(issuer.jwks_fetches(), 0);
    let refusal = layer.ready().await.expect_err("the JWKS fails");
    assert_eq!(refusal.reason(), Reason::Unavailable);
    assert_eq!(refusal.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!layer.keys_loaded());
    assert_eq!(issuer.jwks_fetches(), 1);
    issuer.set_mode(Jwks::Empty);
    assert!(layer.ready().await.is_err(), "an empty set is not loaded");
    assert!(!layer.keys_loaded());
    issuer.set_mode(Jwks::Keys);
    layer.ready().await.expect("ready");
    assert!(layer.keys_loaded());
    assert_eq!(issuer.jwks_fetches(), 3);
    // Ready again: nothing fetched; and a token verifies without a fetch.
    layer.ready().await.expect("ready");
    let token = key.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(layer.key_fetches(), 3);
    // A key set once loaded stays loaded when the issuer fails.
    issuer.set_mode(Jwks::Fail);
    layer.ready().await.expect("still ready");
    assert!(layer.keys_loaded());

    // With the default cooldown, a probe polling a failing issuer fetches once.
    let failing = IssuerDouble::serve(vec![key.jwk()]).await;
    failing.set_mode(Jwks::Fail);
    let layer = builder(&failing)
        .dpop(Dpop::Allowed)
        .build()
        .expect("layer");
    for _ in 0..5 {
        assert!(layer.ready().await.is_err());
    }
    assert_eq!(failing.jwks_fetches(), 1);
    assert_eq!(failing.discovery_fetches(), 1);

    // Several issuers: ready only when every one's keys are loaded.
    let other_key = RawKey::new("other");
    let other = IssuerDouble::serve(vec![other_key.jwk()]).await;
    let both = builder(&issuer)
        .issuer(other.url())
        .dpop(Dpop::Allowed)
        .jwks(issuer.url(), json!({ "keys": [key.jwk()] }))
        .build()
        .expect("layer");
    assert!(
        !both.keys_loaded(),
        "the second issuer's keys are not fetched yet"
    );
    both.ready().await.expect("ready");
    assert!(both.keys_loaded());
    assert_eq!(other.jwks_fetches(), 1);
    // An issuer that does not answer at all.
    let dead = VerifyLayer::builder("http://127.0.0.1:9")
        .audience(AUD)
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    assert_eq!(
        dead.ready().await.expect_err("unreachable").reason(),
        Reason::Unavailable
    );
    assert!(!dead.keys_loaded());
}

#[tokio::test(start_paused = true)]
async fn several_issuers_keep_their_own_keys() {
    let test = RawKey::new("same-kid");
    let prod = RawKey::new("same-kid");
    let test_issuer = IssuerDouble::new("https://test.issuer", vec![test.jwk()]);
    let prod_issuer = IssuerDouble::new("https://prod.issuer", vec![prod.jwk()]);
    let test_router = test_issuer.router.clone();
    let prod_router = prod_issuer.router.clone();
    // One HTTP service that routes by host, as the internet does.
    let http = tower::service_fn(
        move |request: Request<http_body_util::Full<bytes::Bytes>>| {
            let router = if request.uri().host() == Some("test.issuer") {
                test_router.clone()
            } else {
                prod_router.clone()
            };
            router.oneshot(request)
        },
    );
    let layer = VerifyLayer::builder("https://test.issuer")
        .issuer("https://prod.issuer")
        .audience(AUD)
        .dpop(Dpop::Disabled)
        .http_service(http)
        .build()
        .expect("layer");
    let test_token = test.token(&claims("https://test.issuer"));
    let prod_token = prod.token(&claims("https://prod.issuer"));
    assert_eq!(bearer(&layer, &test_token).await.status(), StatusCode::OK);
    assert_eq!(bearer(&layer, &prod_token).await.status(), StatusCode::OK);
    // The same kid, the other issuer's key: the signature fails.
    let crossed = test.token(&claims("https://prod.issuer"));
    assert_eq!(
        layer
            .verify_token(&crossed)
            .await
            .expect_err("crossed")
            .reason(),
        Reason::BadSignature
    );
}

#[tokio::test]
async fn a_warm_token_is_not_verified_again_and_exp_is_checked_at_every_hit() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = offset.clone();
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .leeway(Duration::ZERO)
        .clock(move || {
            SystemTime::now() + Duration::from_secs(clock.load(std::sync::atomic::Ordering::SeqCst))
        })
        .build()
        .expect("layer");
    let mut c = claims(&issuer.url());
    c["exp"] = json!(now() + 60);
    let token = key.token(&c);
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    // The keys become unreachable: a warm token needs none.
    issuer.set_mode(Jwks::Fail);
    for _ in 0..3 {
        assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    }
    assert_eq!(issuer.jwks_fetches(), 1);
    // Past exp, the cached token is refused at its next use.
    offset.store(61, std::sync::atomic::Ordering::SeqCst);
    let found = refused(
        &bearer(&layer, &token).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&token],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::Expired.to_string().as_str())
    );
    // A token whose nbf is ahead is not cached as valid either.
    offset.store(0, std::sync::atomic::Ordering::SeqCst);
    let mut later = claims(&issuer.url());
    later["nbf"] = json!(now() + 30);
    let later = key.token(&later);
    assert_eq!(
        bearer(&layer, &later).await.status(),
        StatusCode::UNAUTHORIZED
    );
    offset.store(31, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(bearer(&layer, &later).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------
// DPoP.

fn random_jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    b64(bytes)
}

/// base64url(SHA-256(token)).
fn ath(token: &str) -> String {
    b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Good proof claims for `GET {BASE}/messages` with `token`.
fn proof_claims(token: &str) -> Value {
    json!({
        "jti": random_jti(),
        "htm": "GET",
        "htu": format!("{BASE}/messages"),
        "iat": now(),
        "ath": ath(token),
    })
}

fn thumbprint(jwk: &Value) -> String {
    serde_json::from_value::<helseid::key::PublicJwk>(jwk.clone())
        .expect("jwk")
        .thumbprint()
}

/// A token bound to the key whose thumbprint is `jkt`.
fn bound_token(key: &RawKey, iss: &str, jkt: &str) -> String {
    let mut c = claims(iss);
    c["cnf"] = json!({ "jkt": jkt });
    key.token(&c)
}

fn dpop_get(token: &str, proof: &str) -> Request<String> {
    get(Some(&format!("DPoP {token}")))
        .header("dpop", proof)
        .body(String::new())
        .expect("request")
}

fn proof_header(key: &RawKey) -> Value {
    json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.bare_jwk()})
}

#[tokio::test]
async fn dpop_proofs_made_with_rsa_pss_and_ec_keys_pass_once() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let layer = builder(&issuer).build().expect("layer");
    for proof_key in [
        PrivateJwk::generate_rsa(2048, Algorithm::RS256),
        PrivateJwk::generate_rsa(2048, Algorithm::RS512),
        PrivateJwk::generate_rsa(2048, Algorithm::PS256),
        PrivateJwk::generate_rsa(3072, Algorithm::PS384),
        PrivateJwk::generate_ec(Algorithm::ES256),
        PrivateJwk::generate_ec(Algorithm::ES384),
        PrivateJwk::generate_ec(Algorithm::ES512),
    ] {
        let proof_key = SigningKey::from_jwk(&proof_key.expect("key")).expect("key");
        let token = bound_token(&issuer_key, &issuer.url(), proof_key.thumbprint());
        let proof = proof_key
            .sign_jwt_with_jwk("dpop+jwt", &proof_claims(&token))
            .expect("proof");
        let response = call(&layer, dpop_get(&token, &proof)).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}: {:?}",
            proof_key.algorithm(),
            response.headers()
        );
        // The same proof again: a replay.
        let found = refused(
            &call(&layer, dpop_get(&token, &proof)).await,
            StatusCode::UNAUTHORIZED,
            Some("invalid_dpop_proof"),
            &[&token, &proof],
        );
        assert_eq!(found[0].scheme, "DPoP");
        assert_eq!(
            found[0].param("error_description"),
            Some(Reason::ProofReplay.to_string().as_str())
        );
        // A fresh proof: the token comes from the cache, the proof is checked anew.
        let proof = proof_key
            .sign_jwt_with_jwk("dpop+jwt", &proof_claims(&token))
            .expect("proof");
        assert_eq!(
            call(&layer, dpop_get(&token, &proof)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn every_bad_proof_is_refused_with_invalid_dpop_proof() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let iss = issuer.url();
    let layer = builder(&issuer).build().expect("layer");
    let key = RawKey::new("proof");
    let other = RawKey::new("other");
    let token = bound_token(&issuer_key, &iss, &thumbprint(&key.bare_jwk()));
    let good = proof_claims(&token);
    let with = |name: &str, value: Value| {
        let mut c = proof_claims(&token);
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = proof_claims(&token);
        c.as_object_mut().expect("object").remove(name);
        c
    };
    let header = |extra: Value| {
        let mut h = proof_header(&key);
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                h.as_object_mut().expect("object").remove(k);
            } else {
                h[k] = v.clone();
            }
        }
        h
    };
    let mut private = key.bare_jwk();
    private["d"] = json!(b64([7u8; 32]));
    let now = now();
    let cases: Vec<(&str, String, Reason)> = vec![
        (
            "typ JWT",
            key.sign(&header(json!({"typ": "JWT"})), &good),
            Reason::ProofType,
        ),
        (
            "no typ",
            key.sign(&header(json!({"typ": null})), &good),
            Reason::ProofType,
        ),
        (
            "typ at+jwt",
            key.sign(&header(json!({"typ": "at+jwt"})), &good),
            Reason::ProofType,
        ),
        (
            "alg HS256",
            key.sign(&header(json!({"alg": "HS256"})), &good),
            Reason::ProofAlgorithm,
        ),
        (
            "alg none",
            key.sign(&header(json!({"alg": "none"})), &good),
            Reason::ProofAlgorithm,
        ),
        (
            "no jwk",
            key.sign(&header(json!({"jwk": null})), &good),
            Reason::ProofKey,
        ),
        (
            "a private jwk",
            key.sign(&header(json!({"jwk": private})), &good),
            Reason::ProofKey,
        ),
        (
            "jwk of another family",
            key.sign(&header(json!({"alg": "RS256"})), &good),
            Reason::ProofKey,
        ),
        (
            "jwk a string",
            key.sign(&header(json!({"jwk": "key"})), &good),
            Reason::ProofKey,
        ),
        (
            "signed by another key",
            other.sign(&header(json!({})), &good),
            Reason::ProofSignature,
        ),
        (
            "htm POST",
            key.sign(&header(json!({})), &with("htm", json!("POST"))),
            Reason::ProofMethod,
        ),
        (
            "htm get",
            key.sign(&header(json!({})), &with("htm", json!("get"))),
            Reason::ProofMethod,
        ),
        (
            "no htm",
            key.sign(&header(json!({})), &without("htm")),
            Reason::ProofMethod,
        ),
        (
            "htu another path",
            key.sign(
                &header(json!({})),
                &with("htu", json!(format!("{BASE}/other"))),
            ),
            Reason::ProofUri,
        ),
        (
            "htu another host",
            key.sign(
                &header(json!({})),
                &with("htu", json!("https://evil.example.no/messages")),
            ),
            Reason::ProofUri,
        ),
        (
            "htu http",
            key.sign(
                &header(json!({})),
                &with("htu", json!("http://api.example.no/messages")),
            ),
            Reason::ProofUri,
        ),
        (
            "htu another port",
            key.sign(
                &header(json!({})),
                &with("htu", json!("https://api.example.no:8443/messages")),
            ),
            Reason::ProofUri,
        ),
        (
            "htu relative",
            key.sign(&header(json!({})), &with("htu", json!("/messages"))),
            Reason::ProofUri,
        ),
        (
            "no htu",
            key.sign(&header(json!({})), &without("htu")),
            Reason::ProofUri,
        ),
        (
            "iat old",
            key.sign(&header(json!({})), &with("iat", json!(now - 120))),
            Reason::ProofTime,
        ),
        (
            "iat ahead",
            key.sign(&header(json!({})), &with("iat", json!(now + 60))),
            Reason::ProofTime,
        ),
        (
            "no iat",
            key.sign(&header(json!({})), &without("iat")),
            Reason::ProofTime,
        ),
        (
            "iat a string",
            key.sign(&header(json!({})), &with("iat", json!("now"))),
            Reason::ProofTime,
        ),
        (
            "ath of another token",
            key.sign(&header(json!({})), &with("ath", json!(ath("another")))),
            Reason::ProofTokenHash,
        ),
        (
            "no ath",
            key.sign(&header(json!({})), &without("ath")),
            Reason::ProofTokenHash,
        ),
        (
            "no jti",
            key.sign(&header(json!({})), &without("jti")),
            Reason::ProofReplay,
        ),
        (
            "empty jti",
            key.sign(&header(json!({})), &with("jti", json!(""))),
            Reason::ProofReplay,
        ),
        (
            "crit",
            key.sign(&header(json!({"crit": ["htu"]})), &good),
            Reason::MalformedProof,
        ),
        (
            "a repeated member",
            key.sign_text(
                &header(json!({})).to_string(),
                &format!("{{\"htm\":\"GET\",{}", &good.to_string()[1..]),
            ),
            Reason::MalformedProof,
        ),
        ("not a JWT", "not-a-jwt".to_owned(), Reason::MalformedProof),
    ];
    for (what, proof, reason) in &cases {
        let response = call(&layer, dpop_get(&token, proof)).await;
        let found = refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("invalid_dpop_proof"),
            &[&token, proof],
        );
        assert_eq!(found[0].scheme, "DPoP", "{what}");
        assert_eq!(
            found[0].param("error_description"),
            Some(reason.to_string().as_str()),
            "{what}"
        );
        assert_eq!(
            found[0].param("algs").map(|a| a.contains("PS256")),
            Some(true)
        );
    }
    // The proof's key is not the one the token is bound to.
    let foreign = other.sign(
        &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": other.bare_jwk()}),
        &proof_claims(&token),
    );
    let found = refused(
        &call(&layer, dpop_get(&token, &foreign)).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_dpop_proof"),
        &[&token, &foreign],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::ProofKeyBinding.to_string().as_str())
    );
    // No proof at all.
    let request = get(Some(&format!("DPoP {token}")))
        .body(String::new())
        .expect("request");
    let found = refused(
        &call(&layer, request).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_dpop_proof"),
        &[&token],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::NoProof.to_string().as_str())
    );
    // Two DPoP headers, or two proofs in one.
    let proof = key.sign(&proof_header(&key), &proof_claims(&token));
    let request = get(Some(&format!("DPoP {token}")))
        .header("dpop", &proof)
        .header("dpop", &proof)
        .body(String::new())
        .expect("request");
    refused(
        &call(&layer, request).await,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        &[&token, &proof],
    );
    let request = dpop_get(&token, &format!("{proof}, {proof}"));
    refused(
        &call(&layer, request).await,
        StatusCode::BAD_REQUEST,
        Some("invalid_request"),
        &[&token, &proof],
    );
    // A token that is not bound, sent with DPoP.
    let unbound = issuer_key.token(&claims(&iss));
    let proof = key.sign(&proof_header(&key), &proof_claims(&unbound));
    let found = refused(
        &call(&layer, dpop_get(&unbound, &proof)).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&unbound, &proof],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::UnboundToken.to_string().as_str())
    );
}

#[tokio::test]
async fn htu_is_compared_normalised_without_query_and_from_the_public_base_url() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let key = RawKey::new("proof");
    let token = bound_token(&issuer_key, &issuer.url(), &thumbprint(&key.bare_jwk()));
    let layer = builder(&issuer).build().expect("layer");
    for htu in [
        format!("{BASE}/messages"),
        format!("{BASE}/messages?x=1#f"),
        "HTTPS://API.Example.NO:443/messages".to_owned(),
        "https://api.example.no/./messages".to_owned(),
        "https://api.example.no/%6Dessages".to_owned(),
    ] {
        let mut c = proof_claims(&token);
        c["htu"] = json!(htu);
        // `typ` as .NET writes it: "dpop\u002Bjwt", the same string to a JSON parser.
        let header = format!(
            r#"{{"alg":"ES256","typ":"dpop\u002Bjwt","jwk":{}}}"#,
            key.bare_jwk()
        );
        let proof = key.sign_text(&header, &c.to_string());
        let response = call(&layer, dpop_get(&token, &proof)).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{htu}: {:?}",
            response.headers()
        );
    }
    // Behind a proxy that strips a path prefix: the public URL carries it.
    let prefixed = VerifyLayer::builder(issuer.url())
        .audience(AUD)
        .public_base_url("https://gw.example.no/msh/")
        .build()
        .expect("layer");
    let mut c = proof_claims(&token);
    c["htu"] = json!("https://gw.example.no/msh/messages");
    let proof = key.sign(&proof_header(&key), &c);
    assert_eq!(
        call(&prefixed, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
    let proof = key.sign(&proof_header(&key), &proof_claims(&token));
    assert_eq!(
        call(&prefixed, dpop_get(&token, &proof)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A base URL is required when DPoP is accepted.
    assert!(
        VerifyLayer::builder(issuer.url())
            .audience(AUD)
            .build()
            .is_err()
    );
    assert!(
        VerifyLayer::builder(issuer.url())
            .audience(AUD)
            .public_base_url("https://gw.example.no/?a=1")
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn server_nonces_are_asked_for_and_then_accepted() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let layer = builder(&issuer).dpop_nonce(true).build().expect("layer");
    let key = RawKey::new("proof");
    let token = bound_token(&issuer_key, &issuer.url(), &thumbprint(&key.bare_jwk()));
    let mut nonce = String::new();
    for sent in [None, Some(""), Some("made-up-nonce")] {
        let mut c = proof_claims(&token);
        if let Some(sent) = sent {
            c["nonce"] = json!(sent);
        }
        let proof = key.sign(&proof_header(&key), &c);
        let response = call(&layer, dpop_get(&token, &proof)).await;
        let found = refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("use_dpop_nonce"),
            &[&token, &proof],
        );
        assert_eq!(found[0].scheme, "DPoP");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        nonce = response.headers()["dpop-nonce"]
            .to_str()
            .expect("nonce")
            .to_owned();
        assert!(!nonce.is_empty());
    }
    let mut c = proof_claims(&token);
    c["nonce"] = json!(nonce);
    let proof = key.sign(&proof_header(&key), &c);
    assert_eq!(
        call(&layer, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
    // Replicas that share the nonce secret accept each other's nonces.
    let a = builder(&issuer)
        .dpop_nonce(true)
        .dpop_nonce_secret(*b"shared secret")
        .build()
        .expect("layer");
    let b = builder(&issuer)
        .dpop_nonce(true)
        .dpop_nonce_secret(*b"shared secret")
        .build()
        .expect("layer");
    let proof = key.sign(&proof_header(&key), &proof_claims(&token));
    let from_a = call(&a, dpop_get(&token, &proof)).await.headers()["dpop-nonce"].clone();
    let mut c = proof_claims(&token);
    c["nonce"] = json!(from_a.to_str().expect("nonce"));
    let proof = key.sign(&proof_header(&key), &c);
    assert_eq!(
        call(&b, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_replay_store_is_pluggable_and_its_failure_is_503() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let key = RawKey::new("proof");
    let token = bound_token(&issuer_key, &issuer.url(), &thumbprint(&key.bare_jwk()));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<([u8; 32], Duration)>::new()));
    let store = seen.clone();
    let layer = builder(&issuer)
        .replay_store(move |hash: [u8; 32], ttl: Duration| {
            let store = store.clone();
            async move {
                let mut seen = store.lock().expect("lock");
                let fresh = !seen.iter().any(|(h, _)| *h == hash);
                seen.push((hash, ttl));
                Ok::<bool, helseid::error::BoxError>(fresh)
            }
        })
        .build()
        .expect("layer");
    let c = proof_claims(&token);
    let proof = key.sign(&proof_header(&key), &c);
    assert_eq!(
        call(&layer, dpop_get(&token, &proof)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&layer, dpop_get(&token, &proof)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        let jti = c["jti"].as_str().expect("jti");
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jti.as_bytes());
        assert_eq!(
            &seen[0].0[..],
            hash.as_ref(),
            "the store sees the jti's hash, not the jti"
        );
        assert!(seen[0].1 >= Duration::from_secs(60));
    }
    let failing = builder(&issuer)
        .replay_store(|_: [u8; 32], _: Duration| async {
            Err::<bool, helseid::error::BoxError>("redis is down".into())
        })
        .build()
        .expect("layer");
    let proof = key.sign(&proof_header(&key), &proof_claims(&token));
    let response = call(&failing, dpop_get(&token, &proof)).await;
    refused(
        &response,
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        &[&token, &proof],
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_key_set_is_fetched_again_in_the_background_and_a_withdrawn_key_stops() {
    let old = RawKey::new("old");
    let new = RawKey::new("new");
    let issuer = IssuerDouble::new("https://issuer.test", vec![old.jwk()]);
    let layer = in_process(&issuer)
        .dpop(Dpop::Allowed)
        .keys_max_age(Duration::from_secs(600))
        .build()
        .expect("layer");
    let token = old.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    // The issuer withdraws the old key; no unknown kid arrives to tell.
    issuer.set_keys(vec![new.jwk()]);
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 1, "young keys are not fetched again");
    tokio::time::advance(Duration::from_secs(301)).await;
    // This use finds the set stale: it is answered with the keys at hand, and starts a
    // fetch that nobody waits for.
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    for _ in 0..100 {
        if issuer.jwks_fetches() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(issuer.jwks_fetches(), 2);
    tokio::task::yield_now().await;
    let found = refused(
        &bearer(&layer, &token).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&token],
    );
    assert_eq!(
        found[0].param("error_description"),
        Some(Reason::UnknownKey.to_string().as_str())
    );
}

#[test]
fn the_layer_is_send_sync_and_shows_no_secret() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VerifyLayer>();
    assert_send_sync::<helseid::verify::Refusal>();
    assert_send_sync::<HelseIdClaims>();
    assert_send_sync::<
        helseid::verify::Verify<
            tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>,
        >,
    >();
    let layer = VerifyLayer::builder("https://helseid-sts.nhn.no")
        .audience(AUD)
        .public_base_url(BASE)
        .dpop_nonce(true)
        .dpop_nonce_secret(*b"a-nonce-secret-nobody-sees")
        .build()
        .expect("layer");
    let shown = format!("{layer:?}");
    assert!(!shown.contains("a-nonce-secret-nobody-sees"), "{shown}");
    // Bad settings name themselves.
    for (builder, field) in [
        (
            VerifyLayer::builder("http://helseid.example.no")
                .audience(AUD)
                .dpop(Dpop::Disabled),
            "issuer",
        ),
        (
            VerifyLayer::builder("https://helseid.example.no").dpop(Dpop::Disabled),
            "audience",
        ),
        (
            VerifyLayer::builder("https://helseid.example.no")
                .audience(AUD)
                .dpop(Dpop::Disabled)
                .scopes_any_of(["a\"b"]),
            "scopes_any_of",
        ),
        (
            VerifyLayer::builder("https://helseid.example.no").audience(AUD),
            "public_base_url",
        ),
        (
            VerifyLayer::builder("https://helseid.example.no")
                .audience(AUD)
                .public_base_url("ftp://x"),
            "public_base_url",
        ),
        (
            VerifyLayer::builder("https://helseid.example.no")
                .audience(AUD)
                .dpop(Dpop::Disabled)
                .timeout(Duration::ZERO),
            "timeout",
        ),
    ] {
        let error = builder.build().expect_err(field);
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test]
async fn preloaded_keys_verify_without_a_fetch_and_unverified_claims_type() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let layer = builder(&issuer)
        .dpop(Dpop::Allowed)
        .jwks(issuer.url(), json!({ "keys": [key.jwk()] }))
        .build()
        .expect("layer");
    let token = key.token(&claims(&issuer.url()));
    assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), 0);
    for (jwks, issuer_url) in [
        (
            json!({ "keys": [key.jwk()] }),
            "https://elsewhere.example.no".to_owned(),
        ),
        (json!({ "keys": [] }), issuer.url()),
        (json!({ "nothing": 1 }), issuer.url()),
    ] {
        let error = builder(&issuer)
            .jwks(issuer_url, jwks)
            .build()
            .expect_err("jwks");
        assert!(error.to_string().contains("jwks"), "{error}");
    }

    let c = claims(&issuer.url());
    let typed = HelseIdClaims::unverified(c.as_object().expect("object").clone()).expect("claims");
    assert_eq!(typed.client_id.as_deref(), Some("client-1"));
    assert_eq!(typed.scopes, vec![SCOPE.to_owned(), "other".to_owned()]);
    let mut bad = c.clone();
    bad["scope"] = json!({"a": 1});
    assert_eq!(
        HelseIdClaims::unverified(bad.as_object().expect("object").clone()).expect_err("bad"),
        Reason::MalformedClaim
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_fetch() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::new("https://issuer.test", vec![key.jwk()]);
    let layer = in_process(&issuer)
        .dpop(Dpop::Allowed)
        .build()
        .expect("layer");
    let tokens: Vec<String> = (0..20)
        .map(|i| {
            let mut c = claims(&issuer.url());
            c["jti"] = json!(format!("t{i}"));
            key.token(&c)
        })
        .collect();
    let answers = futures_util::future::join_all(tokens.iter().map(|t| bearer(&layer, t))).await;
    assert!(answers.iter().all(|a| a.status() == StatusCode::OK));
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(issuer.discovery_fetches(), 1);
}

#[tokio::test]
async fn a_nonce_about_to_go_stale_is_replaced_in_the_answer() {
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let offset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // A fixed clock, 100 s into a five-minute nonce window.
    let start = now() / 300 * 300 + 100;
    let clock = offset.clone();
    let layer = builder(&issuer)
        .dpop_nonce(true)
        .proof_max_age(Duration::from_secs(100_000))
        .leeway(Duration::from_secs(100_000))
        .clock(move || {
            UNIX_EPOCH
                + Duration::from_secs(start + clock.load(std::sync::atomic::Ordering::SeqCst))
        })
        .build()
        .expect("layer");
    let key = RawKey::new("proof");
    let token = bound_token(&issuer_key, &issuer.url(), &thumbprint(&key.bare_jwk()));
    let send = |nonce: Option<String>| {
        let mut c = proof_claims(&token);
        if let Some(nonce) = nonce {
            c["nonce"] = json!(nonce);
        }
        let proof = key.sign(&proof_header(&key), &c);
        call(&layer, dpop_get(&token, &proof))
    };
    let first = send(None).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let nonce = first.headers()["dpop-nonce"]
        .to_str()
        .expect("nonce")
        .to_owned();
    // A current nonce: the answer carries none.
    let ok = send(Some(nonce.clone())).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("dpop-nonce").is_none());
    // One window on, the nonce still passes and the answer brings the next one.
    offset.store(300, std::sync::atomic::Ordering::SeqCst);
    let ok = send(Some(nonce.clone())).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let next = ok.headers()["dpop-nonce"]
        .to_str()
        .expect("nonce")
        .to_owned();
    assert_ne!(next, nonce);
    // Two windows on, the first nonce is stale; the next one passes.
    offset.store(600, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send(Some(nonce)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(send(Some(next)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_that_ends_like_a_cached_one_is_verified_in_full_and_layers_keep_apart() {
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let layer = builder(&issuer).dpop(Dpop::Allowed).build().expect("layer");
    let token = key.token(&claims(&issuer.url()));
    for _ in 0..3 {
        assert_eq!(bearer(&layer, &token).await.status(), StatusCode::OK);
    }
    // Another payload under the cached token's signature: the same last bytes.
    let (header, rest) = token.split_once('.').expect("parts");
    let (_, signature) = rest.split_once('.').expect("parts");
    let mut other = claims(&issuer.url());
    other["client_id"] = json!("someone-else");
    let forged = format!(
        "{header}.{}.{signature}",
        b64(serde_json::to_vec(&other).expect("json"))
    );
    for _ in 0..2 {
        let response = bearer(&layer, &forged).await;
        refused(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            &[&forged],
        );
        assert_eq!(
            layer
                .verify_token(&forged)
                .await
                .expect_err("forged")
                .reason(),
            Reason::BadSignature
        );
    }
    let response = bearer(&layer, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "client=client-1");
    // A second layer on this thread, for another API, does not take the first one's
    // verified token.
    let other_api = VerifyLayer::builder(issuer.url())
        .audience("another:api")
        .dpop(Dpop::Disabled)
        .build()
        .expect("layer");
    assert_eq!(
        other_api
            .verify_token(&token)
            .await
            .expect_err("audience")
            .reason(),
        Reason::WrongAudience
    );
    refused(
        &bearer(&other_api, &token).await,
        StatusCode::UNAUTHORIZED,
        Some("invalid_token"),
        &[&token],
    );
    // A DPoP-bound token, warm, sent as Bearer: refused every time.
    let proof_key = RawKey::new("proof");
    let bound = bound_token(&key, &issuer.url(), &thumbprint(&proof_key.bare_jwk()));
    layer.verify_token(&bound).await.expect("verified");
    for _ in 0..2 {
        refused(
            &bearer(&layer, &bound).await,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            &[&bound],
        );
    }
}
// ---------------------------------------------------------------------------------
// The refusal's reason in the caller's span.

/// A subscriber that knows the current span (one thread) and keeps the `refusal`
/// field recorded into each span.
#[derive(Clone, Default)]
struct Spans(Arc<std::sync::Mutex<SpansInner>>);

#[derive(Default)]
struct SpansInner {
    metadata: Vec<&'static tracing::Metadata<'static>>,
    stack: Vec<u64>,
    refusals: std::collections::HashMap<u64, String>,
}

struct RefusalField<'a>(&'a mut Option<String>);

impl tracing::field::Visit for RefusalField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "refusal" {
            *self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "refusal" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut inner = self.0.lock().expect("lock");
        inner.metadata.push(span.metadata());
        tracing::span::Id::from_u64(inner.metadata.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut refusal = None;
        values.record(&mut RefusalField(&mut refusal));
        if let Some(refusal) = refusal {
            let mut inner = self.0.lock().expect("lock");
            inner.refusals.insert(span.into_u64(), refusal);
        }
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, span: &tracing::span::Id) {
        self.0.lock().expect("lock").stack.push(span.into_u64());
    }
    fn exit(&self, _: &tracing::span::Id) {
        self.0.lock().expect("lock").stack.pop();
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let inner = self.0.lock().expect("lock");
        match inner.stack.last() {
            Some(&id) => tracing_core::span::Current::new(
                tracing::span::Id::from_u64(id),
                inner.metadata[id as usize - 1],
            ),
            None => tracing_core::span::Current::none(),
        }
    }
}

#[tokio::test]
async fn the_refusal_reason_is_recorded_in_the_callers_span() {
    use tracing::Instrument;

    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(spans.clone());
    let key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![key.jwk()]).await;
    let layer = builder(&issuer).dpop(Dpop::Allowed).build().expect("layer");
    let expired = {
        let mut c = claims(&issuer.url());
        c["exp"] = json!(now() - 600);
        key.token(&c)
    };
    let cases = [
        (None, Some("no_credentials")),
        (Some(format!("Bearer {expired}")), Some("expired")),
        (
            Some("Bearer a b".to_owned()),
            Some("malformed_authorization"),
        ),
        (
            Some(format!("Bearer {}", key.token(&claims(&issuer.url())))),
            None,
        ),
    ];
    for (authorization, reason) in cases {
        // The span a tracing layer (tower-http's TraceLayer, say) opens for the request,
        // with the field declared empty.
        let span = tracing::info_span!("request", refusal = tracing::field::Empty);
        let id = span.id().expect("enabled").into_u64();
        let request = get(authorization.as_deref())
            .body(String::new())
            .expect("request");
        let status = call(&layer, request).instrument(span).await.status();
        let recorded = spans.0.lock().expect("lock").refusals.get(&id).cloned();
        assert_eq!(recorded.as_deref(), reason, "{status}");
        assert_eq!(status == StatusCode::OK, reason.is_none());
    }
}
