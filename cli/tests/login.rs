//! `helseid login` and `helseid logout` through the built binary, the emulator's login
//! page driven by a plain HTTP client.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use helseid::endpoint::TokenEndpoint;
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::token::TokenType;
use helseid_emulator::{Emulator, TEST_PEOPLE};
use http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_helseid");

/// A child process that is killed when the test ends, however it ends.
struct Running(Option<Child>);

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
async fn setup(
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
fn start_login(args: &[&std::ffi::OsStr]) -> (Running, String, std::thread::JoinHandle<String>) {
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

#[tokio::test(flavor = "multi_thread")]
async fn login_writes_a_dpop_bound_token_set_that_renews_and_logout_ends_it() {
    let epj = support::TestClient::ec("epj");
    let registration = epj.registration(&[support::CPAPI_SCOPE]).require_dpop();
    let (emulator, dir, config, out) = setup(&epj, registration).await;
    let person = TEST_PEOPLE[3];

    let (mut running, url, stderr) = start_login(&[
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
    assert_eq!(
        support::log_in_at_page(emulator.issuer(), &url, Some(person.pid)).await,
        StatusCode::OK
    );
    let child = running.0.take().expect("child");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("helseid login ends");
    let stderr = stderr.join().expect("stderr");
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("name: {}", person.name())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("hpr_number: {}", person.hpr_number)));
    assert!(stdout.contains("security_level: 4"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out)
            .expect("token set")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let set = TokenSet::from_json(&std::fs::read_to_string(&out).expect("read")).expect("a set");
    assert!(set.is_dpop_bound());
    let secret = set.refresh_token().secret().to_owned();
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));
    let endpoint = TokenEndpoint::new(epj.config(emulator.issuer(), &[])).expect("endpoint");
    let session = RefreshSession::new(endpoint, set.clone());
    let renewed = session.refresh(&[]).await.expect("refresh");
    assert_eq!(*renewed.token_type(), TokenType::DPoP);
    let claims = emulator
        .verify_access_token(renewed.secret())
        .expect("an emulator token");
    assert!(claims["cnf"]["jkt"].is_string());
    assert_eq!(claims["helseid://claims/hpr/hpr_number"], person.hpr_number);

    // Logout with the rotated set: its refresh token is revoked and the session ended.
    let rotated = session.token_set().await.expect("rotated");
    std::fs::write(&out, rotated.to_json().as_bytes()).expect("write");
    let logout = tokio::task::spawn_blocking({
        let (config, out) = (config.clone(), out.clone());
        move || {
            Command::new(BIN)
                .args(["logout", "--config"])
                .arg(config)
                .arg("--token-set")
                .arg(out)
                .output()
                .expect("helseid logout runs")
        }
    })
    .await
    .expect("join");
    assert!(
        logout.status.success(),
        "{}",
        String::from_utf8_lossy(&logout.stderr)
    );
    assert!(!out.exists(), "the token set is removed");
    support::assert_logged_out(&emulator, &session).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_login_fails_with_access_denied_and_writes_nothing() {
    let epj = support::TestClient::ec("epj");
    let (emulator, dir, config, out) = setup(&epj, epj.registration(&[])).await;
    let (mut running, url, stderr) = start_login(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(
        support::log_in_at_page(emulator.issuer(), &url, None).await,
        StatusCode::OK
    );
    let child = running.0.take().expect("child");
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("helseid login ends")
        .status;
    let stderr = stderr.join().expect("stderr");
    assert!(!status.success());
    assert!(stderr.contains("access_denied"), "{stderr}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}
