//! The generated CommunicationParty API v2 client against a server on 127.0.0.1 that
//! answers the way the API does (ASP.NET: problem details as `application/problem+json`,
//! .NET date-times with and without an offset), and its event stream.
#![cfg(feature = "cpapi")]

use std::convert::Infallible;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use helseid::config::ClientConfig;
use helseid::cpapi::types::{AmqpTransportStatus, CommunicationPartyType, Event, EventType};
use helseid::cpapi::{self, Client, ClientInfo};
use helseid::key::{Algorithm, PrivateJwk};

/// What the test server serves, and what it saw.
#[derive(Default)]
struct Api {
    /// The sequence numbers of the events, in order.
    events: Vec<i64>,
    /// Serve the first page whatever `fromSequenceNumber` says.
    stuck: bool,
    /// The query of every `/api/v1/event` request.
    queries: Vec<String>,
    /// The `Authorization` and `DPoP` headers of every `/api/v1/event/latest` request.
    latest_auth: Vec<(Option<String>, Option<String>)>,
    /// Whether each token request carried a DPoP proof.
    token_requests_with_proof: Vec<bool>,
    /// The server's own URL: the fake HelseID's issuer.
    url: String,
}

type Shared = Arc<Mutex<Api>>;

fn event(sequence_number: i64) -> Value {
    // Every other event is written without an offset, as .NET writes a `DateTime`.
    let timestamp = if sequence_number % 2 == 0 {
        "2024-05-01T12:00:00.1234567"
    } else {
        "2024-05-01T12:00:00.1234567+02:00"
    };
    json!({
        "sequenceNumber": sequence_number,
        "herId": 8_000_000 + sequence_number,
        "eventType": if sequence_number == 1 { "CommunicationPartyCreated" } else { "CommunicationPartyUpdated" },
        "eventTimestamp": timestamp,
    })
}

fn json_response(status: StatusCode, content_type: &'static str, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, "application/json; charset=utf-8", body)
}

fn problem(status: StatusCode, title: &str) -> Response {
    json_response(
        status,
        "application/problem+json",
        json!({
            "type": "https://tools.ietf.org/html/rfc9110#section-15.5.5",
            "title": title,
            "status": status.as_u16(),
            "traceId": "00-abc-def-00",
        }),
    )
}

/// The query parameter `name`, as a number.
fn param(query: &str, name: &str) -> Option<i64> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn events(State(api): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let mut api = api.lock().expect("lock");
    api.queries.push(query.clone());
    let from = param(&query, "fromSequenceNumber").unwrap_or(1);
    let max = param(&query, "maxEvents").unwrap_or(1000);
    if !(1..=1000).contains(&max) || from < 1 {
        return problem(
            StatusCode::BAD_REQUEST,
            "One or more validation errors occurred.",
        );
    }
    let from = if api.stuck { 1 } else { from };
    let results: Vec<Value> = api
        .events
        .iter()
        .filter(|&&n| n >= from)
        .take(usize::try_from(max).expect("1..=1000"))
        .map(|&n| event(n))
        .collect();
    ok(json!({ "count": results.len(), "results": results }))
}

async fn latest(State(api): State<Shared>, headers: HeaderMap) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut api = api.lock().expect("lock");
    api.latest_auth
        .push((header("authorization"), header("dpop")));
    match api.events.last() {
        Some(&n) => ok(event(n)),
        None => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn party(Path(her_id): Path<i32>) -> Response {
    match her_id {
        8_142_519 => ok(json!({
            "herId": 8_142_519,
            "name": "Legekontoret Storgata",
            "displayName": "Legekontoret Storgata - Fastlege",
            "type": "Service",
            "serviceDetails": {
                "serviceType": { "codeListId": "2.16.578.1.12.4.1.1.8655", "value": "101", "name": "Fastlege" },
                "parentOrganization": { "name": "Legekontoret Storgata", "herId": 8_142_500, "organizationNumber": "974589095" }
            },
            "amqpTransportStatus": "Inherited",
            "ediAddress": "legekontoret@edi.nhn.no",
            "validFrom": "2019-01-01T00:00:00",
            "validTo": "2030-01-01T00:00:00.0000000Z",
            "somethingNew": [1, 2, 3],
        })),
        // What a server writes when a field is null, or left out.
        1 => ok(
            json!({ "herId": 1, "name": null, "type": "Person", "amqpTransportStatus": "Disabled", "validTo": null }),
        ),
        // A type the document does not know.
        2 => ok(json!({ "herId": 2, "type": "Robot", "amqpTransportStatus": "Enabled" })),
        _ => problem(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn export(RawQuery(query): RawQuery) -> Response {
    let deactivated = query.as_deref() == Some("includeDeactivated=true");
    let parties: &[i32] = if deactivated {
        &[1, 8_142_519, 9]
    } else {
        &[1, 8_142_519]
    };
    ok(json!({ "lastSequenceNumber": 42, "count": parties.len(), "communicationParties": parties }))
}

/// A HelseID of the barest kind: a discovery document, and a token endpoint that hands
/// out the same DPoP-bound token to anyone.
async fn discovery(State(api): State<Shared>) -> Response {
    let issuer = api.lock().expect("lock").url.clone();
    ok(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/connect/token"),
        "dpop_signing_alg_values_supported": ["ES256"],
    }))
}

async fn token(State(api): State<Shared>, headers: HeaderMap) -> Response {
    let proof = headers.contains_key("dpop");
    api.lock()
        .expect("lock")
        .token_requests_with_proof
        .push(proof);
    ok(json!({ "access_token": "the-token", "token_type": "DPoP", "expires_in": 600 }))
}

/// Starts the test server; returns a client for it (through hyper-util, no token) and
/// what the server serves and sees.
async fn serve(numbers: &[i64]) -> (Client, Shared) {
    let api = Arc::new(Mutex::new(Api {
        events: numbers.to_vec(),
        ..Api::default()
    }));
    let router = axum::Router::new()
        .route("/api/v1/event", axum::routing::get(events))
        .route("/api/v1/event/latest", axum::routing::get(latest))
        .route(
            "/api/v1/communicationparty/export",
            axum::routing::get(export),
        )
        .route(
            "/api/v1/communicationparty/{herId}",
            axum::routing::get(party),
        )
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
        .route("/connect/token", axum::routing::post(token))
        .with_state(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("address"));
    api.lock().expect("lock").url = url.trim_end_matches('/').to_owned();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let stack = helseid::transport::https_client::<Full<Bytes>>().expect("client");
    (Client::from_service(&url, stack).expect("client"), api)
}

fn queries(api: &Shared) -> Vec<String> {
    api.lock().expect("lock").queries.clone()
}

#[tokio::test]
async fn every_operation_decodes() {
    let (cpapi, _) = serve(&[1, 2, 3]).await;

    let latest = cpapi.get_event_latest().await.unwrap().into_inner();
    assert_eq!(latest.sequence_number, Some(3));
    assert_eq!(latest.her_id, Some(8_000_003));
    assert_eq!(
        latest.event_type,
        Some(EventType::CommunicationPartyUpdated)
    );

    let page = cpapi
        .get_event(NonZeroU64::new(2), NonZeroU32::new(10))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.count, Some(2));
    let numbers: Vec<Option<i64>> = page
        .results
        .unwrap_or_default()
        .iter()
        .map(|e| e.sequence_number)
        .collect();
    assert_eq!(numbers, [Some(2), Some(3)]);

    let party = cpapi
        .get_communication_party_by_her_id(8_142_519)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(party.her_id, 8_142_519);
    assert_eq!(party.name.as_deref(), Some("Legekontoret Storgata"));
    assert_eq!(
        party.display_name.as_deref(),
        Some("Legekontoret Storgata - Fastlege")
    );
    assert_eq!(party.type_, CommunicationPartyType::Service);
    let service = party.service_details.as_ref().expect("a service");
    assert_eq!(
        service.parent_organization.organization_number.as_deref(),
        Some("974589095")
    );
    assert_eq!(party.amqp_transport_status, AmqpTransportStatus::Inherited);
    assert_eq!(
        party.edi_address.as_deref(),
        Some("legekontoret@edi.nhn.no")
    );
    let from = party.valid_from.unwrap();
    assert!(!from.has_offset());
    assert_eq!(from.to_string(), "2019-01-01T00:00:00.0000000");
    let to = party.valid_to.unwrap();
    assert!(to.has_offset());
    assert_eq!(to.to_utc().to_rfc3339(), "2030-01-01T00:00:00+00:00");

    // Nulls and missing fields are `None`.
    let sparse = cpapi
        .get_communication_party_by_her_id(1)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sparse.type_, CommunicationPartyType::Person);
    assert_eq!(
        (sparse.name, sparse.valid_from, sparse.valid_to),
        (None, None, None)
    );

    let export = cpapi
        .get_communication_party_export(None)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.last_sequence_number, Some(42));
    assert_eq!(export.communication_parties, Some(vec![1, 8_142_519]));
    let export = cpapi
        .get_communication_party_export(Some(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.count, Some(3));
}

#[tokio::test]
async fn documented_errors_come_back_typed() {
    let (cpapi, _) = serve(&[]).await;
    // NHN documents its 404s without a body; the problem details the API sends are
    // kept and typed all the same, and the headers stay out of the line.
    match cpapi.get_event_latest().await {
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            assert_eq!(
                e.headers().unwrap()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            let line = e.to_string();
            assert!(
                line.starts_with("CommunicationParty API get_event_latest: 404 Not Found"),
                "{line}"
            );
            assert!(!line.contains("problem+json"), "{line}");
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    match cpapi.get_communication_party_by_her_id(404).await {
        Err(e) => assert_eq!(e.status(), Some(StatusCode::NOT_FOUND)),
        other => panic!("expected a 404, got {other:?}"),
    }
    // A status NHN does not document: its problem details typed, and the rest of the
    // body readable.
    match cpapi.get_event(None, NonZeroU32::new(1001)).await {
        Err(e) => {
            assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
            let problem = e.problem().expect("problem details");
            assert_eq!(problem.extensions["traceId"], "00-abc-def-00");
            let body: Value = e.body_as().expect("a JSON body");
            assert_eq!(body["traceId"], "00-abc-def-00");
        }
        other => panic!("expected a 400 problem, got {other:?}"),
    }
}

#[tokio::test]
async fn a_body_that_does_not_fit_is_an_error_not_a_panic() {
    let (cpapi, _) = serve(&[]).await;
    let e = cpapi
        .get_communication_party_by_her_id(2)
        .await
        .unwrap_err();
    assert!(e.body().is_some(), "{e:?}");
    assert!(
        e.to_string()
            .contains("not what the API's document describes"),
        "{e}"
    );
    assert!(e.helseid().is_none());
}

#[tokio::test]
async fn the_stream_follows_from_sequence_number_page_after_page() {
    let (cpapi, api) = serve(&[1, 2, 3, 5, 8]).await;
    let mut events = cpapi.events_from(1).max_events(2);
    let mut numbers = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        let number = event.sequence_number.expect("a sequence number");
        numbers.push(number);
        assert_eq!(events.next_sequence_number(), number + 1);
    }
    assert_eq!(numbers, [1, 2, 3, 5, 8]);
    // Short pages are not the end: only the empty one is.
    assert_eq!(
        queries(&api),
        [
            "fromSequenceNumber=1&maxEvents=2",
            "fromSequenceNumber=3&maxEvents=2",
            "fromSequenceNumber=6&maxEvents=2",
            "fromSequenceNumber=9&maxEvents=2",
        ]
    );
    // Where to poll from next time, after the stream ended.
    assert_eq!(events.next_sequence_number(), 9);
    assert!(events.next().await.is_none());

    // Polling: nothing new, then what was published, 1000 per page by default.
    let none: Vec<Event> = cpapi.events_from(9).try_collect().await.unwrap();
    assert!(none.is_empty());
    api.lock().unwrap().events.push(13);
    let mut poll = cpapi.events_from(9);
    let new: Vec<Event> = (&mut poll).try_collect().await.unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].sequence_number, Some(13));
    assert_eq!(poll.next_sequence_number(), 14);
    assert_eq!(
        queries(&api)[4..],
        [
            "fromSequenceNumber=9&maxEvents=1000",
            "fromSequenceNumber=9&maxEvents=1000",
            "fromSequenceNumber=14&maxEvents=1000",
        ]
    );
}

#[tokio::test]
async fn a_page_that_does_not_move_forward_fails_the_stream_once() {
    let (cpapi, api) = serve(&[1, 2, 3]).await;
    api.lock().unwrap().stuck = true;
    let mut events = cpapi.events_from(1).max_events(2);
    let next = events.try_next().await.unwrap().unwrap();
    assert_eq!(next.sequence_number, Some(1));
    let next = events.try_next().await.unwrap().unwrap();
    assert_eq!(next.sequence_number, Some(2));
    let e = events.next().await.expect("an item").unwrap_err();
    assert!(
        e.to_string().contains("event 1 where 3 or more was due"),
        "{e}"
    );
    assert!(events.next().await.is_none());
    assert!(events.next().await.is_none());
    assert_eq!(
        queries(&api),
        [
            "fromSequenceNumber=1&maxEvents=2",
            "fromSequenceNumber=3&maxEvents=2"
        ]
    );
    // The events yielded still count: resume from after them.
    assert_eq!(events.next_sequence_number(), 3);
}

#[tokio::test]
async fn a_sequence_number_below_one_fails_without_a_call() {
    let (cpapi, api) = serve(&[1]).await;
    let mut events = cpapi.events_from(0);
    let e = events.next().await.expect("an item").unwrap_err();
    assert!(e.to_string().contains("they start at 1"), "{e}");
    assert!(events.next().await.is_none());
    assert!(queries(&api).is_empty());
    // `max_events` is brought into the API's range.
    let events: Vec<Event> = cpapi
        .events_from(1)
        .max_events(0)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let all: Vec<Event> = cpapi
        .events_from(1)
        .max_events(5000)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        queries(&api),
        [
            "fromSequenceNumber=1&maxEvents=1",
            "fromSequenceNumber=2&maxEvents=1",
            "fromSequenceNumber=1&maxEvents=1000",
            "fromSequenceNumber=2&maxEvents=1000",
        ]
    );
}

#[tokio::test]
async fn an_error_of_the_stack_reaches_the_caller_and_ends_the_stream() {
    #[derive(Debug, thiserror::Error)]
    #[error("the circuit is open")]
    struct CircuitOpen;

    let service = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Err::<http::Response<Full<Bytes>>, _>(CircuitOpen)
    });
    let cpapi = Client::from_service(cpapi::TEST_URL, service).unwrap();
    let e = cpapi.get_event_latest().await.unwrap_err();
    let Some(helseid::Error::Transport {
        endpoint, source, ..
    }) = e.helseid()
    else {
        panic!("not a transport error: {e:?}");
    };
    assert_eq!(*endpoint, "CommunicationParty API");
    assert!(source.downcast_ref::<CircuitOpen>().is_some());

    let mut events = cpapi.events_from(1);
    let e = events.next().await.expect("an item").unwrap_err();
    assert!(e.helseid().is_some(), "{e:?}");
    assert!(events.next().await.is_none());
    assert_eq!(events.next_sequence_number(), 1);
}

#[tokio::test]
async fn calls_carry_the_tenant_and_no_api_version() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = {
        let seen = Arc::clone(&seen);
        tower::service_fn(move |request: Request<Full<Bytes>>| {
            seen.lock().unwrap().push(request);
            async {
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(event(7).to_string())))
                        .unwrap(),
                )
            }
        })
    };
    let cpapi = Client::from_service(cpapi::TEST_URL, service).unwrap();
    let tenant: helseid::assertion::Tenant = "974589095:912345678".parse().unwrap();
    let event = cpapi
        .with_tenant(tenant)
        .get_event_latest()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(event.sequence_number, Some(7));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].uri().to_string(),
        "https://cpapi.test.grunndata.nhn.no/api/v1/event/latest"
    );
    assert_eq!(seen[0].headers()["accept"], "application/json");
    assert!(seen[0].headers().get("api-version").is_none());
    assert_eq!(
        seen[0].extensions().get::<helseid::assertion::Tenant>(),
        Some(&tenant)
    );
}

#[test]
fn the_types_carry_the_wire_names() {
    let event: Event = serde_json::from_value(event(4)).unwrap();
    assert_eq!(serde_json::to_value(&event).unwrap(), self::event(4));
    assert_eq!(
        serde_json::to_value(EventType::CommunicationPartyCreated).unwrap(),
        "CommunicationPartyCreated"
    );
}

fn config(authority: &str) -> ClientConfig {
    ClientConfig::builder()
        .client_id("c")
        .authority_url(authority)
        .scopes([cpapi::SCOPE])
        .private_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("key"))
        .build()
        .expect("config")
}

#[tokio::test]
async fn the_builder_finds_the_base_url_or_says_why_not() {
    for (authority, expected) in [
        ("https://helseid-sts.test.nhn.no", cpapi::TEST_URL),
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000"),
    ] {
        let client = Client::builder(config(authority)).build().unwrap();
        assert_eq!(client.baseurl(), expected);
    }
    let prod = Client::builder(config("https://helseid-sts.nhn.no"));
    let e = prod.build().unwrap_err().to_string();
    assert!(
        e.contains("`base_url`") && e.contains("no production URL"),
        "{e}"
    );
    let client = Client::builder(config("https://helseid-sts.nhn.no"))
        .base_url("https://cpapi.example.org/")
        .build()
        .unwrap();
    assert_eq!(client.baseurl(), "https://cpapi.example.org");
    let e = Client::builder(config("https://helseid-sts.test.nhn.no"))
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("`timeout`"), "{e}");
    let e = Client::builder(config("https://sts.example.org"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("not a HelseID environment"), "{e}");
    assert_eq!(cpapi::base_url(helseid::config::Environment::Prod), None);
}

/// The claims of a JWT, unverified.
fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn the_default_stack_sends_dpop_bound_tokens_with_a_proof_per_call() {
    let (_, api) = serve(&[5]).await;
    let issuer = api.lock().unwrap().url.clone();
    let key = helseid::dpop::DpopKey::generate().unwrap();
    // The authority is a loopback address: the API is expected there too.
    let cpapi = Client::builder(config(&issuer))
        .dpop_key(key.clone())
        .build()
        .unwrap();
    assert_eq!(cpapi.baseurl(), issuer);
    for _ in 0..2 {
        let event = cpapi.get_event_latest().await.unwrap().into_inner();
        assert_eq!(event.sequence_number, Some(5));
    }

    let api = api.lock().unwrap();
    // One token, bound to the key, served both calls.
    assert_eq!(api.token_requests_with_proof, [true]);
    let mut jtis = Vec::new();
    for (authorization, proof) in &api.latest_auth {
        assert_eq!(authorization.as_deref(), Some("DPoP the-token"));
        let proof = claims(proof.as_deref().expect("a DPoP proof"));
        assert_eq!(proof["htm"], "GET");
        assert_eq!(proof["htu"], format!("{issuer}/api/v1/event/latest"));
        assert!(proof["ath"].is_string(), "{proof}");
        jtis.push(proof["jti"].as_str().expect("jti").to_owned());
    }
    assert_eq!(jtis.len(), 2);
    assert_ne!(jtis[0], jtis[1], "a fresh proof per call");
    // The builder's Debug names the key by its thumbprint only.
    let debug = format!(
        "{:?}",
        Client::builder(config(&issuer)).dpop_key(key.clone())
    );
    assert!(debug.contains(key.thumbprint()), "{debug}");
    assert!(!debug.contains("\"d\""), "{debug}");
}
