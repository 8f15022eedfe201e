//! The register's commands (`party`, `search`, `org`, `cert`, `sync`) as the built
//! binary runs them, against an emulator on 127.0.0.1 whose answers the typed client
//! reads beside them.

#[path = "../../tests/support/cpapi.rs"]
mod cpapi_support;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

use base64::Engine;
use helseid::cpapi::types::{
    CommunicationParty, CommunicationPartyType, PersonSearchParameters, SearchParameters,
};
use helseid::cpapi::{Client, SCOPE};
use helseid::mirror::SqliteStore;
use helseid_emulator::Emulator;
use serde_json::Value;
use support::{TempDir, TestClient};

/// An emulator, a configuration file for a client of its CP API v2, and the typed
/// client of the same registration, to compare with.
struct Setup {
    emulator: Emulator,
    dir: TempDir,
    config: String,
    cpapi: Client,
}

async fn setup() -> Setup {
    let client = TestClient::ec("register-cli");
    let emulator = Emulator::builder()
        .client(client.registration(&[SCOPE]))
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("cli-register");
    let config = dir.path("client.json");
    let file = serde_json::json!({
        "clientId": client.id,
        "authority": emulator.issuer(),
        "privateJwk": client.jwk.to_json().as_str(),
    });
    std::fs::write(&config, file.to_string()).expect("write the configuration");
    let cpapi = Client::builder(client.config(emulator.issuer(), &[]))
        .build()
        .expect("client");
    let config = config.display().to_string();
    Setup {
        emulator,
        dir,
        config,
        cpapi,
    }
}

/// Runs `helseid ARGS` off the runtime's threads (the emulator serves on them).
async fn helseid(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_helseid"))
            .args(args)
            .output()
            .expect("the helseid binary runs")
    })
    .await
    .expect("join")
}

impl Setup {
    /// `helseid ARGS --config FILE`, which must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("embedded"), "{stderr}");
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(["--config".to_owned(), self.config.clone()]);
        helseid(all).await
    }

    async fn active_her_ids(&self) -> Vec<i32> {
        cpapi_support::exported(&self.cpapi).await
    }
}

/// The JSON lines of `stdout`.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn as_json(parties: &[CommunicationParty]) -> Vec<Value> {
    parties
        .iter()
        .map(|p| serde_json::to_value(p).expect("JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn party_prints_the_parties_asked_for_in_order_once_each() {
    let setup = setup().await;
    let active = setup.active_her_ids().await;
    let asked: Vec<String> = [active[5], active[0], active[5], active[40]]
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut args = vec!["party"];
    args.extend(asked.iter().map(String::as_str));
    let stdout = setup.ok(&args).await;
    let expected = setup
        .cpapi
        .communication_parties(&[active[5], active[0], active[40]])
        .await
        .expect("bulk lookup");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, party) in lines.iter().zip(&expected) {
        assert!(
            line.trim_start().starts_with(&party.her_id.to_string()),
            "{line}"
        );
        assert!(
            line.contains(party.name.as_deref().expect("a name")),
            "{line}"
        );
        assert!(line.contains(&party.type_.to_string()), "{line}");
    }

    // --json: as the typed client encodes each party; more than 100 in several calls.
    let many: Vec<String> = active.iter().take(150).map(ToString::to_string).collect();
    let mut args = vec!["party", "--json"];
    args.extend(many.iter().map(String::as_str));
    let stdout = setup.ok(&args).await;
    let expected = setup
        .cpapi
        .communication_parties(&active[..150])
        .await
        .expect("bulk lookup");
    assert_eq!(json_lines(&stdout), as_json(&expected));
}

#[tokio::test(flavor = "multi_thread")]
async fn search_pages_through_one_type_of_party() {
    let setup = setup().await;
    let persons = |page| {
        let criteria = SearchParameters {
            name: None,
            organization_search_parameters: None,
            person_search_parameters: Some(PersonSearchParameters { hpr_number: None }),
            service_search_parameters: None,
        };
        let cpapi = setup.cpapi.clone();
        async move {
            cpapi
                .post_communication_party_search(page, std::num::NonZeroU32::new(4), &criteria)
                .await
                .expect("search")
                .into_inner()
                .communication_parties
                .expect("parties")
        }
    };
    let first = setup
        .ok(&["search", "--type", "person", "--size", "4", "--json"])
        .await;
    let second = setup
        .ok(&[
            "search", "--type", "person", "--size", "4", "--page", "2", "--json",
        ])
        .await;
    let page1 = persons(None).await;
    let page2 = persons(std::num::NonZeroU32::new(2)).await;
    assert_eq!(page1.len(), 4);
    assert!(
        page1
            .iter()
            .all(|p| p.type_ == CommunicationPartyType::Person)
    );
    assert_eq!(json_lines(&first), as_json(&page1));
    assert_eq!(json_lines(&second), as_json(&page2));
    assert_ne!(first, second);

    // By name, for people to read.
    let stdout = setup
        .ok(&[
            "search",
            "--name",
            "kommune",
            "--type",
            "Organization",
            "--size",
            "100",
        ])
        .await;
    assert!(stdout.lines().count() >= 2, "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("Organization") && l.to_lowercase().contains("kommune")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn org_prints_the_organisation_with_the_number() {
    let setup = setup().await;
    let active = setup.active_her_ids().await;
    let parties = setup
        .cpapi
        .communication_parties(&active)
        .await
        .expect("bulk lookup");
    let organisation = parties
        .iter()
        .find(|p| p.type_ == CommunicationPartyType::Organization)
        .expect("an organisation");
    let number = organisation
        .organization_details
        .as_ref()
        .and_then(|d| d.organization_number.clone())
        .expect("an organisation number");
    let stdout = setup.ok(&["org", &number]).await;
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(&format!("org {number}")), "{stdout}");
    assert!(
        stdout.contains(&organisation.her_id.to_string()),
        "{stdout}"
    );
    let stdout = setup.ok(&["org", &number, "--json"]).await;
    assert_eq!(
        json_lines(&stdout),
        as_json(std::slice::from_ref(organisation))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_lists_the_pairs_and_prints_the_certificates_as_pem() {
    let setup = setup().await;
    let active = setup.active_her_ids().await;
    let her_id = active[0];
    let pairs = setup
        .cpapi
        .get_certificate_by_her_id(her_id, Some(true))
        .await
        .expect("certificates")
        .into_inner();
    assert!(pairs.len() >= 2, "current and earlier pairs");
    let id = her_id.to_string();
    let stdout = setup.ok(&["cert", &id, "--historic"]).await;
    assert_eq!(stdout.lines().count(), 2 * pairs.len(), "{stdout}");
    for pair in &pairs {
        let thumbprint = pair
            .signing_certificate
            .as_ref()
            .and_then(|c| c.thumbprint.as_deref())
            .expect("a thumbprint");
        assert!(stdout.contains(thumbprint), "{stdout}");
    }
    let current = setup.ok(&["cert", &id]).await;
    assert_eq!(current.lines().count(), 2, "{current}");
    assert!(
        current.lines().all(|l| l.starts_with("current ")),
        "{current}"
    );

    // --pem: the DER the API sends, as PEM.
    let signing = setup
        .cpapi
        .get_certificate_signing_by_her_id(her_id)
        .await
        .expect("signing certificate")
        .into_inner();
    let stdout = setup.ok(&["cert", &id, "--signing", "--pem"]).await;
    let body: String = stdout.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(
        stdout.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{stdout}"
    );
    assert!(stdout.lines().all(|l| l.len() <= 64), "{stdout}");
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        engine.decode(body).expect("base64"),
        engine
            .decode(signing.certificate_value.expect("DER"))
            .expect("base64")
    );
    let both = setup.ok(&["cert", &id, "--pem"]).await;
    assert_eq!(both.matches("-----BEGIN CERTIFICATE-----").count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_mirrors_the_register_and_catches_up_from_its_cursor() {
    let setup = setup().await;
    let db = setup.dir.path("register.db").display().to_string();
    let active = setup.active_her_ids().await;
    let stdout = setup.ok(&["sync", "--db", &db]).await;
    assert_eq!(stdout.lines().count(), 1, "a one-line summary: {stdout}");
    assert!(
        stdout.contains(&format!(
            "{} parties; this sync copied {}",
            active.len(),
            active.len()
        )),
        "{stdout}"
    );

    let renamed = active[7];
    let events = setup
        .emulator
        .rename_party(renamed, "Omdøpt legekontor")
        .expect("a party");
    let stdout = setup.ok(&["sync", "--db", &db]).await;
    assert!(
        stdout.contains(&format!(
            "copied 0, read {} event{} and {0} changed part",
            events.len(),
            if events.len() == 1 { "" } else { "s" }
        )),
        "{stdout}"
    );
    let next = setup.emulator.cpapi_events() + 1;
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("next sequence number {next}")),
        "{stdout}"
    );
    let store = SqliteStore::open(&db).expect("the database");
    let party = store.party(renamed).expect("read").expect("stored");
    assert_eq!(party.name.as_deref(), Some("Omdøpt legekontor"));
    assert_eq!(store.count().expect("count"), active.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_1_with_one_line_that_names_it() {
    let setup = setup().await;
    for (args, says) in [
        (&["party", "abc"][..], "`abc` is not a HER-id"),
        (&["party", "1"], "no party has HER-id 1"),
        (
            &["search", "--size", "0"],
            "--size takes a whole number from 1 to 100, not `0`",
        ),
        (
            &["search", "--page", "0"],
            "--page takes a whole number from 1",
        ),
        (
            &["search", "--type", "robot"],
            "--type takes organization, person or service",
        ),
        (&["org", "12345"], "`12345` is not an organisation number"),
        (
            &["org", "999999999"],
            "no organisation has organisation number 999999999",
        ),
        (&["cert", "1"], "no party has HER-id 1"),
        (
            &["cert", "abc\u{1b}[31m"],
            r"`abc\u{1b}[31m` is not a HER-id",
        ),
        // The library's escaping: line separators and bidi overrides too.
        (
            &["org", "1\u{2028}2\u{202e}3\t"],
            r"`1\u{2028}2\u{202e}3\t` is not an organisation number",
        ),
    ] {
        let output = setup.run(args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_config_the_commands_run_against_the_embedded_emulator() {
    let output = helseid(
        ["search", "--size", "1", "--json"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("embedded"));
    let found = json_lines(&String::from_utf8_lossy(&output.stdout));
    let her_id = found[0]["herId"].as_i64().expect("a HER-id").to_string();
    let output = helseid(vec!["party".to_owned(), her_id.clone()]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_start().starts_with(&her_id), "{stdout}");

    let dir = TempDir::new("cli-embedded-sync");
    let db = dir.path("register.db").display().to_string();
    let output = helseid(vec!["sync".to_owned(), "--db".to_owned(), db.clone()]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = SqliteStore::open(&db).expect("the database");
    assert!(store.count().expect("count") > 200);
    for command in ["party", "search", "org", "cert", "sync"] {
        let output = helseid(vec![command.to_owned(), "--help".to_owned()]).await;
        assert!(output.status.success(), "{command}");
        let help = String::from_utf8_lossy(&output.stdout);
        for flag in ["--config", "--env", "--base-url", "--tenant"] {
            assert!(help.contains(flag), "{command} --help lacks {flag}");
        }
    }
}
