//! The generated CPE client: its calls go through the tower stack, and the stack's
//! failures reach the caller as `helseid::Error`.
#![cfg(feature = "cpe")]

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::service_fn;

use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::cpe::{self, Client, ClientInfo, DateTimeOffset};
use support::TestClient;

/// A stack that answers every request itself and keeps the requests it saw.
fn canned(seen: Arc<Mutex<Vec<Request<Full<Bytes>>>>>) -> Client {
    let service = service_fn(move |request: Request<Full<Bytes>>| {
        let body = match request.uri().path() {
            "/CommunicationPartyEvents" => serde_json::json!({
                "CommunicationParties": [{
                    "EventId": "e1",
                    "FromDatetime": "2024-05-01T12:00:00.1234567+02:00",
                    "HerId": 8142519,
                    "OrgNr": 974589095,
                    "EventType": "CommunicationPartyUpdated",
                    "CommunicationParty": {
                        "HerId": 8142519,
                        "Name": "Legekontoret Storgata",
                        "Valid": { "From": "2019-01-01T00:00:00", "To": null },
                        "SomethingNew": [1, 2, 3]
                    }
                }, {
                    "EventId": "e2",
                    "FromDatetime": "2024-05-01T12:00:01.7654321",
                    "HerId": 8142520,
                    "EventType": "CommunicationParty.Created"
                }],
                "Links": {}
            }),
            "/CommunicationPartyExport" => serde_json::json!({
                "LastDateTimeOffset": "2024-05-01T12:00:01.7654321",
                "LastEventId": "e2",
                "CommunicationParties": []
            }),
            _ => serde_json::json!({ "HerId": 1, "Name": "n" }),
        };
        seen.lock().expect("lock").push(request);
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .expect("response"),
            )
        }
    });
    Client::from_service("https://cpe.test.grunndata.nhn.no/", service).expect("client")
}

#[tokio::test]
async fn generated_calls_go_through_the_stack() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cpe = canned(Arc::clone(&seen));
    let tenant: Tenant = "974589095:912345678".parse().unwrap();
    let from: DateTimeOffset = "2024-05-01T12:00:00.1234567+02:00".parse().unwrap();

    let page = cpe
        .with_tenant(tenant)
        .get_communication_party_events(Some("a b+c"), Some(&from))
        .await
        .unwrap()
        .into_inner();
    let party = cpe
        .get_communication_party(8142519)
        .await
        .unwrap()
        .into_inner();
    let export = cpe
        .get_communication_party_export()
        .await
        .unwrap()
        .into_inner();

    // .NET date-times with and without an offset, and unknown fields, in one response.
    assert_eq!(page.communication_parties.len(), 2);
    let first = &page.communication_parties[0];
    assert!(first.from_datetime.has_offset());
    assert_eq!(
        first.from_datetime.to_string(),
        "2024-05-01T12:00:00.1234567+02:00"
    );
    let second = &page.communication_parties[1];
    assert!(!second.from_datetime.has_offset());
    assert_eq!(
        second.from_datetime.to_string(),
        "2024-05-01T12:00:01.7654321"
    );
    let valid = first
        .communication_party
        .as_ref()
        .unwrap()
        .valid
        .as_ref()
        .unwrap();
    assert!(!valid.from.has_offset() && valid.to.is_none());
    assert_eq!(party.her_id, 1);
    assert_eq!(export.last_event_id, "e2");

    let seen = seen.lock().unwrap();
    let uris: Vec<String> = seen.iter().map(|r| r.uri().to_string()).collect();
    assert_eq!(
        uris,
        [
            "https://cpe.test.grunndata.nhn.no/CommunicationPartyEvents?EventId=a+b%2Bc&fromDatetime=2024-05-01T12%3A00%3A00.1234567%2B02%3A00",
            "https://cpe.test.grunndata.nhn.no/CommunicationParties/8142519",
            "https://cpe.test.grunndata.nhn.no/CommunicationPartyExport",
        ]
    );
    for request in seen.iter() {
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.headers()["accept"], "application/json");
        assert!(request.headers().get("api-version").is_none());
    }
    // The tenant travels as a request extension, where HelseIdLayer looks for it.
    assert_eq!(seen[0].extensions().get::<Tenant>(), Some(&tenant));
    assert_eq!(seen[1].extensions().get::<Tenant>(), None);
}

#[tokio::test]
async fn an_error_of_the_stack_reaches_the_caller() {
    #[derive(Debug, thiserror::Error)]
    #[error("the circuit is open")]
    struct CircuitOpen;

    let service = service_fn(|_: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(CircuitOpen)
    });
    let cpe = Client::from_service("https://cpe.test.grunndata.nhn.no", service).unwrap();
    let e = cpe.get_communication_party(1).await.unwrap_err();
    assert_eq!(e.status(), None);
    assert_eq!(e.api(), "CPE API");
    assert_eq!(e.operation(), "get_communication_party");
    // One line: the API, the operation and the cause.
    assert_eq!(
        e.to_string(),
        "CPE API get_communication_party: CPE API request failed: the circuit is open"
    );
    let Some(helseid::Error::Transport {
        endpoint, source, ..
    }) = e.helseid()
    else {
        panic!("not a transport error: {e:?}");
    };
    assert_eq!(*endpoint, "CPE API");
    assert!(source.downcast_ref::<CircuitOpen>().is_some());

    // The event stream fails once with it, then ends.
    use futures_util::StreamExt;
    let mut events = cpe.events_after(None);
    let e = events.next().await.expect("an item").unwrap_err();
    assert!(e.helseid().is_some(), "{e:?}");
    assert!(events.next().await.is_none());
}

/// A client with a fresh key, and the configuration that signs with it.
fn config(client: &TestClient, authority: &str) -> ClientConfig {
    client.config(authority, &[cpe::SCOPE])
}

#[tokio::test]
async fn without_a_token_the_call_fails_with_helseids_answer() {
    let registered = TestClient::ec("registered");
    let stranger = TestClient::ec("stranger");
    let emulator = support::emulator_with(&registered).await;
    let cpe = Client::builder(config(&stranger, emulator.issuer()))
        .build()
        .unwrap();
    let e = cpe.get_communication_party_export().await.unwrap_err();
    let error = e.helseid().expect("a helseid::Error");
    // HelseID's refusal is in the one line.
    assert!(e.to_string().contains("invalid_client"), "{e}");
    assert_eq!(
        error.oauth_error().unwrap().error,
        helseid::OAuthErrorCode::InvalidClient
    );
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn a_refused_connection_fails_as_a_transport_error() {
    let client = TestClient::ec("c");
    let emulator = support::emulator_with(&client).await;
    // A port that was free a moment ago: nobody listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cpe = Client::builder(config(&client, emulator.issuer()))
        .base_url(url)
        .build()
        .unwrap();
    let e = cpe.get_communication_party(1).await.unwrap_err();
    let Some(helseid::Error::Transport { source, .. }) = e.helseid() else {
        panic!("not a transport error: {e:?}");
    };
    assert!(source.to_string().contains("client error"), "{source}");
    // The token was fetched: the failure is the API's connection.
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn a_call_that_gets_no_answer_times_out() {
    let client = TestClient::ec("c");
    let emulator = support::emulator_with(&client).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let cpe = Client::builder(config(&client, emulator.issuer()))
        .base_url(url)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = cpe.get_communication_party(1).await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let error = e.helseid().expect("a helseid::Error");
    assert!(
        matches!(error, helseid::Error::Timeout { endpoint: "CPE API", after, .. } if *after == Duration::from_millis(300)),
        "{error:?}"
    );
    holder.abort();
}

#[test]
fn the_builder_names_what_is_wrong() {
    let client = TestClient::ec("c");
    let case = |authority: &str, base_url: Option<&str>, timeout: Duration| {
        let mut builder = Client::builder(config(&client, authority)).timeout(timeout);
        if let Some(url) = base_url {
            builder = builder.base_url(url);
        }
        builder.build().unwrap_err().to_string()
    };
    let second = Duration::from_secs(1);
    let e = case("https://sts.example.org", None, second);
    assert!(
        e.contains("`base_url`") && e.contains("not a HelseID environment"),
        "{e}"
    );
    let e = case(
        "https://sts.example.org",
        Some("http://cpe.example.org"),
        second,
    );
    assert!(e.contains("`base_url`") && e.contains("uses http"), "{e}");
    let e = case("https://sts.example.org", Some("not a url"), second);
    assert!(
        e.contains("`base_url`") && e.contains("is not a URL"),
        "{e}"
    );
    let e = case("https://helseid-sts.test.nhn.no", None, Duration::ZERO);
    assert!(e.contains("`timeout`"), "{e}");
}

#[tokio::test]
async fn the_default_base_url_follows_the_authority() {
    let client = TestClient::ec("c");
    for (authority, expected) in [
        ("https://helseid-sts.test.nhn.no", cpe::TEST_URL),
        ("https://helseid-sts.nhn.no", cpe::PROD_URL),
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000"),
    ] {
        let cpe = Client::builder(config(&client, authority)).build().unwrap();
        assert_eq!(cpe.baseurl(), expected);
    }
}

/// An emulator with `client` holding the CPE scope, and a CPE client for it.
async fn cpe_against_emulator(id: &str) -> (helseid_emulator::Emulator, Client) {
    let client = TestClient::ec(id);
    let emulator = support::emulator_with(&client).await;
    let cpe = Client::builder(config(&client, emulator.issuer()))
        .build()
        .expect("client");
    (emulator, cpe)
}

#[tokio::test]
async fn every_operation_works_against_the_emulator_through_the_layer() {
    let (emulator, cpe) = cpe_against_emulator("epj").await;
    assert_eq!(cpe.baseurl(), emulator.cpe_base_url());

    let export = cpe
        .get_communication_party_export()
        .await
        .expect("export")
        .into_inner();
    assert_eq!(export.communication_parties.len(), emulator.cpe_parties());
    let her_id = export.communication_parties[0].her_id;

    let party = cpe
        .get_communication_party(her_id)
        .await
        .expect("party")
        .into_inner();
    assert_eq!(party, export.communication_parties[0]);

    let page = cpe
        .get_communication_party_events(None, None)
        .await
        .expect("events")
        .into_inner();
    assert!(!page.communication_parties.is_empty());
    assert!(
        page.links.and_then(|l| l.next).is_some(),
        "the feed has more pages"
    );

    // A documented error comes back typed.
    match cpe.get_communication_party(1).await {
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            // The problem details the emulator sent, typed; the headers kept out of
            // the line.
            assert!(e.problem().is_some(), "{e:?}");
            let line = e.to_string();
            assert!(
                line.starts_with("CPE API get_communication_party: 404 Not Found"),
                "{line}"
            );
            assert!(!line.contains("content-type"), "{line}");
        }
        other => panic!("expected a 404 problem, got {other:?}"),
    }
    // One token served all of it.
    assert_eq!(emulator.tokens_issued(), 1);
    assert_eq!(emulator.cpe_requests(), 4);
}

#[tokio::test]
async fn the_stream_reads_the_whole_feed_once_and_polls_from_the_last_event() {
    use futures_util::TryStreamExt;

    let (emulator, cpe) = cpe_against_emulator("epj").await;
    let events: Vec<_> = cpe
        .events_after(None)
        .try_collect()
        .await
        .expect("the whole feed");
    assert_eq!(events.len(), emulator.cpe_events());
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "every event exactly once");
    assert!(emulator.cpe_requests() >= 3, "several pages");
    // The seed writes some date-times without an offset; they did not fail the pages.
    assert!(events.iter().any(|e| !e.from_datetime.has_offset()));
    assert!(events.iter().any(|e| e.from_datetime.has_offset()));

    // Polling: nothing new after the last event, then exactly what was published.
    let last = events.last().expect("events").event_id.clone();
    let none: Vec<_> = cpe
        .events_after(Some(&last))
        .try_collect()
        .await
        .expect("poll");
    assert!(none.is_empty());
    let her_id = events[0].her_id;
    let published = emulator.publish_cpe_update(her_id).expect("a known party");
    let new: Vec<_> = cpe
        .events_after(Some(&last))
        .try_collect()
        .await
        .expect("poll");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].event_id, published);
    assert_eq!(new[0].her_id, her_id);

    // From a time: only events at or after it.
    let from = events[events.len() / 2].from_datetime;
    let later: Vec<_> = cpe.events_from(from).try_collect().await.expect("from");
    assert!(!later.is_empty());
    assert!(later.iter().all(|e| e.from_datetime >= from));
}

#[tokio::test]
async fn a_401_from_the_api_is_retried_once_then_returned() {
    // A client whose tokens lack the CPE scope: the API answers 401 invalid_token.
    let client = TestClient::ec("other-api");
    let emulator = helseid_emulator::Emulator::builder()
        .client(client.registration(&[support::CP_SCOPE, "nhn:other/api"]))
        .start()
        .await
        .expect("emulator");
    // A layer that asks for another scope than CPE's.
    let endpoint = helseid::endpoint::TokenEndpoint::new(config(&client, emulator.issuer()))
        .expect("endpoint");
    let stack = tower::ServiceBuilder::new()
        .layer(
            helseid::HelseIdLayer::builder(endpoint)
                .scopes(["nhn:other/api"])
                .build(),
        )
        .service(helseid::transport::https_client::<Full<Bytes>>().expect("https client"));
    let cpe = Client::from_service(emulator.cpe_base_url(), stack).expect("client");
    let e = cpe.get_communication_party_export().await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED), "{e:?}");
    assert!(
        e.helseid().is_none(),
        "an answer of the API, not of the stack"
    );
    // The layer evicted the refused token and tried once more with a fresh one.
    assert_eq!(emulator.tokens_issued(), 2);
    assert_eq!(emulator.cpe_requests(), 2);
}

/// What a proxy saw of one exchange: the request's `Accept-Encoding` and the answer's
/// `Content-Encoding`.
type Encodings = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// A proxy on 127.0.0.1 in front of `upstream` that passes every request and answer on
/// unchanged (compressed bytes included), and records their encodings.
async fn recording_proxy(upstream: String) -> (String, Encodings) {
    use http_body_util::BodyExt;
    let seen = Encodings::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let (record, upstream) = (record.clone(), upstream.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            let header = |headers: &http::HeaderMap, name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let asked = header(&parts.headers, http::header::ACCEPT_ENCODING);
            parts.uri = format!("{upstream}{}", parts.uri)
                .parse()
                .expect("upstream URI");
            parts.headers.remove(http::header::HOST);
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
            let response = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await
                .expect("upstream");
            let (mut parts, body) = response.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            let sent = header(&parts.headers, http::header::CONTENT_ENCODING);
            // Framing is the proxy's own: the body is sent whole.
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            record.lock().expect("lock").push((asked, sent));
            Response::from_parts(parts, axum::body::Body::from(body))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, seen)
}

#[tokio::test]
async fn the_export_travels_compressed_with_gzip() {
    let client = TestClient::ec("gzip");
    let emulator = support::emulator_with(&client).await;
    let (proxy, seen) = recording_proxy(emulator.cpe_base_url().to_owned()).await;
    let cpe = Client::builder(config(&client, emulator.issuer()))
        .base_url(&proxy)
        .build()
        .expect("client");
    let export = cpe
        .get_communication_party_export()
        .await
        .expect("the export, decompressed")
        .into_inner();
    assert_eq!(export.communication_parties.len(), emulator.cpe_parties());
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .0
            .as_deref()
            .is_some_and(|asked| asked.contains("gzip")),
        "the client asks for gzip: {seen:?}"
    );
    assert_eq!(
        seen[0].1.as_deref(),
        Some("gzip"),
        "the emulator sends gzip"
    );
}
