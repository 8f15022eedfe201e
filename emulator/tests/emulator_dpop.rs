//! DPoP (RFC 9449) at the emulator's token endpoint: the nonce handshake, DPoP-bound
//! tokens, clients that must use DPoP, and every defect of a proof refused with a
//! description that names it. Proofs are built by hand, over real HTTP on 127.0.0.1.

#[path = "../../tests/support/mod.rs"]
mod support;

use http::{StatusCode, header};
use serde_json::{Value, json};

use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_emulator::Emulator;
use support::*;

/// An emulator with one client holding the CPE scope.
async fn emulator() -> (Emulator, TestClient) {
    let client = TestClient::ec("dpop-client");
    let emulator = emulator_with(&client).await;
    (emulator, client)
}

/// Sends a token request with a new assertion and this proof; returns status and body,
/// after checking that the body quotes neither.
async fn try_proof(emulator: &Emulator, client: &TestClient, proof: &str) -> (StatusCode, Value) {
    let assertion = client.assertion(emulator);
    let (status, _, body) =
        request_token_with_proof(emulator, client, &assertion, Some(proof), &[]).await;
    assert_quotes_no_secret(&body.to_string(), &[proof, &assertion]);
    (status, body)
}

#[tokio::test]
async fn the_nonce_handshake_gives_a_dpop_bound_token() {
    let (emulator, client) = emulator().await;
    let key = dpop_key();
    let endpoint = emulator.token_endpoint();

    // First request: no nonce in the proof.
    let first = client.assertion(&emulator);
    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, None));
    let (status, headers, body) =
        request_token_with_proof(&emulator, &client, &first, Some(&proof), &[]).await;
    assert_refused(
        &(status, body),
        "use_dpop_nonce",
        "has no nonce",
        &[&proof, &first],
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let nonce = headers[DPOP_NONCE].to_str().expect("ASCII").to_owned();
    assert!(nonce.len() >= 32, "an opaque random nonce");
    assert_eq!(emulator.dpop_nonce_challenges(), 1);

    // The retry with the nonce but the same assertion: its jti was spent.
    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, Some(&nonce)));
    let (status, _, body) =
        request_token_with_proof(&emulator, &client, &first, Some(&proof), &[]).await;
    assert_refused(
        &(status, body),
        "invalid_client",
        "has been used before",
        &[&proof, &first],
    );

    // The retry with the nonce and a new assertion.
    let second = client.assertion(&emulator);
    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, Some(&nonce)));
    let (status, headers, body) =
        request_token_with_proof(&emulator, &client, &second, Some(&proof), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        headers.get(DPOP_NONCE).is_none(),
        "the proof carried the current nonce"
    );
    let token = body["access_token"].as_str().expect("access_token");
    let (header, claims) = decode_jwt(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["cnf"], json!({"jkt": key.thumbprint()}));
    assert_eq!(key.public_jwk().thumbprint(), key.thumbprint());
    assert_eq!(emulator.verify_access_token(token), Ok(claims));

    // Every assertion that reached the replay check is recorded, the replay too.
    let jti = |assertion: &str| decode_jwt(assertion).1["jti"].clone();
    let recorded: Vec<Value> = emulator
        .assertion_jtis()
        .into_iter()
        .map(Value::from)
        .collect();
    assert_eq!(recorded, [jti(&first), jti(&first), jti(&second)]);
    assert_eq!(emulator.dpop_nonce_challenges(), 1);
    assert_eq!(emulator.tokens_issued(), 1);

    // Without a proof the same client still gets a Bearer token.
    let (status, body) =
        request_token(&emulator, &client.id, &client.assertion(&emulator), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().expect("access_token");
    assert!(decode_jwt(token).1.get("cnf").is_none());
}

#[tokio::test]
async fn a_client_that_requires_dpop_needs_a_proof() {
    let client = TestClient::ec("dpop-only");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator starts");
    let assertion = client.assertion(&emulator);
    let result = request_token(&emulator, &client.id, &assertion, &[]).await;
    assert_refused(
        &result,
        "invalid_request",
        "client `dpop-only` is registered to require DPoP, and the token request has no DPoP header",
        &[&assertion],
    );
    let token = dpop_access_token(&emulator, &client, &dpop_key(), "").await;
    assert!(decode_jwt(&token).1["cnf"]["jkt"].is_string());
}

#[tokio::test]
async fn rotating_the_nonce_challenges_the_next_proof() {
    let (emulator, client) = emulator().await;
    let key = dpop_key();
    let nonce = token_endpoint_nonce(&emulator, &client).await;
    emulator.rotate_dpop_nonce();
    let proof = sign_proof(
        &key,
        &proof_claims("POST", &emulator.token_endpoint(), Some(&nonce)),
    );
    let assertion = client.assertion(&emulator);
    let (status, headers, body) =
        request_token_with_proof(&emulator, &client, &assertion, Some(&proof), &[]).await;
    assert_refused(
        &(status, body),
        "use_dpop_nonce",
        "the DPoP proof's nonce is not one this server issued, or it has expired",
        &[&proof, &assertion],
    );
    assert_ne!(headers[DPOP_NONCE], nonce.as_str());
    assert_eq!(emulator.dpop_nonce_challenges(), 2);
}

/// Proof claims at the token endpoint with the nonce, changed by `edit`.
fn claims_with(emulator: &Emulator, nonce: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut claims = proof_claims("POST", &emulator.token_endpoint(), Some(nonce));
    edit(&mut claims);
    claims
}

/// A JWS with this header and claims, signed (ES256) by `key` whatever the header says.
fn sign_with_header(
    key: &aws_lc_rs::signature::EcdsaKeyPair,
    header: &Value,
    claims: &Value,
) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = key.sign(&rng, input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(signature.as_ref()))
}

#[tokio::test]
async fn every_defect_of_a_proof_is_named() {
    let (emulator, client) = emulator().await;
    let key = dpop_key();
    let nonce = token_endpoint_nonce(&emulator, &client).await;
    let endpoint = emulator.token_endpoint();
    let good = |edit: &dyn Fn(&mut Value)| sign_proof(&key, &claims_with(&emulator, &nonce, edit));
    let (header, _) = decode_jwt(&good(&|_| {}));
    let claims = claims_with(&emulator, &nonce, |_| {});

    // A key pair we can sign arbitrary headers with, and its public JWK.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .expect("key");
    let raw_key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .expect("key");
    let with_header = |edit: &dyn Fn(&mut Value)| {
        let mut header = header.clone();
        edit(&mut header);
        sign_with_header(&raw_key, &header, &claims_with(&emulator, &nonce, |_| {}))
    };

    let private = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
    let private: Value = serde_json::from_str(&private.to_json()).expect("JSON");
    let other_proof = good(&|_| {});
    let other_signature = other_proof.rsplit('.').next().expect("signature");
    let mut forged = good(&|_| {});
    forged.truncate(forged.rfind('.').expect("dot") + 1);
    forged.push_str(other_signature);

    let hs256 = {
        let mut header = header.clone();
        header["alg"] = json!("HS256");
        let unsigned = raw_jwt(&header, &claims, b"");
        let input = unsigned.trim_end_matches('.');
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"public"),
            input.as_bytes(),
        );
        raw_jwt(&header, &claims, mac.as_ref())
    };
    let mut none_header = header.clone();
    none_header["alg"] = json!("none");
    let port = emulator.local_addr().port();
    let other_port = endpoint.replace(&format!(":{port}/"), &format!(":{}/", port.wrapping_add(1)));

    let cases: Vec<(String, &str, &str)> = vec![
        (
            key.sign_jwt_with_jwk("JWT", &claims).expect("sign"),
            "invalid_dpop_proof",
            "the DPoP proof's typ `JWT` is not accepted; it must be dpop+jwt",
        ),
        (
            raw_jwt(&none_header, &claims, b""),
            "invalid_dpop_proof",
            "the DPoP proof's alg `none` is not accepted: use an asymmetric one of RS256",
        ),
        (hs256, "invalid_dpop_proof", "alg `HS256` is not accepted"),
        (
            with_header(&|h| h["jwk"] = private.clone()),
            "invalid_dpop_proof",
            "the DPoP proof's jwk has the private member `d`: it must be a public key",
        ),
        (
            with_header(&|h| {
                h.as_object_mut().expect("object").remove("jwk");
            }),
            "invalid_dpop_proof",
            "the DPoP proof's header has no jwk",
        ),
        (
            with_header(&|h| h["alg"] = json!("ES384")),
            "invalid_dpop_proof",
            "the DPoP proof's alg needs a key on curve P-384, but its jwk's crv is `P-256`",
        ),
        (
            with_header(&|h| h["alg"] = json!("PS256")),
            "invalid_dpop_proof",
            "the DPoP proof's alg does not fit its jwk's kty `EC`",
        ),
        (
            with_header(&|h| h["crit"] = json!(["exp"])),
            "invalid_dpop_proof",
            "the DPoP proof's header has crit",
        ),
        (
            forged,
            "invalid_dpop_proof",
            "the DPoP proof's signature does not verify with the jwk in its header",
        ),
        (
            "not-a-jws".to_owned(),
            "invalid_dpop_proof",
            "the DPoP proof is not one JWS in compact form",
        ),
        (
            good(&|c| c["htm"] = json!("GET")),
            "invalid_dpop_proof",
            "the DPoP proof's htm `GET` is not the request's method POST",
        ),
        (
            good(&|c| c["htm"] = json!("post")),
            "invalid_dpop_proof",
            "htm `post` is not",
        ),
        (
            good(&|c| c["htu"] = json!(format!("{}/connect/authorize", emulator.issuer()))),
            "invalid_dpop_proof",
            "/connect/authorize` is not `",
        ),
        (
            good(&|c| c["htu"] = json!(other_port)),
            "invalid_dpop_proof",
            "the URL this request was sent to",
        ),
        (
            good(&|c| c["htu"] = json!(format!("{endpoint}?grant_type=client_credentials"))),
            "invalid_dpop_proof",
            "the DPoP proof's htu has a query (`?`): htu is the URL without query and fragment",
        ),
        (
            good(&|c| c["htu"] = json!(format!("{endpoint}#top"))),
            "invalid_dpop_proof",
            "the DPoP proof's htu has a fragment (`#`)",
        ),
        (
            good(&|c| c["iat"] = json!(now() - 120)),
            "invalid_dpop_proof",
            "s in the past; a proof may be at most 60 s old",
        ),
        (
            good(&|c| c["iat"] = json!(now() + 60)),
            "invalid_dpop_proof",
            "s in the future; at most 5 s of clock skew is accepted",
        ),
        (
            good(&|c| c["iat"] = json!(now().to_string())),
            "invalid_dpop_proof",
            "the DPoP proof's iat must be a JSON number",
        ),
        (
            good(&|c| {
                c.as_object_mut().expect("object").remove("jti");
            }),
            "invalid_dpop_proof",
            "the DPoP proof has no jti claim",
        ),
        (
            good(&|c| c["jti"] = json!("")),
            "invalid_dpop_proof",
            "the DPoP proof's jti is empty",
        ),
        (
            good(&|c| c["nonce"] = json!("a-nonce-the-emulator-never-issued")),
            "use_dpop_nonce",
            "the DPoP proof's nonce is not one this server issued",
        ),
    ];
    let challenges = emulator.dpop_nonce_challenges();
    for (proof, code, fragment) in &cases {
        let result = try_proof(&emulator, &client, proof).await;
        assert_refused(&result, code, fragment, &[proof]);
    }
    assert_eq!(emulator.dpop_nonce_challenges(), challenges + 1);
    assert_eq!(emulator.tokens_issued(), 0);

    // A proof is good once: its jti cannot come back, even with a new assertion.
    let jti = random_jti();
    let once = good(&|c| c["jti"] = json!(jti));
    assert_eq!(try_proof(&emulator, &client, &once).await.0, StatusCode::OK);
    let again = good(&|c| c["jti"] = json!(jti));
    let result = try_proof(&emulator, &client, &again).await;
    assert_refused(
        &result,
        "invalid_dpop_proof",
        "has been used before with this key: sign a new proof for every request",
        &[&again],
    );
    // The same jti from another key is another proof.
    let other_key = sign_proof(
        &dpop_key(),
        &claims_with(&emulator, &nonce, |c| c["jti"] = json!(jti)),
    );
    assert_eq!(
        try_proof(&emulator, &client, &other_key).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rsa_proofs_are_accepted() {
    let (emulator, client) = emulator().await;
    for alg in [Algorithm::RS256, Algorithm::PS512] {
        let key =
            SigningKey::from_jwk(&PrivateJwk::generate_rsa(2048, alg).expect("key")).expect("key");
        let token = dpop_access_token(&emulator, &client, &key, "").await;
        assert_eq!(decode_jwt(&token).1["cnf"]["jkt"], key.thumbprint());
    }
}

#[tokio::test]
async fn discovery_lists_the_dpop_algorithms() {
    let (emulator, _) = emulator().await;
    let discovery = get_json(&format!(
        "{}/.well-known/openid-configuration",
        emulator.issuer()
    ))
    .await;
    assert_eq!(
        discovery["dpop_signing_alg_values_supported"],
        json!([
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
        ])
    );
}

/// Posts a refresh with a new assertion and `proof`; returns status, headers and body.
async fn refresh(
    emulator: &Emulator,
    client: &TestClient,
    refresh_token: &str,
    proof: Option<&str>,
) -> (StatusCode, http::HeaderMap, Value) {
    let assertion = client.assertion(emulator);
    let fields = [
        ("grant_type", "refresh_token"),
        ("client_id", client.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("refresh_token", refresh_token),
    ];
    post_form_with_proof(&emulator.token_endpoint(), &fields, proof).await
}

#[tokio::test]
async fn refresh_tokens_stay_bound_to_the_first_dpop_key() {
    let (emulator, client) = emulator().await;
    let endpoint = emulator.token_endpoint();
    let minted = emulator
        .mint_user_tokens(&client.id, &[])
        .expect("user tokens");
    let first = minted["refresh_token"].as_str().expect("refresh_token");
    let key = dpop_key();

    // The nonce challenge spends no refresh token.
    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, None));
    let (status, headers, body) = refresh(&emulator, &client, first, Some(&proof)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("use_dpop_nonce"))
    );
    let nonce = headers[DPOP_NONCE].to_str().expect("ASCII").to_owned();

    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, Some(&nonce)));
    let (status, _, body) = refresh(&emulator, &client, first, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().expect("access_token");
    assert_eq!(decode_jwt(token).1["cnf"]["jkt"], key.thumbprint());
    let second = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();

    // Another key, or no proof, cannot use the session; the refresh token stays usable.
    let thief = sign_proof(&dpop_key(), &proof_claims("POST", &endpoint, Some(&nonce)));
    let (status, _, body) = refresh(&emulator, &client, &second, Some(&thief)).await;
    assert_refused(
        &(status, body),
        "invalid_grant",
        "the refresh_token is bound to another DPoP key",
        &[&second, &thief],
    );
    let (status, _, body) = refresh(&emulator, &client, &second, None).await;
    assert_refused(
        &(status, body),
        "invalid_grant",
        "the refresh_token is bound to a DPoP key: the refresh needs a DPoP proof",
        &[&second],
    );
    let proof = sign_proof(&key, &proof_claims("POST", &endpoint, Some(&nonce)));
    let (status, _, body) = refresh(&emulator, &client, &second, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(emulator.refreshes(), 2);
}

#[tokio::test]
async fn a_token_exchange_with_a_proof_binds_the_new_token_to_the_actor_key() {
    let epj = TestClient::ec("epj");
    let sfm = TestClient::ec("sfm");
    let emulator = Emulator::builder()
        .client(epj.registration(&["e-helse:sfm.api/sfm.api"]))
        .client(
            sfm.registration(&["nhn:reseptformidleren/access"])
                .audience("e-helse:sfm.api")
                .require_dpop(),
        )
        .start()
        .await
        .expect("emulator starts");
    let subject = access_token(&emulator, &epj).await;
    let key = dpop_key();
    let nonce = token_endpoint_nonce(&emulator, &sfm).await;
    let proof = sign_proof(
        &key,
        &proof_claims("POST", &emulator.token_endpoint(), Some(&nonce)),
    );
    let assertion = sfm.assertion(&emulator);
    let fields = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("client_id", sfm.id.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("subject_token", subject.as_str()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("scope", "nhn:reseptformidleren/access"),
    ];
    let (status, _, body) =
        post_form_with_proof(&emulator.token_endpoint(), &fields, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let claims = decode_jwt(body["access_token"].as_str().expect("access_token")).1;
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint());
    assert_eq!(claims["client_id"], "epj");
    assert_eq!(claims["act"], json!({"client_id": "sfm"}));
    assert_eq!(emulator.token_exchanges(), 1);
}
