//! The emulator's Meldingstjener (MSH) v2 over real HTTP on 127.0.0.1, with DPoP-bound
//! tokens from its HelseID and real proofs made by the library's `HelseIdLayer` and
//! `DpopKey`: messages routed between HER-ids of the register, in order and once per
//! receiver; the unread list as the receiver's cursor; statuses and application
//! receipts; and the document's errors for what is wrong.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::{HelseId, HelseIdLayer};
use helseid_emulator::{Emulator, MSH_SCOPE};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

type Http = Client<HttpConnector, Full<Bytes>>;

/// The client id of the EPJ system every test sends and receives with.
const EPJ: &str = "epj";

/// An answer: status, headers, and the body as JSON (`null` when empty or not JSON).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

/// A client of the emulator's Meldingstjener through the library's stack.
#[derive(Clone)]
struct Msh {
    stack: HelseId<Http>,
    base: String,
}

impl Msh {
    /// `client_id`'s stack, with DPoP when `dpop` (Bearer otherwise), asking for
    /// `scopes`.
    fn new(emulator: &Emulator, client_id: &str, scopes: &[&str], dpop: bool) -> Self {
        let config: ClientConfig = emulator
            .client_config(client_id)
            .expect("a test client")
            .with_scopes(scopes.iter().copied());
        let endpoint = TokenEndpoint::new(config).expect("endpoint");
        let mut layer = HelseIdLayer::builder(endpoint);
        if dpop {
            layer = layer.dpop(DpopKey::generate().expect("a DPoP key"));
        }
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        Msh {
            stack: ServiceBuilder::new().layer(layer.build()).service(http),
            base: emulator.msh_base_url().to_owned(),
        }
    }

    /// The EPJ system with DPoP and the MSH scope.
    fn epj(emulator: &Emulator) -> Self {
        Msh::new(emulator, EPJ, &[MSH_SCOPE], true)
    }

    /// Sends a request as `orgnr`'s tenant with both headers the document requires.
    async fn call(&self, method: Method, path: &str, orgnr: &str, body: Option<Value>) -> Answer {
        self.raw(
            method,
            path,
            Some(orgnr),
            standard_headers(),
            body.map(json_bytes),
        )
        .await
    }

    /// Sends a request with exactly `headers`, as `orgnr`'s tenant when given.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        orgnr: Option<&str>,
        headers: Vec<(&str, &str)>,
        body: Option<(Bytes, &str)>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let body = match body {
            Some((bytes, content_type)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let mut request = request.body(Full::new(body)).expect("request");
        if let Some(orgnr) = orgnr {
            request.extensions_mut().insert(Tenant::Multi {
                parent: orgnr.parse().expect("an organisation number"),
                child: None,
            });
        }
        let response = self
            .stack
            .clone()
            .oneshot(request)
            .await
            .expect("an answer");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("the body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Sends a business document from `orgnr`; returns the answer.
    async fn send(&self, orgnr: &str, document: &str) -> Answer {
        self.call(
            Method::POST,
            "/Messages",
            orgnr,
            Some(json!({
                "businessDocument": STANDARD.encode(document),
                "contentType": "application/xml",
                "contentTransferEncoding": "base64",
            })),
        )
        .await
    }

    /// The unread messages of `her_ids` (with metadata), as `orgnr`.
    async fn inbox(&self, orgnr: &str, her_ids: &[i32], extra: &str) -> Vec<Value> {
        let query: Vec<String> = her_ids
            .iter()
            .map(|h| format!("ReceiverHerIds={h}"))
            .collect();
        let answer = self
            .call(
                Method::GET,
                &format!("/Messages?{}&IncludeMetadata=true{extra}", query.join("&")),
                orgnr,
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json.as_array().cloned().expect("a list")
    }

    /// Fetches the business document and marks the message read for `her_id`.
    async fn handle(&self, orgnr: &str, id: &str, her_id: i32) -> String {
        let document = self
            .call(
                Method::GET,
                &format!("/Messages/{id}/business-document"),
                orgnr,
                None,
            )
            .await;
        assert_eq!(document.status, StatusCode::OK, "{document:?}");
        let read = self
            .call(
                Method::PUT,
                &format!("/Messages/{id}/read/{her_id}"),
                orgnr,
                None,
            )
            .await;
        assert_eq!(read.status, StatusCode::NO_CONTENT, "{read:?}");
        let bytes = STANDARD
            .decode(
                document.json["businessDocument"]
                    .as_str()
                    .expect("a document"),
            )
            .expect("base64");
        String::from_utf8(bytes).expect("UTF-8")
    }
}

fn standard_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("api-version", "2"),
        ("nhn-source-system", "msh-test, v1.0"),
    ]
}

fn json_bytes(value: Value) -> (Bytes, &'static str) {
    (Bytes::from(value.to_string()), "application/json")
}

/// A MsgHead from `sender` to `receivers`, with this MsgId and GenDate.
fn msghead(msg_id: &str, gen_date: &str, sender: i32, receivers: &[i32]) -> String {
    let party = |her_id: i32| {
        format!(
            "<Organisation><OrganisationName>HER {her_id}</OrganisationName>\
             <Ident><Id>{her_id}</Id><TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.9051\"/></Ident>\
             </Organisation>"
        )
    };
    let receivers: String = receivers
        .iter()
        .map(|r| format!("<Receiver>{}</Receiver>", party(*r)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\"><MsgInfo>\
         <Type V=\"DIALOG_HELSEFAGLIG\" DN=\"Helsefaglig dialog\"/>\
         <MIGversion>v1.2 2006-05-24</MIGversion><GenDate>{gen_date}</GenDate>\
         <MsgId>{msg_id}</MsgId><Sender>{}</Sender>{receivers}</MsgInfo>\
         <Document><RefDoc><MsgType V=\"XML\"/><Content>hei</Content></RefDoc></Document>\
         </MsgHead>",
        party(sender)
    )
}

/// Three tenants, each with one HER-id of its own: (orgnr, HER-id).
fn tenants(emulator: &Emulator) -> [(String, i32); 3] {
    let mut found = emulator
        .msh_organisations()
        .into_iter()
        .filter_map(|orgnr| {
            let her_id = *emulator.msh_her_ids(&orgnr).first()?;
            Some((orgnr, her_id))
        });
    std::array::from_fn(|_| found.next().expect("three organisations"))
}

async fn start() -> Emulator {
    Emulator::builder()
        .test_client(EPJ, [MSH_SCOPE])
        .test_client("cp-only", ["nhn:cp-api/access-v2-dpop"])
        .test_client("other-scope", ["nhn:msh/other"])
        .start()
        .await
        .expect("the emulator starts")
}

fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_message_arrives_once_and_in_order_at_each_receiver() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, sender), (b, first), (c, second)] = tenants(&emulator);

    // Three messages, GenDates in order; the second was written first (an earlier
    // GenDate arriving later still sorts by GenDate).
    let dates = [
        "2025-09-22T07:56:36.3095151+02:00",
        "2025-09-22T05:56:36.1",
        "2025-09-22T06:00:00Z",
    ];
    let mut sent = Vec::new();
    for (i, date) in dates.iter().enumerate() {
        let answer = msh
            .send(
                &a,
                &msghead(&format!("msg-{i}"), date, sender, &[first, second]),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let id = answer
            .json
            .as_str()
            .expect("the id, a JSON string")
            .to_owned();
        assert_eq!(
            answer.headers[header::LOCATION],
            format!("/Messages/{id}").as_str()
        );
        sent.push(id);
    }
    // By GenDate: msg-1 (05:56:36.1Z), msg-0 (05:56:36.3095151Z), msg-2 (06:00Z).
    let expected = [sent[1].clone(), sent[0].clone(), sent[2].clone()];

    for (orgnr, her_id) in [(&b, first), (&c, second)] {
        let inbox = msh.inbox(orgnr, &[her_id], "").await;
        assert_eq!(ids(&inbox), expected, "receiver {her_id}");
        let head = &inbox[1];
        assert_eq!(head["receiverHerId"], her_id);
        assert_eq!(head["senderHerId"], sender);
        assert_eq!(head["businessDocumentId"], "msg-0");
        assert_eq!(
            head["businessDocumentGenDate"],
            "2025-09-22T05:56:36.3095151+00:00"
        );
        assert_eq!(head["isAppRec"], false);
        assert_eq!(head["contentType"], "application/xml");
        // Without metadata: the id and the receiver only.
        let bare = msh
            .call(
                Method::GET,
                &format!("/Messages?ReceiverHerIds={her_id}"),
                orgnr,
                None,
            )
            .await;
        assert_eq!(
            bare.json[0],
            json!({"id": expected[0], "receiverHerId": her_id})
        );
        for id in &expected {
            let document = msh.handle(orgnr, id, her_id).await;
            assert!(document.contains("<MsgHead"), "{document}");
        }
        assert!(
            msh.inbox(orgnr, &[her_id], "").await.is_empty(),
            "read: gone"
        );
    }
    // Each message reached each receiver once, and every receiver took it.
    let held = emulator.msh_messages();
    assert_eq!(held.len(), 3);
    for message in &held {
        assert_eq!(message.sender_her_id, sender);
        let receivers: Vec<(i32, &str, bool)> = message
            .receivers
            .iter()
            .map(|r| (r.her_id, r.delivery_state, r.read))
            .collect();
        assert_eq!(
            receivers,
            [
                (first, "Acknowledged", true),
                (second, "Acknowledged", true)
            ]
        );
    }
    // Descending order, and the sender filter.
    let resend = msh
        .send(
            &a,
            &msghead("late", "2026-01-01T00:00:00", sender, &[first]),
        )
        .await;
    assert_eq!(resend.status, StatusCode::CREATED);
    let seeded = emulator
        .msh_send(msghead("seeded", "2024-01-01T00:00:00", second, &[first]).as_bytes())
        .expect("seeded");
    let descending = msh.inbox(&b, &[first], "&OrderBy=Descending").await;
    assert_eq!(
        ids(&descending),
        [resend.json.as_str().expect("id").to_owned(), seeded.clone()]
    );
    let from_second = msh
        .inbox(&b, &[first], &format!("&SenderHerId={second}"))
        .await;
    assert_eq!(ids(&from_second), [seeded]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_stops_and_starts_again_misses_nothing_and_sees_nothing_twice() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, sender), (b, receiver), _] = tenants(&emulator);
    let send = |i: usize| {
        let msh = msh.clone();
        let a = a.clone();
        async move {
            let date = format!("2025-10-01T12:00:{i:02}.1234567Z");
            let answer = msh
                .send(&a, &msghead(&format!("m{i}"), &date, sender, &[receiver]))
                .await;
            assert_eq!(answer.status, StatusCode::CREATED);
        }
    };
    for i in 0..5 {
        send(i).await;
    }
    let mut handled: Vec<String> = Vec::new();
    // The receiver takes two at a time and handles them (fetch, mark read)...
    let page = msh.inbox(&b, &[receiver], "&MessagesToFetch=2").await;
    for message in &page {
        msh.handle(&b, message["id"].as_str().expect("id"), receiver)
            .await;
        handled.push(
            message["businessDocumentId"]
                .as_str()
                .expect("MsgId")
                .to_owned(),
        );
    }
    // ...fetches the next page and stops before marking it (a crash mid-way)...
    let interrupted = msh.inbox(&b, &[receiver], "&MessagesToFetch=2").await;
    assert_eq!(interrupted[0]["businessDocumentId"], "m2");
    // ...more arrive while it is down...
    for i in 5..7 {
        send(i).await;
    }
    // ...and a new instance polls until nothing is left.
    loop {
        let page = msh.inbox(&b, &[receiver], "&MessagesToFetch=2").await;
        if page.is_empty() {
            break;
        }
        for message in &page {
            msh.handle(&b, message["id"].as_str().expect("id"), receiver)
                .await;
            handled.push(
                message["businessDocumentId"]
                    .as_str()
                    .expect("MsgId")
                    .to_owned(),
            );
        }
    }
    assert_eq!(handled, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn statuses_move_and_the_application_receipt_reaches_the_sender() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, sender), (b, first), (c, second)] = tenants(&emulator);
    let sent = msh
        .send(
            &a,
            &msghead(
                "order-1",
                "2025-09-22T05:56:36.3095151Z",
                sender,
                &[first, second],
            ),
        )
        .await;
    let id = sent.json.as_str().expect("id").to_owned();
    let status = |orgnr: String| {
        let msh = msh.clone();
        let id = id.clone();
        async move {
            let answer = msh
                .call(Method::GET, &format!("/Messages/{id}/status"), &orgnr, None)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            answer.json
        }
    };
    assert_eq!(
        status(a.clone()).await,
        json!([
            {"receiverHerId": first, "transportDeliveryState": "Unconfirmed", "appRecStatus": null},
            {"receiverHerId": second, "transportDeliveryState": "Unconfirmed", "appRecStatus": null},
        ])
    );
    // The first receiver fetches the document: acknowledged for it only.
    let document = msh
        .call(
            Method::GET,
            &format!("/Messages/{id}/business-document"),
            &b,
            None,
        )
        .await;
    assert_eq!(
        (
            &document.json["contentType"],
            &document.json["contentTransferEncoding"]
        ),
        (&json!("application/xml"), &json!("base64"))
    );
    let after_fetch = status(a.clone()).await;
    assert_eq!(after_fetch[0]["transportDeliveryState"], "Acknowledged");
    assert_eq!(after_fetch[1]["transportDeliveryState"], "Unconfirmed");
    // The second marks it read without fetching: acknowledged too.
    let read = msh
        .call(
            Method::PUT,
            &format!("/Messages/{id}/read/{second}"),
            &c,
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::NO_CONTENT);
    assert_eq!(
        status(a.clone()).await[1]["transportDeliveryState"],
        "Acknowledged"
    );

    // Receipts: Ok from the second, Rejected (with an error) from the first.
    let ok = msh
        .call(
            Method::POST,
            &format!("/Messages/{id}/apprec/{second}"),
            &c,
            Some(json!({"appRecStatus": "Ok"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok:?}");
    let rejected = msh
        .call(
            Method::POST,
            &format!("/Messages/{id}/apprec/{first}"),
            &b,
            Some(json!({"appRecStatus": 2, "appRecErrorList": [
                {"errorCode": "E10", "details": "Ugyldig meldingsidentifikator"}
            ]})),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::CREATED, "{rejected:?}");
    let apprec_id = rejected.json.as_str().expect("the receipt's id").to_owned();
    assert_eq!(
        status(a.clone()).await,
        json!([
            {"receiverHerId": first, "transportDeliveryState": "Acknowledged", "appRecStatus": "Rejected"},
            {"receiverHerId": second, "transportDeliveryState": "Acknowledged", "appRecStatus": "Ok"},
        ])
    );
    let info = msh
        .call(Method::GET, &format!("/Messages/{id}/apprec"), &a, None)
        .await;
    assert_eq!(
        info.json,
        json!([
            {"receiverHerId": first, "appRecStatus": "Rejected", "appRecErrorList": [
                {"errorCode": "E10", "details": "Ugyldig meldingsidentifikator", "description": null, "oid": null}
            ]},
            {"receiverHerId": second, "appRecStatus": "Ok", "appRecErrorList": null},
        ])
    );
    // The sender's inbox has both receipts, as application receipts.
    let inbox = msh.inbox(&a, &[sender], "").await;
    assert_eq!(inbox.len(), 2);
    assert!(
        inbox
            .iter()
            .all(|m| m["isAppRec"] == true && m["receiverHerId"] == sender)
    );
    assert!(ids(&inbox).contains(&apprec_id));
    let receipt = msh.handle(&a, &apprec_id, sender).await;
    assert!(receipt.contains("<AppRec"), "{receipt}");
    assert!(receipt.contains("<Status V=\"2\""), "{receipt}");
    assert!(receipt.contains("<Id>order-1</Id>"), "{receipt}");
    assert!(receipt.contains("V=\"E10\""), "{receipt}");
    // The receipt's own status: acknowledged once the sender fetched it.
    let receipt_status = msh
        .call(
            Method::GET,
            &format!("/Messages/{apprec_id}/status"),
            &a,
            None,
        )
        .await;
    assert_eq!(
        receipt_status.json[0]["transportDeliveryState"],
        "Acknowledged"
    );
    // A second receipt from the same receiver, and a receipt for a receipt: refused.
    let again = msh
        .call(
            Method::POST,
            &format!("/Messages/{id}/apprec/{second}"),
            &c,
            Some(json!({"appRecStatus": "Ok"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(
        again.json["validationErrors"][0]
            .as_str()
            .is_some_and(|e| e.contains("already sent"))
    );
    let on_receipt = msh
        .call(
            Method::POST,
            &format!("/Messages/{apprec_id}/apprec/{sender}"),
            &a,
            Some(json!({"appRecStatus": "Ok"})),
        )
        .await;
    assert_eq!(on_receipt.status, StatusCode::BAD_REQUEST, "{on_receipt:?}");
    let held = emulator.msh_messages();
    assert_eq!(held.len(), 3);
    assert_eq!(held[0].receivers[0].app_rec_status, Some("Rejected"));
    assert_eq!(held[2].app_rec_of.as_deref(), Some(id.as_str()));
    emulator.shutdown().await;
}

/// Asserts an `ErrorMessage` answer: the status, `errorCode`, and a text in `error` or
/// in one of `validationErrors`.
fn assert_error(answer: &Answer, status: StatusCode, code: i64, text: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let body = &answer.json;
    assert_eq!(body["errorCode"], code, "{body}");
    assert!(
        body["requestId"].as_str().is_some_and(|r| r.len() == 36),
        "{body}"
    );
    assert!(body.get("stackTrace").is_some_and(Value::is_null), "{body}");
    let mut texts = vec![body["error"].as_str().unwrap_or_default().to_owned()];
    texts.extend(
        body["validationErrors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned),
    );
    assert!(texts.iter().any(|t| t.contains(text)), "`{text}` in {body}");
}

#[tokio::test]
async fn bad_input_gets_the_documents_errors() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, sender), (b, receiver), _] = tenants(&emulator);

    // An unknown receiver, and an unknown sender.
    let unknown = msh
        .send(&a, &msghead("x", "2025-01-01T00:00:00", sender, &[1]))
        .await;
    assert_error(
        &unknown,
        StatusCode::BAD_REQUEST,
        1000,
        "HER-id 1 is not in the CommunicationParty register",
    );
    let inbox = msh
        .call(Method::GET, "/Messages?ReceiverHerIds=2", &a, None)
        .await;
    assert_error(
        &inbox,
        StatusCode::BAD_REQUEST,
        1000,
        "HER-id 2 is not in the CommunicationParty register",
    );
    // A sender, and a receiver's inbox, of another organisation: 403.
    let foreign = msh
        .send(
            &b,
            &msghead("x", "2025-01-01T00:00:00", sender, &[receiver]),
        )
        .await;
    assert_error(
        &foreign,
        StatusCode::FORBIDDEN,
        0,
        &format!("Not authorized for HerId(s): {sender}"),
    );
    let foreign = msh
        .call(
            Method::GET,
            &format!("/Messages?ReceiverHerIds={receiver}"),
            &a,
            None,
        )
        .await;
    assert_error(
        &foreign,
        StatusCode::FORBIDDEN,
        0,
        &format!("Not authorized for HerId(s): {receiver}"),
    );
    // A message that is neither from nor to the caller's organisation.
    let sent = msh
        .send(
            &a,
            &msghead("x", "2025-01-01T00:00:00", sender, &[receiver]),
        )
        .await;
    let id = sent.json.as_str().expect("id").to_owned();
    let [_, _, (c, _)] = tenants(&emulator);
    let stranger = msh
        .call(Method::GET, &format!("/Messages/{id}"), &c, None)
        .await;
    assert_error(
        &stranger,
        StatusCode::FORBIDDEN,
        0,
        "Not authorized for message",
    );
    let mine = msh
        .call(Method::GET, &format!("/Messages/{id}"), &b, None)
        .await;
    assert_eq!(mine.json["businessDocumentId"], "x");

    // The headers, each missing, and a version that is not 2.
    for (headers, text) in [
        (
            vec![("nhn-source-system", "t")],
            "the api-version header is required",
        ),
        (
            vec![("api-version", "2")],
            "the nhn-source-system header is required",
        ),
        (
            vec![("api-version", "3"), ("nhn-source-system", "t")],
            "api-version `3` is not supported",
        ),
    ] {
        let answer = msh
            .raw(
                Method::GET,
                &format!("/Messages/{id}"),
                Some(&b),
                headers,
                None,
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, 1000, text);
    }
    // Ids, paths and bodies.
    let missing = msh
        .call(
            Method::GET,
            "/Messages/3d924740-9f7b-4c33-93af-ff72e118d1e6",
            &b,
            None,
        )
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, 0, "No message has id");
    let malformed = msh
        .call(Method::GET, "/Messages/not-a-guid/status", &b, None)
        .await;
    assert_error(
        &malformed,
        StatusCode::BAD_REQUEST,
        1000,
        "id `not-a-guid` is not a GUID",
    );
    let text = msh
        .raw(
            Method::POST,
            "/Messages",
            Some(&a),
            standard_headers(),
            Some((Bytes::from_static(b"hello"), "text/plain")),
        )
        .await;
    assert_error(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        0,
        "The body must be JSON",
    );
    let vendor_json = msh
        .raw(
            Method::POST,
            "/Messages",
            Some(&a),
            standard_headers(),
            Some((
                Bytes::from(
                    json!({
                        "businessDocument": STANDARD.encode(msghead("v", "2025-01-01T00:00:00", sender, &[receiver])),
                        "contentType": "application/xml",
                        "contentTransferEncoding": "base64",
                    })
                    .to_string(),
                ),
                "application/vnd.nhn+json; charset=utf-8",
            )),
        )
        .await;
    assert_eq!(
        vendor_json.status,
        StatusCode::CREATED,
        "application/*+json is taken"
    );
    let not_xml = msh
        .call(
            Method::POST,
            "/Messages",
            &a,
            Some(json!({"businessDocument": STANDARD.encode("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>"),
                "contentType": "application/xml", "contentTransferEncoding": "base64"})),
        )
        .await;
    assert_error(
        &not_xml,
        StatusCode::BAD_REQUEST,
        1000,
        "the element `a` is not closed",
    );
    let latin1 = msh
        .send(
            &a,
            &msghead("x", "2025-01-01T00:00:00", sender, &[receiver])
                .replace("UTF-8", "ISO-8859-1"),
        )
        .await;
    assert_error(
        &latin1,
        StatusCode::BAD_REQUEST,
        1000,
        "XML declaration naming UTF-8",
    );
    let unknown_field = msh
        .call(
            Method::POST,
            "/Messages",
            &a,
            Some(
                json!({"businessDocument": "PA==", "contentType": "application/xml",
                "contentTransferEncoding": "base64", "senderHerId": 1}),
            ),
        )
        .await;
    assert_error(
        &unknown_field,
        StatusCode::BAD_REQUEST,
        1000,
        "unknown field `senderHerId`",
    );
    // Receipts: Rejected without errors, the unsupported status, a receiver of nothing.
    for (body, text) in [
        (
            json!({"appRecStatus": "Rejected"}),
            "appRecErrorList must name at least one error",
        ),
        (
            json!({"appRecStatus": "OkErrorInMessagePart"}),
            "is not supported",
        ),
        (
            json!({"appRecStatus": "Maybe"}),
            "is not one of Ok (1), Rejected (2)",
        ),
    ] {
        let answer = msh
            .call(
                Method::POST,
                &format!("/Messages/{id}/apprec/{receiver}"),
                &b,
                Some(body),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, 1000, text);
    }
    let not_receiver = msh
        .call(
            Method::PUT,
            &format!("/Messages/{id}/read/{sender}"),
            &a,
            None,
        )
        .await;
    assert_error(
        &not_receiver,
        StatusCode::BAD_REQUEST,
        1000,
        "is not a receiver of message",
    );
    let bad_query = msh
        .call(
            Method::GET,
            &format!("/Messages?ReceiverHerIds={receiver}&MessagesToFetch=101"),
            &b,
            None,
        )
        .await;
    assert_error(
        &bad_query,
        StatusCode::BAD_REQUEST,
        1000,
        "MessagesToFetch `101` is out of range",
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn only_dpop_bound_tokens_for_nhn_msh_with_its_scope_are_taken() {
    let emulator = start().await;
    let [(a, her_id), _, _] = tenants(&emulator);
    let path = format!("/Messages?ReceiverHerIds={her_id}");
    let challenge = |answer: &Answer| {
        answer.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("text")
            .to_owned()
    };
    // The EPJ system's own token passes.
    let good = Msh::epj(&emulator).call(Method::GET, &path, &a, None).await;
    assert_eq!(good.status, StatusCode::OK, "{good:?}");
    // A Bearer token with the right scope.
    let bearer = Msh::new(&emulator, EPJ, &[MSH_SCOPE], false)
        .call(Method::GET, &path, &a, None)
        .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    // RFC 9449: the API offers DPoP only, so a Bearer token gets the bare DPoP challenge.
    let text = challenge(&bearer);
    assert!(
        text.starts_with("DPoP ") && !text.contains("error=") && !text.contains("Bearer"),
        "{text}"
    );
    // Another API's DPoP-bound token (audience nhn:cp-api).
    let cp = Msh::new(&emulator, "cp-only", &["nhn:cp-api/access-v2-dpop"], true)
        .call(Method::GET, &path, &a, None)
        .await;
    assert_eq!(cp.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&cp).contains("error=\"invalid_token\"")
            && challenge(&cp).contains("not meant for this API"),
        "{}",
        challenge(&cp)
    );
    // The right audience without the scope.
    let scope = Msh::new(&emulator, "other-scope", &["nhn:msh/other"], true)
        .call(Method::GET, &path, &a, None)
        .await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert!(
        challenge(&scope).contains("insufficient_scope"),
        "{}",
        challenge(&scope)
    );
    // No token at all.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::get(format!("{}{path}", emulator.msh_base_url()));
    for (name, value) in standard_headers() {
        request = request.header(name, value);
    }
    let response = http
        .request(request.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Every one of them counted (the layer sends the `invalid_token` refusal once more
    // with a new token, as it does for any API); none left a message.
    assert_eq!(emulator.msh_requests(), 6);
    assert!(emulator.msh_messages().is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_20_mb_document_is_refused_over_the_cap_with_413() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, sender), (_, receiver), _] = tenants(&emulator);
    // A MsgHead padded to 20 MB with a comment.
    let head = msghead("big", "2025-01-01T00:00:00", sender, &[receiver]);
    let padding = "x".repeat(20 * 1024 * 1024);
    let big = head.replacen("<MsgHead", &format!("<!--{padding}--><MsgHead"), 1);
    assert!(big.len() > 20 * 1024 * 1024);

    // The document's limit is 35 MB for the request: 20 MB (27 MB in base64) passes...
    let taken = msh.send(&a, &big).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{taken:?}");
    // ...and a cap below it refuses the same document with 413 and an ErrorMessage.
    emulator.set_msh_max_request_size(16 * 1024 * 1024);
    let refused = msh.send(&a, &big).await;
    assert_error(
        &refused,
        StatusCode::PAYLOAD_TOO_LARGE,
        0,
        "over the limit of 16777216 bytes",
    );
    // Over the default 35 MiB.
    emulator.set_msh_max_request_size(35 * 1024 * 1024);
    let huge = big.replacen(&padding, &"y".repeat(27 * 1024 * 1024), 1);
    let refused = msh.send(&a, &huge).await;
    assert_error(
        &refused,
        StatusCode::PAYLOAD_TOO_LARGE,
        0,
        "over the limit of 36700160 bytes",
    );
    assert_eq!(emulator.msh_messages().len(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_token_signed_with_a_retired_key_is_refused() {
    let emulator = start().await;
    let msh = Msh::epj(&emulator);
    let [(a, her_id), _, _] = tenants(&emulator);
    let path = format!("/Messages?ReceiverHerIds={her_id}");
    assert_eq!(
        msh.call(Method::GET, &path, &a, None).await.status,
        StatusCode::OK
    );
    assert_eq!(emulator.tokens_issued(), 1);
    emulator.rotate_signing_key().expect("a new key");
    // Still published: the cached token passes.
    assert_eq!(
        msh.call(Method::GET, &path, &a, None).await.status,
        StatusCode::OK
    );
    assert_eq!(emulator.tokens_issued(), 1);
    // Retired: the API refuses the cached token (401 invalid_token), and the layer gets
    // a new one and sends the request again.
    assert_eq!(emulator.retire_old_signing_keys(), 1);
    let before = emulator.msh_requests();
    assert_eq!(
        msh.call(Method::GET, &path, &a, None).await.status,
        StatusCode::OK
    );
    assert_eq!(emulator.tokens_issued(), 2);
    assert_eq!(emulator.msh_requests(), before + 2);
    emulator.shutdown().await;
}
