//! What the verifier's benches (`verify`, `callgrind_verify`) share: an RS256 issuer key
//! and its JWKS, HelseID-shaped access tokens (about 1.2 KB, as HelseID's are), a DPoP
//! key, and the services compared: `VerifyLayer` (warm, cold, DPoP), `jsonwebtoken`
//! decoding and validating the token on every request, and tower-http's
//! `ValidateRequestHeaderLayer::bearer` with a static token (the floor).
// Each bench uses a part.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helseid::dpop::DpopKey;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::verify::{Dpop, VerifyLayer};
use http::{HeaderValue, Request, Response, Uri, header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://helseid-sts.test.nhn.no";
pub const AUD: &str = "nhn:msh";
pub const BASE: &str = "https://msh.example.no";
pub const URL: &str = "https://msh.example.no/api/messages";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The keys and tokens of a run.
pub struct Fixture {
    pub issuer_key: std::sync::Arc<SigningKey>,
    /// The issuer's JWKS, preloaded into the layers (no fetch).
    pub jwks: Value,
    /// The issuer's public key for `jsonwebtoken`.
    pub decoding: jsonwebtoken::DecodingKey,
    /// A client-credentials token (no `cnf`).
    pub bearer: String,
    /// The same token bound to [`Fixture::dpop`]'s key.
    pub bound: String,
    pub dpop: DpopKey,
    /// `Bearer <bearer>` and `DPoP <bound>`, parsed once as a server's header parser
    /// leaves them (a clone per request is a reference count).
    bearer_header: HeaderValue,
    bound_header: HeaderValue,
    uri: Uri,
}

/// Claims as HelseID writes them for a client-credentials token (an hour's lifetime, so
/// that a long run stays valid), with `cnf` when `jkt` is given.
pub fn claims(jkt: Option<&str>) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": ISSUER,
        "nbf": now,
        "iat": now,
        "exp": now + 3600,
        "aud": AUD,
        "scope": ["nhn:msh/api", "nhn:msh/read"],
        "client_id": "8d3c7f0e-8a4b-4f7e-9a51-2c2d6a4b1f3e",
        "client_amr": "private_key_jwt",
        "helseid://claims/client/client_name": "EPJ Bench AS, prod",
        "helseid://claims/client/client_tenancy": "multi",
        "helseid://claims/client/claims/orgnr_parent": "999999999",
        "helseid://claims/client/claims/orgnr_child": "888888888",
        "helseid://claims/client/claims/orgnr_supplier": "777777777",
        "helseid://claims/client/amr": "rsa_private_key",
        "jti": "5A1C3E0B7F2D4C9A8E6B1D3F5A7C9E0B",
    });
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    claims
}

impl Fixture {
    pub fn new() -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let private = PrivateJwk::generate_rsa(2048, Algorithm::RS256).expect("RSA key");
        let issuer_key = SigningKey::from_jwk(&private).expect("signing key");
        let public = issuer_key.public_jwk().clone();
        let mut jwk = serde_json::to_value(&public).expect("jwk");
        jwk["alg"] = json!("RS256");
        jwk["use"] = json!("sig");
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
            public.n.as_deref().expect("n"),
            public.e.as_deref().expect("e"),
        )
        .expect("decoding key");
        let dpop = DpopKey::generate().expect("DPoP key");
        let bearer = issuer_key.sign_jwt("at+jwt", &claims(None)).expect("token");
        let bound = issuer_key
            .sign_jwt("at+jwt", &claims(Some(dpop.thumbprint())))
            .expect("token");
        Fixture {
            issuer_key: std::sync::Arc::new(issuer_key),
            jwks: json!({ "keys": [jwk] }),
            decoding,
            bearer_header: HeaderValue::from_str(&format!("Bearer {bearer}")).expect("header"),
            bound_header: HeaderValue::from_str(&format!("DPoP {bound}")).expect("header"),
            uri: URL.parse().expect("uri"),
            bearer,
            bound,
            dpop,
        }
    }

    /// A layer with the issuer's keys at hand, accepting `dpop`.
    pub fn layer(&self, dpop: Dpop, cache_capacity: u64) -> VerifyLayer {
        VerifyLayer::builder(ISSUER)
            .audience(AUD)
            .scopes_any_of(["nhn:msh/api"])
            .dpop(dpop)
            .public_base_url(BASE)
            .jwks(ISSUER, self.jwks.clone())
            .cache_capacity(cache_capacity)
            .build()
            .expect("layer")
    }

    /// Copies of the URI and headers requests are made of, for one task: a clone of a
    /// `HeaderValue` or `Uri` bumps a reference count, and tasks on two cores that bump
    /// the same one slow each other down (the harness, not the layer).
    pub fn for_task(&self) -> Self {
        let copy = |v: &HeaderValue| HeaderValue::from_bytes(v.as_bytes()).expect("header");
        Fixture {
            issuer_key: self.issuer_key.clone(),
            jwks: self.jwks.clone(),
            decoding: self.decoding.clone(),
            bearer: self.bearer.clone(),
            bound: self.bound.clone(),
            dpop: self.dpop.clone(),
            bearer_header: copy(&self.bearer_header),
            bound_header: copy(&self.bound_header),
            uri: URL.parse().expect("uri"),
        }
    }

    /// A `GET {URL}` with `Authorization: Bearer <token>`, as a server hands it over.
    pub fn bearer_request(&self) -> Request<()> {
        let mut request = Request::new(());
        *request.uri_mut() = self.uri.clone();
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, self.bearer_header.clone());
        request
    }

    /// `n` fresh proofs for `GET {URL}` with the bound token, as header values.
    pub fn proofs(&self, n: usize) -> Vec<HeaderValue> {
        (0..n)
            .map(|_| {
                self.dpop
                    .proof(&http::Method::GET, &self.uri, Some(&self.bound))
                    .expect("proof")
                    .header_value()
                    .clone()
            })
            .collect()
    }

    /// A `GET {URL}` with the bound token and `proof`.
    pub fn dpop_request(&self, proof: &HeaderValue) -> Request<()> {
        let mut request = Request::new(());
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(header::AUTHORIZATION, self.bound_header.clone());
        headers.insert("dpop", proof.clone());
        request
    }

    /// What `jsonwebtoken` checks on every request, the usual Rust way: RS256 only, the
    /// issuer, the audience, `exp`/`nbf` with 5 s leeway, and the claims decoded.
    pub fn validation(&self) -> jsonwebtoken::Validation {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUD]);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// The in-memory echo service.
pub fn echo(_request: Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>> {
    std::future::ready(Ok(Response::new(())))
}

/// A service that decodes and validates the Bearer token with `jsonwebtoken` (and checks
/// `typ` and the scope, as the layer does) before the echo: 401 when anything fails.
#[derive(Clone)]
pub struct Jsonwebtoken {
    pub key: jsonwebtoken::DecodingKey,
    pub validation: std::sync::Arc<jsonwebtoken::Validation>,
}

impl tower::Service<Request<()>> for Jsonwebtoken {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let passed = token.is_some_and(|token| {
            jsonwebtoken::decode::<Value>(token, &self.key, &self.validation).is_ok_and(|data| {
                data.header.typ.as_deref() == Some("at+jwt")
                    && data.claims["scope"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|s| s == "nhn:msh/api"))
            })
        });
        let mut response = Response::new(());
        if !passed {
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(response))
    }
}

/// The proof's signing input and signature, and its key as aws-lc-rs takes it: what
/// verifying the proof's signature alone needs.
pub struct ProofSignature {
    pub signed: Vec<u8>,
    pub signature: Vec<u8>,
    pub point: Vec<u8>,
}

impl ProofSignature {
    pub fn of(proof: &HeaderValue) -> Self {
        let proof = proof.to_str().expect("ASCII");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (signed, signature) = proof.rsplit_once('.').expect("three parts");
        let header = signed.split('.').next().expect("header");
        let header: Value =
            serde_json::from_slice(&b64.decode(header).expect("b64")).expect("json");
        let coordinate = |name: &str| {
            b64.decode(header["jwk"][name].as_str().expect("coordinate"))
                .expect("b64")
        };
        ProofSignature {
            signed: signed.as_bytes().to_vec(),
            signature: b64.decode(signature).expect("b64"),
            point: [&[4u8][..], &coordinate("x"), &coordinate("y")].concat(),
        }
    }

    /// Verifies the ES256 signature (the key parsed from its point, as a verifier that
    /// meets a new proof key must).
    pub fn verify(&self) -> bool {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &self.point,
        )
        .verify(&self.signed, &self.signature)
        .is_ok()
    }
}

/// How long proofs made now stay acceptable (the layer's default window is 60 s).
pub const PROOF_LIFETIME: Duration = Duration::from_secs(50);
