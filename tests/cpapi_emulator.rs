//! The typed CommunicationParty API v2 client through its default stack (HelseID layer
//! with DPoP, timeout, hyper-util) against the emulator, which demands a DPoP-bound
//! token and a matching proof on every call.
#![cfg(feature = "cpapi")]

#[path = "support/cpapi.rs"]
mod cpapi_support;
mod support;

use std::collections::HashSet;
use std::num::{NonZeroU32, NonZeroU64};

use futures_util::TryStreamExt;
use helseid::cpapi::{self, Client, ClientInfo, types};
use helseid_emulator::{Emulator, EmulatorBuilder};
use http::StatusCode;
use support::TestClient;

const CLIENT_ID: &str = "epj-v2";

async fn cpapi_against(builder: EmulatorBuilder) -> (Emulator, Client) {
    cpapi_support::cpapi_against(builder, CLIENT_ID).await
}

#[tokio::test]
async fn every_operation_works_against_the_emulator_through_the_dpop_stack() {
    let (emulator, cpapi) = cpapi_against(Emulator::builder()).await;
    assert_eq!(cpapi.baseurl(), emulator.cpapi_base_url());

    let export = cpapi
        .get_communication_party_export(None)
        .await
        .expect("export")
        .into_inner();
    assert_eq!(
        export.last_sequence_number,
        Some(emulator.cpapi_events() as i64)
    );
    let everyone = cpapi
        .get_communication_party_export(Some(true))
        .await
        .expect("export with the deactivated")
        .into_inner();
    let everyone = everyone.communication_parties.expect("HER-ids");
    let active = export.communication_parties.expect("HER-ids");
    assert_eq!(everyone.len(), emulator.cpe_parties());
    assert!(active.len() < everyone.len());

    let her_id = active[0];
    let party = cpapi
        .get_communication_party_by_her_id(her_id)
        .await
        .expect("party")
        .into_inner();
    assert_eq!(party.her_id, her_id);

    // The bulk lookup, split into calls of 100: three for 250 HER-ids.
    let parties = cpapi
        .communication_parties(&everyone[..250])
        .await
        .expect("parties");
    assert_eq!(
        parties.iter().map(|p| p.her_id).collect::<Vec<_>>(),
        everyone[..250]
    );
    let one = cpapi
        .post_communication_party(&types::HerIdInputCollection {
            her_ids: Some(vec![her_id, 1]),
        })
        .await
        .expect("one party")
        .into_inner();
    assert_eq!(
        one,
        std::slice::from_ref(&party),
        "unknown HER-ids are left out"
    );

    let legacy = cpapi
        .get_communication_party_legacy_by_her_id(her_id)
        .await
        .expect("legacy")
        .into_inner();
    assert_eq!(legacy.her_id, Some(her_id));

    let page = cpapi
        .post_communication_party_search(
            NonZeroU32::new(2),
            NonZeroU32::new(5),
            &types::SearchParameters {
                name: None,
                organization_search_parameters: None,
                person_search_parameters: None,
                service_search_parameters: None,
            },
        )
        .await
        .expect("search")
        .into_inner();
    assert_eq!(page.communication_parties.map(|p| p.len()), Some(5));

    let organisation = parties
        .iter()
        .find_map(|p| p.organization_details.as_ref()?.organization_number.clone())
        .expect("an organisation");
    let found = cpapi
        .get_organization_by_organization_number(&organisation)
        .await
        .expect("organisation")
        .into_inner();
    assert_eq!(
        found
            .organization_details
            .and_then(|d| d.organization_number),
        Some(organisation)
    );

    let pairs = cpapi
        .get_certificate_by_her_id(her_id, Some(true))
        .await
        .expect("certificates")
        .into_inner();
    for pair in &pairs {
        assert!(pair.signing_certificate.is_some());
    }
    let signing = cpapi.get_certificate_signing_by_her_id(her_id).await;
    let encryption = cpapi.get_certificate_encryption_by_her_id(her_id).await;
    assert_eq!(signing.is_ok(), party.current_signing_certificate.is_some());
    assert_eq!(
        encryption.is_ok(),
        party.current_encryption_certificate.is_some()
    );

    let page = cpapi
        .get_event(NonZeroU64::new(1), NonZeroU32::new(3))
        .await
        .expect("events")
        .into_inner();
    assert_eq!(page.results.map(|r| r.len()), Some(3));
    let latest = cpapi.get_event_latest().await.expect("latest").into_inner();
    assert_eq!(latest.sequence_number, Some(emulator.cpapi_events() as i64));

    match cpapi.get_communication_party_by_her_id(1).await {
        Err(e) => assert_eq!(e.status(), Some(StatusCode::NOT_FOUND), "{e}"),
        other => panic!("expected a 404, got {other:?}"),
    }
    // One DPoP-bound token served every call, each with its own proof.
    assert_eq!(emulator.tokens_issued(), 1);
    assert_eq!(emulator.cpapi_requests(), 16);
    assert_eq!(
        emulator.dpop_nonce_challenges(),
        1,
        "only the first token request"
    );
}

#[tokio::test]
async fn the_stream_reads_the_whole_feed_and_polls_from_the_next_sequence_number() {
    let (emulator, cpapi) = cpapi_against(Emulator::builder()).await;
    let mut stream = cpapi.events_from(1).max_events(100);
    let mut events = Vec::new();
    while let Some(event) = stream.try_next().await.expect("an event") {
        events.push(event);
    }
    assert_eq!(events.len(), emulator.cpapi_events());
    let numbers: Vec<Option<i64>> = events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(
        numbers,
        (1..=events.len() as i64).map(Some).collect::<Vec<_>>()
    );
    assert_eq!(
        emulator.cpapi_requests(),
        6,
        "five pages of 100, then an empty one"
    );
    let next = stream.next_sequence_number();
    assert_eq!(next, events.len() as i64 + 1);

    // Nothing new: one request, no events.
    let nothing: Vec<_> = cpapi
        .events_from(next)
        .try_collect()
        .await
        .expect("an empty page");
    assert!(nothing.is_empty());

    // A change is published: polling from where the stream stopped finds exactly it.
    let her_id = events[0].her_id.expect("a HER-id");
    emulator.publish_cpe_update(her_id).expect("a known party");
    let new: Vec<_> = cpapi
        .events_from(next)
        .try_collect()
        .await
        .expect("the update");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].sequence_number, Some(next));
    assert_eq!(new[0].her_id, Some(her_id));
    let parties: HashSet<i32> = events.iter().filter_map(|e| e.her_id).collect();
    assert!(parties.len() > 100, "events of many parties");
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn an_api_that_demands_nonces_is_answered_without_the_caller_noticing() {
    let (emulator, cpapi) = cpapi_against(Emulator::builder().cpapi_require_nonce(true)).await;
    for _ in 0..3 {
        cpapi.get_event_latest().await.expect("latest");
    }
    // One challenge at the API, answered once; then the nonce is remembered.
    assert_eq!(emulator.cpapi_requests(), 4);
    emulator.rotate_dpop_nonce();
    cpapi
        .get_event_latest()
        .await
        .expect("latest after a new nonce");
    assert_eq!(emulator.cpapi_requests(), 6);
}

/// Whether `openssl` reads `der` as an X.509 certificate (DER and, converted by it, PEM);
/// `None` when there is no `openssl` to ask.
fn openssl_reads(der: &[u8]) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args(["x509", "-inform", "der", "-noout", "-subject", "-dates"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(der).ok()?;
    let output = child.wait_with_output().ok()?;
    assert!(output.status.success(), "openssl refuses the certificate");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn organisations_and_services_have_real_certificates_persons_none() {
    use base64::Engine;
    let (_emulator, cpapi) = cpapi_against(Emulator::builder()).await;
    let everyone = cpapi
        .get_communication_party_export(Some(true))
        .await
        .expect("export")
        .into_inner()
        .communication_parties
        .expect("HER-ids");
    let parties = cpapi
        .communication_parties(&everyone[..60])
        .await
        .expect("parties");
    let organisation = parties
        .iter()
        .find(|p| p.type_ == types::CommunicationPartyType::Organization)
        .expect("an organisation");
    let person = parties
        .iter()
        .find(|p| p.type_ == types::CommunicationPartyType::Person)
        .expect("a person");

    let signing = cpapi
        .get_certificate_signing_by_her_id(organisation.her_id)
        .await
        .expect("a signing certificate")
        .into_inner();
    let encryption = cpapi
        .get_certificate_encryption_by_her_id(organisation.her_id)
        .await
        .expect("an encryption certificate")
        .into_inner();
    for (certificate, current) in [
        (&signing, &organisation.current_signing_certificate),
        (&encryption, &organisation.current_encryption_certificate),
    ] {
        let der = base64::engine::general_purpose::STANDARD
            .decode(certificate.certificate_value.as_deref().expect("DER"))
            .expect("base64");
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(certificate.thumbprint.as_deref(), Some(hex.as_str()));
        // The party names its current certificates.
        let current = current.as_ref().expect("current certificate");
        assert_eq!(current.thumbprint, certificate.thumbprint);
        assert_eq!(current.valid_from, certificate.valid_from);
        match openssl_reads(&der) {
            Some(text) => {
                let name = organisation.name.as_deref().expect("a name");
                assert!(text.contains(name), "{text}");
                assert!(text.contains("notAfter"), "{text}");
            }
            None => eprintln!("openssl is not installed: the DER is not shown to it"),
        }
    }
    assert_ne!(signing.thumbprint, encryption.thumbprint);
    // The same certificate on every call.
    let again = cpapi
        .get_certificate_signing_by_her_id(organisation.her_id)
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.certificate_value, signing.certificate_value);

    // The current pair, and with includeHistoric up to two earlier pairs.
    let current = cpapi
        .get_certificate_by_her_id(organisation.her_id, None)
        .await
        .expect("pairs")
        .into_inner();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].is_current, Some(true));
    let mut most = 1;
    for party in parties
        .iter()
        .filter(|p| p.current_signing_certificate.is_some())
    {
        let all = cpapi
            .get_certificate_by_her_id(party.her_id, Some(true))
            .await
            .expect("pairs")
            .into_inner();
        assert!((1..=3).contains(&all.len()));
        assert_eq!(all[0].is_current, Some(true));
        assert!(all[1..].iter().all(|pair| pair.is_current == Some(false)));
        for pairs in all.windows(2) {
            let from = |pair: &types::CertificatePairInfo| {
                pair.signing_certificate
                    .as_ref()
                    .and_then(|c| c.valid_from)
                    .expect("validFrom")
            };
            assert!(from(&pairs[0]) > from(&pairs[1]), "newest first");
        }
        most = most.max(all.len());
    }
    assert_eq!(most, 3, "some party has two earlier pairs");

    // Persons have none.
    assert!(person.current_signing_certificate.is_none());
    match cpapi.get_certificate_signing_by_her_id(person.her_id).await {
        Err(e) => assert_eq!(e.status(), Some(StatusCode::NOT_FOUND), "{e}"),
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn search_pages_and_bad_sizes_name_the_parameter() {
    let (_emulator, cpapi) = cpapi_against(Emulator::builder()).await;
    let everything = types::SearchParameters {
        name: None,
        organization_search_parameters: None,
        person_search_parameters: None,
        service_search_parameters: None,
    };
    let page = |number: u32, size: u32| {
        let everything = &everything;
        let cpapi = &cpapi;
        async move {
            cpapi
                .post_communication_party_search(
                    NonZeroU32::new(number),
                    NonZeroU32::new(size),
                    everything,
                )
                .await
        }
    };
    let first = page(1, 100).await.expect("page 1").into_inner();
    let second = page(2, 100).await.expect("page 2").into_inner();
    let ids = |page: &types::SearchResponse| -> Vec<i32> {
        page.communication_parties
            .iter()
            .flatten()
            .map(|p| p.her_id)
            .collect()
    };
    assert_eq!(ids(&first).len(), 100);
    assert!(
        ids(&first).last() < ids(&second).first(),
        "by HER-id, page after page"
    );
    let beyond = page(1000, 100).await.expect("past the end").into_inner();
    assert!(ids(&beyond).is_empty());

    // Size 101: a problem+json 400 that names the parameter.
    match page(1, 101).await {
        Err(e) => {
            assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
            assert_eq!(
                e.headers().unwrap()[http::header::CONTENT_TYPE],
                "application/problem+json"
            );
            let detail = e.problem().and_then(|p| p.detail.clone()).expect("detail");
            assert!(detail.starts_with("Size 101 is out of range"), "{detail}");
            // The problem's detail is in the one line.
            assert!(e.to_string().contains("Size 101 is out of range"), "{e}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }

    // Persons with an HPR number, organisations of a business type.
    let persons = cpapi
        .post_communication_party_search(
            None,
            NonZeroU32::new(100),
            &types::SearchParameters {
                person_search_parameters: Some(types::PersonSearchParameters { hpr_number: None }),
                ..everything.clone()
            },
        )
        .await
        .expect("persons")
        .into_inner();
    let persons = persons.communication_parties.expect("parties");
    assert!(!persons.is_empty());
    assert!(persons.iter().all(|p| p.person_details.is_some()));
    let hpr = persons[0]
        .person_details
        .as_ref()
        .expect("details")
        .hpr_number;
    let one = cpapi
        .post_communication_party_search(
            None,
            None,
            &types::SearchParameters {
                person_search_parameters: Some(types::PersonSearchParameters {
                    hpr_number: Some(hpr),
                }),
                ..everything.clone()
            },
        )
        .await
        .expect("one person")
        .into_inner();
    assert_eq!(
        one.communication_parties.map(|p| p.len()),
        Some(1),
        "HPR numbers are unique"
    );

    // A bulk lookup of more than 100 is refused by the API (the client splits it).
    let too_many = types::HerIdInputCollection {
        her_ids: Some((1..=101).collect()),
    };
    match cpapi.post_communication_party(&too_many).await {
        Err(e) => assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST), "{e}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(
        cpapi
            .communication_parties(&[])
            .await
            .expect("nothing")
            .is_empty()
    );
}

/// `value` without its `null`s (the typed client may leave a `null` out), and its
/// date-times in the form the typed client writes them (seven fractional digits: the
/// emulator, as .NET, trims trailing zeros).
fn comparable(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match support::without_nulls(value) {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), comparable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        Value::String(text) if text.contains('T') => text
            .parse::<cpapi::DateTimeOffset>()
            .map_or(Value::String(text), |at| Value::String(at.to_string())),
        other => other,
    }
}

/// Decodes `raw` as `T` and encodes it again; asserts that nothing but `null`s changed.
#[track_caller]
fn assert_lossless<T: serde::de::DeserializeOwned + serde::Serialize>(
    what: &str,
    raw: &serde_json::Value,
) {
    let decoded: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{what} does not decode: {e}\n{raw}"));
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    assert_eq!(comparable(&encoded), comparable(raw), "{what}");
}

#[tokio::test]
async fn every_operation_round_trips_the_emulators_json_through_the_types() {
    use http::{Method, Request, header};
    use http_body_util::Full;
    use serde_json::{Value, json};

    let client = TestClient::ec(CLIENT_ID);
    let emulator = Emulator::builder()
        .client(client.registration(&[cpapi::SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator");
    let key = support::dpop_key();
    let token = support::dpop_access_token(&emulator, &client, &key, cpapi::SCOPE).await;
    // The raw JSON of one call: `body` is posted when given.
    let call = |path: String, body: Option<Value>| {
        let (key, token) = (&key, &token);
        let url = format!("{}{path}", emulator.cpapi_base_url());
        async move {
            let method = if body.is_some() { "POST" } else { "GET" };
            let htu = url.split('?').next().unwrap_or_default().to_owned();
            let mut claims = support::proof_claims(method, &htu, None);
            claims["ath"] = json!(support::ath(token));
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).expect("a method"))
                .uri(&url)
                .header(header::AUTHORIZATION, format!("DPoP {token}"))
                .header("DPoP", support::sign_proof(key, &claims))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(bytes::Bytes::from(
                    body.map(|b| b.to_string()).unwrap_or_default(),
                )))
                .expect("a request");
            let (status, _, bytes) = support::send(request).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            serde_json::from_slice::<Value>(&bytes).expect("JSON")
        }
    };

    let export = call(
        "/api/v1/communicationparty/export?includeDeactivated=true".into(),
        None,
    )
    .await;
    assert_lossless::<types::CommunicationPartyExport>("the export", &export);
    let her_ids: Vec<i64> = export["communicationParties"]
        .as_array()
        .expect("HER-ids")
        .iter()
        .map(|id| id.as_i64().expect("a HER-id"))
        .collect();
    // Every party, in bulk, one by one, in the older model, and its certificates.
    for chunk in her_ids.chunks(100) {
        let parties = call(
            "/api/v1/communicationparty".into(),
            Some(json!({ "herIds": chunk })),
        )
        .await;
        assert_eq!(parties.as_array().map(Vec::len), Some(chunk.len()));
        assert_lossless::<Vec<types::CommunicationParty>>("a bulk lookup", &parties);
    }
    let mut certificates = 0;
    for her_id in her_ids.iter().step_by(9) {
        let party = call(format!("/api/v1/communicationparty/{her_id}"), None).await;
        assert_lossless::<types::CommunicationParty>("a party", &party);
        let legacy = call(format!("/api/v1/communicationparty/{her_id}/legacy"), None).await;
        assert_lossless::<types::CommunicationPartyLegacy>("a legacy party", &legacy);
        let pairs = call(
            format!("/api/v1/certificate/{her_id}?includeHistoric=true"),
            None,
        )
        .await;
        assert_lossless::<Vec<types::CertificatePairInfo>>("certificate pairs", &pairs);
        if party["currentSigningCertificate"].is_object() {
            for usage in ["signing", "encryption"] {
                let certificate = call(format!("/api/v1/certificate/{her_id}/{usage}"), None).await;
                assert_lossless::<types::Certificate>("a certificate", &certificate);
                certificates += 1;
            }
        }
        if let Some(number) = party["organizationDetails"]["organizationNumber"].as_str() {
            let organisation = call(format!("/api/v1/organization/{number}"), None).await;
            assert_lossless::<types::CommunicationParty>("an organisation", &organisation);
        }
    }
    assert!(certificates > 10);
    let search = call(
        "/api/v1/communicationparty/search?Page=2&Size=50".into(),
        Some(json!({ "name": "a" })),
    )
    .await;
    assert_lossless::<types::SearchResponse>("a search", &search);
    let events = call(
        "/api/v1/event?fromSequenceNumber=1&maxEvents=1000".into(),
        None,
    )
    .await;
    assert_lossless::<types::EventsResponse>("the events", &events);
    let latest = call("/api/v1/event/latest".into(), None).await;
    assert_lossless::<types::Event>("the latest event", &latest);
}
