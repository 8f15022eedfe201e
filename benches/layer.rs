//! The cost of the tower layer and of the token cache.
//!
//! Run: `cargo bench --bench layer` (one group: `cargo bench --bench layer -- hot_path`).
//! Every request is sent with `ready().await` and `call(..).await` in a loop inside one
//! task (no `block_on` per request), to an in-memory echo service, with a 900-character
//! token, so that the figures are the layer's and not the harness's.
//!
//! - `hot_path`: one task on a current-thread runtime: the bare service, tower-http's
//!   `AddAuthorizationLayer::bearer` with a static token (the floor), `HelseId` with its
//!   own warm token, and with 10,000 warm tenants in turn (a `Tenant` in each request's
//!   extensions; the floor for those is the static bearer with the same requests,
//!   `static_bearer_tenant_ext`). The tokens are accepted (the echo answers `200`), so
//!   by default no copy of the request is kept for a retry. The `_no_retry` variants
//!   have `retry_on_invalid_token(false)`; `helseid_copies` has
//!   `retry_after_acceptance(true)`: every request keeps a copy, in a box.
//! - `cache_hits`: `TokenCache::get` hits per second on a 2-worker runtime, from 1, 2 and
//!   8 tasks, over one key and over 10,000 tenants.
//! - `layer_hits`: requests per second through the static bearer and the layer (own
//!   token, and 10,000 tenants) from 1, 2 and 8 tasks on 2 workers.
//! - `layer_hits_clone`: requests per second through the static bearer and the layer
//!   (own warm token) with a clone of the service per request
//!   (`svc.clone().oneshot(request)`), from 1 and 2 tasks on 2 workers.
//! - `layer_hits_dpop`: requests per second to an absolute URL through the warm layer
//!   with Bearer tokens and with DPoP (a fresh P-256 proof per request), from 1 and 2
//!   tasks.
//! - `cold_start`: 10,000 concurrent requests through a fresh layer against the
//!   emulator's token endpoint over HTTP on 127.0.0.1, with a 50 ms token delay: the
//!   time until all are served, and exactly one token request per run.

#![allow(missing_docs)]

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helseid::assertion::Tenant;
use helseid::auth::HelseIdLayer;
use helseid::cache::TokenCache;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenRequest;
use http::{HeaderValue, Request, Response, header};
use support::{bearer_token, echo, source, tenants};
use tokio::runtime::Runtime;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::auth::AddAuthorizationLayer;

const SCOPE: &str = "nhn:cp-api/access";
const TENANT: &str = "999999999:888888888";
const MANY_KEYS: usize = 10_000;
const TASKS: [usize; 3] = [1, 2, 8];

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A cache with room for every tenant and more.
fn roomy_cache() -> TokenCache {
    let mut settings = helseid::cache::CacheSettings::default();
    settings.max_capacity = 4 * MANY_KEYS as u64;
    TokenCache::with_settings(settings)
}

fn tenant() -> Tenant {
    TENANT.parse().expect("tenant")
}

/// Sends `iters` requests made by `make` through `svc` in a loop inside one task.
async fn send_all<S>(
    svc: &mut S,
    iters: u64,
    offset: usize,
    make: &(dyn Fn(usize) -> Request<()> + Sync),
) where
    S: tower::Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..iters {
        let request = make(offset + i as usize);
        let response = svc
            .ready()
            .await
            .expect("ready")
            .call(request)
            .await
            .expect("response");
        black_box(response);
    }
}

/// Times `svc` on requests made by `make`, sent in a loop inside one task.
fn one_task<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    svc: S,
    make: &(dyn Fn(usize) -> Request<()> + Sync),
) where
    S: tower::Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut offset = 0;
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                send_all(&mut svc, iters, offset, make).await;
                start.elapsed()
            });
            offset += iters as usize;
            elapsed
        })
    });
}

fn hot_path(c: &mut Criterion) {
    let rt = current_thread();
    let token = bearer_token();
    let expected = format!("Bearer {token}");

    let layer = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .cache(roomy_cache())
        .build();
    // Checks, once, that each variant sets the header, and warms the cache (own key and
    // tenant).
    let recording = |value: Arc<std::sync::Mutex<Vec<Option<HeaderValue>>>>| {
        tower::service_fn(move |request: Request<()>| {
            let value = value.clone();
            async move {
                value
                    .lock()
                    .expect("lock")
                    .push(request.headers().get(header::AUTHORIZATION).cloned());
                Ok::<_, Infallible>(Response::new(()))
            }
        })
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.block_on(async {
        let checked = ServiceBuilder::new()
            .layer(layer.clone())
            .service(recording(seen.clone()));
        for with_tenant in [false, false, true, true] {
            let mut request = Request::new(());
            if with_tenant {
                request.extensions_mut().insert(tenant());
            }
            checked.clone().oneshot(request).await.expect("response");
        }
        ServiceBuilder::new()
            .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
            .service(recording(seen.clone()))
            .oneshot(Request::new(()))
            .await
            .expect("response");
    });
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 5);
        for value in seen.iter() {
            let value = value.as_ref().expect("an Authorization header");
            assert_eq!(value.to_str().expect("ascii"), expected);
            assert!(value.is_sensitive());
        }
    }
    let stats = layer.cache().stats();
    assert_eq!(
        stats.fetches, 2,
        "one token for the own key, one for the tenant"
    );
    assert_eq!(stats.hits, 2, "the second request of each was a hit");

    let all = tenants(MANY_KEYS);
    let plain = |_: usize| Request::new(());
    let with_tenant = |i: usize| {
        let mut request = Request::new(());
        request.extensions_mut().insert(all[i % MANY_KEYS]);
        request
    };
    let no_retry = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .retry_on_invalid_token(false)
        .cache(layer.cache().clone())
        .build();
    let copies = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .retry_after_acceptance(true)
        .cache(layer.cache().clone())
        .build();
    // Every tenant's token, warm in the shared cache and in the layers' fronts.
    rt.block_on(async {
        for layer in [&layer, &no_retry, &copies] {
            let mut svc = ServiceBuilder::new()
                .layer(layer.clone())
                .service(tower::service_fn(echo));
            send_all(&mut svc, 2 * MANY_KEYS as u64, 0, &with_tenant).await;
            send_all(&mut svc, 1, 0, &plain).await;
        }
    });
    let stats = layer.cache().stats();
    let helseid = |layer: &HelseIdLayer| {
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(tower::service_fn(echo))
    };
    let static_bearer = ServiceBuilder::new()
        .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
        .service(tower::service_fn(echo));

    let mut group = c.benchmark_group("hot_path");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    one_task(&mut group, &rt, "bare", tower::service_fn(echo), &plain);
    one_task(
        &mut group,
        &rt,
        "static_bearer",
        static_bearer.clone(),
        &plain,
    );
    one_task(
        &mut group,
        &rt,
        "static_bearer_tenant_ext",
        static_bearer,
        &with_tenant,
    );
    one_task(&mut group, &rt, "helseid", helseid(&layer), &plain);
    one_task(
        &mut group,
        &rt,
        "helseid_no_retry",
        helseid(&no_retry),
        &plain,
    );
    one_task(&mut group, &rt, "helseid_copies", helseid(&copies), &plain);
    one_task(
        &mut group,
        &rt,
        "helseid_10000_tenants",
        helseid(&layer),
        &with_tenant,
    );
    one_task(
        &mut group,
        &rt,
        "helseid_10000_tenants_no_retry",
        helseid(&no_retry),
        &with_tenant,
    );
    group.finish();
    let after = layer.cache().stats();
    assert_eq!(
        after.fetches, stats.fetches,
        "every benchmarked request was a hit"
    );
    assert_eq!(after.misses, stats.misses);
}

/// Splits `iters` among `tasks` tasks, each running `one` that many times; the wall
/// time until all are done.
fn spread<F, Fut>(rt: &Runtime, iters: u64, tasks: usize, one: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tasks_u64 = tasks as u64;
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let n = iters / tasks_u64 + u64::from((task as u64) < iters % tasks_u64);
                tokio::spawn(one(task, n))
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        start.elapsed()
    })
}

fn cache_hits(c: &mut Criterion) {
    let rt = two_workers();
    let source = source(bearer_token());
    let one_key = Arc::new(vec![TokenRequest::client_credentials([SCOPE])]);
    let many_keys: Arc<Vec<TokenRequest>> = Arc::new(
        (0..MANY_KEYS)
            .map(|i| {
                let tenant: Tenant = format!("{:09}:{:09}", 100_000_000 + i, 200_000_000 + i)
                    .parse()
                    .expect("tenant");
                TokenRequest::client_credentials([SCOPE]).with_tenant(tenant)
            })
            .collect(),
    );

    let mut group = c.benchmark_group("cache_hits");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, requests) in [("1 key", &one_key), ("10000 keys", &many_keys)] {
        let cache = TokenCache::new();
        rt.block_on(async {
            for request in requests.iter() {
                cache.get(&source, request).await.expect("warm");
            }
        });
        let warm = cache.stats();
        assert_eq!(warm.fetches, requests.len() as u64);
        for tasks in TASKS {
            group.bench_function(format!("{name}/{tasks} tasks"), |b| {
                b.iter_custom(|iters| {
                    spread(&rt, iters, tasks, |task, n| {
                        let (cache, source, requests) =
                            (cache.clone(), source.clone(), requests.clone());
                        async move {
                            // Each task walks the keys from its own offset.
                            let mut i = task * requests.len() / tasks;
                            for _ in 0..n {
                                let token = cache
                                    .get(&source, &requests[i])
                                    .await
                                    .expect("cached token");
                                black_box(token);
                                i += 1;
                                if i == requests.len() {
                                    i = 0;
                                }
                            }
                        }
                    })
                })
            });
        }
        let after = cache.stats();
        eprintln!(
            "cache_hits/{name}: {} entries, fetches {} (warm-up {}), misses {} (warm-up {})",
            requests.len(),
            after.fetches,
            warm.fetches,
            after.misses,
            warm.misses
        );
        assert_eq!(after.fetches, warm.fetches, "every lookup was a hit");
    }
    group.finish();
}

/// Requests per second through `svc` with `tasks` tasks, each sending its share of the
/// iterations one after another.
fn bench_hits<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: String,
    tasks: usize,
    svc: &S,
    make: &MakeRequest,
) where
    S: tower::Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            spread(rt, iters, tasks, |task, n| {
                // Each task: its own clone of the service, and its own run of tenants.
                let (mut svc, make) = (svc.clone(), make.clone());
                async move {
                    send_all(&mut svc, n, task * MANY_KEYS / tasks, &*make).await;
                }
            })
        })
    });
}

/// Makes the `i`-th request of a run.
type MakeRequest = Arc<dyn Fn(usize) -> Request<()> + Send + Sync>;

fn layer_hits(c: &mut Criterion) {
    let rt = two_workers();
    let token = bearer_token();
    let layer = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .cache(roomy_cache())
        .build();
    let no_retry = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .retry_on_invalid_token(false)
        .cache(layer.cache().clone())
        .build();
    let helseid = |layer: &HelseIdLayer| {
        ServiceBuilder::new()
            .layer(layer.clone())
            .service(tower::service_fn(echo))
    };
    let static_bearer = ServiceBuilder::new()
        .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
        .service(tower::service_fn(echo));
    let all = Arc::new(tenants(MANY_KEYS));
    let plain: MakeRequest = Arc::new(|_| Request::new(()));
    let with_tenant: MakeRequest = Arc::new(move |i| {
        let mut request = Request::new(());
        request.extensions_mut().insert(all[i % MANY_KEYS]);
        request
    });
    rt.block_on(async {
        for layer in [&layer, &no_retry] {
            let mut svc = helseid(layer);
            send_all(&mut svc, 1, 0, &*plain).await;
            send_all(&mut svc, MANY_KEYS as u64, 0, &*with_tenant).await;
        }
    });
    let warm = layer.cache().stats();

    let mut group = c.benchmark_group("layer_hits");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for tasks in TASKS {
        let bench = |group: &mut _, name: &str, svc, make| {
            bench_hits(
                group,
                &rt,
                format!("{name}/{tasks} tasks"),
                tasks,
                svc,
                make,
            )
        };
        bench(&mut group, "static_bearer", &static_bearer, &plain);
        let (own, own_no_retry) = (helseid(&layer), helseid(&no_retry));
        bench_hits(
            &mut group,
            &rt,
            format!("helseid/{tasks} tasks"),
            tasks,
            &own,
            &plain,
        );
        bench_hits(
            &mut group,
            &rt,
            format!("helseid_no_retry/{tasks} tasks"),
            tasks,
            &own_no_retry,
            &plain,
        );
        bench_hits(
            &mut group,
            &rt,
            format!("helseid_10000_tenants/{tasks} tasks"),
            tasks,
            &own,
            &with_tenant,
        );
    }
    group.finish();
    assert_eq!(
        layer.cache().stats().fetches,
        warm.fetches,
        "every request was a hit"
    );
}

/// Requests per second through `svc` with `tasks` tasks, each request sent through a
/// clone of its own (`svc.clone().oneshot(request)`), as code that shares one client
/// across tasks does.
fn bench_clone_per_request<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: String,
    tasks: usize,
    svc: &S,
) where
    S: tower::Service<Request<()>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            spread(rt, iters, tasks, |_, n| {
                // One clone per task to clone from, as a shared client is.
                let svc = svc.clone();
                async move {
                    for _ in 0..n {
                        let response = svc
                            .clone()
                            .oneshot(Request::new(()))
                            .await
                            .expect("response");
                        black_box(response);
                    }
                }
            })
        })
    });
}

/// `layer_hits_clone`: the static bearer and the layer (own warm token) with a clone of
/// the service per request, from 1 and 2 tasks on 2 workers.
fn layer_hits_clone(c: &mut Criterion) {
    let rt = two_workers();
    let token = bearer_token();
    let layer = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .cache(roomy_cache())
        .build();
    let helseid = ServiceBuilder::new()
        .layer(layer.clone())
        .service(tower::service_fn(echo));
    let static_bearer = ServiceBuilder::new()
        .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
        .service(tower::service_fn(echo));
    rt.block_on(async {
        let mut svc = helseid.clone();
        send_all(&mut svc, 2, 0, &|_| Request::new(())).await;
    });
    let warm = layer.cache().stats();
    let mut group = c.benchmark_group("layer_hits_clone");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for tasks in [1, 2] {
        bench_clone_per_request(
            &mut group,
            &rt,
            format!("static_bearer/{tasks} tasks"),
            tasks,
            &static_bearer,
        );
        bench_clone_per_request(
            &mut group,
            &rt,
            format!("helseid/{tasks} tasks"),
            tasks,
            &helseid,
        );
    }
    group.finish();
    assert_eq!(
        layer.cache().stats().fetches,
        warm.fetches,
        "every request was a hit"
    );
}

/// A request to an absolute URL with a query, as a client sends it.
fn api_request() -> Request<()> {
    Request::get("https://cpapi.test.grunndata.nhn.no/api/v1/event?fromSequenceNumber=1")
        .body(())
        .expect("request")
}

fn layer_hits_dpop(c: &mut Criterion) {
    let rt = two_workers();
    let token = bearer_token();
    let bearer = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .build();
    let dpop = HelseIdLayer::builder(source(token.clone()))
        .scopes([SCOPE])
        .dpop(DpopKey::generate().expect("key"))
        .build();
    let services = [("bearer", bearer.clone()), ("dpop", dpop.clone())].map(|(name, layer)| {
        (
            name,
            ServiceBuilder::new()
                .layer(layer)
                .service(tower::service_fn(echo)),
        )
    });
    // Checks, once, that the DPoP layer sends the DPoP scheme and a proof.
    let seen = rt
        .block_on(
            ServiceBuilder::new()
                .layer(dpop.clone())
                .service_fn(|request: Request<()>| async move {
                    Ok::<_, Infallible>(Response::new(request.headers().clone()))
                })
                .oneshot(api_request()),
        )
        .expect("response")
        .into_body();
    assert!(seen[header::AUTHORIZATION].as_bytes().starts_with(b"DPoP "));
    assert!(seen.contains_key("dpop"));

    let api: MakeRequest = Arc::new(|_| api_request());
    let mut group = c.benchmark_group("layer_hits_dpop");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for tasks in [1, 2] {
        for (name, service) in &services {
            bench_hits(
                &mut group,
                &rt,
                format!("{name}/{tasks} tasks"),
                tasks,
                service,
                &api,
            );
        }
    }
    group.finish();
    // At most one token each (none when a filter left the group out): every request
    // after the first was a hit.
    assert!(
        bearer.cache().stats().fetches <= 1,
        "every request was a hit"
    );
    assert!(dpop.cache().stats().fetches <= 1, "every request was a hit");
}

fn cold_start(c: &mut Criterion) {
    use helseid::config::ClientConfig;
    use helseid::endpoint::TokenEndpoint;
    use helseid::key::{Algorithm, PrivateJwk, SigningKey};
    use helseid_emulator::{ClientRegistration, Emulator};

    const REQUESTS: usize = 10_000;
    const CLIENT: &str = "bench-client";

    let rt = two_workers();
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("generate");
    let public = SigningKey::from_jwk(&jwk)
        .expect("key")
        .public_jwk()
        .clone();
    let emulator = rt.block_on(async {
        Emulator::builder()
            .client(ClientRegistration::new(CLIENT, public).scopes([SCOPE]))
            .start()
            .await
            .expect("emulator")
    });
    emulator.set_token_delay(Duration::from_millis(50));
    let config = ClientConfig::builder()
        .client_id(CLIENT)
        .authority_url(emulator.issuer())
        .scopes([SCOPE])
        .private_jwk(&jwk)
        .build()
        .expect("config");
    // The inner service answers whether the request carried a token.
    let inner = tower::service_fn(|request: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(
            request.headers().contains_key(header::AUTHORIZATION),
        )))
    });

    let mut runs = 0u64;
    let mut group = c.benchmark_group("cold_start");
    group
        .sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(12))
        .throughput(Throughput::Elements(REQUESTS as u64));
    group.bench_function("10000 concurrent, 50 ms token delay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A fresh layer (cache, endpoint, HTTP client) per run; outside the clock.
                let endpoint = TokenEndpoint::new(config.clone()).expect("endpoint");
                let svc = ServiceBuilder::new()
                    .layer(HelseIdLayer::new(endpoint))
                    .service(inner);
                let before = emulator.token_requests();
                total += rt.block_on(async {
                    let start = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for _ in 0..REQUESTS {
                        set.spawn(svc.clone().oneshot(Request::new(())));
                    }
                    while let Some(result) = set.join_next().await {
                        let response = result.expect("task").expect("response");
                        assert!(*response.body(), "the request carried a token");
                    }
                    start.elapsed()
                });
                let made = emulator.token_requests() - before;
                assert_eq!(made, 1, "one token request for {REQUESTS} cold requests");
                runs += 1;
            }
            total
        })
    });
    group.finish();
    eprintln!(
        "cold_start: {runs} runs of {REQUESTS} requests, {} token requests at the emulator",
        emulator.token_requests()
    );
    rt.block_on(emulator.shutdown());
}

criterion_group!(
    benches,
    hot_path,
    cache_hits,
    layer_hits,
    layer_hits_clone,
    layer_hits_dpop,
    cold_start
);
criterion_main!(benches);
