//! In a real browser: Debian's Chromium, headless, driven over WebDriver (chromedriver)
//! with fantoccini. The whole `helseid login --no-browser` flow, and NHN's Swagger
//! instructions (Authorize with the token `helseid token` prints, "Try it out" on the
//! CPE events operation). Every wait is on a page condition (a WebDriver wait for an
//! element), never a sleep. A PNG screenshot of each page is kept under
//! `target/browser-artifacts/`.
//!
//! `.ci/run` installs `chromium` and `chromium-driver` when they are missing.

#[path = "../../tests/support/mod.rs"]
mod support;

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;

use common::{BIN, Running, assert_set_renews, setup, start_dpop_login};
use helseid_emulator::TEST_PEOPLE;

/// How long a page condition may take before the test fails.
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Where the screenshots go: `$CARGO_TARGET_DIR/browser-artifacts`, or the workspace's
/// `target/browser-artifacts`.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

/// chromedriver on a free loopback port, and a headless Chromium session with a fresh
/// profile. Both end with the value.
struct Browser {
    client: Client,
    _driver: Running,
    profile: PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let stdout = driver.stdout.take().expect("stdout");
        let driver = Running(Some(driver));
        // chromedriver says which port it picked: "... started successfully on port N."
        let mut lines = BufReader::new(stdout).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let (_, rest) = line.split_once("started successfully on port ")?;
                rest.trim_end_matches('.').trim().parse::<u16>().ok()
            })
            .expect("chromedriver says its port");
        // Whatever it writes later is read, so that a full pipe never blocks it.
        std::thread::spawn(move || lines.for_each(drop));
        let profile = support::tempdir("helseid-chromium-profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Browser {
            client,
            _driver: driver,
            profile,
        }
    }

    /// Waits for the element `css` to be there.
    async fn wait_for(&self, locator: Locator<'_>) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(locator)
            .await
            .unwrap_or_else(|e| panic!("waiting for {locator:?}: {e}"))
    }

    /// Waits for the element, and clicks it; `what` names it in a failure.
    async fn click(&self, locator: Locator<'_>, what: &str) {
        self.wait_for(locator)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {what}: {e}"));
    }

    /// Saves a PNG screenshot of the page as `name`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(artifacts().join(name), png).expect("write the screenshot");
    }

    /// Runs `steps` on this browser, then ends the session (and with it Chromium),
    /// whether the steps passed or panicked: a failed test leaves no browser behind.
    async fn run<T>(&self, steps: impl std::future::Future<Output = T>) -> T {
        let outcome = std::panic::AssertUnwindSafe(steps).catch_unwind().await;
        let _ = self.client.clone().close().await;
        match outcome {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn login_in_chromium_writes_a_token_set_that_renews_with_dpop() {
    let mut login = start_dpop_login().await;
    let person = TEST_PEOPLE[0];

    let browser = Browser::start().await;
    let url = login.url.clone();
    browser
        .run(async {
            browser.client.goto(&url).await.expect("open the URL");
            let button = browser
                .wait_for(Locator::Css(&format!("#person-{}", person.pid)))
                .await;
            browser.screenshot("login-page.png").await;
            button.click().await.expect("pick the test person");
            // The CLI's loopback listener answers the redirect with its page.
            let title = browser.wait_for(Locator::Css("h1#title")).await;
            assert_eq!(title.text().await.expect("text"), "Logged in");
            browser.screenshot("login-done.png").await;
        })
        .await;

    login.finished_as(&person).await;
    let (session, claims) = assert_set_renews(&login.emulator, &login.client, &login.out).await;
    assert_eq!(claims["helseid://claims/identity/pid"], person.pid);
    assert_eq!(session.refreshes(), 1);
    let _ = std::fs::remove_dir_all(&login.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_authorize_with_the_cli_token_and_try_the_cpe_events() {
    let client = support::TestClient::ec("swagger-user");
    let (emulator, dir, config, _) =
        setup(&client, client.registration(&[support::CP_SCOPE])).await;
    let token = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["token", "--config"])
            .arg(config)
            .output()
            .expect("helseid token runs")
    })
    .await
    .expect("join");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(emulator.verify_access_token(&token).is_ok());

    let browser = Browser::start().await;
    let issuer = emulator.issuer().to_owned();
    browser.run(swagger_steps(&browser, &issuer, &token)).await;
    assert!(
        emulator.cpe_requests() >= 1,
        "the call reached the emulator"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// NHN's Swagger steps: the padlock with `token`, then "Try it out" and "Execute" on the
/// CPE events operation, which must show 200 and events; a screenshot of the answer.
async fn swagger_steps(browser: &Browser, issuer: &str, token: &str) {
    browser
        .client
        .goto(&format!("{}/swagger/", issuer))
        .await
        .expect("open the Swagger UI");
    // The padlock: paste the token, authorize, close the dialog.
    browser
        .click(Locator::Css("button.btn.authorize"), "Authorize")
        .await;
    browser
        .wait_for(Locator::Css(".auth-container input"))
        .await
        .send_keys(token)
        .await
        .expect("paste the token");
    browser
        .click(
            Locator::Css(".auth-btn-wrapper button.authorize"),
            "authorize",
        )
        .await;
    browser
        .click(Locator::Css(".auth-btn-wrapper button.btn-done"), "close")
        .await;
    // The events operation: open it, "Try it out", "Execute".
    browser
        .click(
            Locator::Css("#operations-CPE-getCommunicationPartyEvents .opblock-summary"),
            "open the operation",
        )
        .await;
    browser
        .click(
            Locator::Css("#operations-CPE-getCommunicationPartyEvents button.try-out__btn"),
            "Try it out",
        )
        .await;
    browser
        .click(
            Locator::Css("#operations-CPE-getCommunicationPartyEvents button.execute"),
            "Execute",
        )
        .await;
    let status = browser
        .wait_for(Locator::XPath(
            "//table[contains(@class,'live-responses-table')]\
             /tbody//td[contains(@class,'response-col_status')]",
        ))
        .await;
    assert_eq!(status.text().await.expect("text").trim(), "200");
    let body = browser
        .wait_for(Locator::XPath(
            "//table[contains(@class,'live-responses-table')]//pre[contains(., 'EventId')]",
        ))
        .await;
    assert!(body.text().await.expect("text").contains("\"EventId\""));
    // The answer in view for the screenshot.
    browser
        .client
        .execute(
            "arguments[0].scrollIntoView({block: 'start'})",
            vec![serde_json::to_value(&status).expect("an element reference")],
        )
        .await
        .expect("scroll");
    browser.screenshot("swagger-cpe-events.png").await;
}
