//! `helseid inspect` through the built binary: every kind of JWT the crate makes (an
//! access token from the emulator's token endpoint, a user's token with a national
//! identity number, a client assertion, a DPoP proof), `--verify` against the emulator's
//! keys with the library's verifier, and bad input.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid_emulator::Emulator;
use support::{CP_SCOPE, TestClient};

/// Runs `helseid inspect ARGS` with `stdin` on its standard input, off the runtime's
/// threads (the emulator serves on them).
async fn inspect(args: &[&str], stdin: Vec<u8>) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_helseid"))
            .arg("inspect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("helseid runs");
        let mut input = child.stdin.take().expect("stdin");
        // The binary may stop reading early (too large): a broken pipe is fine.
        let _ = input.write_all(&stdin);
        drop(input);
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn emulator() -> (Emulator, TestClient) {
    let client = TestClient::ec("inspected");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .start()
        .await
        .expect("emulator");
    (emulator, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_is_explained_and_verified_against_the_issuers_keys() {
    let (emulator, client) = emulator().await;
    let endpoint =
        TokenEndpoint::new(client.config(emulator.issuer(), &[CP_SCOPE])).expect("endpoint");
    let token = endpoint.client_credentials().await.expect("token");
    let secret = token.secret().to_owned();
    let (_, claims) = support::decode_jwt(&secret);
    let aud = claims["aud"].as_str().expect("one audience").to_owned();

    let output = inspect(&[&secret], Vec::new()).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("an access token"), "{stdout}");
    assert!(
        stdout.contains("client_id  \"inspected\"  (the calling system)"),
        "{stdout}"
    );
    assert!(stdout.contains("time left:"), "{stdout}");
    assert!(stdout.contains("not DPoP-bound"), "{stdout}");

    // From standard input, as an Authorization value, verified for its audience.
    let output = inspect(
        &["-", "--verify", "--audience", &aud],
        format!("Bearer {secret}\n").into_bytes(),
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("verified: signed by"), "{stdout}");

    // Another audience: exit 1, the check named in one line, the token not echoed.
    let output = inspect(&[&secret, "--verify", "--audience", "nhn:msh"], Vec::new()).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: not verified:"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(&secret[..40]), "{stderr}");

    // Signed by another key than the issuer's: refused.
    let mut forged = secret.rsplit_once('.').expect("three parts").0.to_owned();
    forged.push_str(".AAAA");
    let output = inspect(&[&forged, "--verify", "--audience", &aud], Vec::new()).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output).1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_national_identity_number_is_masked_unless_asked_for() {
    let (emulator, client) = emulator().await;
    let minted = emulator
        .mint_user_tokens(&client.id, &[CP_SCOPE])
        .expect("user token");
    let token = minted["access_token"].as_str().expect("token").to_owned();
    let (_, claims) = support::decode_jwt(&token);
    let pid = claims["helseid://claims/identity/pid"]
        .as_str()
        .expect("a pid")
        .to_owned();

    let (stdout, _) = text(&inspect(&[&token], Vec::new()).await);
    assert!(!stdout.contains(&pid), "{stdout}");
    assert!(
        stdout.contains("national identity number (personal data)"),
        "{stdout}"
    );
    assert!(stdout.contains("security level"), "{stdout}");
    let (stdout, _) = text(&inspect(&[&token, "--show-personal-data"], Vec::new()).await);
    assert!(stdout.contains(&pid), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn assertions_and_proofs_are_told_apart_and_checked_by_their_own_rules() {
    let (emulator, client) = emulator().await;
    let assertion = client.assertion(&emulator);
    let (stdout, stderr) = text(&inspect(&[&assertion], Vec::new()).await);
    assert!(stdout.starts_with("a client assertion"), "{stdout}{stderr}");

    let key = DpopKey::generate().expect("key");
    let proof = key
        .proof(
            &http::Method::GET,
            &"https://cpapi.test.grunndata.nhn.no/api/v1/event"
                .parse()
                .expect("uri"),
            Some("the-access-token"),
        )
        .expect("proof");
    let (stdout, stderr) = text(&inspect(&[proof.as_str()], Vec::new()).await);
    assert!(stdout.starts_with("a DPoP proof"), "{stdout}{stderr}");
    assert!(stdout.contains("(the URL the proof is for)"), "{stdout}");
    assert!(
        stdout.contains("NHN's rules: nothing to refuse"),
        "{stdout}"
    );
    // A proof is no access token: --verify refuses it, naming why.
    let output = inspect(
        &[
            proof.as_str(),
            "--verify",
            "--audience",
            "x",
            "--issuer",
            emulator.issuer(),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_one_clear_line_and_exit_1() {
    for (input, expected) in [
        (b"not a jwt".to_vec(), "not a JWT"),
        (vec![0xff, 0xfe, 0x00, 0x9f], "not text"),
        (vec![b'a'; 10 * 1024 * 1024], "larger than"),
        (
            b"eyJhbGciOiJub25lIn0.W10.".to_vec(),
            "payload is not a JSON object",
        ),
        (Vec::new(), "no token given"),
    ] {
        let output = inspect(&[], input).await;
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    // Text from the token is escaped: no raw control character reaches the terminal.
    let header = support::raw_jwt(
        &serde_json::json!({"alg": "ES256", "typ": "at+jwt\u{1b}[31m"}),
        &serde_json::json!({"client_id": "x\ny"}),
        b"sig",
    );
    let (stdout, _) = text(&inspect(&[&header], Vec::new()).await);
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains("x\ny"),
        "{stdout}"
    );
}
