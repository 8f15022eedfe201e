//! A full sync of a 30,000-party register from the emulator on 127.0.0.1 into a SQLite
//! file: parties per second, API calls made, the database's size.
//!
//! `cargo bench -p helseid --features sqlite --bench sync` (set `HELSEID_SYNC_PARTIES`
//! for another size). A first sync into a scratch database makes the emulator's
//! certificates (it makes each party's on first use, as a real register has them
//! already); the sync after it, into a new database, is the one measured, three times.
// A benchmark prints its figures.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use helseid::cpapi::{self, Client};
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::mirror::{Mirror, SqliteStore, SyncProgress, SyncReport};
use helseid_emulator::{ClientRegistration, Emulator};

const CLIENT_ID: &str = "sync-bench";

/// The default size of the register.
const PARTIES: usize = 30_000;

/// How many measured syncs.
const RUNS: usize = 3;

fn scratch() -> PathBuf {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).expect("random");
    let dir = std::env::temp_dir().join(format!(
        "helseid-sync-bench-{:016x}",
        u64::from_le_bytes(random)
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A full sync into a new database at `path`: its report, how long it took, and the
/// database's size once closed.
async fn full_sync(client: &Client, path: &PathBuf) -> (SyncReport, f64, u64) {
    let mut store = SqliteStore::open(path).expect("database");
    let started = Instant::now();
    let report = Mirror::new(client.clone())
        .sync(&mut store, |_: &SyncProgress| {})
        .await
        .expect("sync");
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    let size = std::fs::metadata(path).expect("database file").len();
    (report, seconds, size)
}

fn main() {
    let parties = std::env::var("HELSEID_SYNC_PARTIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(PARTIES);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
        let public = SigningKey::from_jwk(&jwk).expect("key").public_jwk().clone();
        let started = Instant::now();
        let emulator = Emulator::builder()
            .client(ClientRegistration::new(CLIENT_ID, public).scopes([cpapi::SCOPE]))
            .register_size(parties)
            .start()
            .await
            .expect("emulator");
        println!(
            "emulator with {parties} parties and {} events started in {:.1} s",
            emulator.cpapi_events(),
            started.elapsed().as_secs_f64()
        );
        let config = helseid::config::ClientConfig::builder()
            .client_id(CLIENT_ID)
            .authority_url(emulator.issuer())
            .private_jwk(&jwk)
            .build()
            .expect("configuration");
        let client = Client::builder(config).build().expect("client");
        let dir = scratch();

        let (warm, seconds, _) = full_sync(&client, &dir.join("warm-up.db")).await;
        println!(
            "warm-up sync (the emulator makes its certificates): {} parties in {seconds:.1} s",
            warm.parties_copied
        );
        for run in 1..=RUNS {
            let before = emulator.cpapi_requests();
            let (report, seconds, size) = full_sync(&client, &dir.join(format!("run-{run}.db"))).await;
            let served = emulator.cpapi_requests() - before;
            println!(
                "sync {run}: {} parties in {seconds:.2} s = {:.0} parties/s; {} requests ({served} served); database {:.1} MiB ({} bytes)",
                report.parties_copied,
                report.parties_copied as f64 / seconds,
                report.requests,
                size as f64 / (1024.0 * 1024.0),
                size,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        emulator.shutdown().await;
    });
}
