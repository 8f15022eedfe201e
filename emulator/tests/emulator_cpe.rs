//! The emulator's CPE side: the CommunicationParty Events API over its seeded register,
//! behind access tokens from its own token endpoint. Everything goes over real HTTP on
//! 127.0.0.1 with real signatures.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use http::{StatusCode, header};
use serde_json::{Value, json};

use helseid_emulator::Emulator;
use support::*;

/// An emulator with one client holding the CPE scope, and a token for it.
async fn cpe() -> (Emulator, String) {
    let client = TestClient::ec("cpe-client");
    let emulator = emulator_with(&client).await;
    let token = access_token(&emulator, &client).await;
    (emulator, token)
}

/// GETs a CPE path (with its query) with the token; asserts 200 and returns the body.
async fn get_ok(emulator: &Emulator, path_and_query: &str, token: &str) -> Value {
    let (status, headers, body) = get_bearer(
        &format!("{}{path_and_query}", emulator.cpe_base_url()),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "GET {path_and_query}: {body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    body
}

/// URL-encodes a query value.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Reads a date-time the two ways .NET writes it: with an offset, or without (UTC).
fn instant(written: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(written)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(written, "%Y-%m-%dT%H:%M:%S%.f").map(|at| at.and_utc())
        })
        .unwrap_or_else(|e| panic!("{written:?} is not a .NET date-time: {e}"))
}

/// Reads the whole feed from its beginning by following `Links.Next.Href`; returns the
/// pages.
async fn all_pages(emulator: &Emulator, token: &str, first: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(href) = next {
        assert!(pages.len() < 100, "the feed does not end");
        let page = get_ok(emulator, &href, token).await;
        next = page["Links"]["Next"]["Href"].as_str().map(str::to_owned);
        pages.push(page);
    }
    pages
}

fn events_of(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|page| {
            page["CommunicationParties"]
                .as_array()
                .expect("array")
                .clone()
        })
        .collect()
}

/// Asserts a ProblemDetails answer whose detail contains `fragment`.
#[track_caller]
fn assert_problem(
    result: &(StatusCode, http::HeaderMap, Value),
    status: StatusCode,
    fragment: &str,
) {
    support::assert_problem(result, "application/json", status, fragment);
}

#[tokio::test]
async fn export_lists_every_party_and_the_last_event() {
    let (emulator, token) = cpe().await;
    let export = get_ok(&emulator, "/CommunicationPartyExport", &token).await;
    let parties = export["CommunicationParties"].as_array().expect("parties");
    assert_eq!(parties.len(), emulator.cpe_parties());
    assert_eq!(emulator.cpe_parties(), 300);
    assert_eq!(emulator.cpe_events(), 487);

    let her_ids: HashSet<i64> = parties
        .iter()
        .map(|p| p["HerId"].as_i64().expect("HerId"))
        .collect();
    assert_eq!(her_ids.len(), parties.len(), "HER-ids are unique");
    let first = &parties[0];
    assert_eq!(first["Name"], "Oslo universitetssykehus HF");
    assert_eq!(first["Type"], "Organization");
    assert_eq!(first["ParentHerId"], Value::Null);
    assert_eq!(first["Municipality"], "0301");
    assert!(
        first["OrganizationNumber"]
            .as_i64()
            .is_some_and(|n| (100_000_000..1_000_000_000).contains(&n))
    );
    assert!(first["Valid"]["From"].is_string());
    for kind in ["Organization", "Service", "Person"] {
        assert!(parties.iter().any(|p| p["Type"] == kind), "a {kind}");
    }
    let person = parties
        .iter()
        .find(|p| p["Type"] == "Person")
        .expect("person");
    assert!(person["ParentHerId"].is_i64() && person["ParentName"].is_string());
    assert!(
        parties.iter().any(|p| p["Valid"]["To"].is_string()),
        "some are deactivated"
    );
    // The names the module documentation gives as examples.
    for name in ["Legekontoret Storgata", "Fastlege Kari Dahl"] {
        assert!(parties.iter().any(|p| p["Name"] == name), "{name}");
    }

    // The export ends where the feed ends.
    let pages = all_pages(&emulator, &token, "/CommunicationPartyEvents").await;
    let events = events_of(&pages);
    let last = events.last().expect("events");
    assert_eq!(export["LastEventId"], last["EventId"]);
    assert_eq!(export["LastDateTimeOffset"], last["FromDatetime"]);
    let after_export = get_ok(
        &emulator,
        &format!(
            "/CommunicationPartyEvents?EventId={}",
            export["LastEventId"].as_str().expect("id")
        ),
        &token,
    )
    .await;
    assert_eq!(
        after_export,
        json!({"CommunicationParties": [], "Links": {}})
    );
}

#[tokio::test]
async fn paging_visits_every_event_exactly_once() {
    let (emulator, token) = cpe().await;
    let pages = all_pages(&emulator, &token, "/CommunicationPartyEvents").await;
    assert_eq!(pages.len(), 5, "487 events at 100 a page");
    for (i, page) in pages.iter().enumerate() {
        let count = page["CommunicationParties"]
            .as_array()
            .expect("array")
            .len();
        let links = &page["Links"];
        if i + 1 < pages.len() {
            assert_eq!(count, 100);
            let last_id = page["CommunicationParties"][99]["EventId"]
                .as_str()
                .expect("id");
            assert_eq!(
                links["Next"]["Href"],
                format!("/CommunicationPartyEvents?EventId={last_id}")
            );
        } else {
            assert_eq!(count, 87);
            assert_eq!(*links, json!({}), "the last page has no Next");
        }
    }

    let events = events_of(&pages);
    assert_eq!(events.len(), emulator.cpe_events());
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["EventId"].as_str().expect("EventId"))
        .collect();
    assert_eq!(ids.len(), events.len(), "no event is visited twice");
    assert!(
        ids.iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    );

    let mut created = HashSet::new();
    let mut previous: Option<DateTime<Utc>> = None;
    for event in &events {
        let at = instant(event["FromDatetime"].as_str().expect("FromDatetime"));
        assert!(previous.is_none_or(|p| p < at), "oldest first");
        previous = Some(at);
        let her_id = event["HerId"].as_i64().expect("HerId");
        assert_eq!(event["CommunicationParty"]["HerId"], her_id);
        assert!(event["OrgNr"].is_i64(), "{event}");
        match event["EventType"].as_str() {
            Some("CommunicationPartyCreated") => assert!(created.insert(her_id), "created twice"),
            Some("CommunicationPartyUpdated") => {
                assert!(created.contains(&her_id), "updated before created")
            }
            other => panic!("unexpected EventType {other:?}"),
        }
    }
    assert_eq!(created.len(), emulator.cpe_parties());
    assert_eq!(emulator.cpe_requests(), 5);
}

#[tokio::test]
async fn the_page_size_is_configurable() {
    let client = TestClient::ec("paged");
    let emulator = Emulator::builder()
        .client(client.registration(&[CP_SCOPE]))
        .cpe_page_size(200)
        .start()
        .await
        .expect("start");
    let token = access_token(&emulator, &client).await;
    let pages = all_pages(&emulator, &token, "/CommunicationPartyEvents").await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p["CommunicationParties"].as_array().expect("array").len())
        .collect();
    assert_eq!(sizes, [200, 200, 87]);

    let error = Emulator::builder()
        .cpe_page_size(0)
        .start()
        .await
        .expect_err("zero");
    assert!(
        matches!(&error, helseid_emulator::Error::Setting { setting, .. } if *setting == "cpe_page_size"),
        "{error}"
    );
}

#[tokio::test]
async fn event_id_reads_the_events_after_that_event() {
    let (emulator, token) = cpe().await;
    let first = get_ok(&emulator, "/CommunicationPartyEvents", &token).await;
    let events = first["CommunicationParties"].as_array().expect("array");
    let id = events[41]["EventId"].as_str().expect("id");
    let after = get_ok(
        &emulator,
        &format!("/CommunicationPartyEvents?EventId={id}"),
        &token,
    )
    .await;
    assert_eq!(after["CommunicationParties"][0], events[42]);
    assert_eq!(
        after["CommunicationParties"]
            .as_array()
            .expect("array")
            .len(),
        100
    );
}

#[tokio::test]
async fn from_datetime_filters_with_and_without_an_offset() {
    let (emulator, token) = cpe().await;
    let events = events_of(&all_pages(&emulator, &token, "/CommunicationPartyEvents").await);
    let position = |id: &Value| {
        events
            .iter()
            .position(|e| e["EventId"] == *id)
            .expect("known")
    };
    // The first event of the answer, and how many events it holds.
    let first_from = async |from: String| {
        let pages = all_pages(
            &emulator,
            &token,
            &format!("/CommunicationPartyEvents?fromDatetime={}", encode(&from)),
        )
        .await;
        let found = events_of(&pages);
        (position(&found[0]["EventId"]), found.len())
    };

    for index in [0, 230, 300, 486] {
        let written = events[index]["FromDatetime"]
            .as_str()
            .expect("FromDatetime")
            .to_owned();
        let at = instant(&written);
        let expected = (index, events.len() - index);
        // As the feed wrote it, as UTC without an offset, with Z, and in another offset.
        assert_eq!(first_from(written.clone()).await, expected, "{written}");
        let utc = seven_digits(&at);
        assert_eq!(first_from(utc.clone()).await, expected, "{utc}");
        assert_eq!(first_from(format!("{utc}Z")).await, expected);
        let new_york = at.with_timezone(&FixedOffset::west_opt(5 * 3600).expect("offset"));
        let in_new_york = format!("{}-05:00", seven_digits(&new_york));
        assert_eq!(
            first_from(in_new_york.clone()).await,
            expected,
            "{in_new_york}"
        );
        // A tick later, the event is left out.
        if index + 1 < events.len() {
            let later = format!(
                "{}+00:00",
                seven_digits(&(at + chrono::Duration::nanoseconds(100)))
            );
            assert_eq!(
                first_from(later).await,
                (index + 1, events.len() - index - 1)
            );
        }
    }
    assert!(
        events
            .iter()
            .any(|e| !e["FromDatetime"].as_str().expect("s").contains('+'))
    );

    // After the last event there is nothing; long before the first, everything.
    let empty = get_ok(
        &emulator,
        "/CommunicationPartyEvents?fromDatetime=2030-01-01T00%3A00%3A00%2B01%3A00",
        &token,
    )
    .await;
    assert_eq!(empty, json!({"CommunicationParties": [], "Links": {}}));
    assert_eq!(
        first_from("2001-01-01T00:00:00".to_owned()).await,
        (0, events.len())
    );

    // EventId and fromDatetime together: after the event, and not before the time.
    let id = events[10]["EventId"].as_str().expect("id");
    let from = events[250]["FromDatetime"].as_str().expect("from");
    let both = get_ok(
        &emulator,
        &format!(
            "/CommunicationPartyEvents?EventId={id}&fromDatetime={}",
            encode(from)
        ),
        &token,
    )
    .await;
    assert_eq!(both["CommunicationParties"][0], events[250]);
}

#[tokio::test]
async fn malformed_parameters_get_problem_details() {
    let (emulator, token) = cpe().await;
    let base = emulator.cpe_base_url();
    let get =
        async |path_and_query: &str| get_bearer(&format!("{base}{path_and_query}"), &token).await;
    let bad = StatusCode::BAD_REQUEST;

    assert_problem(
        &get("/CommunicationPartyEvents?EventId=0123456789abcdef").await,
        bad,
        "EventId `0123456789abcdef` is not the id of an event",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?EventId=not-an-id").await,
        bad,
        "EventId `not-an-id` is malformed",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?EventId=").await,
        bad,
        "EventId is empty",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?fromDatetime=yesterday").await,
        bad,
        "fromDatetime `yesterday` is not a date-time",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?fromDatetime=2025-05-01T12:00:00.12345678%2B02:00").await,
        bad,
        "fromDatetime `2025-05-01T12:00:00.12345678+02:00` has 8 fractional digits",
    );
    // A `+` that was not URL-encoded arrives as a space.
    assert_problem(
        &get("/CommunicationPartyEvents?fromDatetime=2025-05-01T12:00:00+02:00").await,
        bad,
        "URL-encode `+` as `%2B`",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?eventId=abc").await,
        bad,
        "`eventId` must be spelled EventId",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?pageSize=10").await,
        bad,
        "unknown query parameter `pageSize`",
    );
    assert_problem(
        &get("/CommunicationPartyEvents?fromDatetime=2025-01-01T00:00:00&fromDatetime=2025-01-02T00:00:00").await,
        bad,
        "fromDatetime is given more than once",
    );
    assert_problem(
        &get("/CommunicationParties/abc").await,
        bad,
        "herId `abc` is not a HER-id",
    );
    assert_problem(
        &get("/CommunicationParties/2147483648").await,
        bad,
        "herId `2147483648` is not a HER-id",
    );
    // Found by fuzz_cpe_query: a segment that is not UTF-8 once percent-decoded got
    // axum's plain-text 400, not a ProblemDetails.
    assert_problem(
        &get("/CommunicationParties/%A0").await,
        bad,
        "herId `%A0` is not a HER-id",
    );
    let not_found = get("/CommunicationParties/42").await;
    assert_problem(
        &not_found,
        StatusCode::NOT_FOUND,
        "no communication party has herId 42",
    );
    assert_eq!(not_found.2["instance"], "/CommunicationParties/42");
}

#[tokio::test]
async fn a_party_is_read_by_her_id() {
    let (emulator, token) = cpe().await;
    let export = get_ok(&emulator, "/CommunicationPartyExport", &token).await;
    for party in export["CommunicationParties"]
        .as_array()
        .expect("parties")
        .iter()
        .step_by(37)
    {
        let her_id = party["HerId"].as_i64().expect("HerId");
        let read = get_ok(
            &emulator,
            &format!("/CommunicationParties/{her_id}"),
            &token,
        )
        .await;
        assert_eq!(read, *party);
    }
}

#[tokio::test]
async fn the_seed_writes_both_dotnet_forms() {
    let (emulator, token) = cpe().await;
    let events = events_of(&all_pages(&emulator, &token, "/CommunicationPartyEvents").await);
    let written: Vec<&str> = events
        .iter()
        .map(|e| e["FromDatetime"].as_str().expect("s"))
        .collect();
    let has_offset = |s: &str| s.ends_with("+01:00") || s.ends_with("+02:00");
    let seven = |s: &str| {
        let rest = &s[19..];
        rest.starts_with('.') && rest[1..].bytes().take_while(u8::is_ascii_digit).count() == 7
    };
    assert!(
        written.iter().any(|s| has_offset(s) && seven(s)),
        "2025-05-01T12:00:00.1234567+02:00"
    );
    assert!(
        written.iter().any(|s| s.ends_with("+01:00"))
            && written.iter().any(|s| s.ends_with("+02:00"))
    );
    let without: Vec<&&str> = written.iter().filter(|s| !has_offset(s)).collect();
    assert_eq!(without.len(), 487 / 7, "every seventh event has no offset");
    assert!(
        without.iter().any(|s| seven(s)),
        "2025-05-01T12:00:00.1234567"
    );
    for s in &written {
        instant(s);
    }

    let export = get_ok(&emulator, "/CommunicationPartyExport", &token).await;
    let froms: Vec<&str> = export["CommunicationParties"]
        .as_array()
        .expect("parties")
        .iter()
        .map(|p| p["Valid"]["From"].as_str().expect("From"))
        .collect();
    assert!(froms.iter().any(|s| has_offset(s)));
    assert!(
        froms
            .iter()
            .any(|s| !has_offset(s) && s.ends_with("T00:00:00"))
    );
    for s in &froms {
        instant(s);
    }
}

#[tokio::test]
async fn a_published_update_follows_the_last_event() {
    let (emulator, token) = cpe().await;
    let export = get_ok(&emulator, "/CommunicationPartyExport", &token).await;
    let last_id = export["LastEventId"]
        .as_str()
        .expect("LastEventId")
        .to_owned();
    let party = &export["CommunicationParties"][17];
    let her_id = i32::try_from(party["HerId"].as_i64().expect("HerId")).expect("i32");

    assert_eq!(
        emulator.publish_cpe_update(42),
        None,
        "no party has HER-id 42"
    );
    let id = emulator.publish_cpe_update(her_id).expect("a known party");
    assert_ne!(id, last_id);
    assert_eq!(emulator.cpe_events(), 488);

    let news = get_ok(
        &emulator,
        &format!("/CommunicationPartyEvents?EventId={last_id}"),
        &token,
    )
    .await;
    let events = news["CommunicationParties"].as_array().expect("array");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["EventId"], id);
    assert_eq!(events[0]["EventType"], "CommunicationPartyUpdated");
    assert_eq!(events[0]["HerId"], her_id);
    assert_eq!(events[0]["CommunicationParty"], *party);
    assert!(
        instant(events[0]["FromDatetime"].as_str().expect("s"))
            > instant(export["LastDateTimeOffset"].as_str().expect("s"))
    );
    assert_eq!(news["Links"], json!({}));

    let export = get_ok(&emulator, "/CommunicationPartyExport", &token).await;
    assert_eq!(export["LastEventId"], id);
    let nothing = get_ok(
        &emulator,
        &format!("/CommunicationPartyEvents?EventId={id}"),
        &token,
    )
    .await;
    assert_eq!(nothing["CommunicationParties"], json!([]));
}

#[tokio::test]
async fn every_emulator_starts_with_the_same_register() {
    let (a, token_a) = cpe().await;
    let (b, token_b) = cpe().await;
    let export_a = get_ok(&a, "/CommunicationPartyExport", &token_a).await;
    let export_b = get_ok(&b, "/CommunicationPartyExport", &token_b).await;
    assert_eq!(export_a, export_b);
    let page_a = get_ok(&a, "/CommunicationPartyEvents", &token_a).await;
    let page_b = get_ok(&b, "/CommunicationPartyEvents", &token_b).await;
    assert_eq!(page_a, page_b);
}

#[tokio::test]
async fn the_openapi_document_needs_no_token() {
    let (emulator, _) = cpe().await;
    let doc = get_json(&format!("{}/openapi.json", emulator.issuer())).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"], json!([{"url": emulator.cpe_base_url()}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["HelseID"]["scheme"],
        "bearer"
    );
    assert_eq!(emulator.cpe_requests(), 0, "not a CPE request");
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWS signing input of a header and claims: `b64(header).b64(claims)`.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// A JWT with exactly this header and these claims, RS256-signed with a fresh RSA key
/// that is not the emulator's.
fn sign_rs256_with_own_key(header: &Value, claims: &Value) -> String {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let input = signing_input(header, claims);
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    format!("{input}.{}", b64(signature))
}

/// A date-time with exactly seven fractional digits, as .NET writes it, without an offset.
fn seven_digits<Tz: chrono::TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::Timelike;
    format!(
        "{}.{:07}",
        at.format("%Y-%m-%dT%H:%M:%S"),
        at.nanosecond() / 100
    )
}

/// The `WWW-Authenticate` challenge of CPE's verifier for an error and its description
/// (the fixed texts of `helseid::verify`).
fn challenge(error: &str, description: &str) -> String {
    format!("Bearer error=\"{error}\", error_description=\"{description}\"")
}

/// The challenge for an invalid token.
fn invalid_token(description: &str) -> String {
    challenge("invalid_token", description)
}

/// Sends `authorization` to all three CPE endpoints; asserts the status, the exact
/// challenge, an empty body, and that the challenge does not quote the token.
async fn assert_refused(
    emulator: &Emulator,
    authorization: Option<&str>,
    status: StatusCode,
    expected: &str,
) {
    for path in [
        "/CommunicationPartyEvents",
        "/CommunicationPartyExport",
        "/CommunicationParties/1",
    ] {
        let url = format!("{}{path}", emulator.cpe_base_url());
        let (got, headers, body) = get_with_authorization(&url, authorization).await;
        assert_eq!(got, status, "{path} with {expected}");
        let challenges: Vec<&str> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("ASCII"))
            .collect();
        assert_eq!(challenges, [expected], "{path}");
        assert!(body.is_empty());
        if let Some(token) = authorization.and_then(|a| a.split(' ').nth(1)) {
            for part in token.split('.').filter(|p| p.len() >= 8) {
                assert!(!expected.contains(part), "the challenge quotes the token");
            }
        }
    }
}

/// [`assert_refused`] with 401.
async fn assert_unauthorized(emulator: &Emulator, authorization: Option<&str>, expected: &str) {
    assert_refused(emulator, authorization, StatusCode::UNAUTHORIZED, expected).await;
}

#[tokio::test]
async fn requests_without_a_bearer_token_are_refused() {
    let (emulator, _) = cpe().await;
    // No credentials, or none of a scheme CPE takes: the challenge alone (RFC 6750 3.1).
    assert_unauthorized(&emulator, None, "Bearer").await;
    assert_unauthorized(&emulator, Some("Basic Y3BlLWNsaWVudDpzZWNyZXQ="), "Bearer").await;
    assert_refused(
        &emulator,
        Some("Bearer"),
        StatusCode::BAD_REQUEST,
        &challenge("invalid_request", "the Authorization header is malformed"),
    )
    .await;
    assert_unauthorized(
        &emulator,
        Some("Bearer not-a-jwt"),
        &invalid_token("the token is not a compact JWS"),
    )
    .await;
    assert_unauthorized(
        &emulator,
        Some("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
        &invalid_token("the token's typ is not at+jwt"),
    )
    .await;
    // A DPoP-bound token is not taken, nor the DPoP scheme.
    assert_unauthorized(
        &emulator,
        Some("DPoP eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
        "Bearer",
    )
    .await;
    assert_eq!(emulator.cpe_requests(), 18, "refused requests are counted");
}

#[tokio::test]
async fn tokens_the_emulator_did_not_sign_are_refused() {
    let (emulator, token) = cpe().await;
    let (other, other_token) = cpe().await;
    // Another emulator's token: another key, another issuer.
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {other_token}")),
        &invalid_token("the token's issuer is not accepted"),
    )
    .await;

    let (header, claims) = decode_jwt(&token);
    let other_signature = other_token.rsplit('.').next().expect("signature");
    let signature = |jwt: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.rsplit('.').next().expect("signature"))
            .expect("base64url")
    };
    // This emulator's header and claims, signed by the other emulator's key.
    let forged = raw_jwt(&header, &claims, &signature(&other_token));
    assert!(forged.ends_with(other_signature));
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {forged}")),
        &invalid_token("the token's signature does not verify"),
    )
    .await;

    // The emulator's own signature over changed claims: a later exp.
    let mut extended = claims.clone();
    extended["exp"] = json!(claims["exp"].as_i64().expect("exp") + 86_400);
    let tampered = raw_jwt(&header, &extended, &signature(&token));
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {tampered}")),
        &invalid_token("the token's signature does not verify"),
    )
    .await;

    // An expired token (exp an hour ago) with the emulator's header (its kid, RS256,
    // at+jwt), signed by a key of our own: refused for its signature, which is checked
    // before exp. (A token the emulator did sign is refused once expired:
    // tests/verify.rs.)
    let mut expired = claims.clone();
    expired["iat"] = json!(now() - 7200);
    expired["nbf"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let self_signed = sign_rs256_with_own_key(&header, &expired);
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {self_signed}")),
        &invalid_token("the token's signature does not verify"),
    )
    .await;

    // The emulator's kid with a symmetric alg, keyed by something public.
    let mut hs256 = header.clone();
    hs256["alg"] = json!("HS256");
    let input = signing_input(&hs256, &claims);
    let mac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        b"the emulator's kid is public",
    );
    let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
    let confused = format!("{input}.{}", b64(tag.as_ref()));
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {confused}")),
        &invalid_token("the token's algorithm is not accepted"),
    )
    .await;

    // The real token still works.
    let ok = get_bearer(
        &format!("{}/CommunicationPartyExport", emulator.cpe_base_url()),
        &token,
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK);
    other.shutdown().await;
}

#[tokio::test]
async fn tokens_without_the_cpe_scope_are_refused() {
    let cpe_client = TestClient::ec("cpe-reader");
    let other_client = TestClient::ec("sfm-reader");
    let emulator = Emulator::builder()
        .client(cpe_client.registration(&[CP_SCOPE, CPAPI_SCOPE]))
        .client(other_client.registration(&["e-helse:sfm.api/sfm.api"]))
        .start()
        .await
        .expect("start");
    let token = access_token(&emulator, &other_client).await;
    assert_eq!(
        decode_jwt(&token).1["scope"],
        json!(["e-helse:sfm.api/sfm.api"])
    );
    // Another API's token: not meant for CPE.
    assert_unauthorized(
        &emulator,
        Some(&format!("Bearer {token}")),
        &invalid_token("the token is not meant for this API"),
    )
    .await;
    // The CommunicationParty API v2's scope: CPE's audience, not its scope.
    let (status, body) = request_token(
        &emulator,
        &cpe_client.id,
        &cpe_client.assertion(&emulator),
        &[("scope", CPAPI_SCOPE)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v2 = body["access_token"].as_str().expect("token");
    assert_eq!(decode_jwt(v2).1["aud"], "nhn:cp-api");
    assert_refused(
        &emulator,
        Some(&format!("Bearer {v2}")),
        StatusCode::FORBIDDEN,
        "Bearer error=\"insufficient_scope\", error_description=\"the token has none of the \
         scopes this API requires\", scope=\"nhn:cp-api/access\"",
    )
    .await;

    // The scheme name is case-insensitive, as in RFC 9110.
    let token = access_token(&emulator, &cpe_client).await;
    let url = format!("{}/CommunicationPartyExport", emulator.cpe_base_url());
    let (status, _, _) = get_with_authorization(&url, Some(&format!("bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK);
}
