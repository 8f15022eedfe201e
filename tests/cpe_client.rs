//! The generated CPE client: its calls go through the tower stack, and the stack's
//! failures reach the caller as `helseid::Error`.
#![cfg(all(feature = "cpe", feature = "emulator"))]

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
use helseid::cpe::{self, Client, ClientInfo, DateTimeOffset, helseid_error};
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
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
    assert!(matches!(e, cpe::Error::CommunicationError(_)), "{e:?}");
    let Some(helseid::Error::Transport { endpoint, source }) = helseid_error(&e) else {
        panic!("not a transport error: {e:?}");
    };
    assert_eq!(*endpoint, "CPE API");
    assert!(source.downcast_ref::<CircuitOpen>().is_some());
}

/// A client with a fresh key, and the configuration that signs with it.
fn client_and_key(id: &str) -> (TestClient, PrivateJwk) {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
    let client = TestClient {
        id: id.to_owned(),
        key: SigningKey::from_jwk(&jwk).expect("key"),
    };
    (client, jwk)
}

fn config((client, jwk): &(TestClient, PrivateJwk), authority: &str) -> ClientConfig {
    ClientConfig::builder()
        .client_id(&client.id)
        .authority_url(authority)
        .scopes([cpe::SCOPE])
        .private_jwk(jwk)
        .build()
        .expect("config")
}

#[tokio::test]
async fn without_a_token_the_call_fails_with_helseids_answer() {
    let registered = TestClient::ec("registered");
    let stranger = client_and_key("stranger");
    let emulator = support::emulator_with(&registered).await;
    let cpe = Client::builder(config(&stranger, emulator.issuer()))
        .build()
        .unwrap();
    let e = cpe.get_communication_party_export().await.unwrap_err();
    let error = helseid_error(&e).expect("a helseid::Error");
    assert_eq!(error.oauth_error().unwrap().error, "invalid_client");
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST));
}

#[tokio::test]
async fn a_refused_connection_fails_as_a_transport_error() {
    let client = client_and_key("c");
    let emulator = support::emulator_with(&client.0).await;
    // A port that was free a moment ago: nobody listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cpe = Client::builder(config(&client, emulator.issuer()))
        .base_url(url)
        .build()
        .unwrap();
    let e = cpe.get_communication_party(1).await.unwrap_err();
    let Some(helseid::Error::Transport { source, .. }) = helseid_error(&e) else {
        panic!("not a transport error: {e:?}");
    };
    assert!(source.to_string().contains("client error"), "{source}");
    // The token was fetched: the failure is the API's connection.
    assert_eq!(emulator.tokens_issued(), 1);
}

#[tokio::test]
async fn a_call_that_gets_no_answer_times_out() {
    let client = client_and_key("c");
    let emulator = support::emulator_with(&client.0).await;
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
    let error = helseid_error(&e).expect("a helseid::Error");
    assert!(
        matches!(error, helseid::Error::Timeout { endpoint: "CPE API", after } if *after == Duration::from_millis(300)),
        "{error:?}"
    );
    holder.abort();
}

#[test]
fn the_builder_names_what_is_wrong() {
    let client = client_and_key("c");
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
    let client = client_and_key("c");
    for (authority, expected) in [
        ("https://helseid-sts.test.nhn.no", cpe::TEST_URL),
        ("https://helseid-sts.nhn.no", cpe::PROD_URL),
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000"),
    ] {
        let cpe = Client::builder(config(&client, authority)).build().unwrap();
        assert_eq!(cpe.baseurl(), expected);
    }
}
