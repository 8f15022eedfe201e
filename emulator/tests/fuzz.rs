//! Fuzzing the emulator's checks of what clients send, over real HTTP on 127.0.0.1
//! (proptest, stable toolchain): token request forms of any bytes, client assertions
//! and DPoP proofs with any header and claims (signed, so that the checks behind the
//! signature are reached), test token requests, and CPE query strings. For every input:
//! no panic (a panicking handler drops the connection), never a 5xx, an OAuth error body
//! or a ProblemDetails body whose description has no raw control character and quotes no
//! assertion or proof.
//!
//! A CI-sized run is the default number of cases, as part of `cargo test`; the long run
//! is `PROPTEST_CASES=1000000 cargo nextest run --workspace --all-features -E 'test(fuzz_)'
//! --release --no-fail-fast` (see `tests/fuzz.rs` of the library).

#[path = "../../tests/support/fuzz.rs"]
mod fuzz_support;
#[path = "../../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use fuzz_support::*;
use helseid::key::SigningKey;
use helseid_emulator::Emulator;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use support::*;

/// An emulator, its client, and a pooled HTTP client, on a runtime of this test thread.
struct Rig {
    runtime: tokio::runtime::Runtime,
    emulator: Emulator,
    client: TestClient,
    dpop: SigningKey,
    http: Client<HttpConnector, Full<Bytes>>,
    cpe_token: String,
}

thread_local! {
    static RIG: Rig = Rig::new();
}

impl Rig {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = TestClient::ec("fuzz-client");
        let emulator = runtime.block_on(emulator_with(&client));
        let cpe_token = runtime.block_on(access_token(&emulator, &client));
        Rig {
            runtime,
            emulator,
            client,
            dpop: dpop_key(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            cpe_token,
        }
    }

    /// Sends `request`; the status and the body. A connection that closes without an
    /// answer (a handler that panicked) fails the case.
    fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
        self.runtime.block_on(async {
            let response = self.http.request(request).await.expect("an answer");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            (status, body)
        })
    }

    /// Posts a token request form; checks the answer and returns status and JSON body.
    fn token(
        &self,
        body: Vec<u8>,
        content_type: Option<&str>,
        proof: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(self.emulator.token_endpoint());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(proof) = proof {
            request = request.header(DPOP, proof);
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let (status, body) = self.send(request);
        let body: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("HTTP {status}: not JSON: {body:?}"));
        match status {
            StatusCode::OK => assert!(body["access_token"].is_string(), "{body}"),
            StatusCode::BAD_REQUEST => assert_oauth_error(&body),
            other => panic!("HTTP {other}: {body}"),
        }
        (status, body)
    }
}

/// An OAuth error body whose description has no raw control character.
#[track_caller]
fn assert_oauth_error(body: &Value) {
    assert!(body["error"].is_string(), "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        !description.chars().any(char::is_control),
        "a control character in {description:?}"
    );
}

fn with_rig<T>(f: impl FnOnce(&Rig) -> T) -> T {
    RIG.with(f)
}

const FORM_FIELDS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_assertion_type",
    "client_assertion",
    "scope",
    "resource",
    "subject_token",
    "subject_token_type",
    "refresh_token",
    "actor_token",
];

/// A token request body: a form of known and unknown fields (repeated, empty, any
/// text), or any bytes.
fn form() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        2 => select(vec![
            "client_credentials", "fuzz-client", ASSERTION_TYPE, CP_SCOPE, "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange", "", "a.b.c",
        ])
        .prop_map(str::to_owned),
        1 => text(),
    ];
    let fields = prop::collection::vec((key(FORM_FIELDS), value), 0..8).prop_map(|fields| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &fields {
            form.append_pair(name, value);
        }
        form.finish().into_bytes()
    });
    prop_oneof![3 => fields, 1 => prop::collection::vec(any::<u8>(), 0..256)]
}

const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "assertion_details",
    "authorization_details",
];

const HEADER_MEMBERS: &[&str] = &[
    "typ", "alg", "kid", "jwk", "crit", "x5c", "kty", "crv", "x", "y",
];

/// The fields of a client credentials request with this assertion.
fn assertion_form(client: &TestClient, assertion: &str, scope: Option<&str>) -> Vec<u8> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &client.id)
        .append_pair("client_assertion_type", ASSERTION_TYPE)
        .append_pair("client_assertion", assertion);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    form.finish().into_bytes()
}

/// A client assertion: valid claims with some replaced or removed, signed with the
/// client's key; or any header and claims with a made-up signature; or any text.
#[derive(Clone, Debug)]
enum Assertion {
    Signed(Vec<(&'static str, Option<Value>)>),
    Unsigned(Value, Value, Vec<u8>),
    Text(String),
}

fn assertion() -> impl Strategy<Value = Assertion> {
    prop_oneof![
        3 => changes(CLAIMS).prop_map(Assertion::Signed),
        2 => (json(HEADER_MEMBERS), json(CLAIMS), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(h, c, s)| Assertion::Unsigned(h, c, s)),
        1 => text().prop_map(Assertion::Text),
    ]
}

fn render(assertion: &Assertion, rig: &Rig) -> String {
    match assertion {
        Assertion::Signed(changes) => {
            let claims = apply(rig.client.claims(rig.emulator.issuer()), changes);
            rig.client.sign(&claims)
        }
        Assertion::Unsigned(header, claims, signature) => raw_jwt(header, claims, signature),
        Assertion::Text(text) => text.clone(),
    }
}

/// A DPoP proof for the token endpoint: valid claims (with the current nonce) with some
/// replaced or removed, signed; or a header with its `jwk` made up; or any text.
#[derive(Clone, Debug)]
enum Proof {
    Signed(Vec<(&'static str, Option<Value>)>),
    Header(
        Vec<(&'static str, Option<Value>)>,
        Vec<(&'static str, Option<Value>)>,
        Vec<u8>,
    ),
    Text(String),
}

const PROOF_CLAIMS: &[&str] = &["jti", "htm", "htu", "iat", "nonce", "ath", "exp"];
const JWK_MEMBERS: &[&str] = &["kty", "crv", "x", "y", "n", "e", "d", "alg", "kid"];

fn proof() -> impl Strategy<Value = Proof> {
    prop_oneof![
        3 => changes(PROOF_CLAIMS).prop_map(Proof::Signed),
        2 => (changes(HEADER_MEMBERS), changes(JWK_MEMBERS), prop::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(h, j, s)| Proof::Header(h, j, s)),
        1 => text().prop_map(Proof::Text),
    ]
}

fn render_proof(proof: &Proof, rig: &Rig, nonce: &str) -> String {
    let claims = || proof_claims("POST", &rig.emulator.token_endpoint(), Some(nonce));
    match proof {
        Proof::Signed(changes) => sign_proof(&rig.dpop, &apply(claims(), changes)),
        Proof::Header(header, jwk, signature) => {
            let jwk = apply(
                serde_json::to_value(rig.dpop.public_jwk()).expect("jwk"),
                jwk,
            );
            let header = apply(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
                header,
            );
            raw_jwt(&header, &claims(), signature)
        }
        Proof::Text(text) => text.clone(),
    }
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => select(vec!["application/json", "application/x-www-form-urlencoded; charset=utf-16", "text/plain"])
            .prop_map(|ct| Some(ct.to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_token_form(body in form(), content_type in content_type()) {
        with_rig(|rig| -> Result<(), TestCaseError> {
            let (status, _) = rig.token(body, content_type.as_deref(), None);
            // No assertion the emulator would accept can come about by chance.
            prop_assert_eq!(status, StatusCode::BAD_REQUEST);
            Ok(())
        })?;
    }

    #[test]
    fn fuzz_client_assertion(assertion in assertion(), scope in prop::option::of(select(vec![CP_SCOPE, "other", ""]))) {
        with_rig(|rig| -> Result<(), TestCaseError> {
            let assertion = render(&assertion, rig);
            let (status, body) = rig.token(assertion_form(&rig.client, &assertion, scope), Some("application/x-www-form-urlencoded"), None);
            if status == StatusCode::BAD_REQUEST {
                assert_quotes_no_secret(&body.to_string(), &[&assertion]);
            }
            Ok(())
        })?;
    }

    #[test]
    fn fuzz_dpop_proof(proof in proof()) {
        with_rig(|rig| -> Result<(), TestCaseError> {
            let nonce = rig.runtime.block_on(token_endpoint_nonce(&rig.emulator, &rig.client));
            let proof = render_proof(&proof, rig, &nonce);
            if http::HeaderValue::from_str(&proof).is_err() {
                return Ok(()); // No HTTP client would send it.
            }
            let assertion = rig.client.assertion(&rig.emulator);
            let (status, body) = rig.token(
                assertion_form(&rig.client, &assertion, None),
                Some("application/x-www-form-urlencoded"),
                Some(&proof),
            );
            match status {
                StatusCode::OK => prop_assert_eq!(&body["token_type"], "DPoP"),
                _ => assert_quotes_no_secret(&body.to_string(), &[&assertion, &proof]),
            }
            Ok(())
        })?;
    }

    #[test]
    fn fuzz_test_token(body in document(object(
        vec![
            ("clientId", or_any(strings(&["fuzz-client", "nobody"]), TEST_TOKEN)),
            ("scopes", or_any(vec![json!([CP_SCOPE]), json!([]), json!(["x"])], TEST_TOKEN)),
            ("pid", or_any(strings(&["13116900216", "1"]), TEST_TOKEN)),
            ("securityLevel", or_any(strings(&["4", "3", "9"]), TEST_TOKEN)),
            ("parentOrgnr", or_any(strings(&["994598759", "1"]), TEST_TOKEN)),
            ("childOrgnr", or_any(strings(&["994598759", ""]), TEST_TOKEN)),
        ],
        TEST_TOKEN,
    ))) {
        with_rig(|rig| -> Result<(), TestCaseError> {
            let request = Request::post(format!("{}/test-token", rig.emulator.issuer()))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let (status, body) = rig.send(request);
            prop_assert!(status == StatusCode::OK || status.is_client_error(), "HTTP {}", status);
            if status == StatusCode::BAD_REQUEST {
                let body: Value = serde_json::from_slice(&body).expect("JSON");
                assert_oauth_error(&body);
            }
            Ok(())
        })?;
    }

    #[test]
    fn fuzz_cpe_query(query in cpe_query(), path in prop_oneof![
        3 => Just("/CommunicationPartyEvents".to_owned()),
        1 => Just("/CommunicationPartyExport".to_owned()),
        1 => any::<i64>().prop_map(|id| format!("/CommunicationParties/{id}")),
        1 => "[A-Za-z0-9%._~-]{0,20}".prop_map(|id| format!("/CommunicationParties/{id}")),
    ]) {
        with_rig(|rig| -> Result<(), TestCaseError> {
            let url = format!("{}{path}?{query}", rig.emulator.cpe_base_url());
            let Ok(request) = Request::builder()
                .method(Method::GET)
                .uri(&url)
                .header(header::AUTHORIZATION, format!("Bearer {}", rig.cpe_token))
                .body(Full::new(Bytes::new()))
            else {
                return Ok(()); // Not a URI hyper would send.
            };
            let (status, body) = rig.send(request);
            prop_assert!(
                matches!(status.as_u16(), 200 | 400 | 404),
                "HTTP {} for {}: {:?}", status, url, body
            );
            // A path that names no route (an empty HER-id) is axum's empty 404.
            if status != StatusCode::OK && !body.is_empty() {
                let problem: Value = serde_json::from_slice(&body).expect("ProblemDetails");
                let detail = problem["detail"].as_str().unwrap_or_default();
                prop_assert!(!detail.chars().any(char::is_control), "{:?}", detail);
            }
            Ok(())
        })?;
    }
}

const TEST_TOKEN: &[&str] = &[
    "clientId",
    "scopes",
    "pid",
    "securityLevel",
    "parentOrgnr",
    "childOrgnr",
];

/// A CPE query string: the known parameters (repeated, misspelt) with date-time-like and
/// event-id-like values, percent-encoded or not.
fn cpe_query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        4 => select(vec!["EventId", "fromDatetime", "eventid", "FromDatetime", "other"]).prop_map(str::to_owned),
        1 => "[A-Za-z]{0,10}",
    ];
    let value = prop_oneof![
        3 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([+ -][0-9]{2}:[0-9]{2}|Z)?",
        2 => "[0-9a-f]{16}",
        1 => text(),
    ];
    let pairs = prop::collection::vec((name, value, any::<bool>()), 0..4);
    pairs.prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value, encode)| {
                let value = if encode {
                    percent_encoding::utf8_percent_encode(
                        &value,
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .to_string()
                } else {
                    value.replace(['&', '#', '%'], "")
                };
                format!("{name}={value}")
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}
