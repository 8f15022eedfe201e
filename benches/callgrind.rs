//! Instructions per request under valgrind's callgrind: deterministic, so CI can hold
//! the layer to a bound without a timing test.
//!
//! Run: `cargo bench --bench callgrind` (needs `valgrind` on the `PATH`). It runs itself
//! under `valgrind --tool=callgrind --toggle-collect=*measured*` once per variant: each
//! run sets its variant up, sends `WARM` requests, then counts the instructions of
//! `N` more, sent in a loop inside one task on a current-thread runtime (a 900-character
//! token, `Request<()>`, an in-memory echo service). It prints instructions per request
//! and the ratios, one `ratio <name> <value>` line each for `.ci/callgrind`:
//!
//! - `own_token`: `HelseIdLayer` with its own warm token, which the service has
//!   accepted (so requests keep no copy for a retry) / tower-http's
//!   `AddAuthorizationLayer::bearer` (the static bearer);
//! - `own_token_client`: the same over a client-like inner service (the echo service
//!   behind an `Arc`, so that a clone of it writes a reference count, as a hyper-util
//!   client's clones do) / the static bearer over the same service;
//! - `own_token_clone`: `own_token` with a clone of the service per request
//!   (`svc.clone().oneshot(request)`) / the static bearer cloned the same way;
//! - `own_token_no_retry`, `tenants_no_retry`: the same with
//!   `retry_on_invalid_token(false)` (no copy kept for a retry);
//! - `own_token_copies`, `tenants_copies`: the same with `retry_after_acceptance(true)`
//!   (every request keeps a copy for a retry, in a box);
//! - `tenants`: `HelseIdLayer` with 10,000 warm tenants in turn (a `Tenant` in each
//!   request's extensions) / the static bearer with the same requests (the extension's
//!   allocation is the caller's, not the layer's);
//! - `dpop`: `HelseIdLayer` with DPoP / (the static bearer + one `DpopKey::proof`).
//! - `typed_cpe` (with `--features cpe`): the typed CPE client's
//!   `get_communication_party` through `HelseIdLayer` over an in-memory API that answers
//!   a party / the same call written by hand on the same stack (`raw_cpe`: the request
//!   built with `http`, the body collected and decoded into the same type with
//!   serde_json). The difference is the typed client's own cost per call (the
//!   type-erased stack, the request built by helseid-codegen's rewrite of progenitor's
//!   code, the error wrapper).
//!
//! `cargo bench --bench callgrind -- memory` measures, without valgrind, the resident
//! memory per cached token with 100,000 tenants warm in one layer.

#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

#[path = "support/callgrind.rs"]
mod callgrind;
mod support;

use std::hint::black_box;

use helseid::auth::HelseIdLayer;
use helseid::cache::{CacheSettings, TokenCache};
use helseid::dpop::DpopKey;
use http::{Method, Request, Response, Uri};
use support::{bearer_token, echo, source, tenants};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::auth::AddAuthorizationLayer;

const TENANTS: usize = 10_000;
/// Requests counted per variant (two rounds of the tenants).
const N: usize = 20_000;
/// Requests sent before counting (one round of the tenants).
const WARM: usize = 10_000;
const URL: &str = "https://cpapi.test.grunndata.nhn.no/api/v1/event?fromSequenceNumber=1";
#[cfg(feature = "cpe")]
const TYPED: [&str; 2] = ["raw_cpe", "typed_cpe"];
#[cfg(not(feature = "cpe"))]
const TYPED: [&str; 0] = [];
const VARIANTS: [&str; 15] = [
    "bare",
    "static_bearer",
    "own_token",
    "static_bearer_clone",
    "own_token_clone",
    "static_bearer_client",
    "own_token_client",
    "own_token_no_retry",
    "own_token_copies",
    "static_bearer_tenant_ext",
    "tenants",
    "tenants_no_retry",
    "tenants_copies",
    "dpop_proof",
    "dpop",
];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends `n` requests made by `make` through `svc`, one after another in one task.
fn drive<S, E>(rt: &Runtime, svc: &mut S, n: usize, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E>,
    E: std::fmt::Debug,
{
    rt.block_on(async {
        for i in 0..n {
            let response = svc.ready().await.unwrap().call(make(i)).await.unwrap();
            black_box(response);
        }
    });
}

#[inline(never)]
fn warm_up<S, E>(rt: &Runtime, svc: &mut S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E>,
    E: std::fmt::Debug,
{
    drive(rt, svc, WARM, make);
}

#[inline(never)]
fn measured<S, E>(rt: &Runtime, svc: &mut S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E>,
    E: std::fmt::Debug,
{
    drive(rt, svc, N, make);
}

fn run<S, E>(rt: &Runtime, mut svc: S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E>,
    E: std::fmt::Debug,
{
    warm_up(rt, &mut svc, make);
    measured(rt, &mut svc, make);
}

/// Sends `n` requests, each through a clone of `svc` of its own
/// (`svc.clone().oneshot(request)`), as code that shares one client across tasks does.
fn drive_clones<S, E>(rt: &Runtime, svc: &S, n: usize, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    rt.block_on(async {
        for i in 0..n {
            let response = svc.clone().oneshot(make(i)).await.unwrap();
            black_box(response);
        }
    });
}

#[inline(never)]
fn measured_clones<S, E>(rt: &Runtime, svc: &S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    drive_clones(rt, svc, N, make);
}

/// `run` with a clone of `svc` per request.
fn run_clones<S, E>(rt: &Runtime, svc: S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    drive_clones(rt, &svc, WARM, make);
    measured_clones(rt, &svc, make);
}

/// The echo service behind an `Arc`, as a client's clones share its pool: cloning it
/// writes a reference count.
fn client_like() -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<Response<()>, std::convert::Infallible>>,
> + Clone {
    let pool = std::sync::Arc::new(());
    tower::service_fn(move |request| {
        let _pool = &pool;
        echo(request)
    })
}

#[inline(never)]
fn measured_proofs(key: &DpopKey, uri: &Uri) {
    for _ in 0..N / 20 {
        black_box(key.proof(&Method::GET, uri, None).unwrap());
    }
}

/// Sets `variant` up and sends its requests (the process valgrind watches).
fn measure(variant: &str) {
    let rt = runtime();
    let token = bearer_token();
    let tenants = tenants(TENANTS);
    let plain = |_: usize| Request::new(());
    let with_tenant = |i: usize| {
        let mut request = Request::new(());
        request.extensions_mut().insert(tenants[i % TENANTS]);
        request
    };
    let api = |_: usize| Request::get(URL).body(()).unwrap();
    let static_bearer = || {
        ServiceBuilder::new()
            .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
            .service(tower::service_fn(echo))
    };
    let helseid = |layer: HelseIdLayer| {
        ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(echo))
    };
    let layer = HelseIdLayer::builder(source(token.clone())).build();
    match variant {
        "bare" => run(&rt, tower::service_fn(echo), &plain),
        "static_bearer" => run(&rt, static_bearer(), &plain),
        "own_token" => run(&rt, helseid(layer.clone()), &plain),
        "static_bearer_clone" => run_clones(&rt, static_bearer(), &plain),
        "own_token_clone" => run_clones(&rt, helseid(layer.clone()), &plain),
        "static_bearer_client" => run(
            &rt,
            ServiceBuilder::new()
                .layer(AddAuthorizationLayer::bearer(&token).as_sensitive(true))
                .service(client_like()),
            &plain,
        ),
        "own_token_client" => run(
            &rt,
            ServiceBuilder::new()
                .layer(layer.clone())
                .service(client_like()),
            &plain,
        ),
        "static_bearer_tenant_ext" => run(&rt, static_bearer(), &with_tenant),
        "tenants" => run(&rt, helseid(layer.clone()), &with_tenant),
        "own_token_no_retry" | "tenants_no_retry" => {
            let layer = HelseIdLayer::builder(source(token.clone()))
                .retry_on_invalid_token(false)
                .build();
            match variant {
                "own_token_no_retry" => run(&rt, helseid(layer), &plain),
                _ => run(&rt, helseid(layer), &with_tenant),
            }
        }
        "own_token_copies" | "tenants_copies" => {
            let layer = HelseIdLayer::builder(source(token.clone()))
                .retry_after_acceptance(true)
                .build();
            match variant {
                "own_token_copies" => run(&rt, helseid(layer), &plain),
                _ => run(&rt, helseid(layer), &with_tenant),
            }
        }
        "dpop" => {
            let layer = HelseIdLayer::builder(source(token.clone()))
                .dpop(DpopKey::generate().unwrap())
                .build();
            // Fewer requests: a proof costs a hundred requests' worth.
            let mut svc = helseid(layer);
            rt.block_on(async {
                svc.ready().await.unwrap().call(api(0)).await.unwrap();
            });
            measured_dpop(&rt, &mut svc, &api);
        }
        "dpop_proof" => {
            let key = DpopKey::generate().unwrap();
            let uri: Uri = URL.parse().unwrap();
            black_box(key.proof(&Method::GET, &uri, None).unwrap());
            measured_proofs(&key, &uri);
        }
        #[cfg(feature = "cpe")]
        "raw_cpe" | "typed_cpe" => typed::measure(&rt, variant, layer.clone()),
        other => panic!("unknown variant {other}"),
    }
    let stats = layer.cache().stats();
    assert!(stats.fetches <= TENANTS as u64 + 1, "{stats:?}");
}

#[inline(never)]
fn measured_dpop<S, E>(rt: &Runtime, svc: &mut S, make: &dyn Fn(usize) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<()>, Error = E>,
    E: std::fmt::Debug,
{
    drive(rt, svc, N / 20, make);
}

/// Instructions per request of `variant`, counted by callgrind.
fn count(variant: &str) -> f64 {
    let total = callgrind::instructions("callgrind", variant);
    let n = match variant {
        "dpop" | "dpop_proof" => N / 20,
        "raw_cpe" | "typed_cpe" => N / 10,
        _ => N,
    };
    total as f64 / n as f64
}

/// Resident memory (bytes) of this process.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

/// Resident memory per cached token with `n` tenants warm in one layer.
fn memory(n: usize) {
    let rt = runtime();
    let token = bearer_token();
    let tenants = tenants(n);
    let mut settings = CacheSettings::default();
    settings.max_capacity = 2 * n as u64;
    let layer = HelseIdLayer::builder(source(token))
        .cache(TokenCache::with_settings(settings))
        .build();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(tower::service_fn(echo));
    // The first request starts what every layer has (runtime, front's clock).
    let with_tenant = |i: usize| {
        let mut request = Request::new(());
        request.extensions_mut().insert(tenants[i]);
        request
    };
    drive(&rt, &mut svc, 1, &with_tenant);
    let before = rss();
    drive(&rt, &mut svc, n, &with_tenant);
    // Every tenant once more: all from the front.
    drive(&rt, &mut svc, n, &with_tenant);
    let after = rss();
    let stats = layer.cache().stats();
    assert_eq!(stats.fetches, n as u64, "{stats:?}");
    println!(
        "memory: {n} tenants, {:.0} bytes per cached token ({:.2} KiB; resident {} MiB)",
        (after - before) as f64 / n as f64,
        (after - before) as f64 / n as f64 / 1024.0,
        after / (1024 * 1024)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["measure", variant] = args.as_slice() {
        return measure(variant);
    }
    if args.contains(&"memory") {
        return memory(100_000);
    }
    let mut per: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for variant in VARIANTS.into_iter().chain(TYPED) {
        let n = count(variant);
        println!("{variant:<26} {n:>12.1} instructions per request");
        per.insert(variant, n);
    }
    let ratios = [
        ("own_token", per["own_token"] / per["static_bearer"]),
        (
            "own_token_clone",
            per["own_token_clone"] / per["static_bearer_clone"],
        ),
        (
            "own_token_client",
            per["own_token_client"] / per["static_bearer_client"],
        ),
        (
            "own_token_no_retry",
            per["own_token_no_retry"] / per["static_bearer"],
        ),
        (
            "own_token_copies",
            per["own_token_copies"] / per["static_bearer"],
        ),
        ("tenants", per["tenants"] / per["static_bearer_tenant_ext"]),
        (
            "tenants_no_retry",
            per["tenants_no_retry"] / per["static_bearer_tenant_ext"],
        ),
        (
            "tenants_copies",
            per["tenants_copies"] / per["static_bearer_tenant_ext"],
        ),
        (
            "dpop",
            per["dpop"] / (per["static_bearer"] + per["dpop_proof"]),
        ),
    ];
    for (name, ratio) in ratios {
        println!("ratio {name} {ratio:.3}");
    }
    if let (Some(typed), Some(raw)) = (per.get("typed_cpe"), per.get("raw_cpe")) {
        println!(
            "typed client: {:.0} instructions per call on top of the same call by hand",
            typed - raw
        );
        println!("ratio typed_cpe {:.3}", typed / raw);
    }
}

/// The typed CPE client against the same call written by hand, on one stack.
#[cfg(feature = "cpe")]
mod typed {
    use std::convert::Infallible;
    use std::hint::black_box;

    use bytes::Bytes;
    use helseid::auth::HelseIdLayer;
    use helseid::cpe::types::CommunicationParty;
    use http::{Request, Response, header};
    use http_body_util::{BodyExt, Full};
    use tokio::runtime::Runtime;
    use tower::{ServiceBuilder, ServiceExt};

    const BASE: &str = "https://cpe.test.grunndata.nhn.no";
    const HER_ID: i32 = 8_142_519;
    const PARTY: &str = r#"{"HerId":8142519,"Name":"Legekontoret","Type":"Organization","ParentHerId":null,"ParentName":null,"OrganizationNumber":123456785,"Municipality":"0301","Valid":{"From":"2024-01-01T00:00:00.000+01:00"}}"#;

    /// The in-memory API: every call gets the party.
    fn api(
        _request: Request<Full<Bytes>>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        let mut response = Response::new(Full::new(Bytes::from_static(PARTY.as_bytes())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        std::future::ready(Ok(response))
    }

    #[inline(never)]
    fn measured_typed(rt: &Runtime, client: &helseid::cpe::Client, n: usize) {
        typed_calls(rt, client, n);
    }

    fn typed_calls(rt: &Runtime, client: &helseid::cpe::Client, n: usize) {
        rt.block_on(async {
            for _ in 0..n {
                let party = client.get_communication_party(HER_ID).await.unwrap();
                black_box(party.into_inner());
            }
        });
    }

    #[inline(never)]
    fn measured_raw<S>(rt: &Runtime, service: &S, n: usize)
    where
        S: tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>> + Clone,
        S::Error: std::fmt::Debug,
    {
        raw_calls(rt, service, n);
    }

    fn raw_calls<S>(rt: &Runtime, service: &S, n: usize)
    where
        S: tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>> + Clone,
        S::Error: std::fmt::Debug,
    {
        let url = format!("{BASE}/CommunicationParties/{HER_ID}");
        rt.block_on(async {
            for _ in 0..n {
                let request = Request::get(url.as_str())
                    .header(header::ACCEPT, "application/json")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let party: CommunicationParty = serde_json::from_slice(&body).unwrap();
                black_box(party);
            }
        });
    }

    pub(super) fn measure(rt: &Runtime, variant: &str, layer: HelseIdLayer) {
        let stack = ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(api));
        let n = super::N / 10;
        match variant {
            "typed_cpe" => {
                let client = helseid::cpe::Client::from_service(BASE, stack).unwrap();
                typed_calls(rt, &client, 100);
                measured_typed(rt, &client, n);
            }
            _ => {
                raw_calls(rt, &stack, 100);
                measured_raw(rt, &stack, n);
            }
        }
    }
}
