//! The typed CommunicationParty API v2 client through its default stack (HelseID layer
//! with DPoP, timeout, hyper-util) against the emulator, which demands a DPoP-bound
//! token and a matching proof on every call.
#![cfg(feature = "cpapi")]

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
    let client = TestClient::ec(CLIENT_ID);
    let emulator = builder
        .client(client.registration(&[cpapi::SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator");
    // No scopes in the configuration: the client's builder asks for its API's.
    let cpapi = Client::builder(client.config(emulator.issuer(), &[]))
        .build()
        .expect("client");
    (emulator, cpapi)
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
        Err(cpapi::Error::ErrorResponse(answer)) => {
            assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        }
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
