//! The built `helseid` binary, end to end.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_helseid");

/// A child process that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the helseid binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tempdir() -> PathBuf {
    support::tempdir("helseid-cli")
}

/// `helseid emulator --write-config FILE`, running; returns it with its issuer URL.
fn start_emulator(config: &std::path::Path) -> (Running, String) {
    start_emulator_with(config, &[])
}

/// As [`start_emulator`], with more arguments.
fn start_emulator_with(config: &std::path::Path, more: &[&std::ffi::OsStr]) -> (Running, String) {
    let mut child = Command::new(BIN)
        .args(["emulator", "--write-config"])
        .arg(config)
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("helseid emulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut issuer = String::new();
    BufReader::new(stdout)
        .read_line(&mut issuer)
        .expect("the emulator prints its issuer");
    (running, issuer.trim().to_owned())
}

#[tokio::test]
async fn emulator_writes_a_config_that_token_uses_and_the_token_verifies() {
    let dir = tempdir();
    let config = dir.join("client.json");
    let (_emulator, issuer) = start_emulator(&config);
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)
            .expect("config written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    let output = run(&["token", "--config", config.to_str().expect("path")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the token on stdout");

    // The emulator's own keys accept the token: fetched from its JWKS like any API would.
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(
        support::get_json(&format!("{issuer}/.well-known/openid-configuration/jwks")).await,
    )
    .expect("JWKS");
    let header = jsonwebtoken::decode_header(token).expect("a JWT");
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the signing key is published");
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&issuer]);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).expect("key"),
        &validation,
    )
    .expect("the emulator's token verifies")
    .claims;
    assert_eq!(claims["client_id"], "helseid-rs-demo");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn emulator_write_config_replaces_a_symlink_owner_only_and_leaves_its_target_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let config = dir.join("client.json");
    let elsewhere = dir.join("elsewhere.txt");
    std::fs::write(&elsewhere, "someone else's file").expect("write");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::symlink(&elsewhere, &config).expect("symlink");

    // The issuer is printed after the configuration is written.
    let (_emulator, issuer) = start_emulator(&config);
    let meta = std::fs::symlink_metadata(&config).expect("config");
    assert!(meta.file_type().is_file(), "the link is replaced by a file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("JSON");
    assert_eq!(written["authority"], issuer.as_str());
    assert_eq!(
        std::fs::read_to_string(&elsewhere).expect("read"),
        "someone else's file"
    );
    assert_eq!(
        std::fs::metadata(&elsewhere)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    // Nothing left beside it: the temporary file was renamed.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["client.json", "elsewhere.txt"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_are_one_line_on_stderr_with_a_failing_exit_code() {
    let dir = tempdir();
    let missing = dir.join("missing.json");
    let output = run(&["token", "--config", missing.to_str().expect("path")]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot read configuration file"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = run(&["token", "--tenant", "12345"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("12345"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["events", "--help"],
        &["token", "--help"],
        &["emulator", "--help"],
        &["keys", "new", "--help"],
        &["config", "check", "--help"],
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}");
        assert!(text(&output.stdout).contains("Usage: helseid"), "{args:?}");
    }
}

#[test]
fn events_without_config_runs_the_whole_flow_against_the_embedded_emulator() {
    let output = run(&["events", "--limit", "5"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("CommunicationParty") && l.contains("[event ")),
        "{stdout}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("embedded HelseID + CPE emulator"),
        "{stderr}"
    );
    assert!(
        stderr.contains("5 events; continue with --from-event-id"),
        "{stderr}"
    );

    // --json: one object per line, as the API sends it; --from-event-id continues.
    let output = run(&["events", "--limit", "3", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let events: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 3);
    let second = events[1]["EventId"].as_str().expect("EventId");
    let output = run(&[
        "events",
        "--limit",
        "1",
        "--json",
        "--from-event-id",
        second,
    ]);
    let next: serde_json::Value = serde_json::from_str(text(&output.stdout).trim()).expect("JSON");
    assert_eq!(next, events[2]);
}

#[test]
fn events_api_v2_goes_through_the_dpop_stack_against_the_embedded_emulator() {
    let output = run(&["events", "--api", "v2", "--limit", "5"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for (i, line) in lines.iter().enumerate() {
        assert!(line.contains("CommunicationParty"), "{line}");
        assert!(
            line.ends_with(&format!("[sequence number {}]", i + 1)),
            "{line}"
        );
    }
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("5 events; continue with --from-sequence-number 6"),
        "{stderr}"
    );

    // --json continues from --from-sequence-number, one object per line as sent.
    let output = run(&[
        "events",
        "--api",
        "v2",
        "--json",
        "--from-sequence-number",
        "6",
        "--limit",
        "2",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let events: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["sequenceNumber"], 6);
    assert_eq!(events[1]["sequenceNumber"], 7);
    assert!(events[0]["herId"].is_i64() && events[0]["eventTimestamp"].is_string());

    // Each API's cursor belongs to it.
    let output = run(&["events", "--api", "v2", "--from-event-id", "abc"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--from-sequence-number"));
}

#[test]
fn token_dpop_prints_a_bound_token_and_a_proof_for_it() {
    let output = run(&["token", "--dpop"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a token, then a proof: {stdout}");
    let (token, proof) = (lines[0], lines[1]);
    let (_, claims) = support::decode_jwt(token);
    let (header, proof_claims) = support::decode_jwt(proof);
    assert_eq!(header["typ"], "dpop+jwt");
    let jwk: helseid::key::PublicJwk =
        serde_json::from_value(header["jwk"].clone()).expect("a public JWK");
    assert_eq!(
        claims["cnf"]["jkt"],
        jwk.thumbprint(),
        "bound to the proof's key"
    );
    assert_eq!(proof_claims["ath"], helseid::dpop::ath(token));
    assert_eq!(proof_claims["htm"], "GET");
    let htu = proof_claims["htu"].as_str().expect("htu");
    assert!(
        htu.starts_with("http://127.0.0.1:") && htu.ends_with("/api/v1/event"),
        "{htu}"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("DPoP proof for GET"), "{stderr}");
}

#[tokio::test]
async fn events_with_the_config_the_emulator_wrote() {
    let dir = tempdir();
    let config = dir.join("client.json");
    let (_emulator, _issuer) = start_emulator(&config);
    let output = run(&[
        "events",
        "--config",
        config.to_str().expect("path"),
        "--limit",
        "2",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).lines().count(), 2);
    assert!(!text(&output.stderr).contains("embedded"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn emulator_write_config_lists_every_scope_of_its_demo_client() {
    let dir = tempdir();
    let config = dir.join("client.json");
    let (_emulator, _issuer) = start_emulator(&config);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("JSON");
    let mut listed: Vec<&str> = written["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().expect("a scope"))
        .collect();
    listed.sort_unstable();

    // What the emulator registered: a token asked for without a scope carries them all.
    let client = helseid::config::ClientConfig::from_file(&config).expect("config");
    let token = helseid::endpoint::TokenEndpoint::new(client)
        .expect("endpoint")
        .request(&helseid::endpoint::TokenRequest::client_credentials(Vec::<
            String,
        >::new(
        )))
        .await
        .expect("a token");
    let mut registered: Vec<&str> = token.scopes().collect();
    registered.sort_unstable();
    assert_eq!(listed, registered);
    assert!(listed.contains(&helseid::cpapi::SCOPE) && listed.contains(&support::CP_SCOPE));

    // And config check grants each.
    let output = run(&["config", "check", config.to_str().expect("path")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for scope in &listed {
        assert!(stdout.contains(&format!("granted  {scope}\n")), "{stdout}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn events_latest_prints_the_newest_events_of_cp_api_v2_oldest_first() {
    let dir = tempdir();
    let config = dir.join("client.json");
    let (_emulator, _issuer) = start_emulator(&config);
    let config = config.to_str().expect("path");
    let json_lines = |output: &Output| -> Vec<serde_json::Value> {
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    // The whole feed, to compare with.
    let all = json_lines(&run(&[
        "events", "--config", config, "--api", "v2", "--json",
    ]));
    assert!(all.len() > 5, "{}", all.len());
    let latest = all.last().expect("an event")["sequenceNumber"]
        .as_i64()
        .expect("a number");

    // --latest reads CP API v2 without --api.
    let output = run(&["events", "--config", config, "--latest", "3", "--json"]);
    assert_eq!(json_lines(&output), all[all.len() - 3..]);
    assert!(
        text(&output.stderr).contains(&format!(
            "3 events; continue with --from-sequence-number {}",
            latest + 1
        )),
        "{}",
        text(&output.stderr)
    );
    let output = run(&["events", "--config", config, "--api", "v2", "--latest", "2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with(&format!("[sequence number {}]", latest - 1)));
    assert!(lines[1].ends_with(&format!("[sequence number {latest}]")));

    // More than the feed holds: all of it.
    let more = (all.len() + 10).to_string();
    let output = run(&["events", "--config", config, "--latest", &more, "--json"]);
    assert_eq!(json_lines(&output), all);

    // CPE (v1) has no such call; N is at least 1 and excludes the other cursors.
    let output = run(&["events", "--config", config, "--api", "v1", "--latest", "3"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("CPE (v1) has no call for the newest events"),
        "{stderr}"
    );
    for bad in [
        &["--latest", "0"][..],
        &["--latest", "-1"],
        &["--latest", "x"],
        &["--latest", "3", "--limit", "2"],
        &["--latest", "3", "--from-sequence-number", "2"],
    ] {
        let mut args = vec!["events", "--config", config];
        args.extend(bad);
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
        assert!(output.stdout.is_empty(), "{bad:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn token_renews_from_a_token_set_file_and_writes_the_rotated_set_back() {
    let dir = tempdir();
    let config = dir.join("client.json");
    let tokens = dir.join("tokens.json");
    let (_emulator, _issuer) =
        start_emulator_with(&config, &["--write-token-set".as_ref(), tokens.as_os_str()]);
    let original = std::fs::read(&tokens).expect("the token set was written");

    let renew = || {
        run(&[
            "token",
            "--config",
            config.to_str().expect("path"),
            "--refresh-token-file",
            tokens.to_str().expect("path"),
            "--decode",
        ])
    };
    for _ in 0..2 {
        let output = renew();
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(
            text(&output.stdout).contains("13116900216"),
            "a user's token"
        );
    }
    let rotated = std::fs::read(&tokens).expect("token set");
    assert_ne!(rotated, original, "the rotated set was written back");

    // The spent set: HelseID refuses it, and the user must log in again.
    std::fs::write(&tokens, &original).expect("restore the spent set");
    let output = renew();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("must log in again"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

use support::write_config;

#[tokio::test(flavor = "multi_thread")]
async fn token_warns_about_scopes_helseid_left_out() {
    const KEPT: &str = "nhn:cp-api/access";
    const LEFT_OUT: &str = "nhn:terms-not-accepted/api";
    let client = support::TestClient::ec("rejects");
    let emulator = helseid_emulator::Emulator::builder()
        .client(
            client
                .registration(&[KEPT, LEFT_OUT])
                .rejected_scopes([LEFT_OUT]),
        )
        .start()
        .await
        .expect("emulator");
    let dir = tempdir();
    let config = write_config(&dir, &client, emulator.issuer());
    let config = config.to_str().expect("path").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        run(&[
            "token", "--config", &config, "--scope", KEPT, "--scope", LEFT_OUT, "--decode",
        ])
    })
    .await
    .expect("join");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("left out scope {LEFT_OUT} (rejected_scope)")),
        "{stderr}"
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains(KEPT), "{stdout}");
    assert!(
        !stdout.contains(LEFT_OUT),
        "the token has no such scope: {stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_configuration_value_with_control_characters_reaches_the_terminal_escaped() {
    let dir = tempdir();
    let client = support::TestClient::ec("escapes");
    let config = write_config(&dir, &client, "https://evil.example\n\u{1b}[31mforged line");
    let output = run(&["token", "--config", config.to_str().expect("path")]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        !stderr.trim_end_matches('\n').chars().any(char::is_control),
        "no raw control character: {stderr:?}"
    );
    assert!(stderr.contains(r"\u{1b}[31mforged line"), "{stderr:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// An emulator with `client` registered with the Selvbetjening scope (and CPE), and
/// the client's configuration file in a new directory.
async fn rotation_setup(
    client: &support::TestClient,
    builder: helseid_emulator::EmulatorBuilder,
    scopes: &[&str],
) -> (helseid_emulator::Emulator, PathBuf, PathBuf) {
    let emulator = builder
        .client(client.registration(scopes))
        .start()
        .await
        .expect("emulator");
    let dir = tempdir();
    let config = write_config(&dir, client, emulator.issuer());
    (emulator, dir, config)
}

/// `helseid keys ARGS --config CONFIG`, off the runtime's threads.
async fn keys(args: &[&str], config: &std::path::Path) -> Output {
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.extend(["--config".to_owned(), config.display().to_string()]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .expect("join")
}

/// Whether the configuration at `path` gets a token from `emulator`.
async fn gets_a_token(path: &std::path::Path) -> Result<(), helseid::Error> {
    let config = helseid::config::ClientConfig::from_file(path)?;
    helseid::endpoint::TokenEndpoint::new(config)?
        .request(&helseid::endpoint::TokenRequest::client_credentials([
            support::CP_SCOPE,
        ]))
        .await
        .map(drop)
}

const SB: &str = helseid_emulator::SELVBETJENING_SCOPE;

#[tokio::test(flavor = "multi_thread")]
async fn keys_status_prints_the_expiration_and_the_days_left() {
    let client = support::TestClient::ec("status");
    let (_emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder()
            .key_lifetime(std::time::Duration::from_secs(10 * 86_400 + 3600)),
        &[SB],
    )
    .await;
    let output = keys(&["keys", "status"], &config).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("the key expires 20"), "{stdout}");
    assert!(stdout.contains("(10 days left)"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_switches_the_configuration_to_a_new_key_that_works() {
    let client = support::TestClient::ec("rotates");
    let (emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder(),
        &[SB, support::CP_SCOPE],
    )
    .await;
    let before = std::fs::read_to_string(&config).expect("config");
    let output = keys(&["keys", "rotate", "--alg", "ES384"], &config).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("now holds the new key"), "{stdout}");

    let after = std::fs::read_to_string(&config).expect("config");
    assert_ne!(before, after, "the configuration holds another key");
    assert!(after.contains("keyExpiration"), "{after}");
    assert!(after.contains("P-384"), "the asked algorithm's curve");
    let backup = dir.join("client.json.bak");
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), before);
    assert!(!dir.join("client.json.new").exists());
    #[cfg(unix)]
    for file in [&config, &backup] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    gets_a_token(&config)
        .await
        .expect("the new key gets tokens");
    let old = gets_a_token(&backup)
        .await
        .expect_err("the old key is refused");
    assert_eq!(
        old.oauth_error().map(|e| &e.error),
        Some(&helseid::OAuthErrorCode::InvalidClient),
        "{old}"
    );
    let expires = emulator
        .client_key_expiration(&client.id)
        .expect("a client");
    let config = helseid::config::ClientConfig::from_file(&config).expect("config");
    assert_eq!(config.key_expires_at(), Some(expires));
    let _ = std::fs::remove_dir_all(dir);
}

/// The one line a failed rotation prints, after checking that it failed.
fn failure(output: &Output) -> String {
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(output.stdout.is_empty());
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_that_fails_leaves_a_configuration_that_works() {
    // Selvbetjening refuses the new key: nothing changes.
    let client = support::TestClient::ec("refused");
    let (emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder(),
        &[SB, support::CP_SCOPE],
    )
    .await;
    let before = std::fs::read_to_string(&config).expect("config");
    emulator.set_selvbetjening_open(false);
    let stderr = failure(&keys(&["keys", "rotate"], &config).await);
    assert!(
        stderr.contains("registering the new key at Selvbetjening")
            && stderr.contains("nothing changed")
            && stderr.contains("503"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&config).expect("config"), before);
    assert!(!dir.join("client.json.new").exists());
    gets_a_token(&config)
        .await
        .expect("the current key still works");
    let _ = std::fs::remove_dir_all(dir);

    // HelseID has not taken the new key up yet: the configuration keeps the old key,
    // which works until then, and the new key waits in client.json.new.
    let client = support::TestClient::ec("slow");
    let (_emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder()
            .key_propagation_delay(std::time::Duration::from_secs(3600)),
        &[SB, support::CP_SCOPE],
    )
    .await;
    let before = std::fs::read_to_string(&config).expect("config");
    let stderr = failure(&keys(&["keys", "rotate"], &config).await);
    assert!(
        stderr.contains("getting a token with the new key") && stderr.contains("client.json.new"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&config).expect("config"), before);
    assert!(dir.join("client.json.new").exists());
    gets_a_token(&config)
        .await
        .expect("the old key works until the new one is in effect");
    let _ = std::fs::remove_dir_all(dir);

    // The new key cannot be written (its file's place is taken by a directory; tests
    // run as root here, so a read-only directory would not stop them): nothing sent.
    let client = support::TestClient::ec("unwritable");
    let (emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder(),
        &[SB, support::CP_SCOPE],
    )
    .await;
    std::fs::create_dir_all(dir.join("client.json.new").join("taken")).expect("dir");
    let stderr = failure(&keys(&["keys", "rotate"], &config).await);
    assert!(
        stderr.contains("writing the new key") && stderr.contains("nothing changed"),
        "{stderr}"
    );
    gets_a_token(&config).await.expect("unchanged");
    drop(emulator);
    let _ = std::fs::remove_dir_all(dir);

    // A client without the Selvbetjening scope: one clear line, nothing changed.
    let client = support::TestClient::ec("no-scope");
    let (_emulator, dir, config) = rotation_setup(
        &client,
        helseid_emulator::Emulator::builder(),
        &[support::CP_SCOPE],
    )
    .await;
    let stderr = failure(&keys(&["keys", "rotate"], &config).await);
    assert!(
        stderr.contains("invalid_scope") && stderr.contains("nothing changed"),
        "{stderr}"
    );
    gets_a_token(&config).await.expect("unchanged");
    let _ = std::fs::remove_dir_all(dir);
}
