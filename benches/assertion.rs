//! The cost of one client assertion (claims, a fresh `jti`, one signature), per key type,
//! and of one DPoP proof (the same, plus `htu` from the request URL and `ath`).
//!
//! Run: `cargo bench --bench assertion` (proofs only: `cargo bench --bench assertion -- dpop_proof`)
//!
//! For comparison it also signs the same claims with `jsonwebtoken::encode`, which parses
//! the DER key again on every call; this crate keeps the parsed aws-lc key instead.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use helseid::assertion::{ClientAssertion, Tenant};
use helseid::dpop::DpopKey;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};

fn assertions(jwk: PrivateJwk) -> ClientAssertion {
    let key = Arc::new(SigningKey::from_jwk(&jwk).expect("key"));
    ClientAssertion::new("bench-client", "https://helseid-sts.test.nhn.no", key)
}

fn client_assertion(c: &mut Criterion) {
    let mut group = c.benchmark_group("client_assertion");
    let cases = [
        (
            "RSA-2048 RS256",
            PrivateJwk::generate_rsa(2048, Algorithm::RS256),
        ),
        (
            "RSA-4096 RS512",
            PrivateJwk::generate_rsa(4096, Algorithm::RS512),
        ),
        (
            "RSA-2048 PS256",
            PrivateJwk::generate_rsa(2048, Algorithm::PS256),
        ),
        ("P-256 ES256", PrivateJwk::generate_ec(Algorithm::ES256)),
    ];
    for (name, jwk) in cases {
        let a = assertions(jwk.expect("generate"));
        group.bench_function(name, |b| b.iter(|| black_box(a.sign(None).expect("sign"))));
    }
    let tenant: Tenant = "999999999:888888888".parse().expect("tenant");
    let a = assertions(PrivateJwk::generate_ec(Algorithm::ES256).expect("generate"));
    group.bench_function("P-256 ES256 with tenant", |b| {
        b.iter(|| black_box(a.sign(Some(&tenant)).expect("sign")))
    });
    group.finish();
}

fn dpop_proof(c: &mut Criterion) {
    let mut group = c.benchmark_group("dpop_proof");
    let uri: http::Uri = "https://cpapi.test.grunndata.nhn.no/api/v1/event?fromSequenceNumber=1"
        .parse()
        .expect("uri");
    // A 900-character token, as HelseID's are: `ath` hashes it for every proof.
    let token = "x".repeat(900);
    let cases = [
        ("P-256 ES256 (default)", DpopKey::generate()),
        (
            "RSA-4096 RS512",
            PrivateJwk::generate_rsa(4096, Algorithm::RS512)
                .and_then(|jwk| DpopKey::from_jwk(&jwk)),
        ),
    ];
    for (name, key) in cases {
        let key = key.expect("key");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    key.proof(&http::Method::GET, &uri, Some(&token))
                        .expect("proof"),
                )
            })
        });
    }
    group.finish();
}

fn jsonwebtoken_baseline(c: &mut Criterion) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let claims = serde_json::json!({
        "iss": "bench-client", "sub": "bench-client", "aud": "https://helseid-sts.test.nhn.no",
        "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64, "exp": 1_700_000_010u64,
        "jti": "AAAAAAAAAAAAAAAAAAAAAA",
    });
    let mut group = c.benchmark_group("jsonwebtoken_encode");

    let rsa = RsaKeyPair::generate(KeySize::Rsa4096).expect("rsa");
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'_>>::as_der(&rsa).expect("der");
    let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref()).expect("pkcs8");
    let key = jsonwebtoken::EncodingKey::from_rsa_der(info.private_key.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
    group.bench_function("RSA-4096 RS512", |b| {
        b.iter(|| black_box(jsonwebtoken::encode(&header, &claims, &key).expect("encode")))
    });

    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec");
    let key = jsonwebtoken::EncodingKey::from_ec_der(ec.to_pkcs8v1().expect("pkcs8").as_ref());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    group.bench_function("P-256 ES256", |b| {
        b.iter(|| black_box(jsonwebtoken::encode(&header, &claims, &key).expect("encode")))
    });
    group.finish();
}

criterion_group!(benches, client_assertion, dpop_proof, jsonwebtoken_baseline);
criterion_main!(benches);
