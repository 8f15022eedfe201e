//! `helseid::verify::RedisReplayStore` on a real Redis (`redis-server` on a free loopback
//! port): two replicas of an API, each an axum server on 127.0.0.1:0 behind its own
//! `VerifyLayer` and its own store on the one Redis, refuse a DPoP proof that either has
//! seen; what Redis holds (a hash of the `jti`, for the proof window); and a Redis that
//! is down refusing DPoP requests with 503 (failing closed) until it is back.
#![cfg(all(feature = "verify", feature = "redis"))]

#[path = "support/issuer.rs"]
mod issuer;
#[path = "support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::routing::get;
use bytes::Bytes;
use helseid::verify::{HelseIdClaims, RedisReplayStore, VerifyLayer};
use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use issuer::{IssuerDouble, RawKey, b64, parse_challenges};
use redis::AsyncCommands;
use redis_server::RedisServer;
use serde_json::json;

const AUD: &str = "nhn:msh";
/// The one name both replicas are called by (a load balancer's).
const PUBLIC: &str = "https://msh.example.no";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sha256(text: &str) -> String {
    b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        text.as_bytes(),
    ))
}

async fn whoami(Extension(claims): Extension<Arc<HelseIdClaims>>) -> String {
    claims.client_id.clone().unwrap_or_default()
}

/// One replica: an API on 127.0.0.1:0 whose layer keeps `jti`s in the Redis at `redis`.
async fn replica(issuer: &IssuerDouble, redis: &str) -> String {
    let layer = VerifyLayer::builder(issuer.url())
        .audience(AUD)
        .public_base_url(PUBLIC)
        .replay_store(RedisReplayStore::new(redis).expect("redis url"))
        .build()
        .expect("layer");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = axum::Router::new()
        .route("/messages", get(whoami))
        .layer(layer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

struct Caller {
    http: Client<HttpConnector, Full<Bytes>>,
    proof_key: RawKey,
    token: String,
}

impl Caller {
    fn new(issuer: &IssuerDouble, issuer_key: &RawKey) -> Self {
        let proof_key = RawKey::new("proof");
        let jkt = serde_json::from_value::<helseid::key::PublicJwk>(proof_key.bare_jwk())
            .expect("jwk")
            .thumbprint();
        let now = now();
        let token = issuer_key.token(&json!({
            "iss": issuer.url(),
            "aud": AUD,
            "exp": now + 300,
            "iat": now,
            "client_id": "epj",
            "scope": ["nhn:msh/api"],
            "cnf": {"jkt": jkt},
        }));
        Caller {
            http: Client::builder(TokioExecutor::new()).build_http(),
            proof_key,
            token,
        }
    }

    /// A proof for `GET {PUBLIC}/messages` with `jti`.
    fn proof(&self, jti: &str) -> String {
        self.proof_key.sign(
            &json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.proof_key.bare_jwk()}),
            &json!({
                "jti": jti,
                "htm": "GET",
                "htu": format!("{PUBLIC}/messages"),
                "iat": now(),
                "ath": sha256(&self.token),
            }),
        )
    }

    /// Sends the token with `proof` to the replica at `base`: the status and the first
    /// challenge's `error`.
    async fn send(&self, base: &str, proof: &str) -> (StatusCode, Option<String>) {
        let request = Request::get(format!("{base}/messages"))
            .header(header::AUTHORIZATION, format!("DPoP {}", self.token))
            .header("dpop", proof)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the replica answers");
        let values: Vec<&str> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ASCII"))
            .collect();
        let error = parse_challenges(&values)
            .first()
            .and_then(|c| c.param("error").map(str::to_owned));
        (response.status(), error)
    }
}

#[tokio::test]
async fn two_replicas_sharing_redis_refuse_a_proof_replayed_from_one_to_the_other() {
    let redis = RedisServer::start().await;
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let a = replica(&issuer, &redis.url()).await;
    let b = replica(&issuer, &redis.url()).await;
    let caller = Caller::new(&issuer, &issuer_key);
    let replayed = "the-jti-of-one-proof";
    let proof = caller.proof(replayed);

    assert_eq!(caller.send(&a, &proof).await, (StatusCode::OK, None));
    let refused = (
        StatusCode::UNAUTHORIZED,
        Some("invalid_dpop_proof".to_owned()),
    );
    assert_eq!(caller.send(&b, &proof).await, refused, "replayed to B");
    assert_eq!(caller.send(&a, &proof).await, refused, "replayed to A");
    // The other way round: a proof B accepted is refused by A.
    let second = caller.proof("a-second-jti");
    assert_eq!(caller.send(&b, &second).await, (StatusCode::OK, None));
    assert_eq!(caller.send(&a, &second).await, refused);

    // Redis holds a hash of each jti, for the proof window, never the jti itself.
    let mut connection = redis.connection().await;
    let keys: Vec<String> = connection.keys("*").await.expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let key = format!("helseid:dpop:jti:{}", sha256(replayed));
    assert!(keys.contains(&key), "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| !k.contains("jti-of") && !k.contains("second"))
    );
    let ttl: i64 = connection.pttl(&key).await.expect("pttl");
    // The layer's window: 60 s of age, 5 s ahead, 1 s more.
    assert!((1..=66_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_replay_store_that_is_down_refuses_dpop_requests_with_503_until_it_is_back() {
    let mut redis = RedisServer::start().await;
    let issuer_key = RawKey::new("k");
    let issuer = IssuerDouble::serve(vec![issuer_key.jwk()]).await;
    let api = replica(&issuer, &redis.url()).await;
    let caller = Caller::new(&issuer, &issuer_key);
    assert_eq!(
        caller.send(&api, &caller.proof("before")).await,
        (StatusCode::OK, None)
    );
    redis.stop();
    for jti in ["while-down-1", "while-down-2"] {
        let (status, error) = caller.send(&api, &caller.proof(jti)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "fails closed");
        assert_eq!(error, None);
    }
    // Back, empty (nothing persisted): the store connects again by itself.
    redis.restart().await;
    assert_eq!(
        caller.send(&api, &caller.proof("after")).await,
        (StatusCode::OK, None)
    );
    let proof = caller.proof("after-2");
    assert_eq!(caller.send(&api, &proof).await, (StatusCode::OK, None));
    assert_eq!(caller.send(&api, &proof).await.0, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_bad_url_is_a_config_error_that_does_not_quote_it() {
    let error = RedisReplayStore::new("http://user:secret@127.0.0.1/").expect_err("not redis");
    let shown = error.to_string();
    assert!(shown.contains("replay store URL"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");
    let store = RedisReplayStore::new("redis://:hunter2@127.0.0.1:6379/")
        .expect("url")
        .prefix("api")
        .command_timeout(Duration::from_millis(100));
    let shown = format!("{store:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("api"), "{shown}");
}
