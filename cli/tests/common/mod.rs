//! What the CLI's login tests share: the emulator and the files, and `helseid login`
//! running with its URL read from stderr.
// Each test crate uses a part of this module.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use helseid::endpoint::TokenEndpoint;
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::token::TokenType;
use helseid_emulator::{Emulator, TestPerson};

use super::support;

pub const BIN: &str = env!("CARGO_BIN_EXE_helseid");

/// A child process that is killed when the test ends, however it ends.
pub struct Running(pub Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An emulator with `registration`, and in a new directory the client's configuration
/// file and the path for the token set.
pub async fn setup(
    epj: &support::TestClient,
    registration: helseid_emulator::ClientRegistration,
) -> (Emulator, PathBuf, PathBuf, PathBuf) {
    let emulator = Emulator::builder()
        .client(registration)
        .start()
        .await
        .expect("emulator");
    let dir = support::tempdir("helseid-cli-login");
    let config = support::write_config(&dir, epj, emulator.issuer());
    let out = dir.join("tokens.json");
    (emulator, dir, config, out)
}

/// Starts `helseid login --no-browser` with `args`; returns it and the URL it printed
/// on stderr (the rest of stderr is collected by a thread whose handle is returned).
pub fn start_login(
    args: &[&std::ffi::OsStr],
) -> (Running, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(BIN)
        .args(["login", "--no-browser"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helseid login starts");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, receiver) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.expect("a line of stderr");
            if line.starts_with("http") {
                let _ = sender.send(line.clone());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let url = receiver
        .recv()
        .expect("helseid login prints the URL on stderr");
    (Running(Some(child)), url, rest)
}

/// Waits (off the runtime's threads) for the process to end; returns its output.
pub async fn wait_for_exit(running: &mut Running) -> Output {
    let child = running.0.take().expect("a running child");
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("the process ends")
}

/// Reads the token set `helseid login` wrote to `out`, checks that it is owner-only and
/// DPoP-bound, and renews it with a refresh session (a DPoP proof by the set's key);
/// returns the session and the renewed token's claims.
pub async fn assert_set_renews(
    emulator: &Emulator,
    client: &support::TestClient,
    out: &Path,
) -> (RefreshSession, serde_json::Value) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out)
            .expect("token set")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let set = TokenSet::from_json(&std::fs::read_to_string(out).expect("read")).expect("a set");
    assert!(set.is_dpop_bound());
    let endpoint = TokenEndpoint::new(client.config(emulator.issuer(), &[])).expect("endpoint");
    let session = RefreshSession::new(endpoint, set);
    let renewed = session.refresh(&[]).await.expect("refresh");
    assert_eq!(*renewed.token_type(), TokenType::DPoP);
    let claims = emulator
        .verify_access_token(renewed.secret())
        .expect("an emulator token");
    assert!(claims["cnf"]["jkt"].is_string(), "DPoP-bound: {claims}");
    (session, claims)
}

/// `helseid login --no-browser` running for a client that must use DPoP and may call
/// CP API v2, at a new emulator.
pub struct DpopLogin {
    pub emulator: Emulator,
    pub client: support::TestClient,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub out: PathBuf,
    pub url: String,
    running: Running,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Starts a [`DpopLogin`]: the token set goes to `tokens.json` in a new directory.
pub async fn start_dpop_login() -> DpopLogin {
    let client = support::TestClient::ec("epj");
    let registration = client.registration(&[support::CPAPI_SCOPE]).require_dpop();
    let (emulator, dir, config, out) = setup(&client, registration).await;
    let (running, url, stderr) = start_login(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--scope".as_ref(),
        "openid".as_ref(),
        "--scope".as_ref(),
        "offline_access".as_ref(),
        "--scope".as_ref(),
        support::CPAPI_SCOPE.as_ref(),
    ]);
    assert!(url.starts_with(&format!("{}/connect/authorize?", emulator.issuer())));
    DpopLogin {
        emulator,
        client,
        dir,
        config,
        out,
        url,
        running,
        stderr: Some(stderr),
    }
}

impl DpopLogin {
    /// Waits for the CLI to end; asserts that it succeeded and printed `person`'s name,
    /// HPR number and security level. Returns its stdout and stderr.
    pub async fn finished_as(&mut self, person: &TestPerson) -> (String, String) {
        let output = wait_for_exit(&mut self.running).await;
        let stderr = self.stderr.take().expect("once").join().expect("stderr");
        assert!(output.status.success(), "{stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            stdout.contains(&format!("name: {}", person.name())),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("hpr_number: {}", person.hpr_number)));
        assert!(stdout.contains("security_level: 4"));
        (stdout, stderr)
    }
}
