//! Time per request through the layer and through tower-http's static bearer,
//! measured interleaved: the variants take turns in short batches, round after round,
//! so that a slower or busier stretch of the machine weighs on all of them alike. The
//! ratios are the medians, over the rounds, of each round's ratio.
//!
//! Run: `cargo bench --bench ratios`. Environment variables change the runs:
//!
//! - `RATIOS_BATCH=250000` makes each batch longer (the default is 50,000 requests);
//! - `RATIOS_WARM=0` times each batch from its first request: the first pass over
//!   10,000 tenants then finds their lines pushed out of the caches by the other
//!   variants' batches, which a layer in a loop over its tenants does not. By default
//!   each batch first sends one pass over the tenants, 10,000 requests, untimed (every
//!   variant alike), so that the timed requests are the tenants in turn as a loop
//!   keeps sending them;
//! - `RATIOS_ONLY=static_bearer_tenant_ext,tenants` runs only the variants named (the
//!   ratios whose two variants both ran are printed).
//!
//! `cargo bench --bench ratios -- --latency` instead prints what one load costs on this
//! machine when it waits for the one before, by the size of the memory it walks; a run
//! of the variants ends with two of those figures (625 KB and 6,250 KB walked), which
//! tell how busy the machine's caches were at the time.
//!
//! Each batch sends its requests with `ready().await` and `call(..).await`
//! in a loop inside one task on a current-thread runtime (one `block_on` per batch, not
//! per request), to the in-memory echo service, with a 900-character token and warm
//! tokens (accepted: the echo answers `200`):
//!
//! - `static_bearer`: tower-http's `AddAuthorizationLayer::bearer` (the floor);
//! - `own_token`: `HelseIdLayer` with its own token;
//! - `own_token_no_retry`: with `retry_on_invalid_token(false)`;
//! - `own_token_copies`: with `retry_after_acceptance(true)` (every request keeps a copy
//!   for a retry);
//! - `static_bearer_tenant_ext`: the static bearer with a `Tenant` in each request's
//!   extensions (the floor of the tenants' rows: the extension's allocation is the
//!   caller's);
//! - `tenants`, `tenants_copies`: `HelseIdLayer` with 10,000 tenants in turn;
//! - `tenants_one`, `tenants_1000`, `tenants_3000`: one tenant, and 1,000 and 3,000 in
//!   turn: how a hit's cost grows as the tenants' slots stop fitting in the caches;
//! - `tenants_array`: the least a tenant's token can cost, for a scale: not a layer
//!   anyone could use, but each of the 10,000 tenants' `Authorization` values (copies in
//!   one buffer, as the layer's front keeps them) read from an array at the index its
//!   organisation number gives through a fixed shuffle, with no lookup, no key to
//!   compare, no expiry and no acceptance;
//! - `tenants_array_lines`: the same with each value alone in a 64-byte line, as a
//!   slot of the front is (640 KB for 10,000 tenants, against 400 KB);
//! - `tenants_array_one`: the same with one tenant, whose line stays in cache: the pair
//!   of `tenants_one`.

#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

mod support;

use std::borrow::Borrow;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use helseid::assertion::Tenant;
use helseid::auth::HelseIdLayer;
use http::{HeaderValue, Request, Response};
use support::{bearer_token, echo, source, tenants};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::auth::AddAuthorizationLayer;

const TENANTS: usize = 10_000;
/// Requests per batch, unless `RATIOS_BATCH` says otherwise.
const BATCH: u64 = 50_000;
/// Rounds: every variant sends one batch per round.
const ROUNDS: usize = 41;

/// The time `n` requests made by `make` take through `svc`, in one task, after `warm`
/// requests made by `make` that are not timed.
fn batch<S>(
    rt: &Runtime,
    svc: &mut S,
    warm: u64,
    n: u64,
    make: &dyn Fn(usize) -> Request<()>,
) -> Duration
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        send(svc, warm, make).await;
        let start = Instant::now();
        send(svc, n, make).await;
        start.elapsed()
    })
}

/// Sends `n` requests made by `make` through `svc`, one after another.
async fn send<S>(svc: &mut S, n: u64, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    for i in 0..n {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(make(i as usize))
            .await
            .unwrap();
        black_box(response);
    }
}

/// A number of requests from the environment variable `name`, or `default`.
fn requests(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}: a number of requests, not {value:?}")),
        Err(_) => default,
    }
}

/// `0..n` shuffled: Fisher-Yates with xorshift, the same shuffle every run.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// See `tenants_array` in the module docs.
#[derive(Clone)]
struct TenantsArray<S, V> {
    values: Arc<[V]>,
    /// Each tenant's index in `values`: a shuffle, so that tenants in turn read the
    /// values in no order a prefetcher would follow, as a table's entries are.
    order: Arc<[u32]>,
    inner: S,
}

/// A value alone in a cache line, as the front's slots are.
#[derive(Clone)]
#[repr(align(64))]
struct Line(HeaderValue);

impl From<HeaderValue> for Line {
    fn from(value: HeaderValue) -> Self {
        Line(value)
    }
}

impl Borrow<HeaderValue> for Line {
    fn borrow(&self) -> &HeaderValue {
        &self.0
    }
}

impl<S, V: From<HeaderValue>> TenantsArray<S, V> {
    /// `n` tenants' values over `inner`: `token`, copies side by side in one buffer.
    fn new(token: &str, n: usize, inner: S) -> Self {
        let value = format!("Bearer {token}");
        let buffer = bytes::Bytes::from(value.repeat(n));
        let values = (0..n)
            .map(|i| {
                let bytes = buffer.slice(i * value.len()..(i + 1) * value.len());
                let mut header = HeaderValue::from_maybe_shared(bytes).unwrap();
                header.set_sensitive(true);
                V::from(header)
            })
            .collect();
        let order: Vec<u32> = shuffled(n).into_iter().map(|i| i as u32).collect();
        TenantsArray {
            values,
            order: order.into(),
            inner,
        }
    }
}

impl<S, V, B> Service<Request<B>> for TenantsArray<S, V>
where
    S: Service<Request<B>, Response = Response<()>, Error = Infallible>,
    V: Borrow<HeaderValue>,
{
    type Response = Response<()>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(Tenant::Multi { parent, .. }) = request.extensions().get::<Tenant>() {
            let number = parent
                .as_str()
                .bytes()
                .fold(0usize, |n, digit| n * 10 + usize::from(digit - b'0'));
            let index = self.order[number % self.order.len()] as usize;
            let value = self.values[index].borrow().clone();
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        self.inner.call(request)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A variant's name, and what sends one batch of it (`warm` untimed requests, then `n`
/// timed).
type Variant<'a> = (&'static str, Box<dyn FnMut(u64, u64) -> Duration + 'a>);

/// The variant `name`: batches of `make`'s requests through `svc`.
fn variant<'a, S>(
    rt: &'a Runtime,
    name: &'static str,
    svc: &'a mut S,
    make: &'a dyn Fn(usize) -> Request<()>,
) -> Variant<'a>
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    (name, Box::new(move |warm, n| batch(rt, svc, warm, n, make)))
}

/// Prints the time of a load that waits for the one before, by the size of the memory
/// walked, for each number of 64-byte `lines` given.
fn latency(lines: &[usize]) {
    for &lines in lines {
        println!(
            "{:>9} KB walked: {:>6.1} ns per load",
            lines * 64 / 1024,
            walk(lines)
        );
    }
}

/// The time of a load that waits for the one before, in a walk of a random cycle of
/// `lines` 64-byte lines (the best of three walks).
fn walk(lines: usize) -> f64 {
    #[repr(align(64))]
    struct Line {
        next: usize,
    }
    const LOADS: u32 = 10_000_000;
    let order = shuffled(lines);
    let mut cycle: Vec<Line> = (0..lines).map(|_| Line { next: 0 }).collect();
    for (k, &at) in order.iter().enumerate() {
        cycle[at].next = order[(k + 1) % lines];
    }
    let mut at = 0;
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..LOADS {
                at = cycle[at].next;
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(LOADS)
        })
        .fold(f64::INFINITY, f64::min);
    black_box(at);
    best
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    if std::env::args().any(|arg| arg == "--latency") {
        return latency(&[512, 1_000, 10_000, 16_000, 30_000, 100_000, 1_000_000]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = bearer_token();
    let all = tenants(TENANTS);
    let plain = |_: usize| Request::new(());
    // Requests for the first `n` tenants in turn.
    let in_turn = |n: usize| {
        let all = &all;
        move |i: usize| {
            let mut request = Request::new(());
            request.extensions_mut().insert(all[i % n]);
            request
        }
    };
    let (with_tenant, one_tenant, t1000, t3000) =
        (in_turn(TENANTS), in_turn(1), in_turn(1_000), in_turn(3_000));
    let layer = |retry: bool, copies: bool| {
        HelseIdLayer::builder(source(token.clone()))
            .retry_on_invalid_token(retry)
            .retry_after_acceptance(copies)
            .build()
    };
    let helseid = |layer: HelseIdLayer| {
        ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(echo))
    };
    let static_bearer = || {
        ServiceBuilder::new()
            .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
            .service(tower::service_fn(echo))
    };
    let (rt, plain) = (&rt, &plain);
    let (with_tenant, one_tenant, t1000, t3000) = (&with_tenant, &one_tenant, &t1000, &t3000);
    let mut floor = static_bearer();
    let mut floor_ext = static_bearer();
    let mut array: TenantsArray<_, HeaderValue> =
        TenantsArray::new(&token, TENANTS, tower::service_fn(echo));
    let mut array_lines: TenantsArray<_, Line> =
        TenantsArray::new(&token, TENANTS, tower::service_fn(echo));
    let mut array_one: TenantsArray<_, Line> =
        TenantsArray::new(&token, 1, tower::service_fn(echo));
    let mut own = helseid(layer(true, false));
    let mut own_no_retry = helseid(layer(false, false));
    let mut own_copies = helseid(layer(true, true));
    let mut tenants = helseid(layer(true, false));
    let mut tenants_copies = helseid(layer(true, true));
    let mut tenants_one = helseid(layer(true, false));
    let mut tenants_1000 = helseid(layer(true, false));
    let mut tenants_3000 = helseid(layer(true, false));
    // Every token fetched, accepted and in front before the first batch.
    batch(rt, &mut own, 0, 10, plain);
    batch(rt, &mut own_no_retry, 0, 10, plain);
    batch(rt, &mut own_copies, 0, 10, plain);
    let fill = batch(rt, &mut tenants, 0, TENANTS as u64, with_tenant);
    println!(
        "first requests of {TENANTS} tenants (each fetches and puts a token in front): {:.1} ms",
        fill.as_secs_f64() * 1e3
    );
    batch(rt, &mut tenants, 0, TENANTS as u64, with_tenant);
    batch(rt, &mut tenants_copies, 0, 2 * TENANTS as u64, with_tenant);
    batch(rt, &mut tenants_one, 0, 10, one_tenant);
    batch(rt, &mut tenants_1000, 0, 2_000, t1000);
    batch(rt, &mut tenants_3000, 0, 6_000, t3000);
    let batch_len = requests("RATIOS_BATCH", BATCH);
    let warm = requests("RATIOS_WARM", TENANTS as u64);
    let mut variants: Vec<Variant<'_>> = vec![
        variant(rt, "static_bearer", &mut floor, plain),
        variant(rt, "own_token", &mut own, plain),
        variant(rt, "own_token_no_retry", &mut own_no_retry, plain),
        variant(rt, "own_token_copies", &mut own_copies, plain),
        variant(rt, "static_bearer_tenant_ext", &mut floor_ext, with_tenant),
        variant(rt, "tenants", &mut tenants, with_tenant),
        variant(rt, "tenants_copies", &mut tenants_copies, with_tenant),
        variant(rt, "tenants_one", &mut tenants_one, one_tenant),
        variant(rt, "tenants_1000", &mut tenants_1000, t1000),
        variant(rt, "tenants_3000", &mut tenants_3000, t3000),
        variant(rt, "tenants_array", &mut array, with_tenant),
        variant(rt, "tenants_array_lines", &mut array_lines, with_tenant),
        variant(rt, "tenants_array_one", &mut array_one, with_tenant),
    ];
    if let Ok(only) = std::env::var("RATIOS_ONLY") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        variants.retain(|(name, _)| only.contains(name));
    }
    // One round to warm up, not counted.
    for (_, run) in variants.iter_mut() {
        run(warm, batch_len);
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        // Each round starts with another variant, so that none is always first.
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            let took = (variants[v].1)(warm, batch_len);
            ns[v].push(took.as_nanos() as f64 / batch_len as f64);
        }
    }
    let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
    // A variant left out by `RATIOS_ONLY` has no column.
    let column = |name: &str| {
        let at = names.iter().position(|n| *n == name)?;
        Some(&ns[at])
    };
    for (name, values) in names.iter().zip(&ns) {
        println!(
            "{name:<26} {:>8.1} ns per request (median of {ROUNDS} rounds of {batch_len}, each after {warm} untimed)",
            median(&mut values.clone())
        );
    }
    let ratio = |top: &str, floor: &str| {
        let (top, floor) = (column(top)?, column(floor)?);
        let mut ratios: Vec<f64> = top.iter().zip(floor).map(|(t, f)| t / f).collect();
        Some(median(&mut ratios))
    };
    // Each variant over its floor, under its own name; then the layer's tenants over
    // the two scales of 10,000 values.
    let over_bearer = ["own_token", "own_token_no_retry", "own_token_copies"];
    let over_bearer_ext = [
        "tenants",
        "tenants_copies",
        "tenants_one",
        "tenants_1000",
        "tenants_3000",
        "tenants_array",
        "tenants_array_lines",
        "tenants_array_one",
    ];
    let rows = over_bearer
        .map(|variant| (variant, variant, "static_bearer"))
        .into_iter()
        .chain(over_bearer_ext.map(|variant| (variant, variant, "static_bearer_tenant_ext")))
        .chain([
            ("tenants_to_array", "tenants", "tenants_array"),
            ("tenants_to_array_lines", "tenants", "tenants_array_lines"),
        ]);
    for (label, top, floor) in rows {
        if let Some(ratio) = ratio(top, floor) {
            println!("time ratio {label} {ratio:.3}");
        }
    }
    // How far this machine's memory was at the time: 10,000 lines are the slots of
    // 10,000 tenants; 100,000 lines are more than the L2 cache holds.
    latency(&[TENANTS, 100_000]);
}
