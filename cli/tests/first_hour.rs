//! The first hour at a terminal, through the built binary: `helseid keys new` makes a
//! key to register in Selvbetjening, `helseid config check` says whether a
//! configuration works and which of its scopes HelseID grants.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use helseid::key::PublicJwk;
use helseid_emulator::Emulator;
use support::{TempDir, TestClient};

/// Runs `helseid ARGS` off the runtime's threads (an emulator may serve on them).
async fn helseid(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_helseid"))
            .args(args)
            .output()
            .expect("the helseid binary runs")
    })
    .await
    .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The one line a failure prints on stderr (and nothing on stdout), after checking its
/// exit code.
fn failure(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A configuration file for `client` at `issuer` with `scopes`, in the portal's form
/// (the JWK as a string) and with members the CLI does not read.
fn write_config(dir: &TempDir, client: &TestClient, issuer: &str, scopes: &[&str]) -> PathBuf {
    let path = dir.path("client.json");
    let file = serde_json::json!({
        "clientName": "first hour",
        "clientId": client.id,
        "authority": issuer,
        "scopes": scopes,
        "grantTypes": ["client_credentials"],
        "secretType": "private_key_jwt:JwkPrivateKeyJwtSecret",
        "privateJwk": client.jwk.to_json().as_str(),
        "keyExpiration": "2031-01-01T00:00:00Z",
    });
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("JSON")).expect("write");
    path
}

/// The private key's `d` in the JWK text `jwk` (a file `keys new` wrote).
fn private_member(jwk: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(jwk).expect("a JWK");
    value["d"].as_str().expect("a private key").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_new_writes_the_private_key_owner_only_and_prints_only_the_public_one() {
    let dir = TempDir::new("cli-keys-new");
    let out = dir.path("key.json");
    let output = helseid(&["keys", "new", "--out", arg(&out)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    #[cfg(unix)]
    assert_eq!(mode(&out), 0o600);
    let written = std::fs::read_to_string(&out).expect("the key");
    let private = helseid::key::PrivateJwk::from_json(&written).expect("a private JWK");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let d = private_member(&written);
    assert!(
        !stdout.contains(&d) && !stderr.contains(&d),
        "never printed"
    );

    // stdout is the public half, whole, with no private member: what Selvbetjening takes.
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(printed.get(member).is_none(), "{member}: {stdout}");
    }
    let public: PublicJwk = serde_json::from_value(printed).expect("a public JWK");
    assert_eq!(public, private.public().expect("public"));
    // The crate's default: ES256, with the thumbprint as kid.
    assert_eq!(public.alg.as_deref(), Some("ES256"));
    assert_eq!(public.crv.as_deref(), Some("P-256"));
    assert_eq!(public.kid.as_deref(), Some(public.thumbprint().as_str()));

    // An RSA algorithm gets a 3072-bit key.
    let rsa = dir.path("rsa.json");
    let output = helseid(&["keys", "new", "--alg", "PS512", "--out", arg(&rsa)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let public: PublicJwk = serde_json::from_slice(&output.stdout).expect("a public JWK");
    assert_eq!(
        (public.kty.as_str(), public.alg.as_deref()),
        ("RSA", Some("PS512"))
    );
    assert_eq!(public.n.as_deref().map(str::len), Some(512), "3072 bits");
    let d = private_member(&std::fs::read_to_string(&rsa).expect("key"));
    assert!(!text(&output.stdout).contains(&d) && !text(&output.stderr).contains(&d));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_new_refuses_to_replace_a_file_unless_forced_and_never_follows_a_link() {
    let dir = TempDir::new("cli-keys-new-force");
    let out = dir.path("key.json");
    std::fs::write(&out, "an earlier key").expect("write");
    let stderr = failure(&helseid(&["keys", "new", "--out", arg(&out)]).await, 1);
    assert!(stderr.contains("exists: give --force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "an earlier key"
    );

    // --force replaces it; a link there is replaced, its target left alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let elsewhere = dir.path("elsewhere.txt");
        std::fs::write(&elsewhere, "someone else's").expect("write");
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let link = dir.path("link.json");
        std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
        let stderr = failure(&helseid(&["keys", "new", "--out", arg(&link)]).await, 1);
        assert!(
            stderr.contains("exists"),
            "a link counts as a file: {stderr}"
        );
        let output = helseid(&["keys", "new", "--force", "--out", arg(&link)]).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(std::fs::symlink_metadata(&link).expect("meta").is_file());
        assert_eq!(mode(&link), 0o600);
        assert_eq!(
            std::fs::read_to_string(&elsewhere).expect("read"),
            "someone else's"
        );
        assert_eq!(mode(&elsewhere), 0o644);
    }
    let output = helseid(&["keys", "new", "--force", "--out", arg(&out)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    helseid::key::PrivateJwk::from_json(&std::fs::read_to_string(&out).expect("read"))
        .expect("a new key");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_new_refuses_bad_input_in_one_line_and_writes_nothing() {
    let dir = TempDir::new("cli-keys-new-bad");
    let out = dir.path("key.json");

    // An algorithm HelseID does not take: clap's usage error (exit 2), naming it.
    let output = helseid(&["keys", "new", "--alg", "HS256", "--out", arg(&out)]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("error: invalid value 'HS256' for '--alg <ALG>'")
            && stderr
                .lines()
                .next()
                .is_some_and(|l| l.contains("HelseID accepts")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    // Neither --out nor --config: nowhere to keep the key.
    let output = helseid(&["keys", "new"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--out <FILE>|--config <FILE>"));

    // A configuration that is missing, not JSON, or not a configuration.
    let missing = dir.path("missing.json");
    let stderr = failure(
        &helseid(&["keys", "new", "--out", arg(&out), "--config", arg(&missing)]).await,
        1,
    );
    assert!(
        stderr.contains("cannot read configuration file"),
        "{stderr}"
    );
    let broken = dir.path("broken.json");
    std::fs::write(&broken, "{\"clientId\": \"x\",\n\u{1b}[31m").expect("write");
    let stderr = failure(
        &helseid(&["keys", "new", "--config", arg(&broken)]).await,
        1,
    );
    assert!(stderr.contains("is not JSON (line 2"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "the file's text is not quoted: {stderr}"
    );
    let not_config = dir.path("array.json");
    std::fs::write(&not_config, "[1, 2]").expect("write");
    let stderr = failure(
        &helseid(&["keys", "new", "--config", arg(&not_config)]).await,
        1,
    );
    assert!(stderr.contains("not a JSON object"), "{stderr}");
    let no_client = dir.path("no-client.json");
    std::fs::write(
        &no_client,
        r#"{"authority": "https://helseid-sts.test.nhn.no"}"#,
    )
    .expect("write");
    let stderr = failure(
        &helseid(&["keys", "new", "--config", arg(&no_client)]).await,
        1,
    );
    assert!(
        stderr.contains("would not be a usable configuration") && stderr.contains("clientId"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
    for file in [&broken, &not_config, &no_client] {
        let mut backup = file.as_os_str().to_owned();
        backup.push(".bak");
        assert!(
            !Path::new(&backup).exists(),
            "no backup of {}",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_new_with_config_puts_the_key_in_the_configuration_which_works_once_registered() {
    let client = TestClient::ec("first-hour");
    let emulator = Emulator::builder()
        .client(client.registration(&[helseid_emulator::SELVBETJENING_SCOPE, support::CP_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("cli-keys-new-config");
    let config = write_config(&dir, &client, emulator.issuer(), &[support::CP_SCOPE]);
    let before = std::fs::read_to_string(&config).expect("read");

    let output = helseid(&["keys", "new", "--alg", "ES384", "--config", arg(&config)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let public: PublicJwk = serde_json::from_slice(&output.stdout).expect("the public JWK");
    assert_eq!(public.crv.as_deref(), Some("P-384"));
    let backup = dir.path("client.json.bak");
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), before);
    #[cfg(unix)]
    for file in [&config, &backup] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Every member as it was, but the key, and the previous key's expiration.
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).expect("read")).expect("JSON");
    let mut expected: serde_json::Value = serde_json::from_str(&before).expect("JSON");
    expected["privateJwk"] = after["privateJwk"].clone();
    expected
        .as_object_mut()
        .expect("object")
        .remove("keyExpiration");
    assert_eq!(after, expected);
    let jwk_text = after["privateJwk"]
        .as_str()
        .expect("a string, as the file had");
    let d = private_member(jwk_text);
    assert!(!text(&output.stdout).contains(&d) && !text(&output.stderr).contains(&d));
    let new_config = helseid::config::ClientConfig::from_file(&config).expect("readable");
    assert_eq!(new_config.signing_key().thumbprint(), public.thumbprint());

    // HelseID does not know the key yet: config check reads the file (its first line)
    // and says so in one line.
    let output = helseid(&["config", "check", arg(&config)]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("key ES384"));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: getting a token for {}: ",
            support::CP_SCOPE
        )) && stderr.contains("invalid_client"),
        "{stderr}"
    );

    // Registered with the previous key (as Selvbetjening's page would), it works.
    let old = helseid::config::ClientConfig::from_file(&backup).expect("backup");
    let base = helseid::selvbetjening::base_url(&old).expect("the emulator's");
    helseid::selvbetjening::Selvbetjening::new(
        helseid::endpoint::TokenEndpoint::new(old).expect("endpoint"),
        &base,
    )
    .expect("selvbetjening")
    .register_key(&public)
    .await
    .expect("registered");
    let output = helseid(&["config", "check", arg(&config)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&format!("granted  {}", support::CP_SCOPE)));

    // A second run keeps the first backup unless forced.
    let stderr = failure(
        &helseid(&["keys", "new", "--config", arg(&config)]).await,
        1,
    );
    assert!(stderr.contains("client.json.bak exists"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_without_a_file_checks_the_demo_clients_configuration() {
    let output = helseid(&["config", "check"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("client helseid-rs-demo, authority http://127.0.0.1:")),
        "{stdout}"
    );
    assert!(lines.all(|l| l.starts_with("granted  ")), "{stdout}");
    assert!(
        stdout.contains(&format!("granted  {}", support::CP_SCOPE)),
        "{stdout}"
    );
    assert!(text(&output.stderr).contains("every scope granted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_names_the_scopes_helseid_refuses_and_exits_1() {
    const NOT_ALLOWED: &str = "nhn:not-this-clients/scope";
    let client = TestClient::ec("some-scopes");
    let emulator = Emulator::builder()
        .client(
            client
                .registration(&[support::CP_SCOPE, support::CPAPI_SCOPE])
                .require_dpop(),
        )
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("cli-config-check");
    let config = write_config(
        &dir,
        &client,
        emulator.issuer(),
        &[support::CP_SCOPE, NOT_ALLOWED, support::CPAPI_SCOPE],
    );
    let output = helseid(&["config", "check", "--config", arg(&config)]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].contains("key ES256") && lines[0].contains("expires in"),
        "{stdout}"
    );
    // Each scope in its own request (DPoP, which this client requires), in file order.
    assert_eq!(lines[1], format!("granted  {}", support::CP_SCOPE));
    assert!(
        lines[2].starts_with(&format!("refused  {NOT_ALLOWED}  ("))
            && lines[2].contains("invalid_scope"),
        "{stdout}"
    );
    assert_eq!(lines[3], format!("granted  {}", support::CPAPI_SCOPE));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.trim(), "error: 2 of 3 scopes granted");
    // No token reaches the terminal.
    assert!(
        !stdout.contains("eyJ") && !stderr.contains("eyJ"),
        "{stdout}{stderr}"
    );

    // The same with every scope the client has: exit 0.
    let config = write_config(&dir, &client, emulator.issuer(), &[support::CPAPI_SCOPE]);
    let output = helseid(&["config", "check", arg(&config)]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_says_what_is_wrong_with_a_broken_file_in_one_line() {
    let dir = TempDir::new("cli-config-check-broken");
    let missing = dir.path("missing.json");
    let stderr = failure(&helseid(&["config", "check", arg(&missing)]).await, 1);
    assert!(
        stderr.contains("cannot read configuration file"),
        "{stderr}"
    );

    let cases: [(&str, &str); 4] = [
        ("not json at all", "invalid configuration: `(file)`"),
        (r#"["a list"]"#, "not a JSON object"),
        (
            r#"{"clientId": "c", "authority": "https://helseid-sts.test.nhn.no"}"#,
            "`privateJwk`: missing",
        ),
        (
            r#"{"clientId": "c", "authority": "https://helseid-sts.test.nhn.no", "privateJwk": "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}"}"#,
            "symmetric key",
        ),
    ];
    for (content, says) in cases {
        let file = dir.path("broken.json");
        std::fs::write(&file, content).expect("write");
        let stderr = failure(&helseid(&["config", "check", arg(&file)]).await, 1);
        assert!(stderr.contains(says), "{content}: {stderr}");
        assert!(
            !stderr.contains("c2VjcmV0"),
            "the key is not quoted: {stderr}"
        );
    }

    // Both a FILE and --config: a usage error.
    let output = helseid(&["config", "check", "a.json", "--config", "b.json"]).await;
    assert_eq!(output.status.code(), Some(2));
}
