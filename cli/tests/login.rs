//! `helseid login` and `helseid logout` through the built binary, the emulator's login
//! page driven by a plain HTTP client.

#[path = "../../tests/support/mod.rs"]
mod support;

mod common;

use std::process::Command;

use common::{BIN, assert_set_renews, setup, start_dpop_login, start_login, wait_for_exit};

use helseid::refresh::TokenSet;
use helseid_emulator::TEST_PEOPLE;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn login_writes_a_dpop_bound_token_set_that_renews_and_logout_ends_it() {
    let mut login = start_dpop_login().await;
    let person = TEST_PEOPLE[3];
    let (status, cookie) =
        support::log_in_in_browser(login.emulator.issuer(), &login.url, Some(person.pid)).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("the browser holds the session");
    let (stdout, stderr) = login.finished_as(&person).await;
    let (emulator, epj, out) = (&login.emulator, &login.client, login.out.clone());

    let (session, claims) = assert_set_renews(emulator, epj, &out).await;
    assert_eq!(claims["helseid://claims/hpr/hpr_number"], person.hpr_number);
    let written = std::fs::read_to_string(&out).expect("read");
    let set = TokenSet::from_json(&written).expect("a set");
    let secret = set.refresh_token().secret().to_owned();
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));

    // Logout with the rotated set: its refresh token is revoked.
    let rotated = session.token_set().await.expect("rotated");
    std::fs::write(&out, rotated.to_json().as_bytes()).expect("write");
    let logout = tokio::task::spawn_blocking({
        let (config, out) = (login.config.clone(), out.clone());
        move || {
            Command::new(BIN)
                .args(["logout", "--no-browser", "--config"])
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
    assert_eq!(
        emulator.ended_sessions(),
        0,
        "nothing ended from the command line"
    );
    // The session itself is the browser's to end: the URL for it is printed, with the
    // ID token as the hint, and nothing claims it has ended.
    let stderr = String::from_utf8_lossy(&logout.stderr);
    assert!(stderr.contains("refresh token revoked"), "{stderr}");
    let id_token = rotated.id_token().expect("an ID token");
    let url = stderr
        .lines()
        .find(|line| line.contains("id_token_hint="))
        .unwrap_or_else(|| panic!("no end session URL in {stderr}"));
    assert!(url.starts_with(login.emulator.issuer()), "{url}");
    assert!(url.contains(id_token), "{url}");
    assert!(!stderr.contains("session ended"), "{stderr}");
    // The browser opens it: the session ends, and the refresh token was revoked.
    let status = support::get_in_browser(url, &cookie).await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    support::assert_logged_out(emulator, &session).await;
    let _ = std::fs::remove_dir_all(&login.dir);
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
    let status = wait_for_exit(&mut running).await.status;
    let stderr = stderr.join().expect("stderr");
    assert!(!status.success());
    assert_eq!(
        stderr.matches("access_denied").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn login_replaces_a_symlink_at_out_owner_only_and_leaves_its_target_alone() {
    use std::os::unix::fs::PermissionsExt;
    let client = support::TestClient::ec("epj");
    let registration = client.registration(&[support::CPAPI_SCOPE]).require_dpop();
    let (emulator, dir, config, out) = setup(&client, registration).await;
    // A link planted where the token set goes, pointing at a file someone else reads.
    let elsewhere = dir.join("elsewhere.txt");
    std::fs::write(&elsewhere, "not a token set").expect("write");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::os::unix::fs::symlink(&elsewhere, &out).expect("symlink");

    let (mut running, url, stderr) = start_login(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--scope".as_ref(),
        "openid".as_ref(),
        "--scope".as_ref(),
        "offline_access".as_ref(),
    ]);
    assert_eq!(
        support::log_in_at_page(emulator.issuer(), &url, Some(TEST_PEOPLE[0].pid)).await,
        StatusCode::OK
    );
    let status = wait_for_exit(&mut running).await.status;
    let stderr = stderr.join().expect("stderr");
    assert!(status.success(), "{stderr}");

    let meta = std::fs::symlink_metadata(&out).expect("out");
    assert!(meta.file_type().is_file(), "the link is replaced by a file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&elsewhere).expect("read"),
        "not a token set",
        "the link's target is not written"
    );
    assert_eq!(
        std::fs::metadata(&elsewhere)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o644,
        "nor its mode changed"
    );
    assert_set_renews(&emulator, &client, &out).await;
    let _ = std::fs::remove_dir_all(dir);
}
