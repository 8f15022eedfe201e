//! A fleet of replicas on one real Redis (`redis-server` on a free loopback port per
//! test) and the emulator, with Redis paused (`SIGSTOP`), slowed and resumed, entries
//! replayed, tokens refused and short-lived: what the fleet must still guarantee.
//!
//! No test waits for time to pass: each waits for a condition (a request held at the
//! token endpoint, a replica that saw Redis fail, a count reached), bounded only so that
//! a broken build fails instead of hanging.
#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use redis::AsyncCommands;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use helseid::HelseIdLayer;
use helseid::endpoint::TokenEndpoint;
use helseid::exchange::SubjectToken;
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::shared::{SealKey, SharedCache, SharedSettings};
use helseid_emulator::Emulator;

use redis_server::RedisServer;
use support::{CP_SCOPE, TestClient};

type Service = BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, tower::BoxError>;

/// Settings for a Redis that is paused: a command is given up after 100 ms (so that a
/// paused Redis is seen failing), a wait for another replica lasts long enough for
/// any loaded machine.
fn settings() -> SharedSettings {
    let mut settings = SharedSettings::default();
    settings.command_timeout = Duration::from_millis(100);
    settings.lock_wait = Duration::from_secs(60);
    settings
}

/// Waits until `condition` holds, checking every few milliseconds; panics after 60 s
/// (a broken build, not a slow machine).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..12_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

/// Holds the token requests that arrive while it is closed, and counts them.
#[derive(Clone)]
struct Gate {
    closed: Arc<AtomicBool>,
    open: tokio::sync::watch::Sender<bool>,
    arrived: tokio::sync::watch::Sender<usize>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            closed: Arc::new(AtomicBool::new(false)),
            open: tokio::sync::watch::Sender::new(true),
            arrived: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Token requests from now on wait for [`open`](Self::open).
    fn close(&self) {
        self.open.send_replace(false);
        self.closed.store(true, Ordering::SeqCst);
        self.arrived.send_replace(0);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
    }

    /// Waits until `n` token requests are held.
    async fn held(&self, n: usize) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(Duration::from_secs(60), arrived.wait_for(|a| *a >= n))
            .await
            .expect("token requests arrive")
            .expect("gate");
    }

    /// A token endpoint for `client` at the emulator whose requests pass this gate.
    fn endpoint(&self, client: &TestClient, emulator: &Emulator) -> TokenEndpoint {
        let http = helseid::transport::https_client::<Full<Bytes>>().expect("client");
        let gate = self.clone();
        let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let (http, gate) = (http.clone(), gate.clone());
            async move {
                if request.method() == http::Method::POST && gate.closed.load(Ordering::SeqCst) {
                    gate.arrived.send_modify(|a| *a += 1);
                    let mut open = gate.open.subscribe();
                    let _ = open.wait_for(|open| *open).await;
                }
                http.oneshot(request).await
            }
        });
        TokenEndpoint::builder(client.config(emulator.issuer(), &[CP_SCOPE]))
            .http_service(service)
            .build()
            .expect("endpoint")
    }
}

/// The redis-server's process id (from `INFO server`), for pausing it.
async fn redis_pid(redis: &RedisServer) -> String {
    let mut raw = redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut raw)
        .await
        .expect("info");
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .expect("process_id")
        .trim()
        .to_owned()
}

/// Sends `signal` (`STOP`, `CONT`) to the process `pid`.
fn signal(pid: &str, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// An API that records the `Authorization` it sees and refuses (`401 invalid_token`)
/// the tokens in `revoked`.
fn api(
    seen: Arc<Mutex<Vec<String>>>,
    revoked: Arc<Mutex<HashSet<String>>>,
) -> BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible> {
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
        let value = support::authorization(request.headers());
        let refused = revoked.lock().expect("lock").contains(&value);
        seen.lock().expect("lock").push(value);
        let mut response = Response::new(Full::new(Bytes::new()));
        if refused {
            support::challenge(&mut response, "Bearer error=\"invalid_token\"");
        }
        async move { Ok::<_, Infallible>(response) }
    }))
}

fn call() -> Request<Full<Bytes>> {
    Request::get("http://127.0.0.1:9/api")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// The minted set with its access token already expired: the next request refreshes.
fn expired_access(minted: &serde_json::Value) -> TokenSet {
    let mut minted = minted.clone();
    minted["expires_in"] = serde_json::json!(0);
    TokenSet::from_json(&minted.to_string()).expect("token set")
}

fn plain_endpoint(client: &TestClient, emulator: &Emulator) -> TokenEndpoint {
    TokenEndpoint::new(client.config(emulator.issuer(), &[CP_SCOPE])).expect("endpoint")
}

/// One replica of a shared session: its own connection to Redis, session and layer.
struct SessionReplica {
    shared: SharedCache,
    session: RefreshSession,
    service: Service,
}

async fn session_replica(
    redis: &RedisServer,
    key: &SealKey,
    endpoint: TokenEndpoint,
    set: Option<TokenSet>,
    id: &str,
    seen: &Arc<Mutex<Vec<String>>>,
) -> SessionReplica {
    let shared = SharedCache::with_settings(&redis.url(), key.clone(), settings()).expect("shared");
    let session = RefreshSession::shared(endpoint, set, &shared, id)
        .await
        .expect("session");
    let service = BoxCloneSyncService::new(
        session
            .layer()
            .await
            .layer(support::recording_api(seen.clone()))
            .map_err(tower::BoxError::from),
    );
    SessionReplica {
        shared,
        session,
        service,
    }
}

/// Sends `n` requests through each service at once; returns their tasks.
fn bursts(services: &[&Service], n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut calls = Vec::new();
    for service in services {
        for _ in 0..n {
            let service = (*service).clone();
            calls.push(tokio::spawn(async move {
                service.oneshot(call()).await.expect("request served");
            }));
        }
    }
    calls
}

fn failures(replicas: &[SessionReplica]) -> Vec<u64> {
    replicas.iter().map(|r| r.shared.stats().failures).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_one_session_through_a_paused_and_slowed_redis() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let pid = redis_pid(&redis).await;
    let minted = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let set = expired_access(&minted);
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate::new();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            session_replica(
                &redis,
                &key,
                gate.endpoint(&client, &emulator),
                Some(set.clone()),
                "user-42",
                &seen,
            )
            .await,
        );
    }

    // 1. Redis paused while one replica refreshes: its refresh is held at the token
    // endpoint, Redis is stopped, and the others see it fail while they wait.
    gate.close();
    let services: Vec<&Service> = replicas.iter().map(|r| &r.service).collect();
    let calls = bursts(&services, 20);
    gate.held(1).await;
    signal(&pid, "STOP");
    let before = failures(&replicas);
    until("every replica sees the paused Redis fail", || {
        failures(&replicas)
            .iter()
            .zip(&before)
            .filter(|(now, before)| now > before)
            .count()
            >= 2
    })
    .await;
    gate.open();
    // The refreshing replica's new set cannot be written while Redis is paused: it
    // tries again.
    until("the refresh is made", || {
        replicas.iter().any(|r| r.session.refreshes() == 1)
    })
    .await;
    let holder = replicas
        .iter()
        .find(|r| r.session.refreshes() == 1)
        .expect("the refreshing replica");
    let before = holder.shared.stats().failures;
    until("the refreshing replica fails to write its new set", || {
        holder.shared.stats().failures > before
    })
    .await;
    signal(&pid, "CONT");
    for call in calls {
        call.await.expect("task");
    }
    assert_eq!(emulator.invalid_grants(), 0, "no spent refresh token used");
    assert_eq!(emulator.refreshes(), 1, "one refresh for the fleet");
    let first: Vec<String> = seen.lock().expect("lock").drain(..).collect();
    assert_eq!(first.len(), 60, "every request served");
    assert!(first.iter().all(|v| *v == first[0]), "one token for all");

    // 2. Redis slowed (stopped and resumed over and over) while every replica asks for
    // a refresh at once, twice.
    let slowing = Arc::new(AtomicBool::new(true));
    let slower = {
        let (slowing, pid) = (slowing.clone(), pid.clone());
        tokio::spawn(async move {
            while slowing.load(Ordering::SeqCst) {
                signal(&pid, "STOP");
                tokio::time::sleep(Duration::from_millis(150)).await;
                signal(&pid, "CONT");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            signal(&pid, "CONT");
        })
    };
    for _ in 0..2 {
        let refreshes: Vec<_> = replicas
            .iter()
            .map(|r| {
                let session = r.session.clone();
                tokio::spawn(async move { session.refresh(&[]).await })
            })
            .collect();
        for refresh in refreshes {
            // A refresh may give up waiting for Redis (an error, the session kept);
            // none may spend a refresh token twice.
            let _ = refresh.await.expect("task");
        }
        assert_eq!(emulator.invalid_grants(), 0, "no spent refresh token used");
    }
    slowing.store(false, Ordering::SeqCst);
    slower.await.expect("slower");
    redis.wait_until_ready().await;

    // 3. Resumed: every replica still has a working session, one after the other.
    for (i, replica) in replicas.iter().enumerate() {
        let token = replica
            .session
            .refresh(&[])
            .await
            .unwrap_or_else(|e| panic!("replica {i} refreshes: {e}"));
        emulator
            .verify_access_token(token.secret())
            .expect("a valid token");
        replica
            .service
            .clone()
            .oneshot(call())
            .await
            .expect("served");
    }
    assert_eq!(emulator.invalid_grants(), 0, "no spent refresh token used");
}

#[tokio::test]
async fn an_older_set_written_back_to_redis_is_refused() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let minted = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let replica = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(expired_access(&minted)),
        "user-7",
        &seen,
    )
    .await;
    let mut raw = redis.connection().await;
    let names: Vec<String> = raw.keys("helseid:session:*").await.expect("keys");
    let names: Vec<&String> = names.iter().filter(|n| !n.ends_with(":lease")).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names[0].clone();
    let first: Vec<u8> = raw.get(&name).await.expect("get");

    replica.session.refresh(&[]).await.expect("first refresh");
    // Whoever can write Redis puts the first set (its refresh token spent) back.
    let _: () = raw.set(&name, first).await.expect("replay");
    let token = replica
        .session
        .refresh(&[])
        .await
        .expect("the replica refreshes with its own, newer set");
    emulator
        .verify_access_token(token.secret())
        .expect("a valid token");
    assert_eq!(
        emulator.invalid_grants(),
        0,
        "the replayed set was not taken"
    );
    assert_eq!(emulator.refreshes(), 2);
    assert!(replica.shared.stats().refused >= 1, "the replay was seen");
    // Redis holds the newest set again: a replica that joins now takes it.
    let shared = SharedCache::with_settings(&redis.url(), key, settings()).expect("shared");
    let late = RefreshSession::shared(plain_endpoint(&client, &emulator), None, &shared, "user-7")
        .await
        .expect("late replica");
    assert_eq!(
        late.token_set()
            .await
            .expect("set")
            .access_token()
            .expect("fresh")
            .secret(),
        token.secret()
    );
}

#[tokio::test]
async fn a_new_login_under_the_same_session_id_replaces_the_session() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let first_login = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let a = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(expired_access(&first_login)),
        "user-9",
        &seen,
    )
    .await;
    // The first login's refresh token is spent: Redis holds its rotation.
    a.session.refresh(&[]).await.expect("refresh");
    let rotated = a.session.token_set().await.expect("set");

    // A replica restarting with the first login's set takes the session's rotation
    // from Redis instead of writing a spent refresh token over it.
    let restarted = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(expired_access(&first_login)),
        "user-9",
        &seen,
    )
    .await;
    assert_eq!(
        restarted
            .session
            .token_set()
            .await
            .expect("set")
            .refresh_token()
            .secret(),
        rotated.refresh_token().secret()
    );

    // The user logs in again, on another replica, under the same session id.
    let second_login = emulator
        .mint_user_tokens("fleet", &[])
        .expect("user tokens");
    let second_access = second_login["access_token"].as_str().expect("access");
    let second_set = TokenSet::from_json(&second_login.to_string()).expect("set");
    let b = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(second_set),
        "user-9",
        &seen,
    )
    .await;
    b.service.clone().oneshot(call()).await.expect("served");
    assert_eq!(
        seen.lock().expect("lock").last().map(String::as_str),
        Some(format!("Bearer {second_access}").as_str())
    );

    // A replica that joins now gets the new login.
    let shared = SharedCache::with_settings(&redis.url(), key, settings()).expect("shared");
    let late = RefreshSession::shared(plain_endpoint(&client, &emulator), None, &shared, "user-9")
        .await
        .expect("late replica");
    assert_eq!(
        late.token_set()
            .await
            .expect("set")
            .access_token()
            .expect("fresh")
            .secret(),
        second_access
    );
    // The first replica takes the new login at its next refresh instead of spending
    // the old session's refresh token.
    let token = a.session.refresh(&[]).await.expect("refresh");
    assert_eq!(token.secret(), second_access);
    // And the new session refreshes on.
    let again = late.refresh(&[]).await.expect("refresh");
    emulator.verify_access_token(again.secret()).expect("valid");
    assert_eq!(emulator.invalid_grants(), 0);
    assert_eq!(emulator.refreshes(), 2);
}

/// One client-credentials replica: its shared cache and its service in front of `api`.
fn token_replica(
    redis: &RedisServer,
    key: &SealKey,
    endpoint: TokenEndpoint,
    api: BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>,
) -> (SharedCache, Service) {
    let mut quick = SharedSettings::default();
    quick.command_timeout = Duration::from_secs(10);
    quick.lock_wait = Duration::from_secs(60);
    let shared = SharedCache::with_settings(&redis.url(), key.clone(), quick).expect("shared");
    let service = BoxCloneSyncService::new(
        HelseIdLayer::builder(shared.source(endpoint))
            .build()
            .layer(api)
            .map_err(tower::BoxError::from),
    );
    (shared, service)
}

#[tokio::test]
async fn a_token_an_api_refused_is_taken_out_of_redis() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let revoked = Arc::new(Mutex::new(HashSet::new()));
    let (_, a) = token_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        api(seen.clone(), revoked.clone()),
    );
    a.clone().oneshot(call()).await.expect("first");
    let refused = seen.lock().expect("lock")[0].clone();
    revoked.lock().expect("lock").insert(refused.clone());

    // The API refuses the token. The request, sent with a token the API had accepted,
    // kept no copy for a retry: the 401 is its answer. The replica forgets the token,
    // and the next request gets a new one, not the refused one back from Redis.
    let response = a.clone().oneshot(call()).await.expect("answered");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = a.clone().oneshot(call()).await.expect("served");
    assert_eq!(response.status(), StatusCode::OK);
    let last = seen.lock().expect("lock").last().cloned().expect("seen");
    assert_ne!(last, refused);
    assert_eq!(emulator.token_requests(), 2);
    // Another replica, cold, finds the new token in Redis, never the refused one.
    let (b_shared, b) = token_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        api(seen.clone(), revoked.clone()),
    );
    let response = b.oneshot(call()).await.expect("served");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().expect("lock").last(), Some(&last));
    assert_eq!(b_shared.stats().hits, 1);
    assert_eq!(emulator.token_requests(), 2);
}

#[tokio::test]
async fn a_token_that_lives_a_minute_is_shared() {
    let client = TestClient::ec("fleet");
    let emulator = helseid_emulator::Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .access_token_lifetime(Duration::from_secs(60))
        .start()
        .await
        .expect("emulator");
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let revoked = Arc::new(Mutex::new(HashSet::new()));
    for _ in 0..3 {
        let (_, replica) = token_replica(
            &redis,
            &key,
            plain_endpoint(&client, &emulator),
            api(seen.clone(), revoked.clone()),
        );
        replica.oneshot(call()).await.expect("served");
    }
    assert_eq!(emulator.token_requests(), 1, "one token for three replicas");
    let mut raw = redis.connection().await;
    let names: Vec<String> = raw.keys("helseid:token:*").await.expect("keys");
    let names: Vec<&String> = names.iter().filter(|n| !n.ends_with(":lock")).collect();
    let ttl: i64 = raw.pttl(names[0]).await.expect("pttl");
    assert!(
        ttl > 0 && ttl <= 30_000,
        "gone from Redis by half its lifetime, before any replica refreshes it: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_found_in_redis_after_waiting_is_a_hit() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let revoked = Arc::new(Mutex::new(HashSet::new()));
    let gate = Gate::new();
    let replicas: Vec<_> = (0..10)
        .map(|_| {
            token_replica(
                &redis,
                &key,
                gate.endpoint(&client, &emulator),
                api(seen.clone(), revoked.clone()),
            )
        })
        .collect();
    gate.close();
    let calls: Vec<_> = replicas
        .iter()
        .map(|(_, service)| tokio::spawn(service.clone().oneshot(call())))
        .collect();
    // One replica fetches (held at the token endpoint); the nine others wait for it.
    gate.held(1).await;
    until("nine replicas wait", || {
        replicas
            .iter()
            .map(|(shared, _)| shared.stats().lock_waits)
            .sum::<u64>()
            == 9
    })
    .await;
    gate.open();
    for call in calls {
        call.await.expect("task").expect("served");
    }
    let stats: Vec<_> = replicas.iter().map(|(shared, _)| shared.stats()).collect();
    let sum = |f: fn(&helseid::shared::SharedStats) -> u64| stats.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.fetches), 1, "{stats:?}");
    assert_eq!(sum(|s| s.hits), 9, "found after waiting: hits {stats:?}");
    assert_eq!(sum(|s| s.misses), 1, "{stats:?}");
    assert_eq!(emulator.token_requests(), 1);
}

/// A client of SFM exchanging the tokens it receives, through one shared Redis.
mod exchange {
    use super::*;
    use helseid::config::ClientConfig;
    use helseid::key::{Algorithm, PrivateJwk, SigningKey};
    use helseid_emulator::ClientRegistration;

    const SFM_SCOPE: &str = "e-helse:sfm.api/access";
    const SFM_AUDIENCE: &str = "e-helse:sfm.api";
    const DOWNSTREAM_SCOPE: &str = "nhn:reseptformidleren/access";

    fn registration(id: &str, jwk: &PrivateJwk, scopes: &[&str]) -> ClientRegistration {
        let public = SigningKey::from_jwk(jwk).expect("key").public_jwk().clone();
        ClientRegistration::new(id, public).scopes(scopes.iter().copied())
    }

    fn endpoint(id: &str, jwk: &PrivateJwk, emulator: &Emulator) -> TokenEndpoint {
        let config = ClientConfig::builder()
            .client_id(id)
            .authority_url(emulator.issuer())
            .private_jwk(jwk)
            .build()
            .expect("config");
        TokenEndpoint::new(config).expect("endpoint")
    }

    fn request_with(subject: &SubjectToken) -> Request<Full<Bytes>> {
        let mut request = call();
        request.extensions_mut().insert(subject.clone());
        request
    }

    #[tokio::test]
    async fn an_exchanged_token_in_redis_never_outlives_its_subject_token() {
        let (epj, sfm) = (
            PrivateJwk::generate_ec(Algorithm::ES256).expect("key"),
            PrivateJwk::generate_ec(Algorithm::ES256).expect("key"),
        );
        let emulator = Emulator::builder()
            .client(registration("epj", &epj, &[SFM_SCOPE]))
            .client(registration("sfm", &sfm, &[DOWNSTREAM_SCOPE]).audience(SFM_AUDIENCE))
            .start()
            .await
            .expect("emulator");
        let redis = RedisServer::start().await;
        let key = SealKey::generate();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let incoming = endpoint("epj", &epj, &emulator)
            .request(&helseid::endpoint::TokenRequest::client_credentials([
                SFM_SCOPE,
            ]))
            .await
            .expect("incoming token");
        let replica = || {
            let shared =
                SharedCache::with_settings(&redis.url(), key.clone(), settings()).expect("shared");
            let layer = HelseIdLayer::builder(shared.source(endpoint("sfm", &sfm, &emulator)))
                .token_exchange()
                .scopes([DOWNSTREAM_SCOPE])
                .build();
            let service = BoxCloneSyncService::new(
                layer
                    .layer(support::recording_api(seen.clone()))
                    .map_err(tower::BoxError::from),
            );
            (shared, service)
        };

        // The subject token, as the service learnt it, expires in 10 minutes (the
        // exchanged token lives an hour).
        let subject = SubjectToken::with_expiry(
            incoming.secret(),
            tokio::time::Instant::now() + Duration::from_secs(600),
        );
        let (_, first) = replica();
        first
            .oneshot(request_with(&subject))
            .await
            .expect("exchanged");
        assert_eq!(emulator.token_exchanges(), 1);
        let mut raw = redis.connection().await;
        let names: Vec<String> = raw.keys("helseid:token:*").await.expect("keys");
        let names: Vec<&String> = names.iter().filter(|n| !n.ends_with(":lock")).collect();
        assert_eq!(names.len(), 1);
        let ttl: i64 = raw.pttl(names[0]).await.expect("pttl");
        assert!(
            ttl > 0 && ttl <= 600_000,
            "leaves Redis with its subject token: {ttl}"
        );

        // The same subject token, known to have expired now: Redis's exchanged token is
        // not taken, and the exchange is refused as it would be without Redis.
        let expired = SubjectToken::with_expiry(incoming.secret(), tokio::time::Instant::now());
        let (shared, second) = replica();
        let result = second.oneshot(request_with(&expired)).await;
        assert!(result.is_err(), "no exchanged token for an expired subject");
        assert_eq!(shared.stats().hits, 0);
        assert_eq!(emulator.token_exchanges(), 1);
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }
}

#[tokio::test]
async fn a_new_login_with_another_dpop_key_is_refreshed_with_that_key_everywhere() {
    let client = TestClient::ec("fleet");
    let emulator = support::emulator_with(&client).await;
    let redis = RedisServer::start().await;
    let key = SealKey::generate();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let login = |jwk: &helseid::key::PrivateJwk| {
        let minted = emulator
            .mint_user_tokens("fleet", &[])
            .expect("user tokens");
        expired_access(&minted)
            .with_dpop_jwk(jwk.clone())
            .expect("dpop set")
    };
    let generate =
        || helseid::key::PrivateJwk::generate_ec(helseid::key::Algorithm::ES256).expect("key");
    let (first_key, second_key) = (generate(), generate());
    let a = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(login(&first_key)),
        "dpop-user",
        &seen,
    )
    .await;
    a.session.refresh(&[]).await.expect("first login refreshes");
    // The user logs in again, with a new DPoP key, on another replica.
    let c = session_replica(
        &redis,
        &key,
        plain_endpoint(&client, &emulator),
        Some(login(&second_key)),
        "dpop-user",
        &seen,
    )
    .await;
    // The first replica takes the new login and refreshes it: with the new login's
    // key, to which HelseID binds the new session.
    a.session
        .refresh(&[])
        .await
        .expect("a refreshes the new login");
    c.session.refresh(&[]).await.expect("c takes a's refresh");
    c.session
        .refresh(&[])
        .await
        .expect("c refreshes the new login with its key");
    assert_eq!(emulator.invalid_grants(), 0);
    assert_eq!(emulator.refreshes(), 3);
}
