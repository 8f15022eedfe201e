//! The cost of verifying a request: `helseid::verify::VerifyLayer` against the usual Rust
//! way (`jsonwebtoken` decoding and validating the token on every request) and tower-http's
//! `ValidateRequestHeaderLayer::bearer` with a static token (the floor).
//!
//! Run: `cargo bench --bench verify --features verify` (one group:
//! `cargo bench --bench verify --features verify -- verify_hot_path`). Every request is
//! sent with `ready().await` and `call(..).await` in a loop inside one task (no
//! `block_on` per request) to an in-memory echo service; the token is HelseID-shaped
//! (RS256, 2048-bit key, about 1.2 KB), and the request is built in the loop for every
//! variant alike.
//!
//! - `verify_hot_path`, one task on a current-thread runtime:
//!   - `bare`: the echo service alone;
//!   - `static_bearer`: tower-http's `ValidateRequestHeaderLayer::bearer` (the floor);
//!   - `jsonwebtoken`: `jsonwebtoken::decode` with RS256, issuer, audience, `exp`/`nbf`,
//!     plus `typ` and the scope, on every request;
//!   - `warm_bearer`: the layer with the token verified before (a cache hit);
//!   - `cold_bearer`: the layer without a cache (`cache_capacity(0)`): the signature and
//!     every claim checked at every request;
//!   - `dpop`: the layer with DPoP required, the token cached, a fresh ES256 proof per
//!     request (made before the clock starts);
//!   - `proof_signature`: verifying those proofs' ES256 signatures alone (aws-lc-rs, the
//!     key parsed from its point), the floor of any DPoP request.
//! - `verify_workers`: warm Bearer requests per second on a 2-worker runtime from 1 and 2
//!   tasks (each its own clone of the service, and its own copies of the request's parts).
//!
//! `cargo bench --bench verify --features verify -- scaling` measures, instead, the same
//! 1 and 2 tasks on 2 workers by the CPU time each worker thread spent
//! (`/proc/thread-self/schedstat`) as well as by the wall clock: CPU nanoseconds per
//! request that stay the same with a second task mean that the two cores do not slow
//! each other down, even on a machine where other processes take the cores (where the
//! wall-clock throughput says little).

#![allow(missing_docs)]
// tower-http deprecates `ValidateRequestHeaderLayer::bearer` as too basic for real use; it
// is the floor here, as the issue asks.
#![allow(deprecated)]

#[path = "support/verify.rs"]
mod fixture;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use fixture::{Fixture, Jsonwebtoken, ProofSignature, echo};
use helseid::verify::Dpop;
use http::{Request, Response, StatusCode};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::validate_request::ValidateRequestHeaderLayer;

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

/// Sends `n` requests made by `make` through `svc` in a loop inside one task; every
/// answer must be 200.
async fn send_all<S>(svc: &mut S, n: u64, make: &(dyn Fn(usize) -> Request<()> + Sync))
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..n {
        let request = make(i as usize);
        let response = svc
            .ready()
            .await
            .expect("ready")
            .call(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
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
    S: Service<Request<()>, Response = Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                let start = Instant::now();
                send_all(&mut svc, iters, make).await;
                start.elapsed()
            })
        })
    });
}

fn hot_path(c: &mut Criterion) {
    let f = Fixture::new();
    let rt = current_thread();
    let mut group = c.benchmark_group("verify_hot_path");
    let bearer = |_: usize| f.bearer_request();

    one_task(&mut group, &rt, "bare", tower::service_fn(echo), &bearer);
    let floor = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::bearer(&f.bearer))
        .service_fn(echo);
    one_task(&mut group, &rt, "static_bearer", floor, &bearer);
    let jwt = Jsonwebtoken {
        key: f.decoding.clone(),
        validation: Arc::new(f.validation()),
    };
    one_task(&mut group, &rt, "jsonwebtoken", jwt, &bearer);
    let warm = ServiceBuilder::new()
        .layer(f.layer(Dpop::Allowed, 10_000))
        .service_fn(echo);
    one_task(&mut group, &rt, "warm_bearer", warm, &bearer);
    let cold = ServiceBuilder::new()
        .layer(f.layer(Dpop::Allowed, 0))
        .service_fn(echo);
    one_task(&mut group, &rt, "cold_bearer", cold, &bearer);

    // DPoP: the proofs of each batch are made before its clock starts.
    let dpop = ServiceBuilder::new()
        .layer(f.layer(Dpop::Required, 10_000))
        .service_fn(echo);
    group.bench_function("dpop", |b| {
        b.iter_custom(|iters| {
            let proofs = f.proofs(iters as usize);
            let make = |i: usize| f.dpop_request(&proofs[i]);
            let mut svc = dpop.clone();
            rt.block_on(async {
                let start = Instant::now();
                send_all(&mut svc, iters, &make).await;
                start.elapsed()
            })
        })
    });
    group.bench_function("proof_signature", |b| {
        b.iter_custom(|iters| {
            let proofs: Vec<ProofSignature> = f
                .proofs(iters as usize)
                .iter()
                .map(ProofSignature::of)
                .collect();
            let start = Instant::now();
            for proof in &proofs {
                assert!(black_box(proof).verify());
            }
            start.elapsed()
        })
    });
    group.finish();
}

/// Splits `iters` requests among `tasks` tasks on `rt`, each with its own clone of `svc`;
/// the wall time until all are done.
fn spread<S>(
    rt: &Runtime,
    svc: &S,
    iters: u64,
    tasks: u64,
    make: fn(&Fixture) -> Request<()>,
    f: &Arc<Fixture>,
) -> Duration
where
    S: Service<Request<()>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let n = iters / tasks + u64::from(task < iters % tasks);
                let mut svc = svc.clone();
                let f = f.for_task();
                tokio::spawn(async move {
                    for _ in 0..n {
                        let response = svc
                            .ready()
                            .await
                            .expect("ready")
                            .call(make(&f))
                            .await
                            .expect("response");
                        assert_eq!(response.status(), StatusCode::OK);
                        black_box(response);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        start.elapsed()
    })
}

fn workers(c: &mut Criterion) {
    let f = Arc::new(Fixture::new());
    let rt = two_workers();
    let mut group = c.benchmark_group("verify_workers");
    group.throughput(Throughput::Elements(1));
    let warm = ServiceBuilder::new()
        .layer(f.layer(Dpop::Allowed, 10_000))
        .service_fn(echo);
    let floor = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::bearer(&f.bearer))
        .service_fn(echo);
    for tasks in [1, 2] {
        group.bench_function(format!("warm_bearer/{tasks}"), |b| {
            b.iter_custom(|iters| spread(&rt, &warm, iters, tasks, Fixture::bearer_request, &f))
        });
        group.bench_function(format!("static_bearer/{tasks}"), |b| {
            b.iter_custom(|iters| spread(&rt, &floor, iters, tasks, Fixture::bearer_request, &f))
        });
    }
    group.finish();
}

/// The time this thread has run on a CPU, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}

/// `tasks` tasks on `rt`, each sending `per_task` requests through its own clone of
/// `svc`: the wall time, and the CPU nanoseconds per request of each task's thread.
fn cpu_per_request<S>(
    rt: &Runtime,
    svc: &S,
    f: &Fixture,
    tasks: usize,
    per_task: u64,
) -> (Duration, Vec<f64>)
where
    S: Service<Request<()>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let mut svc = svc.clone();
                let f = f.for_task();
                tokio::spawn(async move {
                    // The requests never wait, so the task stays on its worker thread.
                    let cpu = thread_cpu_ns();
                    for _ in 0..per_task {
                        let response = svc
                            .ready()
                            .await
                            .expect("ready")
                            .call(f.bearer_request())
                            .await
                            .expect("response");
                        assert_eq!(response.status(), StatusCode::OK);
                        black_box(response);
                    }
                    (thread_cpu_ns() - cpu) as f64 / per_task as f64
                })
            })
            .collect();
        let mut per_request = Vec::new();
        for handle in handles {
            per_request.push(handle.await.expect("task"));
        }
        (start.elapsed(), per_request)
    })
}

#[allow(clippy::print_stdout)]
fn scaling() {
    let f = Fixture::new();
    let rt = two_workers();
    const N: u64 = 2_000_000;
    let warm = ServiceBuilder::new()
        .layer(f.layer(Dpop::Allowed, 10_000))
        .service_fn(echo);
    let floor = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::bearer(&f.bearer))
        .service_fn(echo);
    for (name, one, two) in [
        (
            "warm_bearer",
            {
                cpu_per_request(&rt, &warm, &f, 1, N / 10);
                cpu_per_request(&rt, &warm, &f, 1, N)
            },
            cpu_per_request(&rt, &warm, &f, 2, N),
        ),
        (
            "static_bearer",
            cpu_per_request(&rt, &floor, &f, 1, N),
            cpu_per_request(&rt, &floor, &f, 2, N),
        ),
    ] {
        let cpu1 = one.1[0];
        let cpu2 = two.1.iter().sum::<f64>() / two.1.len() as f64;
        let wall1 = N as f64 / one.0.as_secs_f64();
        let wall2 = 2.0 * N as f64 / two.0.as_secs_f64();
        println!(
            "{name}: 1 task {cpu1:.0} CPU ns/request, 2 tasks {cpu2:.0} CPU ns/request \
             (each {:?}); 2 workers / 1 by CPU time: {:.2}; by the wall clock: \
             {:.2} M/s / {:.2} M/s = {:.2}",
            two.1.iter().map(|c| c.round()).collect::<Vec<_>>(),
            2.0 * cpu1 / cpu2,
            wall2 / 1e6,
            wall1 / 1e6,
            wall2 / wall1,
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hot_path, workers
}

fn main() {
    if std::env::args().any(|a| a == "scaling") {
        return scaling();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
