//! DPoP (RFC 9449) end to end: the client's token requests and API calls against the
//! emulator over real HTTP on 127.0.0.1, every request and answer recorded on the way.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use helseid::HelseIdLayer;

use helseid::dpop::{self, DpopKey};
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::error::BoxError;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::token::TokenType;
use helseid_emulator::{Emulator, EmulatorBuilder};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::{TestClient, decode_jwt};
use tower::{Service, ServiceBuilder, ServiceExt};

const CPAPI_SCOPE: &str = "nhn:cp-api/access-v2-dpop";
const CLIENT_ID: &str = "dpop-client";

/// One request and its answer, as they went over the wire.
#[derive(Clone, Debug)]
struct Exchange {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    status: StatusCode,
    response_headers: HeaderMap,
}

impl Exchange {
    fn proof(&self) -> &str {
        self.headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .expect("a DPoP proof")
    }

    fn proof_claims(&self) -> Value {
        decode_jwt(self.proof()).1
    }

    fn form(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn nonce_given(&self) -> Option<&str> {
        self.response_headers
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
    }
}

type Log = Arc<Mutex<Vec<Exchange>>>;

/// A hyper-util client that records every exchange in `log`.
fn recording_client(
    log: Log,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = BoxError,
    Future: Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let client = helseid::transport::https_client::<Full<Bytes>>().expect("client");
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let client = client.clone();
        let log = log.clone();
        async move {
            let body = request.body().clone().collect().await?.to_bytes();
            let (method, uri, headers) = (
                request.method().clone(),
                request.uri().clone(),
                request.headers().clone(),
            );
            let response = client.request(request).await?;
            log.lock().expect("log").push(Exchange {
                method,
                uri,
                headers,
                body,
                status: response.status(),
                response_headers: response.headers().clone(),
            });
            Ok::<_, BoxError>(response)
        }
    })
}

struct Setup {
    emulator: Emulator,
    client: TestClient,
    /// The token endpoint's exchanges.
    tokens: Log,
}

impl Setup {
    async fn new(builder: EmulatorBuilder) -> Self {
        let client = TestClient::ec(CLIENT_ID);
        let emulator = builder
            .client(client.registration(&[CPAPI_SCOPE]).require_dpop())
            .start()
            .await
            .expect("emulator");
        Setup {
            emulator,
            client,
            tokens: Log::default(),
        }
    }

    fn endpoint(&self) -> TokenEndpoint {
        TokenEndpoint::builder(self.client.config(self.emulator.issuer(), &[CPAPI_SCOPE]))
            .http_service(recording_client(self.tokens.clone()))
            .build()
            .expect("endpoint")
    }

    fn token_exchanges(&self) -> Vec<Exchange> {
        self.tokens.lock().expect("log").clone()
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.emulator.issuer())
    }
}

/// A DPoP client stack to the emulator's CP API v2; its API exchanges go to `log`.
fn api_client(
    setup: &Setup,
    key: DpopKey,
    log: Log,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = BoxError,
    Future: Send,
> + Clone {
    ServiceBuilder::new()
        .layer(
            HelseIdLayer::builder(setup.endpoint())
                .scopes([CPAPI_SCOPE])
                .dpop(key)
                .build(),
        )
        .service(recording_client(log))
}

async fn get<S>(service: &S, url: &str) -> (StatusCode, Value)
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>, Error = BoxError>
        + Clone,
{
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = service.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_first_token_request_is_challenged_and_the_retry_has_a_new_assertion() {
    let setup = Setup::new(Emulator::builder()).await;
    let key = DpopKey::generate().expect("key");
    let endpoint = setup.endpoint();
    let request = TokenRequest::client_credentials([CPAPI_SCOPE]).with_dpop(key.clone());
    let token = endpoint.request(&request).await.expect("a DPoP token");
    assert_eq!(token.token_type(), &TokenType::DPoP);
    let claims = setup
        .emulator
        .verify_access_token(token.secret())
        .expect("the emulator's token");
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "bound to the key");

    let posts = setup.token_exchanges();
    let posts: Vec<_> = posts.iter().filter(|e| e.method == Method::POST).collect();
    assert_eq!(posts.len(), 2, "challenged once, then answered: {posts:#?}");
    let (first, retry) = (posts[0], posts[1]);
    assert_eq!(first.status, StatusCode::BAD_REQUEST);
    let nonce = first
        .nonce_given()
        .expect("the challenge carries a DPoP-Nonce");
    assert_eq!(retry.status, StatusCode::OK);
    let (a1, a2) = (
        first.form("client_assertion").expect("assertion"),
        retry.form("client_assertion").expect("assertion"),
    );
    let (j1, j2) = (
        decode_jwt(&a1).1["jti"].clone(),
        decode_jwt(&a2).1["jti"].clone(),
    );
    assert_ne!(j1, j2, "the retry signs a new client assertion");
    let (p1, p2) = (first.proof_claims(), retry.proof_claims());
    assert_ne!(p1["jti"], p2["jti"], "and a new proof");
    assert!(p1.get("nonce").is_none(), "no nonce was known at first");
    assert_eq!(p2["nonce"], nonce, "the retry carries the nonce");
    for proof in [&p1, &p2] {
        assert_eq!(proof["htm"], "POST");
        assert_eq!(proof["htu"], setup.emulator.token_endpoint());
        assert!(
            proof.get("ath").is_none(),
            "no access token at the token endpoint"
        );
    }
    assert_eq!(setup.emulator.dpop_nonce_challenges(), 1);

    // The nonce is remembered: the next token request is not challenged.
    let again = TokenRequest::client_credentials([CPAPI_SCOPE]).with_dpop(key);
    endpoint.request(&again).await.expect("another token");
    let posts: Vec<_> = setup
        .token_exchanges()
        .into_iter()
        .filter(|e| e.method == Method::POST)
        .collect();
    assert_eq!(posts.len(), 3, "no second challenge");
    assert_eq!(posts[2].proof_claims()["nonce"], nonce);
    assert_eq!(setup.emulator.dpop_nonce_challenges(), 1);
}

#[tokio::test]
async fn a_client_that_must_use_dpop_gets_no_bearer_token() {
    let setup = Setup::new(Emulator::builder()).await;
    let err = setup
        .endpoint()
        .request(&TokenRequest::client_credentials([CPAPI_SCOPE]))
        .await
        .expect_err("DPoP is required");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{err}");
    assert!(err.to_string().to_lowercase().contains("dpop"), "{err}");
}

/// The proofs the client sent to the API, with the access token they went with.
fn api_proofs(log: &Log) -> Vec<(Exchange, Value, String)> {
    log.lock()
        .expect("log")
        .iter()
        .map(|e| {
            let auth = e.headers[header::AUTHORIZATION].to_str().expect("ascii");
            let token = auth.strip_prefix("DPoP ").expect("the DPoP scheme");
            (e.clone(), e.proof_claims(), token.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_layer_calls_cp_api_v2_with_a_proof_the_emulator_accepts_and_never_a_bad_one() {
    let setup = Setup::new(Emulator::builder()).await;
    let key = DpopKey::generate().expect("key");
    let log = Log::default();
    let api = api_client(&setup, key.clone(), log.clone());
    let paths = [
        "/api/v1/event?fromSequenceNumber=1&maxEvents=5",
        "/api/v1/event?fromSequenceNumber=6&maxEvents=5#fragment",
        "/api/v1/event/latest",
        "/api/v1/communicationparty/export",
    ];
    for path in paths {
        let (status, body) = get(&api, &setup.url(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, page) = get(
        &api,
        &setup.url("/api/v1/event?fromSequenceNumber=6&maxEvents=5"),
    )
    .await;
    assert_eq!(page["results"][0]["sequenceNumber"], 6, "{page}");

    let proofs = api_proofs(&log);
    assert_eq!(proofs.len(), paths.len() + 1, "no request was retried");
    let mut jtis = HashSet::new();
    for (exchange, claims, token) in &proofs {
        let mut htu = setup.url(exchange.uri.path());
        htu.truncate(htu.find('#').unwrap_or(htu.len()));
        assert_eq!(claims["htu"], htu, "never the query or fragment");
        assert!(!claims["htu"].as_str().expect("htu").contains('?'));
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["ath"], dpop::ath(token));
        assert!(
            jtis.insert(claims["jti"].to_string()),
            "a new jti each time"
        );
        let (header, _) = decode_jwt(exchange.proof());
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["jwk"]["kty"], "EC");
    }
    assert_eq!(
        setup
            .emulator
            .verify_access_token(&proofs[0].2)
            .expect("token")["cnf"]["jkt"],
        key.thumbprint()
    );
}

/// Sends a GET to `url` with the DPoP token and `proof`, as given: no layer.
async fn raw_get(url: &str, token: &str, proof: &str) -> (StatusCode, HeaderMap) {
    let request = Request::get(url)
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, _) = support::send(request).await;
    (status, headers)
}

fn description(headers: &HeaderMap) -> String {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn the_emulator_refuses_the_proofs_the_client_never_makes() {
    let setup = Setup::new(Emulator::builder()).await;
    // One key, held both as the layer's DPoP key and as a raw signing key, to forge
    // proofs the client would never make.
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
    let key = DpopKey::from_jwk(&jwk).expect("dpop key");
    let raw = SigningKey::from_jwk(&jwk).expect("signing key");
    let log = Log::default();
    let api = api_client(&setup, key.clone(), log.clone());
    let events = setup.url("/api/v1/event");
    let (status, _) = get(&api, &format!("{events}?maxEvents=1")).await;
    assert_eq!(status, StatusCode::OK);
    let (sent, _, token) = api_proofs(&log).remove(0);

    // The very proof the client sent, sent again: a reused jti.
    let (status, headers) = raw_get(&format!("{events}?maxEvents=1"), &token, sent.proof()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(description(&headers).contains("jti"), "{headers:?}");

    let latest: Uri = setup.url("/api/v1/event/latest").parse().expect("uri");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a proof for another URL",
            key.proof(&Method::GET, &latest, Some(&token))
                .expect("proof")
                .as_str()
                .to_owned(),
            "htu",
        ),
        (
            "a proof for another method",
            key.proof(&Method::POST, &events.parse().expect("uri"), Some(&token))
                .expect("proof")
                .as_str()
                .to_owned(),
            "htm",
        ),
        (
            "a proof for another access token",
            key.proof(
                &Method::GET,
                &events.parse().expect("uri"),
                Some("another token"),
            )
            .expect("proof")
            .as_str()
            .to_owned(),
            "ath",
        ),
        (
            "a proof by another key",
            DpopKey::generate()
                .expect("key")
                .proof(&Method::GET, &events.parse().expect("uri"), Some(&token))
                .expect("proof")
                .as_str()
                .to_owned(),
            "cnf",
        ),
    ];
    for (what, proof, fragment) in cases {
        let (status, headers) = raw_get(&format!("{events}?maxEvents=1"), &token, &proof).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        let said = description(&headers);
        assert!(said.contains(fragment), "{what}: {said}");
        assert!(
            !said.contains(&token) && !said.contains(&proof),
            "{what}: {said}"
        );
    }
    // A proof with the query in its htu: the client never makes one (RFC 9449 §4.2 leaves
    // the query out), and the emulator's APIs, verifying with helseid::verify, compare
    // htu "ignoring any query and fragment parts" (§4.3, check 9), as the RFC says, so
    // the query is no reason to refuse it.
    let with_query = raw
        .sign_jwt_with_jwk(
            "dpop+jwt",
            &json!({
                "jti": support::random_jti(), "htm": "GET",
                "htu": format!("{events}?maxEvents=1"), "iat": support::now(),
                "ath": dpop::ath(&token),
            }),
        )
        .expect("forged");
    let (status, headers) = raw_get(&format!("{events}?maxEvents=1"), &token, &with_query).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    // A fresh proof the client makes for the same request is accepted.
    let proof = key
        .proof(
            &Method::GET,
            &format!("{events}?maxEvents=1").parse().expect("uri"),
            Some(&token),
        )
        .expect("proof");
    let (status, _) = raw_get(&format!("{events}?maxEvents=1"), &token, proof.as_str()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_api_nonce_challenge_is_answered_once() {
    let setup = Setup::new(Emulator::builder().cpapi_require_nonce(true)).await;
    let log = Log::default();
    let api = api_client(&setup, DpopKey::generate().expect("key"), log.clone());
    let latest = setup.url("/api/v1/event/latest");

    let (status, body) = get(&api, &latest).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = api_proofs(&log);
    assert_eq!(sent.len(), 2, "challenged once, then answered");
    assert_eq!(sent[0].0.status, StatusCode::UNAUTHORIZED);
    let nonce = sent[0].0.nonce_given().expect("a DPoP-Nonce").to_owned();
    // The emulator's token endpoint and API share an origin, so the first proof
    // carried the token endpoint's nonce; the API has its own.
    assert_ne!(sent[0].1["nonce"], nonce.as_str());
    assert_eq!(sent[1].1["nonce"], nonce.as_str());
    assert_ne!(sent[0].1["jti"], sent[1].1["jti"]);
    // The token endpoint challenged once, the API once.
    assert_eq!(setup.emulator.dpop_nonce_challenges(), 2);

    // The nonce is remembered for the next call.
    let (status, _) = get(&api, &latest).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api_proofs(&log).len(), 3);

    // A new nonce at the API: one more challenge, answered once.
    setup.emulator.rotate_dpop_nonce();
    let (status, _) = get(&api, &latest).await;
    assert_eq!(status, StatusCode::OK);
    let sent = api_proofs(&log);
    assert_eq!(sent.len(), 5);
    assert_eq!(sent[3].0.status, StatusCode::UNAUTHORIZED);
    assert_eq!(setup.emulator.dpop_nonce_challenges(), 3);
}

#[tokio::test]
async fn es512_keys_sign_assertions_and_proofs_that_the_emulator_accepts() {
    // A client whose registered key is P-521, and a P-521 DPoP key.
    let jwk = PrivateJwk::generate_ec(Algorithm::ES512).expect("P-521 key");
    let public = SigningKey::from_jwk(&jwk)
        .expect("key")
        .public_jwk()
        .clone();
    let emulator = Emulator::builder()
        .client(
            helseid_emulator::ClientRegistration::new("es512-client", public)
                .scopes([CPAPI_SCOPE])
                .require_dpop(),
        )
        .start()
        .await
        .expect("emulator");
    let config = helseid::config::ClientConfig::builder()
        .client_id("es512-client")
        .authority_url(emulator.issuer())
        .scopes([CPAPI_SCOPE])
        .private_jwk(&jwk)
        .build()
        .expect("config");
    let key = DpopKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES512).expect("P-521"))
        .expect("DPoP key");
    let log = Log::default();
    let endpoint = TokenEndpoint::builder(config)
        .http_service(recording_client(log.clone()))
        .build()
        .expect("endpoint");
    let token = endpoint
        .request(&TokenRequest::client_credentials([CPAPI_SCOPE]).with_dpop(key.clone()))
        .await
        .expect("a token for an ES512 assertion and proof");
    assert_eq!(token.token_type(), &TokenType::DPoP);
    let claims = emulator.verify_access_token(token.secret()).expect("valid");
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    let sent = log.lock().expect("log").clone();
    let last = sent.last().expect("a token request");
    let (header, _) = decode_jwt(&last.form("client_assertion").expect("assertion"));
    assert_eq!(header["alg"], "ES512");
    let (header, _) = decode_jwt(last.proof());
    assert_eq!(header["alg"], "ES512");
    assert_eq!(header["jwk"]["crv"], "P-521");

    // The API takes the ES512 proofs of the layer as well.
    let api = ServiceBuilder::new()
        .layer(HelseIdLayer::builder(endpoint).dpop(key).build())
        .service(recording_client(Log::default()));
    let (status, body) = get(&api, &format!("{}/api/v1/event/latest", emulator.issuer())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
