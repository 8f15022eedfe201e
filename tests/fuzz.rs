//! Fuzzing on the stable toolchain: property-based tests (proptest) of every parser that
//! reads outside input. For every input: no panic, a typed error (`helseid::Error`, or
//! the parser's own error type), and no raw control character in the `Display` of the
//! error or of anything in its `source()` chain (text from outside is escaped).
//!
//! Inputs are arbitrary bytes and strings, and documents built from the members each
//! parser knows with arbitrary values (control characters, escape sequences, wrong
//! types, truncation), so that the search reaches past the first `{`.
//!
//! A CI-sized run is the default number of cases (256 per target), as part of
//! `cargo test`. The long run, a million inputs per target:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo nextest run --workspace --all-features -E 'test(fuzz_)' --release --no-fail-fast
//! ```

#[path = "support/fuzz.rs"]
mod fuzz_support;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fuzz_support::*;
use helseid::auth::HelseIdLayer;
use helseid::cache::fetch_fn;
use helseid::config::ClientConfig;
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::error::BoxError;
use helseid::key::{Algorithm, PrivateJwk, PublicJwk, SigningKey};
use helseid::refresh::TokenSet;
use helseid::token::{AccessToken, TokenType};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};

const AUTHORITY: &str = "https://helseid.test";

// ---------------------------------------------------------------------------------
// What every input must satisfy.

/// `error` and every `source()` behind it display without a raw control character.
#[track_caller]
fn assert_shown_safely(error: &(dyn StdError + 'static)) {
    let mut next = Some(error);
    while let Some(e) = next {
        let shown = e.to_string();
        assert!(
            !shown.chars().any(char::is_control),
            "a control character in an error: {shown:?}"
        );
        next = e.source();
    }
}

/// A layer error is the crate's error, shown safely.
#[track_caller]
fn assert_typed(error: &BoxError) {
    assert!(
        error.downcast_ref::<helseid::Error>().is_some(),
        "not a helseid::Error: {error:?}"
    );
    assert_shown_safely(error.as_ref());
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

/// Valid keys to start from: an EC and an RSA private JWK, as JSON objects.
fn valid_jwks() -> &'static [Value; 2] {
    static JWKS: OnceLock<[Value; 2]> = OnceLock::new();
    JWKS.get_or_init(|| {
        let to_value = |jwk: PrivateJwk| serde_json::from_str(&jwk.to_json()).expect("JSON");
        [
            to_value(PrivateJwk::generate_ec(Algorithm::ES256).expect("EC")),
            to_value(PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("RSA")),
        ]
    })
}

const JWK_MEMBERS: &[&str] = &[
    "kty", "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "alg", "kid", "use",
];

/// A JWK: a valid one with members removed or replaced, or one made of the members.
fn jwk() -> impl Strategy<Value = Value> {
    let b64 = prop::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| {
        use base64::Engine;
        Value::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    });
    let mutated = prop_oneof![
        tweaked(|| valid_jwks()[0].clone(), JWK_MEMBERS),
        tweaked(|| valid_jwks()[1].clone(), JWK_MEMBERS),
    ];
    let made = object(
        vec![
            (
                "kty",
                or_any(strings(&["EC", "RSA", "oct", "OKP"]), JWK_MEMBERS),
            ),
            (
                "crv",
                or_any(strings(&["P-256", "P-384", "P-521"]), JWK_MEMBERS),
            ),
            (
                "alg",
                or_any(
                    strings(&["ES256", "ES384", "RS256", "PS256", "HS256"]),
                    JWK_MEMBERS,
                ),
            ),
            ("x", b64.clone().boxed()),
            ("y", b64.clone().boxed()),
            ("d", b64.clone().boxed()),
            ("n", b64.clone().boxed()),
            ("e", prop_oneof![Just(Value::from("AQAB")), b64].boxed()),
        ],
        JWK_MEMBERS,
    );
    prop_oneof![2 => mutated, 1 => made]
}

// ---------------------------------------------------------------------------------
// The configuration file and keys.

const CONFIG_MEMBERS: &[&str] = &[
    "clientId",
    "authority",
    "scopes",
    "privateJwk",
    "rsaPrivateKey",
    "kty",
    "d",
];

fn config_file() -> impl Strategy<Value = Vec<u8>> {
    let private_jwk = prop_oneof![
        3 => jwk(),
        1 => jwk().prop_map(|jwk| Value::from(jwk.to_string())),
        1 => jwk().prop_map(|jwk| {
            Value::from(percent_encoding::utf8_percent_encode(
                &jwk.to_string(),
                percent_encoding::NON_ALPHANUMERIC,
            ).to_string())
        }),
    ];
    let file = object(
        vec![
            (
                "clientId",
                or_any(strings(&["my-client", " ", ""]), CONFIG_MEMBERS),
            ),
            (
                "authority",
                or_any(
                    strings(&[
                        AUTHORITY,
                        "http://127.0.0.1:1",
                        "http://helseid.test",
                        "https://",
                    ]),
                    CONFIG_MEMBERS,
                ),
            ),
            (
                "scopes",
                or_any(
                    vec![Value::from("a b"), serde_json::json!(["nhn:cp-api/access"])],
                    CONFIG_MEMBERS,
                ),
            ),
            ("privateJwk", private_jwk.boxed()),
        ],
        CONFIG_MEMBERS,
    );
    let valid = || {
        serde_json::json!({
            "clientId": "my-client",
            "authority": AUTHORITY,
            "scopes": ["nhn:cp-api/access"],
            "privateJwk": valid_jwks()[0],
        })
    };
    let file = prop_oneof![tweaked(valid, CONFIG_MEMBERS), file];
    (document(file), any::<bool>()).prop_map(|(mut bytes, bom)| {
        if bom {
            bytes.splice(0..0, "\u{feff}".bytes());
        }
        bytes
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_config_file(bytes in config_file()) {
        let text = String::from_utf8_lossy(&bytes);
        match ClientConfig::from_json(&text) {
            Ok(config) => prop_assert!(!config.client_id().is_empty()),
            Err(e) => assert_shown_safely(&e),
        }
    }

    #[test]
    fn fuzz_private_jwk(bytes in document(jwk())) {
        let text = String::from_utf8_lossy(&bytes);
        match PrivateJwk::from_json(&text) {
            Ok(jwk) => {
                match SigningKey::from_jwk(&jwk) {
                    // A key that loads signs, and its public half has a thumbprint.
                    Ok(key) => {
                        key.sign_jwt("JWT", &serde_json::json!({"a": 1})).expect("sign");
                        prop_assert!(!key.public_jwk().thumbprint().is_empty());
                    }
                    Err(e) => assert_shown_safely(&e),
                }
                if let Err(e) = jwk.public() {
                    assert_shown_safely(&e);
                }
                // The Debug of a private key never shows its private members.
                if let Some(d) = serde_json::from_slice::<Value>(&bytes).ok()
                    .and_then(|v| v["d"].as_str().map(str::to_owned))
                    .filter(|d| d.len() >= 8)
                {
                    let shown = format!("{jwk:?}");
                    prop_assert!(!shown.contains(&d));
                }
            }
            Err(e) => assert_shown_safely(&e),
        }
        if let Err(e) = SigningKey::from_jwk_json(&text) {
            assert_shown_safely(&e);
        }
    }

    #[test]
    fn fuzz_subject_token(
        exp in prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(Value::from(1e19)),
            Just(Value::from(u64::MAX)),
            Just(Value::from(1.7e308)),
            text().prop_map(Value::from),
        ],
        tail in text(),
    ) {
        // Any `exp` a JWT may carry: no panic (1e19 once overflowed `Instant`), and an
        // expiry that is never in the past for an `exp` that is not.
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::json!({ "exp": exp }).to_string());
        let token = helseid::exchange::SubjectToken::new(format!("eyJhbGciOiJSUzI1NiJ9.{payload}.{tail}"));
        let _ = token.is_expired();
        if exp.as_f64().is_some_and(|e| e > 4.0e9) {
            prop_assert!(!token.is_expired());
        }
    }

    #[test]
    fn fuzz_public_jwk(bytes in document(jwk())) {
        if let Ok(jwk) = serde_json::from_slice::<PublicJwk>(&bytes) {
            // A thumbprint of anything that reads as a public JWK, without a panic.
            let _ = jwk.thumbprint();
        }
    }

    #[test]
    fn fuzz_token_set(bytes in document(object(
        vec![
            ("access_token", or_any(strings(&["tok"]), TOKEN_MEMBERS)),
            ("refresh_token", or_any(strings(&["refresh-token-1"]), TOKEN_MEMBERS)),
            ("scope", or_any(strings(&["a b"]), TOKEN_MEMBERS)),
            ("token_type", or_any(strings(&["Bearer", "DPoP"]), TOKEN_MEMBERS)),
        ],
        TOKEN_MEMBERS,
    ))) {
        let text = String::from_utf8_lossy(&bytes);
        match TokenSet::from_json(&text) {
            Ok(set) => {
                let _ = set.access_token();
                let _ = set.is_refresh_token_expired();
            }
            Err(e) => assert_shown_safely(&e),
        }
    }
}

// ---------------------------------------------------------------------------------
// Token responses and discovery documents, through TokenEndpoint and an HTTP service
// that answers whatever the case says.

const TOKEN_MEMBERS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_in",
    "scope",
    "refresh_token",
    "rt_expires_in",
    "error",
    "error_description",
    "error_uri",
    "issued_token_type",
];

/// What the HTTP service answers.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    /// Whether the client assertion the request sent is put into the body, in place of
    /// the first `ECHO`, as a server that quotes it would.
    echo: bool,
}

const ECHO: &str = "@ECHO@";

/// Any header value HTTP can carry: text or bytes, with the bytes a header value cannot
/// hold (control characters but tab) turned into ones it can, so that nothing is
/// rejected (a long run would otherwise give up on too many rejects).
fn header_value() -> impl Strategy<Value = HeaderValue> {
    let fit = |bytes: Vec<u8>| {
        let bytes: Vec<u8> = bytes
            .into_iter()
            .map(|b| {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    b ^ 0x40
                } else {
                    b
                }
            })
            .collect();
        HeaderValue::from_bytes(&bytes).expect("only bytes a header value may hold")
    };
    prop_oneof![
        text().prop_map(String::into_bytes).prop_map(fit),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(fit),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let name = select(vec![
        header::CONTENT_TYPE,
        HeaderName::from_static("dpop-nonce"),
        header::WWW_AUTHENTICATE,
        header::RETRY_AFTER,
        header::CONTENT_TYPE,
    ]);
    let value = prop_oneof![
        2 => select(vec![
            HeaderValue::from_static("application/json"),
            HeaderValue::from_static("text/html"),
            HeaderValue::from_static("nonce-1"),
            HeaderValue::from_static("DPoP error=\"use_dpop_nonce\""),
        ]),
        1 => header_value(),
    ];
    prop::collection::vec((name, value), 0..4)
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(200u16),
        3 => select(vec![400u16, 401, 429, 500, 503]),
        1 => 100u16..1000,
    ]
}

fn token_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = || {
        serde_json::json!({
            "access_token": "eyJ.tok.en", "token_type": "Bearer", "expires_in": 3600,
            "scope": "s", "refresh_token": "r", "rt_expires_in": 86400,
            "error": "use_dpop_nonce", "error_description": ECHO,
        })
    };
    prop_oneof![document(tweaked(valid, TOKEN_MEMBERS)), made_token_body(),]
}

fn made_token_body() -> impl Strategy<Value = Vec<u8>> {
    let seconds = || {
        or_any(
            vec![
                Value::from(3600),
                Value::from(3600),
                Value::from("60"),
                Value::from(0),
                Value::from(1e300),
            ],
            TOKEN_MEMBERS,
        )
    };
    document(object(
        vec![
            (
                "access_token",
                or_any(
                    strings(&["eyJ.tok.en", "eyJ.tok.en", "tok\n"]),
                    TOKEN_MEMBERS,
                ),
            ),
            (
                "token_type",
                or_any(
                    strings(&["Bearer", "DPoP", "bearer", "dpop", "mac"]),
                    TOKEN_MEMBERS,
                ),
            ),
            ("expires_in", seconds()),
            ("scope", or_any(strings(&["s"]), TOKEN_MEMBERS)),
            ("refresh_token", or_any(strings(&["r"]), TOKEN_MEMBERS)),
            ("rt_expires_in", seconds()),
            (
                "error",
                or_any(
                    strings(&["invalid_client", "use_dpop_nonce", "HID-1001"]),
                    TOKEN_MEMBERS,
                ),
            ),
            (
                "error_description",
                or_any(
                    strings(&[ECHO, "bad\nERROR forged", "\u{1b}[2J"]),
                    TOKEN_MEMBERS,
                ),
            ),
            ("error_uri", or_any(strings(&[ECHO]), TOKEN_MEMBERS)),
        ],
        TOKEN_MEMBERS,
    ))
}

fn answer(body: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Answer> {
    (status(), headers(), body, any::<bool>()).prop_map(|(status, headers, body, echo)| Answer {
        status,
        headers,
        body,
        echo,
    })
}

/// The form value `name` of a token request body.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Answers `answer`, recording the client assertions the requests sent.
fn respond(
    answer: &Answer,
    request: &Request<Full<Bytes>>,
    sent: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let body = request_body(request);
    let assertion = form_value(&body, "client_assertion");
    let mut bytes = answer.body.clone();
    if let Some(assertion) = &assertion {
        sent.lock().expect("lock").push(assertion.clone());
        if answer.echo {
            let text = String::from_utf8_lossy(&bytes).replacen(ECHO, assertion, 1);
            bytes = text.into_bytes();
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = StatusCode::from_u16(answer.status).expect("status");
    for (name, value) in &answer.headers {
        response.headers_mut().append(name, value.clone());
    }
    response
}

fn request_body(request: &Request<Full<Bytes>>) -> Bytes {
    use http_body::Body;
    let mut body = request.body().clone();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn client_config() -> ClientConfig {
    static CONFIG: OnceLock<ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            ClientConfig::builder()
                .client_id("fuzz-client")
                .authority_url(AUTHORITY)
                .scopes(["s"])
                .private_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("EC"))
                .build()
                .expect("config")
        })
        .clone()
}

/// A token endpoint (configured, not discovered) over an HTTP service that answers
/// `token`.
fn endpoint(token: Answer, sent: Arc<Mutex<Vec<String>>>) -> TokenEndpoint {
    let http = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let response = respond(&token, &request, &sent);
        async move { Ok::<_, Infallible>(response) }
    });
    TokenEndpoint::builder(client_config())
        .http_service(http)
        .timeout(Duration::from_secs(5))
        .token_endpoint(format!("{AUTHORITY}/connect/token"))
        .build()
        .expect("endpoint")
}

/// The token endpoint's result for `request`: a token, or a typed error shown safely
/// that quotes none of the assertions sent.
fn check_token_result(result: helseid::Result<AccessToken>, sent: &Mutex<Vec<String>>) {
    match result {
        Ok(token) => {
            assert!(!token.secret().is_empty());
            assert!(token.expires_in() <= helseid::endpoint::MAX_EXPIRES_IN);
        }
        Err(e) => {
            assert_shown_safely(&e);
            let shown = format!("{e} {e:?}");
            for assertion in sent.lock().expect("lock").iter() {
                assert!(
                    !shown.contains(assertion.as_str()),
                    "the assertion in an error: {shown}"
                );
            }
        }
    }
}

fn dpop_key() -> DpopKey {
    static KEY: OnceLock<DpopKey> = OnceLock::new();
    KEY.get_or_init(|| DpopKey::generate().expect("DPoP key"))
        .clone()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_token_response(answer in answer(token_body()), dpop in any::<bool>()) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let endpoint = endpoint(answer, Arc::clone(&sent));
        let mut request = TokenRequest::client_credentials(["s"]);
        if dpop {
            request = request.with_dpop(dpop_key());
        }
        let result = block_on(endpoint.request(&request));
        check_token_result(result, &sent);
    }

    #[test]
    fn fuzz_discovery_document(discovery in answer(discovery_body()), token in answer(token_body())) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let http_sent = Arc::clone(&sent);
        let http = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let answer = if request.method() == http::Method::GET { &discovery } else { &token };
            let response = respond(answer, &request, &http_sent);
            async move { Ok::<_, Infallible>(response) }
        });
        let endpoint = TokenEndpoint::builder(client_config())
            .http_service(http)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("endpoint");
        match block_on(endpoint.discovery()) {
            Ok(doc) => {
                prop_assert_eq!(doc.issuer.trim_end_matches('/'), AUTHORITY);
                let result = block_on(endpoint.client_credentials());
                check_token_result(result, &sent);
            }
            Err(e) => assert_shown_safely(&e),
        }
    }
}

const DISCOVERY_MEMBERS: &[&str] = &[
    "issuer",
    "token_endpoint",
    "jwks_uri",
    "grant_types_supported",
    "dpop_signing_alg_values_supported",
];

fn discovery_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = || {
        serde_json::json!({
            "issuer": AUTHORITY,
            "token_endpoint": "https://helseid.test/connect/token",
            "jwks_uri": "https://helseid.test/jwks",
            "grant_types_supported": ["client_credentials"],
            "dpop_signing_alg_values_supported": ["ES256", "RS256"],
        })
    };
    prop_oneof![
        document(tweaked(valid, DISCOVERY_MEMBERS)),
        made_discovery_body(),
    ]
}

fn made_discovery_body() -> impl Strategy<Value = Vec<u8>> {
    let list = || {
        or_any(
            vec![
                serde_json::json!(["client_credentials"]),
                serde_json::json!(["ES256", 1]),
            ],
            DISCOVERY_MEMBERS,
        )
    };
    document(object(
        vec![
            (
                "issuer",
                or_any(
                    strings(&[
                        AUTHORITY,
                        AUTHORITY,
                        "https://helseid.test/",
                        "https://evil.test",
                    ]),
                    DISCOVERY_MEMBERS,
                ),
            ),
            (
                "token_endpoint",
                or_any(
                    strings(&[
                        "https://helseid.test/connect/token",
                        "https://helseid.test/connect/token",
                        "https://helseid.test/connect/token",
                        "http://helseid.test/connect/token",
                        "https://helseid.test/\n",
                        "not a url",
                    ]),
                    DISCOVERY_MEMBERS,
                ),
            ),
            (
                "jwks_uri",
                or_any(strings(&["https://helseid.test/jwks"]), DISCOVERY_MEMBERS),
            ),
            ("grant_types_supported", list()),
            ("dpop_signing_alg_values_supported", list()),
        ],
        DISCOVERY_MEMBERS,
    ))
}

// ---------------------------------------------------------------------------------
// `WWW-Authenticate` and `DPoP-Nonce` from an API, through the layer.

/// One API answer: a status, headers (WWW-Authenticate, DPoP-Nonce, ...).
fn api_answer() -> impl Strategy<Value = (u16, Vec<(HeaderName, HeaderValue)>)> {
    let challenge = prop_oneof![
        select(vec![
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
            HeaderValue::from_static("DPoP error=\"use_dpop_nonce\", error_description=\"x\""),
            HeaderValue::from_static("DPoP error=\"invalid_token\", algs=\"ES256\""),
            HeaderValue::from_static("Bearer realm=\"x\", DPoP error=\"use_dpop_nonce\""),
        ]),
        header_value(),
    ];
    let nonce = prop_oneof![
        select(vec![
            HeaderValue::from_static("nonce-1"),
            HeaderValue::from_static(""),
            HeaderValue::from_static("a b"),
            HeaderValue::from_static("\"quoted\""),
        ]),
        header_value(),
    ];
    let headers = prop::collection::vec(
        prop_oneof![
            challenge.prop_map(|v| (header::WWW_AUTHENTICATE, v)),
            nonce.prop_map(|v| (HeaderName::from_static("dpop-nonce"), v)),
        ],
        0..4,
    );
    (prop_oneof![3 => Just(401u16), 1 => status()], headers)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_www_authenticate_and_dpop_nonce(
        answers in prop::collection::vec(api_answer(), 1..4),
        dpop in any::<bool>(),
    ) {
        let token_type = if dpop { TokenType::DPoP } else { TokenType::Bearer };
        let source = fetch_fn("fuzz-api-client", move |_request: TokenRequest| {
            let token_type = token_type.clone();
            async move { AccessToken::new("access-token-1", token_type, Duration::from_secs(3600)) }
        });
        let mut layer = HelseIdLayer::builder(source);
        if dpop {
            layer = layer.dpop(dpop_key());
        }
        let calls = Arc::new(Mutex::new(0usize));
        let counter = Arc::clone(&calls);
        let api = tower::service_fn(move |_request: Request<Full<Bytes>>| {
            let mut calls = counter.lock().expect("lock");
            let (status, headers) = answers[(*calls).min(answers.len() - 1)].clone();
            *calls += 1;
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response.headers_mut().append(name, value);
            }
            async move { Ok::<_, Infallible>(response) }
        });
        let service = ServiceBuilder::new().layer(layer.build()).service(api);
        let request = Request::get("https://api.test/resource")
            .body(Full::new(Bytes::new()))
            .expect("request");
        match block_on(service.oneshot(request)) {
            Ok(_) => {}
            Err(e) => assert_typed(&e),
        }
        // One call, and at most one retry (after a nonce challenge or invalid_token).
        let calls = *calls.lock().expect("lock");
        prop_assert!((1..=2).contains(&calls), "{calls} calls");
    }
}

// ---------------------------------------------------------------------------------
// .NET date-times, as CPE and CP API v2 write them.

#[cfg(any(feature = "cpe", feature = "cpapi"))]
mod datetime {
    use super::*;
    #[cfg(feature = "cpapi")]
    use helseid::cpapi::DateTimeOffset;
    #[cfg(all(feature = "cpe", not(feature = "cpapi")))]
    use helseid::cpe::DateTimeOffset;

    /// Date-time-like text: the pieces of one, shuffled and mutated, or anything.
    fn datetime_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[0-9]{1,5}",
            select(vec![
                "-", ":", "T", " ", ".", "Z", "+", "+02:00", "-14:00", "+14:01", "\n", "\u{1b}"
            ])
            .prop_map(str::to_owned),
        ];
        prop_oneof![
            2 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?",
            2 => prop::collection::vec(piece, 0..12).prop_map(|p| p.concat()),
            1 => text(),
        ]
    }

    proptest! {
    #![proptest_config(config())]

        #[test]
        fn fuzz_dotnet_datetime(text in datetime_text()) {
            match text.parse::<DateTimeOffset>() {
                // What is read is written back (to the 100 ns tick, as .NET writes it)
                // in a form that reads as the same tick.
                Ok(at) => {
                    let again: DateTimeOffset = at.to_string().parse().expect("round trip");
                    let tick = |t: &DateTimeOffset| {
                        let utc = t.to_utc();
                        (utc.timestamp(), utc.timestamp_subsec_nanos() / 100)
                    };
                    prop_assert_eq!(tick(&again), tick(&at), "{}", at);
                    prop_assert_eq!(again.to_string(), at.to_string());
                }
                Err(e) => assert_shown_safely(&e),
            }
            if let Err(e) = serde_json::from_value::<DateTimeOffset>(Value::from(text)) {
                prop_assert!(!e.to_string().chars().any(char::is_control), "{e}");
            }
        }
    }
}
