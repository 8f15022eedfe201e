//! The typed CommunicationParty API v2 client through its default stack (HelseID layer
//! with DPoP, timeout, hyper-util) against the emulator, which demands a DPoP-bound
//! token and a matching proof on every call.
#![cfg(feature = "cpapi")]

mod support;

use std::collections::HashSet;

use futures_util::TryStreamExt;
use helseid::cpapi::{self, Client, ClientInfo};
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
        .export_communication_parties(None)
        .await
        .expect("export")
        .into_inner();
    assert_eq!(export.last_sequence_number, emulator.cpapi_events() as i64);
    let everyone = cpapi
        .export_communication_parties(Some(true))
        .await
        .expect("export with the deactivated")
        .into_inner();
    assert_eq!(everyone.communication_parties.len(), emulator.cpe_parties());
    assert!(export.communication_parties.len() < everyone.communication_parties.len());

    let her_id = export.communication_parties[0];
    let party = cpapi
        .get_communication_party(her_id)
        .await
        .expect("party")
        .into_inner();
    assert_eq!(party.her_id, her_id);

    let latest = cpapi.get_latest_event().await.expect("latest").into_inner();
    assert_eq!(latest.sequence_number, emulator.cpapi_events() as i64);

    match cpapi.get_communication_party(1).await {
        Err(cpapi::Error::ErrorResponse(problem)) => {
            assert_eq!(problem.status(), StatusCode::NOT_FOUND);
        }
        other => panic!("expected a 404 problem, got {other:?}"),
    }
    // One DPoP-bound token served every call, each with its own proof.
    assert_eq!(emulator.tokens_issued(), 1);
    assert_eq!(emulator.cpapi_requests(), 5);
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
    let numbers: Vec<i64> = events.iter().map(|e| e.sequence_number).collect();
    assert_eq!(numbers, (1..=events.len() as i64).collect::<Vec<_>>());
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
    let her_id = events[0].her_id;
    emulator.publish_cpe_update(her_id).expect("a known party");
    let new: Vec<_> = cpapi
        .events_from(next)
        .try_collect()
        .await
        .expect("the update");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].sequence_number, next);
    assert_eq!(new[0].her_id, her_id);
    let parties: HashSet<i32> = events.iter().map(|e| e.her_id).collect();
    assert!(parties.len() > 100, "events of many parties");
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn an_api_that_demands_nonces_is_answered_without_the_caller_noticing() {
    let (emulator, cpapi) = cpapi_against(Emulator::builder().cpapi_require_nonce(true)).await;
    for _ in 0..3 {
        cpapi.get_latest_event().await.expect("latest");
    }
    // One challenge at the API, answered once; then the nonce is remembered.
    assert_eq!(emulator.cpapi_requests(), 4);
    emulator.rotate_dpop_nonce();
    cpapi
        .get_latest_event()
        .await
        .expect("latest after a new nonce");
    assert_eq!(emulator.cpapi_requests(), 6);
}
