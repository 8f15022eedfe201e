//! Helpers shared by the integration tests: a plain-HTTP client, JWT inspection, and
//! test clients that sign their own client assertions.
// Each test crate uses a different part of this module, and its items are `pub` only so
// that they read as an API: neither is worth a warning.
#![allow(dead_code, unreachable_pub)]

pub mod openapi_drift;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use helseid::config::ClientConfig;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_emulator::{ClientRegistration, Emulator, Tenancy};

/// The `Authorization` value in `headers` as text (empty when there is none).
pub fn authorization(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Makes `response` a `401` with the `WWW-Authenticate` challenge `www_authenticate`.
pub fn challenge<T>(response: &mut http::Response<T>, www_authenticate: &'static str) {
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static(www_authenticate),
    );
}

/// The CommunicationParty API scope most tests use.
pub const CP_SCOPE: &str = "nhn:cp-api/access";

/// The `typ` of client assertions.
pub const ASSERTION_TYP: &str = "client-authentication+jwt";

/// The `client_assertion_type` of private_key_jwt.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new, empty directory whose name starts with `helseid-{name}-`.
    pub fn new(name: &str) -> Self {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).expect("random");
        let dir = std::env::temp_dir().join(format!(
            "helseid-{name}-{:016x}",
            u64::from_le_bytes(random)
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    /// The path of `file` in the directory.
    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A fresh random `jti`.
pub fn random_jti() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and returns the status, the headers and the body.
pub async fn send(request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let response = http_client().request(request).await.expect("HTTP request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, headers, body)
}

fn json_body(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

/// Posts `body` with the given content type; returns status, headers and JSON body.
pub async fn post_raw(
    url: &str,
    content_type: Option<&str>,
    body: String,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(Method::POST).uri(url);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let (status, headers, body) = send(request).await;
    (status, headers, json_body(&body))
}

/// Encodes form fields as `application/x-www-form-urlencoded`.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Posts a form; returns status and JSON body.
pub async fn post_form(url: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let (status, _, body) = post_form_with_headers(url, fields).await;
    (status, body)
}

/// Posts a form; returns status, headers and JSON body.
pub async fn post_form_with_headers(
    url: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    post_raw(
        url,
        Some("application/x-www-form-urlencoded"),
        form_body(fields),
    )
    .await
}

/// GETs a JSON document.
pub async fn get_json(url: &str) -> Value {
    let request = Request::builder()
        .uri(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK, "GET {url}");
    json_body(&body)
}

fn decode_part(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url JWT part");
    serde_json::from_slice(&bytes).expect("JSON JWT part")
}

/// Splits a JWT into its header and claims, without verifying anything.
pub fn decode_jwt(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    (decode_part(parts[0]), decode_part(parts[1]))
}

/// Builds a JWT from any header and claims, with the given raw signature bytes.
pub fn raw_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A client with its own private key, as a test registers it at the emulator.
#[derive(Debug)]
pub struct TestClient {
    pub id: String,
    pub key: SigningKey,
    /// The private JWK `key` was made from, for a `ClientConfig`.
    pub jwk: PrivateJwk,
}

impl TestClient {
    /// A client with a fresh P-256 key.
    pub fn ec(id: &str) -> Self {
        Self::with_jwk(
            id,
            PrivateJwk::generate_ec(Algorithm::ES256).expect("EC key"),
        )
    }

    /// A client with a fresh RSA key.
    pub fn rsa(id: &str, bits: usize, alg: Algorithm) -> Self {
        Self::with_jwk(id, PrivateJwk::generate_rsa(bits, alg).expect("RSA key"))
    }

    fn with_jwk(id: &str, jwk: PrivateJwk) -> Self {
        TestClient {
            id: id.to_owned(),
            key: SigningKey::from_jwk(&jwk).expect("signing key"),
            jwk,
        }
    }

    /// This client's configuration for the HelseID at `authority`, asking for `scopes`.
    pub fn config(&self, authority: &str, scopes: &[&str]) -> ClientConfig {
        ClientConfig::builder()
            .client_id(&self.id)
            .authority_url(authority)
            .scopes(scopes.iter().copied())
            .private_jwk(&self.jwk)
            .build()
            .expect("config")
    }

    /// A registration of this client with the given scopes (multi-tenant).
    pub fn registration(&self, scopes: &[&str]) -> ClientRegistration {
        ClientRegistration::new(self.id.clone(), self.key.public_jwk().clone())
            .scopes(scopes.iter().copied())
    }

    /// Valid assertion claims for `aud`: 10 s lifetime, fresh `jti`.
    pub fn claims(&self, aud: &str) -> Value {
        let now = now();
        json!({
            "iss": self.id,
            "sub": self.id,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + 10,
            "jti": random_jti(),
        })
    }

    /// Signs claims as a client assertion (`typ: client-authentication+jwt`).
    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign_jwt(ASSERTION_TYP, claims).expect("sign")
    }

    /// A valid client assertion for this emulator.
    pub fn assertion(&self, emulator: &Emulator) -> String {
        self.sign(&self.claims(emulator.issuer()))
    }
}

/// Starts an emulator with one multi-tenant client holding `CP_SCOPE`.
pub async fn emulator_with(client: &TestClient) -> Emulator {
    Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .start()
        .await
        .expect("emulator starts")
}

/// Starts an emulator with one client registered with the given tenancy.
pub async fn emulator_with_tenancy(client: &TestClient, tenancy: Tenancy) -> Emulator {
    Emulator::builder()
        .client(client.registration(&[CP_SCOPE]).tenancy(tenancy))
        .start()
        .await
        .expect("emulator starts")
}

/// Requests a token with the client credentials grant, adding `extra` form fields.
pub async fn request_token(
    emulator: &Emulator,
    client_id: &str,
    assertion: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    fields.extend_from_slice(extra);
    post_form(&emulator.token_endpoint(), &fields).await
}

/// GETs `url`, with `Authorization: <authorization>` when given; returns the status, the
/// headers and the body.
pub async fn get_with_authorization(
    url: &str,
    authorization: Option<&str>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().uri(url);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    send(request.body(Full::new(Bytes::new())).expect("request")).await
}

/// GETs `url` with `Authorization: Bearer <token>`; returns the status, the headers and
/// the JSON body (`Value::Null` for an empty body).
pub async fn get_bearer(url: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, body) =
        get_with_authorization(url, Some(&format!("Bearer {token}"))).await;
    let body = if body.is_empty() {
        Value::Null
    } else {
        json_body(&body)
    };
    (status, headers, body)
}

/// An access token for `client` from the emulator's token endpoint: the client
/// credentials grant with a freshly signed client assertion, all of the client's scopes.
pub async fn access_token(emulator: &Emulator, client: &TestClient) -> String {
    let (status, body) =
        request_token(emulator, &client.id, &client.assertion(emulator), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Asserts an OAuth error: HTTP 400, the code, a fragment of the description, and a
/// description that quotes none of `secrets` (tokens, or their long parts).
#[track_caller]
pub fn assert_refused(result: &(StatusCode, Value), code: &str, fragment: &str, secrets: &[&str]) {
    let (status, body) = result;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], code, "{body}");
    let description = body["error_description"]
        .as_str()
        .expect("error_description");
    assert!(
        description.contains(fragment),
        "description {description:?} should contain {fragment:?}"
    );
    for secret in secrets {
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(
                !description.contains(part),
                "the description quotes a token: {description}"
            );
        }
    }
}

/// The CommunicationParty API v2 scope (DPoP-bound tokens only).
pub const CPAPI_SCOPE: &str = "nhn:cp-api/access-v2-dpop";

/// The `DPoP` request header.
pub const DPOP: &str = "dpop";

/// The `DPoP-Nonce` response header.
pub const DPOP_NONCE: &str = "dpop-nonce";

/// A fresh P-256 key for DPoP proofs.
pub fn dpop_key() -> SigningKey {
    SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("EC key"))
        .expect("signing key")
}

/// DPoP proof claims for `method` at `htu`: a fresh `jti`, `iat` now, and `nonce` when
/// given.
pub fn proof_claims(method: &str, htu: &str, nonce: Option<&str>) -> Value {
    let mut claims = json!({"jti": random_jti(), "htm": method, "htu": htu, "iat": now()});
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

/// Signs DPoP proof claims: `typ: dpop+jwt`, the public key as `jwk`.
pub fn sign_proof(key: &SigningKey, claims: &Value) -> String {
    key.sign_jwt_with_jwk("dpop+jwt", claims).expect("sign")
}

/// `base64url(SHA-256(token))`: a proof's `ath`.
pub fn ath(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Requests a token with the client credentials grant, with `DPoP: <proof>` when given;
/// returns status, headers and JSON body.
pub async fn request_token_with_proof(
    emulator: &Emulator,
    client: &TestClient,
    assertion: &str,
    proof: Option<&str>,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    fields.extend_from_slice(extra);
    post_form_with_proof(&emulator.token_endpoint(), &fields, proof).await
}

/// Posts a form with `DPoP: <proof>` when given; returns status, headers and JSON body.
pub async fn post_form_with_proof(
    url: &str,
    fields: &[(&str, &str)],
    proof: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(proof) = proof {
        request = request.header(DPOP, proof);
    }
    let request = request
        .body(Full::new(Bytes::from(form_body(fields))))
        .expect("request");
    let (status, headers, body) = send(request).await;
    (status, headers, json_body(&body))
}

/// The token endpoint's current DPoP nonce: what a token request with a proof without
/// a nonce is told (the client's assertion is spent on it).
pub async fn token_endpoint_nonce(emulator: &Emulator, client: &TestClient) -> String {
    let proof = sign_proof(
        &dpop_key(),
        &proof_claims("POST", &emulator.token_endpoint(), None),
    );
    let (status, headers, body) = request_token_with_proof(
        emulator,
        client,
        &client.assertion(emulator),
        Some(&proof),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "use_dpop_nonce", "{body}");
    headers[DPOP_NONCE].to_str().expect("ASCII").to_owned()
}

/// A DPoP-bound access token for `client`, bound to `key`, for `scope` (all of the
/// client's scopes when empty): the nonce handshake, then a new assertion and proof.
pub async fn dpop_access_token(
    emulator: &Emulator,
    client: &TestClient,
    key: &SigningKey,
    scope: &str,
) -> String {
    let nonce = token_endpoint_nonce(emulator, client).await;
    let proof = sign_proof(
        key,
        &proof_claims("POST", &emulator.token_endpoint(), Some(&nonce)),
    );
    let extra: &[(&str, &str)] = if scope.is_empty() {
        &[]
    } else {
        &[("scope", scope)]
    };
    let (status, _, body) = request_token_with_proof(
        emulator,
        client,
        &client.assertion(emulator),
        Some(&proof),
        extra,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// GETs `url` with `Authorization: <authorization>` and `DPoP: <proof>` when given;
/// returns the status, the headers and the JSON body (`Value::Null` for an empty body).
pub async fn get_with_proof(
    url: &str,
    authorization: Option<&str>,
    proof: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().uri(url);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    if let Some(proof) = proof {
        request = request.header(DPOP, proof);
    }
    let (status, headers, body) =
        send(request.body(Full::new(Bytes::new())).expect("request")).await;
    let body = if body.is_empty() {
        Value::Null
    } else {
        json_body(&body)
    };
    (status, headers, body)
}

/// Asserts that `text` quotes none of `secrets` (tokens, proofs, assertions, or their
/// long parts).
#[track_caller]
pub fn assert_quotes_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!text.contains(part), "{text:?} quotes a secret");
        }
    }
}

/// Asserts a ProblemDetails answer of `content_type` (`application/json` from CPE,
/// `application/problem+json` from CP API v2) whose detail contains `fragment`.
#[track_caller]
pub fn assert_problem(
    result: &(StatusCode, HeaderMap, Value),
    content_type: &str,
    status: StatusCode,
    fragment: &str,
) {
    let (actual, headers, body) = result;
    assert_eq!(*actual, status, "{body}");
    assert_eq!(headers[http::header::CONTENT_TYPE], content_type);
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert_eq!(body["title"], status.canonical_reason().expect("reason"));
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://tools.ietf.org/html/rfc9110#section-15.5.")),
        "{body}"
    );
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains(fragment),
        "detail {detail:?} should contain {fragment:?}"
    );
}

/// `value` without its `null`s, where a `null` and an absent field mean the same.
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// What a recording API saw: the `Authorization` of every request, in order.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An API that answers every request with an empty 200 and records its
/// `Authorization` in `seen`.
pub fn recording_api(
    seen: Seen,
) -> tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<Full<Bytes>>,
    std::convert::Infallible,
> {
    tower::util::BoxCloneSyncService::new(tower::service_fn(
        move |request: Request<Full<Bytes>>| {
            let value = authorization(request.headers());
            seen.lock().expect("lock").push(value);
            async {
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
            }
        },
    ))
}

/// GETs `url`; returns the status, the headers and the body as text.
pub async fn get_text(url: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, body) = send(request).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The id of the pending login in the emulator's login page.
pub fn login_form_id(html: &str) -> &str {
    let marker = "name=\"login\" value=\"";
    let start = html.find(marker).expect("the login form's id") + marker.len();
    &html[start..start + html[start..].find('"').expect("the end of the value")]
}

/// Follows a redirect's `Location`; returns the status there.
pub async fn follow(headers: &HeaderMap) -> StatusCode {
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location");
    get_text(location).await.0
}

/// Opens the authorize URL at the emulator `issuer`, answers the login page's form
/// (logs in as the test person `pid`, or cancels with `None`), and follows the redirect
/// to the app's loopback listener. Returns the listener's status.
pub async fn log_in_at_page(issuer: &str, authorize_url: &str, pid: Option<&str>) -> StatusCode {
    log_in_in_browser(issuer, authorize_url, pid).await.0
}

/// [`log_in_at_page`], keeping what a browser keeps: the `Cookie` header value of the
/// session the login set (none for a cancelled login).
pub async fn log_in_in_browser(
    issuer: &str,
    authorize_url: &str,
    pid: Option<&str>,
) -> (StatusCode, Option<String>) {
    let (status, _, html) = get_text(authorize_url).await;
    assert_eq!(status, StatusCode::OK, "the login page: {html}");
    for person in &helseid_emulator::TEST_PEOPLE {
        assert!(html.contains(&person.name()) && html.contains(person.hpr_number));
    }
    let login = login_form_id(&html);
    let fields = match pid {
        Some(pid) => [("login", login), ("pid", pid)],
        None => [("login", login), ("cancel", "1")],
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{issuer}/connect/authorize/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form_body(&fields))))
        .expect("request");
    let (status, headers, _) = send(request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    (follow(&headers).await, cookie)
}

/// GETs `url` as the browser holding `cookie` would; returns the status.
pub async fn get_in_browser(url: &str, cookie: &str) -> StatusCode {
    let request = Request::get(url)
        .header(header::COOKIE, cookie)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(request).await.0
}

/// A new empty directory under the system's temporary directory, named `prefix-<random>`.
pub fn tempdir(prefix: &str) -> std::path::PathBuf {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).expect("random");
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", u64::from_le_bytes(random)));
    std::fs::create_dir_all(&dir).expect("tempdir");
    dir
}

/// A Selvbetjening-style configuration file for `client` at `authority`, in `dir`.
pub fn write_config(
    dir: &std::path::Path,
    client: &TestClient,
    authority: &str,
) -> std::path::PathBuf {
    let path = dir.join("client.json");
    let file = json!({
        "clientId": client.id,
        "authority": authority,
        "privateJwk": client.jwk.to_json().as_str(),
    });
    std::fs::write(&path, file.to_string()).expect("write config");
    path
}

/// Asserts that one logout reached the emulator (a revocation, an ended session) and
/// that `session` can no longer refresh.
pub async fn assert_logged_out(emulator: &Emulator, session: &helseid::refresh::RefreshSession) {
    assert_eq!(emulator.revocations(), 1);
    assert_eq!(emulator.ended_sessions(), 1);
    let error = session.refresh(&[]).await.expect_err("revoked");
    assert!(error.is_login_required(), "{error}");
}
