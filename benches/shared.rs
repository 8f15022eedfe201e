//! The fleet on Redis: token requests per key per token lifetime with 1, 3 and 10
//! replicas, and what a level-2 (Redis) hit costs next to a level-1 hit and a fetch
//! from HelseID (the emulator on 127.0.0.1). Starts its own `redis-server` on a free
//! port. Run: `cargo bench -p helseid --features redis --bench shared`.

// A benchmark prints its figures.
#![allow(missing_docs, clippy::print_stdout)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response, header};
use tower::{Layer, ServiceExt};

use helseid::HelseIdLayer;
use helseid::config::ClientConfig;
use helseid::endpoint::TokenEndpoint;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::shared::{SealKey, SharedCache, SharedSettings};
use helseid_emulator::{ClientRegistration, Emulator};

#[path = "../tests/support/redis.rs"]
mod redis_server;

const SCOPE: &str = "nhn:cp-api/access";
const REQUESTS_PER_REPLICA: usize = 1000;

fn inner() -> impl tower::Service<
    Request<()>,
    Response = Response<bool>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<bool>, Infallible>>,
> + Clone {
    tower::service_fn(|request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(
            request.headers().contains_key(header::AUTHORIZATION),
        )))
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let public = SigningKey::from_jwk(&jwk)
        .expect("key")
        .public_jwk()
        .clone();
    let emulator = Emulator::builder()
        .client(ClientRegistration::new("fleet", public).scopes([SCOPE]))
        .start()
        .await
        .expect("emulator");
    let config = ClientConfig::builder()
        .client_id("fleet")
        .authority_url(emulator.issuer())
        .scopes([SCOPE])
        .private_jwk(&jwk)
        .build()
        .expect("config");
    let key = SealKey::generate();
    let mut settings = SharedSettings::default();
    settings.command_timeout = Duration::from_secs(5);

    println!(
        "token requests per key per token lifetime, {REQUESTS_PER_REPLICA} concurrent cold requests per replica:"
    );
    for replicas in [1usize, 3, 10] {
        for shared in [false, true] {
            let redis = redis_server::RedisServer::start().await;
            let before = emulator.token_requests();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..replicas {
                let endpoint = TokenEndpoint::new(config.clone()).expect("endpoint");
                let layer = if shared {
                    let cache =
                        SharedCache::with_settings(&redis.url(), key.clone(), settings.clone())
                            .expect("shared");
                    HelseIdLayer::builder(cache.source(endpoint)).build()
                } else {
                    HelseIdLayer::new(endpoint)
                };
                let service = layer.layer(inner());
                for _ in 0..REQUESTS_PER_REPLICA {
                    set.spawn(service.clone().oneshot(Request::new(())));
                }
            }
            while let Some(done) = set.join_next().await {
                assert!(*done.expect("task").expect("served").body());
            }
            let made = emulator.token_requests() - before;
            println!(
                "  {replicas:>2} replicas, {:<13} {made} token request(s)",
                if shared { "with Redis:" } else { "without:" }
            );
        }
    }

    // Per-lookup costs, each measured over fresh layers (a new in-process cache each).
    const ROUNDS: u32 = 300;
    let redis = redis_server::RedisServer::start().await;
    let cache =
        SharedCache::with_settings(&redis.url(), key.clone(), settings.clone()).expect("shared");
    let endpoint = TokenEndpoint::new(config.clone()).expect("endpoint");
    // Fill Redis.
    HelseIdLayer::builder(cache.source(endpoint.clone()))
        .build()
        .layer(inner())
        .oneshot(Request::new(()))
        .await
        .expect("first");
    let level2 = {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            HelseIdLayer::builder(cache.source(endpoint.clone()))
                .build()
                .layer(inner())
                .oneshot(Request::new(()))
                .await
                .expect("level-2 hit");
        }
        start.elapsed() / ROUNDS
    };
    assert_eq!(
        cache.stats().hits,
        u64::from(ROUNDS),
        "every round a level-2 hit"
    );
    let fetch = {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            HelseIdLayer::new(endpoint.clone())
                .layer(inner())
                .oneshot(Request::new(()))
                .await
                .expect("fetch");
        }
        start.elapsed() / ROUNDS
    };
    let level1 = {
        let service = HelseIdLayer::new(endpoint.clone()).layer(inner());
        service
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("warm");
        let start = Instant::now();
        for _ in 0..ROUNDS * 100 {
            service
                .clone()
                .oneshot(Request::new(()))
                .await
                .expect("hit");
        }
        start.elapsed() / (ROUNDS * 100)
    };
    println!("a cold layer's first request, mean of {ROUNDS}:");
    println!("  token from Redis (level-2 hit): {level2:?}");
    println!("  token from HelseID (emulator):  {fetch:?}");
    println!(
        "a warm request (level-1 hit), mean of {}: {level1:?}",
        ROUNDS * 100
    );
}
