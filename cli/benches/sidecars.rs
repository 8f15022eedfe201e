//! The sidecars under load: requests per second and p50/p99 latency through
//! `helseid proxy` and `helseid gate`, each set beside a plain forwarder.
//!
//! Run: `cargo bench -p helseid-cli --bench sidecars` (add `--features metrics` for the
//! sidecars with their metrics on).
//!
//! In one run, on 127.0.0.1: an upstream (hyper, HTTP/1) in this process answers
//! `200 ok` at once. Each forwarder runs in a process of its own, with the same
//! runtime (tokio's multi-thread) and the same HTTP/1 server settings as the sidecars:
//!
//! - `plain`: a hyper forwarder written here, over the library's HTTPS client (the one
//!   the sidecars send with): the request's URI rewritten, hop-by-hop headers removed,
//!   `Host` set, the answer streamed back. The same path as the sidecars' minus the
//!   layer.
//! - `static`: the same forwarder adding a static `Authorization: Bearer` header of
//!   900 characters (what a user would compare the proxy with: the floor).
//! - `proxy`: `helseid proxy` (the built binary) with one Bearer route to the upstream,
//!   against its embedded emulator as the issuer; the token is warm before the run.
//! - `gate bearer` and `gate dpop`: `helseid gate --dpop allowed` in front of the
//!   upstream, its embedded emulator the issuer; Bearer requests with one cached token,
//!   and DPoP requests with a bound token and a fresh proof each (made before the run,
//!   so that the clients' signing is not timed).
//!
//! Each forwarder is measured at 1, 16 and 64 keep-alive connections from clients in
//! this process (a connection is a task sending one request after another). A run sends
//! `REQUESTS` requests after `WARM` of warm-up; at each concurrency the forwarders take
//! turns for `ROUNDS` rounds and the median round of each is kept. The table gives
//! requests per second, p50 and p99, the ratio of throughput and the p99 added to
//! `plain`'s at the same concurrency, and the forwarder process's CPU time per request
//! (user and system, from `/proc`; the figure that moves least when the machine is
//! busy with other work). Only figures of one run are compared: the
//! machine's speed moves.

#![allow(missing_docs, clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use helseid::config::ClientConfig;
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

const BIN: &str = env!("CARGO_BIN_EXE_helseid");
/// Set in a child process of this bench: it runs a plain forwarder (`plain`, `static`).
const ROLE: &str = "HELSEID_SIDECARS_BENCH_ROLE";
const CONNECTIONS: [usize; 3] = [1, 16, 64];
const REQUESTS: usize = 10_000;
const WARM: usize = 1_000;
/// Each forwarder is measured this many times at each concurrency, in turn with the
/// others; the table has the median round (by throughput).
const ROUNDS: usize = 3;
const SCOPE: &str = "nhn:cp-api/access";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let upstream = std::env::args()
            .next_back()
            .expect("the upstream's address");
        return forwarder(&role, &upstream);
    }
    // `cargo bench` passes `--bench`; a filter is not supported (one table, one run).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

// ---------------------------------------------------------------------------------------
// The run

/// One measured configuration.
struct Figures {
    name: &'static str,
    connections: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// The forwarder process's CPU time (user and system) per request.
    cpu: Duration,
}

async fn run() {
    let upstream = upstream().await;
    println!(
        "sidecars: upstream at http://{upstream}; {REQUESTS} requests per run after {WARM} of warm-up, {ROUNDS} rounds"
    );

    // Every forwarder runs from the start; each is idle while another is measured.
    let forwarder = |role: &str| {
        Process::spawn(
            Command::new(std::env::current_exe().expect("this bench"))
                .env(ROLE, role)
                .arg(upstream.to_string()),
            "forwarder listening on http://",
        )
    };
    let plain = forwarder("plain");
    let floor = forwarder("static");
    // The proxy: its embedded emulator, one Bearer route; the token warmed up.
    let route = format!("/a=http://{upstream}");
    let proxy = Process::spawn(
        Command::new(BIN).args(["proxy", "--listen", "127.0.0.1:0", "--route", &route]),
        "proxy listening on http://",
    );
    let proxy_url = format!("http://{}/a/bench", proxy.addr);
    let warm = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let answer = warm
        .request(
            Request::get(&proxy_url)
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("the proxy answers");
    assert_eq!(answer.status(), StatusCode::OK, "the proxy forwards");

    // The gate: its embedded emulator as the issuer; Bearer and DPoP.
    let upstream_url = format!("http://{upstream}");
    let gate = Process::spawn(
        Command::new(BIN).args([
            "gate",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream_url,
            "--dpop",
            "allowed",
        ]),
        "gate listening on http://",
    );
    let config_file = gate
        .before
        .iter()
        .find_map(|line| {
            let rest = line.split("helseid token --config ").nth(1)?;
            rest.split(" --scope").next().map(str::to_owned)
        })
        .expect("the gate names its client's configuration file");
    let config = ClientConfig::from_file(&config_file).expect("the demo client's configuration");
    let endpoint = TokenEndpoint::new(config).expect("endpoint");
    let bearer = endpoint
        .request(&TokenRequest::client_credentials([SCOPE]))
        .await
        .expect("a Bearer token");
    let key = DpopKey::generate().expect("a DPoP key");
    let bound = endpoint
        .request(&TokenRequest::client_credentials([SCOPE]).with_dpop(key.clone()))
        .await
        .expect("a DPoP-bound token");
    let gate_url = format!("http://{}/bench", gate.addr);
    let gate_uri: Uri = gate_url.parse().expect("uri");
    let authorization =
        HeaderValue::from_str(&format!("Bearer {}", bearer.secret())).expect("a header value");
    let dpop = HeaderValue::from_str(&format!("DPoP {}", bound.secret())).expect("a header value");

    let plain_url = format!("http://{}/bench", plain.addr);
    let floor_url = format!("http://{}/bench", floor.addr);
    let mut table: Vec<Figures> = Vec::new();
    for connections in CONNECTIONS {
        // The forwarders in turn, round after round, so that a change in the machine's
        // speed falls on all of them; each one's median round is kept.
        let mut rounds: Vec<Vec<Figures>> = (0..5).map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            let none = Headers::none();
            rounds[0].push(measure("plain", connections, &plain, &plain_url, &none).await);
            rounds[1].push(measure("static", connections, &floor, &floor_url, &none).await);
            rounds[2].push(measure("proxy", connections, &proxy, &proxy_url, &none).await);
            let headers = Headers::bearer(authorization.clone());
            rounds[3].push(measure("gate bearer", connections, &gate, &gate_url, &headers).await);
            // A fresh proof for every request (the gate refuses a replayed one).
            let headers = Headers::dpop(dpop.clone(), &key, &gate_uri, bound.secret(), connections);
            rounds[4].push(measure("gate dpop", connections, &gate, &gate_url, &headers).await);
        }
        for mut figures in rounds {
            figures.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            table.push(figures.swap_remove(figures.len() / 2));
        }
    }
    drop((plain, floor, proxy, gate));
    print(&table);
}

/// Prints the table: each row beside `plain` at the same concurrency.
fn print(table: &[Figures]) {
    println!();
    println!(
        "| forwarder | connections | requests/s | p50 µs | p99 µs | throughput / plain | p99 added µs | CPU µs/request | CPU added µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in table {
        let plain = table
            .iter()
            .find(|p| p.name == "plain" && p.connections == row.connections)
            .expect("plain at each concurrency");
        let added = row.p99.as_secs_f64() - plain.p99.as_secs_f64();
        let cpu_added = row.cpu.as_secs_f64() - plain.cpu.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:+.0} | {:.1} | {:+.1} |",
            row.name,
            row.connections,
            row.per_second,
            row.p50.as_secs_f64() * 1e6,
            row.p99.as_secs_f64() * 1e6,
            row.per_second / plain.per_second,
            added * 1e6,
            row.cpu.as_secs_f64() * 1e6,
            cpu_added * 1e6,
        );
    }
}

// ---------------------------------------------------------------------------------------
// The clients

/// What each request carries: nothing, one `Authorization`, or `Authorization` and a
/// proof of its own (per connection, one per request, warm-up included).
#[derive(Clone)]
struct Headers {
    authorization: Option<HeaderValue>,
    proofs: Option<Arc<Vec<Vec<HeaderValue>>>>,
}

impl Headers {
    fn none() -> Self {
        Headers {
            authorization: None,
            proofs: None,
        }
    }

    fn bearer(authorization: HeaderValue) -> Self {
        Headers {
            authorization: Some(authorization),
            proofs: None,
        }
    }

    fn dpop(
        authorization: HeaderValue,
        key: &DpopKey,
        uri: &Uri,
        token: &str,
        connections: usize,
    ) -> Self {
        let per_connection = (WARM + REQUESTS).div_ceil(connections);
        let proofs = (0..connections)
            .map(|_| {
                (0..per_connection)
                    .map(|_| {
                        key.proof(&Method::GET, uri, Some(token))
                            .expect("a proof")
                            .header_value()
                            .clone()
                    })
                    .collect()
            })
            .collect();
        Headers {
            authorization: Some(authorization),
            proofs: Some(Arc::new(proofs)),
        }
    }
}

/// Sends `WARM` then `REQUESTS` requests to `url` over `connections` keep-alive
/// connections; the figures of the second part.
async fn measure(
    name: &'static str,
    connections: usize,
    process: &Process,
    url: &str,
    headers: &Headers,
) -> Figures {
    let uri: Uri = url.parse().expect("uri");
    let clients: Vec<Client<_, Full<Bytes>>> = (0..connections)
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http()
        })
        .collect();
    // Warm-up: every connection opened and used.
    let warm = spawn_all(&clients, &uri, headers, WARM, 0).await;
    drop(warm);
    let cpu_before = process.cpu();
    let started = Instant::now();
    let per_connection = spawn_all(&clients, &uri, headers, REQUESTS, WARM).await;
    let elapsed = started.elapsed();
    let cpu = process.cpu().saturating_sub(cpu_before);
    let mut latencies: Vec<Duration> = per_connection.into_iter().flatten().collect();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let figures = Figures {
        name,
        connections,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        cpu: cpu / latencies.len() as u32,
    };
    eprintln!(
        "sidecars: {name:<12} {connections:>2} connection(s): {:>7.0} requests/s, p50 {:>5.0} µs, p99 {:>5.0} µs, CPU {:>5.1} µs/request",
        figures.per_second,
        figures.p50.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() * 1e6,
        figures.cpu.as_secs_f64() * 1e6,
    );
    figures
}

/// `total` requests shared among the clients, each client a task sending one after
/// another; every request's latency, per client. `offset`: the first proof to use.
async fn spawn_all(
    clients: &[Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>],
    uri: &Uri,
    headers: &Headers,
    total: usize,
    offset: usize,
) -> Vec<Vec<Duration>> {
    let share = total / clients.len();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(n, client)| {
            let client = client.clone();
            let uri = uri.clone();
            let headers = headers.clone();
            let offset = offset / clients.len();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                for i in 0..share {
                    let mut request = Request::get(uri.clone())
                        .body(Full::default())
                        .expect("request");
                    if let Some(value) = &headers.authorization {
                        request
                            .headers_mut()
                            .insert(header::AUTHORIZATION, value.clone());
                    }
                    if let Some(proofs) = &headers.proofs {
                        request
                            .headers_mut()
                            .insert("dpop", proofs[n][offset + i].clone());
                    }
                    let sent = Instant::now();
                    let response = client.request(request).await.expect("an answer");
                    let status = response.status();
                    response
                        .into_body()
                        .collect()
                        .await
                        .expect("the body arrives");
                    latencies.push(sent.elapsed());
                    assert_eq!(status, StatusCode::OK, "the request passes");
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(task.await.expect("a client task"));
    }
    all
}

// ---------------------------------------------------------------------------------------
// The upstream and the plain forwarder

/// An HTTP/1 server on 127.0.0.1 that answers `200 ok` at once.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A child process's entry: a plain forwarder to `upstream` (`static`: adding a
/// static `Authorization`), with the sidecars' runtime and server settings.
fn forwarder(role: &str, upstream: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let upstream: http::uri::Authority = upstream.parse().expect("the upstream's address");
    let authorization = (role == "static").then(|| {
        HeaderValue::from_str(&format!("Bearer {}", "t".repeat(893))).expect("a header value")
    });
    runtime.block_on(async move {
        let client = helseid::transport::https_client::<Incoming>().expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        eprintln!(
            "helseid: forwarder listening on http://{}",
            listener.local_addr().expect("address")
        );
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).keep_alive(true);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let upstream = upstream.clone();
            let authorization = authorization.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let client = client.clone();
                let upstream = upstream.clone();
                let authorization = authorization.clone();
                async move {
                    let (mut parts, body) = request.into_parts();
                    let path = parts
                        .uri
                        .path_and_query()
                        .cloned()
                        .unwrap_or_else(|| "/".parse().expect("path"));
                    let uri = Uri::builder()
                        .scheme("http")
                        .authority(upstream.clone())
                        .path_and_query(path)
                        .build()
                        .expect("uri");
                    let headers = &mut parts.headers;
                    for name in [
                        header::CONNECTION,
                        header::TE,
                        header::TRAILER,
                        header::TRANSFER_ENCODING,
                        header::UPGRADE,
                    ] {
                        headers.remove(name);
                    }
                    headers.insert(
                        header::HOST,
                        HeaderValue::from_str(upstream.as_str()).expect("host"),
                    );
                    if let Some(value) = authorization {
                        headers.insert(header::AUTHORIZATION, value);
                    }
                    let mut outgoing = Request::new(body);
                    *outgoing.method_mut() = parts.method;
                    *outgoing.uri_mut() = uri;
                    *outgoing.headers_mut() = parts.headers;
                    let response: Response<
                        UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
                    > = match client.request(outgoing).await {
                        Ok(response) => {
                            let (mut parts, body) = response.into_parts();
                            parts.headers.remove(header::CONNECTION);
                            parts.headers.remove(header::TRANSFER_ENCODING);
                            Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
                        }
                        Err(_) => {
                            let mut response = Response::new(
                                Full::new(Bytes::new()).map_err(Into::into).boxed_unsync(),
                            );
                            *response.status_mut() = StatusCode::BAD_GATEWAY;
                            response
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(connection);
        }
    });
}

// ---------------------------------------------------------------------------------------
// The processes

/// A forwarder's process, stopped (killed) when done with.
struct Process {
    child: Child,
    addr: SocketAddr,
    /// Its stderr lines up to the listening line.
    before: Vec<String>,
}

impl Process {
    /// Starts `command` and waits for the line with `marker`, followed by its address.
    fn spawn(command: &mut Command, marker: &str) -> Process {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the forwarder starts");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut before = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the forwarder prints its address: {before:#?}"))
                .expect("stderr");
            if let Some(addr) = line.split(marker).nth(1) {
                break addr.trim().parse().expect("an address");
            }
            before.push(line);
        };
        // Keeps the pipe read, so the process never blocks on stderr.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            addr,
            before,
        }
    }

    /// The CPU time (user and system) the process has used so far, from
    /// `/proc/PID/stat` in clock ticks of 10 ms (Linux's USER_HZ); zero elsewhere.
    fn cpu(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return Duration::ZERO;
        };
        // The fields after the command's name in parentheses: utime is the 14th field
        // of the line, stime the 15th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_millis((ticks(11) + ticks(12)) * 10)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
