//! An issuer double for the verifier's tests: a discovery document and a JWKS served by
//! an axum router (on 127.0.0.1:0, or called in-process for tests under a paused
//! clock), keys that sign any header, and counts of what was fetched.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 key that signs whatever header it is given.
pub struct RawKey {
    pair: EcdsaKeyPair,
    pub kid: String,
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKey").field("kid", &self.kid).finish()
    }
}

impl RawKey {
    pub fn new(kid: &str) -> Self {
        RawKey {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key"),
            kid: kid.to_owned(),
        }
    }

    /// The public JWK, without `kid`, `alg` or `use`.
    pub fn bare_jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    /// The public JWK as a JWKS publishes it: with `kid`, `alg: ES256`, `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.bare_jwk();
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        jwk
    }

    /// Signs `header_b64.payload_b64` as given.
    pub fn sign_parts(&self, header_b64: &str, payload_b64: &str) -> String {
        let input = format!("{header_b64}.{payload_b64}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64(sig.as_ref()))
    }

    /// Signs a JWT with exactly this header text and these claims.
    pub fn sign_text(&self, header: &str, claims: &str) -> String {
        self.sign_parts(&b64(header), &b64(claims))
    }

    /// Signs a JWT with this header and these claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_text(&header.to_string(), &claims.to_string())
    }

    /// An access token: `{"alg":"ES256","typ":"at+jwt","kid":..}`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid}),
            claims,
        )
    }
}

/// What the JWKS route answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Jwks {
    /// The keys set with [`IssuerDouble::set_keys`].
    Keys,
    /// HTTP 500.
    Fail,
    /// Never answers.
    Hang,
    /// `{"keys": []}`.
    Empty,
    /// A 302 to the discovery document.
    Redirect,
    /// A body larger than the verifier reads.
    Huge,
}

struct Inner {
    url: Mutex<String>,
    keys: Mutex<Vec<Value>>,
    mode: Mutex<Jwks>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
}

/// The issuer double.
#[derive(Clone)]
pub struct IssuerDouble {
    inner: Arc<Inner>,
    pub router: Router,
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    inner.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let url = inner.url.lock().expect("lock").clone();
    axum::Json(json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks"),
        "token_endpoint": format!("{url}/connect/token"),
    }))
    .into_response()
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    inner.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let mode = inner.mode.lock().expect("lock").clone();
    match mode {
        Jwks::Keys => {
            axum::Json(json!({"keys": *inner.keys.lock().expect("lock")})).into_response()
        }
        Jwks::Fail => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Jwks::Hang => std::future::pending().await,
        Jwks::Empty => axum::Json(json!({"keys": []})).into_response(),
        Jwks::Redirect => (
            StatusCode::FOUND,
            [("location", "/.well-known/openid-configuration")],
        )
            .into_response(),
        Jwks::Huge => {
            let mut keys = inner.keys.lock().expect("lock").clone();
            keys.push(json!({"kty": "oct", "k": "A".repeat(300 * 1024)}));
            axum::Json(json!({"keys": keys})).into_response()
        }
    }
}

impl IssuerDouble {
    /// A double whose issuer URL is `url` (for in-process use), serving `keys`.
    pub fn new(url: &str, keys: Vec<Value>) -> Self {
        let inner = Arc::new(Inner {
            url: Mutex::new(url.to_owned()),
            keys: Mutex::new(keys),
            mode: Mutex::new(Jwks::Keys),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        IssuerDouble { inner, router }
    }

    /// A double listening on 127.0.0.1:0, its issuer URL `http://127.0.0.1:<port>`.
    pub async fn serve(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let double = IssuerDouble::new(&url, keys);
        let router = double.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        double
    }

    pub fn url(&self) -> String {
        self.inner.url.lock().expect("lock").clone()
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.inner.keys.lock().expect("lock") = keys;
    }

    pub fn set_mode(&self, mode: Jwks) {
        *self.inner.mode.lock().expect("lock") = mode;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.inner.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.inner.discovery_fetches.load(Ordering::SeqCst)
    }
}

/// One `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `WWW-Authenticate` values (RFC 9110 section 11.6.1): each value may hold
/// several challenges; parameters are `name=token` or `name="quoted"`.
pub fn parse_challenges(values: &[&str]) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for value in values {
        let chars: Vec<char> = value.chars().collect();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && (chars[*i] == ' ' || chars[*i] == ',') {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= chars.len() {
                break;
            }
            let start = i;
            while i < chars.len() && chars[i] != ' ' && chars[i] != ',' && chars[i] != '=' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if i < chars.len() && chars[i] == '=' {
                // A parameter of the current challenge.
                i += 1;
                let mut v = String::new();
                if i < chars.len() && chars[i] == '"' {
                    i += 1;
                    while i < chars.len() && chars[i] != '"' {
                        if chars[i] == '\\' && i + 1 < chars.len() {
                            i += 1;
                        }
                        v.push(chars[i]);
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < chars.len() && chars[i] != ',' && chars[i] != ' ' {
                        v.push(chars[i]);
                        i += 1;
                    }
                }
                out.last_mut()
                    .expect("a parameter follows a scheme")
                    .params
                    .push((word, v));
            } else {
                out.push(Challenge {
                    scheme: word,
                    params: Vec::new(),
                });
            }
        }
    }
    out
}
