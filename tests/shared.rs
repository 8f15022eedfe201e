//! A fleet of replicas on one real Redis (`redis-server` on a free loopback port per
//! test) and the emulator: one token request per key across replicas, one refresh per
//! session rotation, sealed entries, and Redis going away and coming back.
#![cfg(feature = "redis")]

#[path = "support/capture.rs"]
mod capture;
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use redis::AsyncCommands;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use helseid::HelseIdLayer;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::shared::{SealKey, SharedCache, SharedSettings};
use helseid_emulator::Emulator;

use capture::Capture;
use redis_server::RedisServer;
use support::{CP_SCOPE, TestClient};

type Service = BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, tower::BoxError>;

use support::recording_api as echo;

/// Settings for tests on a loaded machine: a Redis command is never given up for
/// slowness, so the counts below do not depend on the machine's speed.
fn settings() -> SharedSettings {
    let mut settings = SharedSettings::default();
    settings.command_timeout = Duration::from_secs(10);
    settings.lock_wait = Duration::from_secs(60);
    settings
}

/// One replica: its own connection to Redis and its own in-process cache.
fn replica(
    url: &str,
    key: &SealKey,
    endpoint: TokenEndpoint,
    dpop: Option<DpopKey>,
    seen: Arc<Mutex<Vec<String>>>,
) -> (SharedCache, Service) {
    let shared = SharedCache::with_settings(url, key.clone(), settings()).expect("shared");
    let mut builder = HelseIdLayer::builder(shared.source(endpoint));
    if let Some(dpop) = dpop {
        builder = builder.dpop(dpop);
    }
    let service = BoxCloneSyncService::new(
        builder
            .build()
            .layer(echo(seen))
            .map_err(tower::BoxError::from),
    );
    (shared, service)
}

/// What the replicas of one test share: Redis, the service key, the client and the
/// emulator, and the record of what the API saw.
struct Fleet {
    url: String,
    key: SealKey,
    endpoint: TokenEndpoint,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Fleet {
    fn new(
        redis: &RedisServer,
        key: &SealKey,
        endpoint: TokenEndpoint,
        seen: &Arc<Mutex<Vec<String>>>,
    ) -> Self {
        Fleet {
            url: redis.url(),
            key: key.clone(),
            endpoint,
            seen: seen.clone(),
        }
    }

    /// A new replica without DPoP (its own connection and in-process cache; the
    /// endpoint's clones share an HTTP client, which replicas would not, and which
    /// changes no count).
    fn replica(&self) -> (SharedCache, Service) {
        replica(
            &self.url,
            &self.key,
            self.endpoint.clone(),
            None,
            self.seen.clone(),
        )
    }
}

/// Sends `n` concurrent requests through `service` and waits for all; panics on any
/// failure.
async fn burst(service: &Service, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                service.oneshot(call()).await.expect("request served");
            })
        })
        .collect()
}

/// A request to the API (absolute: DPoP proofs name the URL).
fn call() -> Request<Full<Bytes>> {
    Request::get("http://127.0.0.1:9/api")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Sends `n` concurrent requests through `service` and waits for all to be served.
async fn serve(service: &Service, n: usize) {
    for call in burst(service, n).await {
        call.await.expect("task");
    }
}

async fn setup() -> (Emulator, TestClient, RedisServer) {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    (emulator, client, RedisServer::start().await)
}

fn endpoint(client: &TestClient, emulator: &Emulator) -> TokenEndpoint {
    TokenEndpoint::new(client.config(emulator.issuer(), &[CP_SCOPE])).expect("endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_a_thousand_cold_requests_each_make_one_token_request() {
    let (emulator, client, redis) = setup().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fleet = Fleet::new(&redis, &key, endpoint(&client, &emulator), &seen);
    let replicas: Vec<_> = (0..3).map(|_| fleet.replica()).collect();
    let mut calls = Vec::new();
    for (_, service) in &replicas {
        calls.extend(burst(service, 1000).await);
    }
    for call in calls {
        call.await.expect("task");
    }
    assert_eq!(emulator.token_requests(), 1, "one token request in all");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3000);
    assert!(
        seen.iter().all(|v| *v == seen[0]),
        "one token for the fleet"
    );
    let stats: Vec<_> = replicas.iter().map(|(shared, _)| shared.stats()).collect();
    assert_eq!(stats.iter().map(|s| s.fetches).sum::<u64>(), 1, "{stats:?}");
    assert_eq!(
        stats.iter().map(|s| s.failures).sum::<u64>(),
        0,
        "{stats:?}"
    );
    // Each replica's own cache asked Redis once: the other two found the token there
    // or waited for it.
    assert!(stats.iter().all(|s| s.hits + s.misses >= 1), "{stats:?}");
}

#[tokio::test]
async fn entries_in_redis_are_sealed_and_a_tampered_one_is_refused_and_fetched_again() {
    let (emulator, client, redis) = setup().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fleet = Fleet::new(&redis, &key, endpoint(&client, &emulator), &seen);
    let (_, first) = fleet.replica();
    first.clone().oneshot(call()).await.expect("first");
    let token = seen.lock().expect("lock")[0]
        .strip_prefix("Bearer ")
        .expect("bearer")
        .to_owned();

    let mut raw = redis.connection().await;
    let names: Vec<String> = raw.keys("helseid:token:*").await.expect("keys");
    assert_eq!(names.len(), 1, "one entry: {names:?}");
    let name = &names[0];
    assert!(
        name.contains(key.id()),
        "the key's id names the entry: {name}"
    );
    assert!(!name.contains("fleet"), "the client id is hashed: {name}");
    let sealed: Vec<u8> = raw.get(name).await.expect("get");
    // Not readable without the key: no piece of the token is in the entry.
    for piece in token.as_bytes().chunks(16) {
        assert!(!sealed.windows(piece.len()).any(|w| w == piece));
    }
    let ttl: i64 = raw.pttl(name).await.expect("pttl");
    assert!(
        ttl > 0 && ttl <= 3_600_000 - 70_000,
        "expires before the token: {ttl}"
    );

    // A replica with the same key finds it.
    let (shared, second) = fleet.replica();
    second.clone().oneshot(call()).await.expect("second");
    assert_eq!(shared.stats().hits, 1);
    assert_eq!(emulator.token_requests(), 1);

    // A tampered entry is refused and fetched again.
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    let _: () = raw.pset_ex(name, tampered, 600_000).await.expect("set");
    let (shared, third) = fleet.replica();
    third
        .clone()
        .oneshot(call())
        .await
        .expect("served despite the tampered entry");
    // Refused when first read, and again when read under the lock.
    assert_eq!(shared.stats().refused, 2);
    assert_eq!(emulator.token_requests(), 2, "fetched again");
    let replaced: Vec<u8> = raw.get(name).await.expect("get");
    assert_ne!(replaced, sealed, "the refused entry was replaced");
    let newest = seen.lock().expect("lock").last().cloned().expect("seen");
    assert_ne!(newest, format!("Bearer {token}"));

    // A replica with another key neither reads nor trusts the fleet's entries.
    let (shared, other) = replica(
        &redis.url(),
        &SealKey::generate(),
        endpoint(&client, &emulator),
        None,
        seen.clone(),
    );
    other.oneshot(call()).await.expect("other key");
    assert_eq!((shared.stats().hits, shared.stats().fetches), (0, 1));
    assert_eq!(emulator.token_requests(), 3);
}

#[tokio::test]
async fn dpop_bound_tokens_are_shared_only_by_replicas_with_the_same_dpop_key() {
    let client = TestClient::ec("fleet");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator");
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shared_dpop = DpopKey::generate().expect("dpop key");
    for dpop in [
        shared_dpop.clone(),
        shared_dpop,
        DpopKey::generate().expect("dpop key"),
    ] {
        let (_, service) = replica(
            &redis.url(),
            &key,
            endpoint(&client, &emulator),
            Some(dpop),
            seen.clone(),
        );
        service.oneshot(call()).await.expect("served");
    }
    // The first DPoP token request is challenged for a nonce and retried: 2 requests
    // per token fetched. Two keys, two tokens.
    assert_eq!(emulator.tokens_issued(), 2);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0], seen[1], "same DPoP key: the shared token");
    assert_ne!(seen[1], seen[2], "another DPoP key: a token of its own");
    assert!(seen.iter().all(|v| v.starts_with("DPoP ")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_again_fails_no_request_and_warns_once() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("one subscriber");
    let (emulator, client, mut redis) = setup().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fleet = Fleet::new(&redis, &key, endpoint(&client, &emulator), &seen);
    let (first_shared, first) = fleet.replica();
    serve(&first, 100).await;
    assert_eq!(emulator.token_requests(), 1);

    redis.stop();
    // Cold replicas while Redis is gone: each serves every request from HelseID and its
    // own cache.
    let mut down = Vec::new();
    for _ in 0..2 {
        let (shared, service) = fleet.replica();
        serve(&service, 100).await;
        assert!(!shared.is_available());
        down.push(shared);
    }
    assert_eq!(
        emulator.token_requests(),
        3,
        "one per cold replica without Redis"
    );
    // The warm replica never needed Redis.
    assert!(first_shared.is_available());
    serve(&first, 100).await;

    redis.restart().await;
    // The shared path is back: one replica fetches and stores, the next finds it.
    let (back, service) = fleet.replica();
    serve(&service, 100).await;
    assert_eq!((back.stats().fetches, back.stats().failures), (1, 0));
    let (found, service) = fleet.replica();
    serve(&service, 100).await;
    assert_eq!(found.stats().hits, 1);
    assert_eq!(emulator.token_requests(), 4);
    // A replica that saw Redis fail finds it again at its next miss.
    let again = HelseIdLayer::builder(down[0].source(endpoint(&client, &emulator)))
        .build()
        .layer(echo(seen.clone()));
    again.oneshot(call()).await.expect("served");
    assert!(down[0].is_available(), "{:?}", down[0].stats());
    assert_eq!(down[0].stats().hits, 1);
    assert_eq!(emulator.token_requests(), 4);
    // Only the log lines about this test's Redis count: `cargo test` runs the other
    // tests of this binary in this process at the same time, and whether their Redis
    // fails while this capture listens depends on when their timeouts fire.
    let server = format!(
        "server={}",
        redis
            .url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
    );
    let ours = |text: String| -> String {
        text.lines()
            .filter(|line| line.contains(&server))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(ours(capture.text()).contains("answers again"));

    assert_eq!(
        seen.lock().expect("lock").len(),
        601,
        "every request served"
    );
    let logs = ours(capture.text());
    let warnings = logs
        .matches("the shared token cache (Redis) is unavailable")
        .count();
    assert_eq!(warnings, 2, "once per replica that saw it fail:{logs}");
}

/// The minted set with its access token already expired: the next request refreshes.
fn expired_access(minted: &serde_json::Value) -> TokenSet {
    let mut minted = minted.clone();
    minted["expires_in"] = serde_json::json!(0);
    TokenSet::from_json(&minted.to_string()).expect("token set")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_refreshing_one_session_make_one_refresh() {
    let (emulator, client, redis) = setup().await;
    let minted = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let set = expired_access(&minted);
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut services = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let shared =
            SharedCache::with_settings(&redis.url(), key.clone(), settings()).expect("shared");
        let session = RefreshSession::shared(
            endpoint(&client, &emulator),
            Some(set.clone()),
            &shared,
            "user-42",
        )
        .await
        .expect("session");
        let service: Service = BoxCloneSyncService::new(
            session
                .layer()
                .await
                .layer(echo(seen.clone()))
                .map_err(tower::BoxError::from),
        );
        services.push(service);
        sessions.push(session);
    }
    let mut calls = Vec::new();
    for service in &services {
        calls.extend(burst(service, 100).await);
    }
    for call in calls {
        call.await.expect("task");
    }
    assert_eq!(emulator.refreshes(), 1, "one refresh for the fleet");
    assert_eq!(emulator.invalid_grants(), 0);
    assert_eq!(
        sessions.iter().map(RefreshSession::refreshes).sum::<u64>(),
        1
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 300, "every request served");
    assert!(
        seen.iter().all(|v| *v == seen[0]),
        "the refreshed token for all"
    );
    let token = seen[0].strip_prefix("Bearer ").expect("bearer");
    assert_ne!(token, minted["access_token"].as_str().expect("minted"));
    emulator.verify_access_token(token).expect("valid");
    // Every replica holds the rotated refresh token.
    let mut rotated = Vec::new();
    for session in &sessions {
        rotated.push(
            session
                .token_set()
                .await
                .expect("set")
                .refresh_token()
                .secret()
                .to_owned(),
        );
    }
    assert!(rotated.iter().all(|r| *r == rotated[0]));
    assert_ne!(
        rotated[0],
        minted["refresh_token"].as_str().expect("minted")
    );

    // The next rotation, asked of one replica, reaches the others through Redis.
    let again = sessions[2].refresh(&[]).await.expect("refresh");
    assert_eq!(emulator.refreshes(), 2);
    let shared = SharedCache::with_settings(&redis.url(), key, settings()).expect("shared");
    let late = RefreshSession::shared(endpoint(&client, &emulator), None, &shared, "user-42")
        .await
        .expect("a replica that joins later takes the set from Redis");
    let late_set = late.token_set().await.expect("set");
    assert_eq!(
        late_set.access_token().expect("fresh").secret(),
        again.secret()
    );
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_given_up_on_and_a_flushed_one_refilled_without_failing_a_request() {
    let (emulator, client, redis) = setup().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fleet = Fleet::new(&redis, &key, endpoint(&client, &emulator), &seen);
    let mut quick = SharedSettings::default();
    quick.command_timeout = Duration::from_millis(100);

    // Redis blocked for 3 s (DEBUG SLEEP): the replica does not wait for it.
    let url = redis.url();
    let sleeper = tokio::spawn(async move {
        let mut blocker = redis::Client::open(url)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        // The client gives up waiting before the server wakes: only the block matters.
        let _ = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(3)
            .query_async::<()>(&mut blocker)
            .await;
    });
    // Wait until Redis is really blocked: a PING does not come back within 50 ms.
    let probe = redis.url();
    for attempt in 0.. {
        assert!(attempt < 200, "Redis never blocked");
        let ping = async {
            let mut connection = redis::Client::open(probe.as_str())
                .ok()?
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        };
        if !matches!(
            tokio::time::timeout(Duration::from_millis(50), ping).await,
            Ok(Some(_))
        ) {
            break;
        }
    }
    let slow = SharedCache::with_settings(&redis.url(), key.clone(), quick).expect("shared");
    let service = HelseIdLayer::builder(slow.source(endpoint(&client, &emulator)))
        .build()
        .layer(echo(seen.clone()));
    let service = BoxCloneSyncService::new(service.map_err(tower::BoxError::from));
    serve(&service, 100).await;
    assert!(!slow.is_available());
    assert!(slow.stats().failures >= 1);
    assert_eq!(emulator.token_requests(), 1);
    sleeper.await.expect("sleeper");

    // Flushed: the next replica finds nothing, fetches under the lock and refills it
    // (once Redis has woken).
    redis.wait_until_ready().await;
    let mut raw = redis.connection().await;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut raw)
        .await
        .expect("flush");
    let (refill, service) = fleet.replica();
    serve(&service, 100).await;
    assert_eq!((refill.stats().misses, refill.stats().fetches), (1, 1));
    let names: Vec<String> = raw.keys("helseid:token:*").await.expect("keys");
    assert_eq!(names.len(), 1, "refilled");
    assert_eq!(emulator.token_requests(), 2);
    assert_eq!(
        seen.lock().expect("lock").len(),
        200,
        "every request served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_bound_session_shared_by_two_replicas_refreshes_once_with_its_key() {
    let (emulator, client, redis) = setup().await;
    let minted = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let jwk = helseid::key::PrivateJwk::generate_ec(helseid::key::Algorithm::ES256).expect("key");
    let set = expired_access(&minted)
        .with_dpop_jwk(jwk)
        .expect("dpop set");
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut services = Vec::new();
    for _ in 0..2 {
        let shared =
            SharedCache::with_settings(&redis.url(), key.clone(), settings()).expect("shared");
        // The second replica starts from Redis alone: the DPoP key comes with the set.
        let start = services.is_empty().then(|| set.clone());
        let session =
            RefreshSession::shared(endpoint(&client, &emulator), start, &shared, "dpop-user")
                .await
                .expect("session");
        assert!(session.token_set().await.expect("set").is_dpop_bound());
        services.push(BoxCloneSyncService::new(
            session
                .layer()
                .await
                .layer(echo(seen.clone()))
                .map_err(tower::BoxError::from),
        ));
    }
    let mut calls = Vec::new();
    for service in &services {
        calls.extend(burst(service, 50).await);
    }
    for call in calls {
        call.await.expect("task");
    }
    assert_eq!(emulator.refreshes(), 1);
    assert_eq!(emulator.invalid_grants(), 0);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter().all(|v| v.starts_with("DPoP ") && *v == seen[0]),
        "{:?}",
        &seen[..2]
    );
}
