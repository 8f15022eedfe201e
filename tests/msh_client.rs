//! `helseid::msh` against the emulator's Meldingstjener (MSH) v2 over real HTTP on
//! 127.0.0.1, with DPoP-bound tokens from its HelseID: messages arrive once and in order
//! at each receiver; an inbox stream stopped and started again misses nothing and sees
//! nothing twice; application receipts reach the sender; statuses move; and bad input
//! gets clear errors (an unknown HER-id, a document over the limit, a Bearer-only
//! client, a missing header, another tenant's HER-id).
#![cfg(feature = "msh")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use helseid::HelseIdLayer;
use helseid::assertion::Tenant;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::msh::types::{AppRecError, AppRecStatus, DeliveryState, Message};
use helseid::msh::{self, Client, ClientInfo};
use helseid_emulator::{Emulator, MSH_SCOPE};
use uuid::Uuid;

/// The EPJ system every test sends and receives with.
const EPJ: &str = "epj";

async fn start() -> Emulator {
    Emulator::builder()
        .test_client(EPJ, [MSH_SCOPE])
        .start()
        .await
        .expect("the emulator starts")
}

/// Three tenants, each with one HER-id of its own: (tenant, HER-id).
fn tenants(emulator: &Emulator) -> [(Tenant, i32); 3] {
    let mut found = emulator
        .msh_organisations()
        .into_iter()
        .filter_map(|orgnr| {
            let her_id = *emulator.msh_her_ids(&orgnr).first()?;
            Some((orgnr.parse().expect("a tenant"), her_id))
        });
    std::array::from_fn(|_| found.next().expect("three organisations"))
}

/// The EPJ system's client acting for `tenant`.
fn client(emulator: &Emulator, tenant: Tenant) -> Client {
    Client::builder(emulator.client_config(EPJ).expect("the test client"))
        .source_system("msh-client-test 1.0")
        .tenant(tenant)
        .build()
        .expect("a client")
}

/// The next MsgId.
static NEXT: AtomicU32 = AtomicU32::new(1);

/// A MsgHead from `sender` to `receivers`, with this GenDate and a note.
fn msghead(gen_date: &str, sender: i32, receivers: &[i32], note: &str) -> Vec<u8> {
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
         <MsgId>{:08x}-0000-4000-8000-000000000000</MsgId><Sender>{}</Sender>{receivers}</MsgInfo>\
         <Document><RefDoc><MsgType V=\"XML\"/><Content>{note}</Content></RefDoc></Document>\
         </MsgHead>",
        NEXT.fetch_add(1, Ordering::Relaxed),
        party(sender)
    )
    .into_bytes()
}

/// Every unread message of `inbox`'s receiver now (a drained stream).
async fn unread(msh: &Client, her_id: i32) -> Vec<Message> {
    msh.inbox(her_id)
        .drain(true)
        .try_collect()
        .await
        .expect("the inbox")
}

fn ids(messages: &[Message]) -> Vec<Uuid> {
    messages.iter().map(|m| m.id.expect("an id")).collect()
}

#[tokio::test]
async fn a_message_arrives_once_and_in_order_at_each_receiver() {
    let emulator = start().await;
    let [(a, sender), (b, first), (c, second)] = tenants(&emulator);
    let (from, to_b, to_c) = (
        client(&emulator, a),
        client(&emulator, b),
        client(&emulator, c),
    );
    assert_eq!(from.baseurl(), emulator.msh_base_url());

    // GenDates in order, the second written before the first is sent.
    let documents = [
        msghead("2025-01-01T10:00:00", sender, &[first, second], "one"),
        msghead("2025-01-01T10:00:01", sender, &[first, second], "two"),
        msghead("2025-01-01T10:00:02", sender, &[first, second], "three"),
    ];
    let mut sent = Vec::new();
    for document in &documents {
        sent.push(
            from.send(sender, &[first, second], document)
                .await
                .expect("sent"),
        );
    }

    for (msh, her_id) in [(&to_b, first), (&to_c, second)] {
        let inbox = unread(msh, her_id).await;
        assert_eq!(ids(&inbox), sent, "each once, in order, at {her_id}");
        for (message, document) in inbox.iter().zip(&documents) {
            assert_eq!(message.receiver_her_id, Some(her_id));
            assert_eq!(message.sender_her_id, Some(sender));
            assert_eq!(message.is_app_rec, Some(false));
            let id = message.id.expect("an id");
            assert_eq!(&msh.business_document(id).await.expect("fetched"), document);
            msh.mark_read(id, her_id).await.expect("marked read");
        }
        assert!(unread(msh, her_id).await.is_empty(), "all read at {her_id}");
    }
    // A receipt-free copy to one receiver only: the other does not get it.
    let only_b = from
        .send(
            sender,
            &[first],
            &msghead("2025-01-01T10:00:03", sender, &[first, second], "four"),
        )
        .await
        .expect("sent");
    assert_eq!(ids(&unread(&to_b, first).await), [only_b]);
    assert!(unread(&to_c, second).await.is_empty());
}

#[tokio::test]
async fn a_restarted_inbox_misses_nothing_and_sees_nothing_twice() {
    let emulator = start().await;
    let [(a, sender), (b, receiver), _] = tenants(&emulator);
    let (from, to) = (client(&emulator, a), client(&emulator, b));
    let mut sent = Vec::new();
    for i in 0..5 {
        let document = msghead(&format!("2025-02-01T10:00:0{i}"), sender, &[receiver], "n");
        sent.push(
            from.send(sender, &[receiver], &document)
                .await
                .expect("sent"),
        );
    }

    // The first run handles two messages, fetches a third without handling it, stops.
    let mut inbox = to.inbox(receiver).drain(true);
    let mut handled = Vec::new();
    for _ in 0..2 {
        let id = inbox
            .try_next()
            .await
            .expect("polled")
            .expect("a message")
            .id
            .expect("an id");
        to.business_document(id).await.expect("fetched");
        to.mark_read(id, receiver).await.expect("marked read");
        handled.push(id);
    }
    let unhandled = inbox.try_next().await.expect("polled").expect("a message");
    drop(inbox);
    assert_eq!(handled, sent[..2]);
    assert_eq!(unhandled.id, Some(sent[2]));

    // Two more arrive while it is stopped.
    for i in 5..7 {
        let document = msghead(&format!("2025-02-01T10:00:0{i}"), sender, &[receiver], "n");
        sent.push(
            from.send(sender, &[receiver], &document)
                .await
                .expect("sent"),
        );
    }

    // The second run gets the unhandled one again and the new ones: nothing missed,
    // nothing handled seen again, and each once although the stream polls twice.
    let second = unread(&to, receiver).await;
    assert_eq!(ids(&second), sent[2..]);
    for id in ids(&second) {
        to.mark_read(id, receiver).await.expect("marked read");
    }
    // Marking again is no error; the third run sees nothing.
    to.mark_read(sent[0], receiver).await.expect("marked again");
    assert!(unread(&to, receiver).await.is_empty());
}

#[tokio::test]
async fn a_following_inbox_yields_what_arrives_later() {
    let emulator = start().await;
    let [(a, sender), (b, receiver), _] = tenants(&emulator);
    let (from, to) = (client(&emulator, a), client(&emulator, b));
    let first = from
        .send(
            sender,
            &[receiver],
            &msghead("2025-03-01T10:00:00", sender, &[receiver], "1"),
        )
        .await
        .expect("sent");
    let mut inbox = to
        .inbox(receiver)
        .poll_interval(Duration::from_millis(5))
        .max_poll_interval(Duration::from_millis(20));
    let got = inbox.try_next().await.expect("polled").expect("a message");
    assert_eq!(got.id, Some(first));
    // Not marked read: the stream does not yield it again, and waits for the next.
    let later = tokio::spawn(async move {
        from.send(
            sender,
            &[receiver],
            &msghead("2025-03-01T10:00:01", sender, &[receiver], "2"),
        )
        .await
        .expect("sent")
    });
    let next = inbox.next().await.expect("not ended").expect("a message");
    let second = later.await.expect("the sender");
    assert_eq!(next.id, Some(second));
    assert_ne!(second, first);
}

#[tokio::test]
async fn application_receipts_reach_the_sender_and_statuses_move() {
    let emulator = start().await;
    let [(a, sender), (b, first), (c, second)] = tenants(&emulator);
    let (from, to_b, to_c) = (
        client(&emulator, a),
        client(&emulator, b),
        client(&emulator, c),
    );
    let id = from
        .send(
            sender,
            &[first, second],
            &msghead("2025-04-01T10:00:00", sender, &[first, second], "x"),
        )
        .await
        .expect("sent");

    let status = from.status(id).await.expect("a status");
    assert_eq!(status.len(), 2);
    assert!(
        status
            .iter()
            .all(|s| s.transport_delivery_state == DeliveryState::Unconfirmed
                && s.app_rec_status.is_none())
    );

    // The first receiver fetches it: its delivery is confirmed.
    to_b.business_document(id).await.expect("fetched");
    let status = from.status(id).await.expect("a status");
    let of = |her_id: i32| {
        status
            .iter()
            .find(|s| s.receiver_her_id == her_id)
            .expect("a receiver's status")
            .clone()
    };
    assert_eq!(
        of(first).transport_delivery_state,
        DeliveryState::Acknowledged
    );
    assert_eq!(
        of(second).transport_delivery_state,
        DeliveryState::Unconfirmed
    );

    // Receipts: Ok from one, Rejected with an error from the other.
    let ok = to_b
        .send_apprec(id, first, AppRecStatus::Ok, Vec::new())
        .await
        .expect("an Ok receipt");
    let error = AppRecError {
        error_code: Some("E10".to_owned()),
        details: Some("Ukjent pasient".to_owned()),
        description: None,
        oid: None,
    };
    let rejected = to_c
        .send_apprec(id, second, AppRecStatus::Rejected, vec![error])
        .await
        .expect("a Rejected receipt");
    assert_ne!(ok, rejected);

    // A second receipt from the same receiver is the API's 400, named.
    let again = to_b
        .send_apprec(id, first, AppRecStatus::Ok, Vec::new())
        .await
        .expect_err("one receipt per receiver");
    assert_eq!(again.status(), Some(http::StatusCode::BAD_REQUEST));
    assert!(
        msh::describe(&again).contains("already sent an application receipt"),
        "{}",
        msh::describe(&again)
    );

    // Both reach the sender's inbox as receipts, and can be read there.
    let receipts = unread(&from, sender).await;
    assert_eq!(ids(&receipts), [ok, rejected]);
    for receipt in &receipts {
        assert_eq!(receipt.is_app_rec, Some(true));
        let document = from
            .business_document(receipt.id.expect("an id"))
            .await
            .expect("the receipt's document");
        let text = String::from_utf8(document).expect("UTF-8");
        assert!(text.contains("AppRec"), "{text}");
    }
    let apprecs = from.apprecs(id).await.expect("the receipts");
    let of = |her_id: i32| {
        apprecs
            .iter()
            .find(|r| r.receiver_her_id == her_id)
            .expect("a receiver's receipt")
            .clone()
    };
    assert_eq!(of(first).app_rec_status, Some(AppRecStatus::Ok));
    assert_eq!(of(second).app_rec_status, Some(AppRecStatus::Rejected));
    let errors = of(second).app_rec_error_list.expect("the errors");
    assert_eq!(errors[0].error_code.as_deref(), Some("E10"));
    let status = from.status(id).await.expect("a status");
    assert!(
        status
            .iter()
            .all(|s| s.transport_delivery_state == DeliveryState::Acknowledged)
    );
    assert!(
        status
            .iter()
            .any(|s| s.app_rec_status == Some(AppRecStatus::Rejected))
    );

    // A Rejected receipt without errors is refused before it is sent.
    let before = emulator.msh_requests();
    let bare = to_c
        .send_apprec(id, second, AppRecStatus::Rejected, Vec::new())
        .await
        .expect_err("no errors");
    assert!(
        bare.to_string().contains("names at least one error"),
        "{bare}"
    );
    assert_eq!(emulator.msh_requests(), before);
}

/// No line of an error holds a token, a proof or a header.
fn clean(line: &str) {
    assert!(!line.contains("eyJ"), "a JWT in {line}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        !line.to_ascii_lowercase().contains("authorization"),
        "{line}"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let emulator = start().await;
    let [(a, sender), (b, receiver), _] = tenants(&emulator);
    let from = client(&emulator, a);
    let document = msghead("2025-05-01T10:00:00", sender, &[receiver], "x");

    // Refused before anything is sent: no receiver, a number that is no HER-id, a
    // document that is not a MsgHead or not from the sender.
    let before = emulator.msh_requests();
    for (to, body, expect) in [
        (&[][..], &document[..], "to_her_ids is empty"),
        (&[0][..], &document[..], "0 is not a HER-id"),
        (
            &[receiver][..],
            &b"<?xml version=\"1.0\"?><Note/>"[..],
            "has no Sender",
        ),
        (
            &[receiver][..],
            &b"hello"[..],
            "does not start with an XML declaration",
        ),
        (&[receiver][..], &[0xff, 0xfe][..], "not UTF-8"),
    ] {
        let e = from.send(sender, to, body).await.expect_err(expect);
        let line = e.to_string();
        assert!(line.starts_with("MSH API v2 send: "), "{line}");
        assert!(line.contains(expect), "{line}");
        clean(&line);
    }
    let e = from
        .send(receiver, &[receiver], &document)
        .await
        .expect_err("another sender");
    assert!(
        e.to_string()
            .contains(&format!("Sender is not HER-id {receiver}")),
        "{e}"
    );
    assert_eq!(emulator.msh_requests(), before, "nothing was sent");

    // An unknown HER-id: the API's 400, its validationErrors named by `describe`.
    let stranger = 99_999_999;
    let e = from
        .send(
            sender,
            &[stranger],
            &msghead("2025-05-01T10:00:00", sender, &[stranger], "x"),
        )
        .await
        .expect_err("an unknown receiver");
    assert_eq!(e.status(), Some(http::StatusCode::BAD_REQUEST));
    let line = msh::describe(&e);
    assert!(line.contains(&stranger.to_string()), "{line}");
    let body = msh::error_message(&e).expect("the API's ErrorMessage");
    assert_eq!(body.error_code, Some(1000));
    clean(&line);

    // A HER-id the tenant does not own: 403 naming it.
    let e = client(&emulator, tenants(&emulator)[1].0)
        .send(sender, &[receiver], &document)
        .await
        .expect_err("not the tenant's");
    assert_eq!(e.status(), Some(http::StatusCode::FORBIDDEN));
    assert!(e.to_string().contains(&sender.to_string()), "{e}");
    let _ = b;

    // A 20 MB document over the API's limit (here 16 MiB): the API's 413, one line.
    emulator.set_msh_max_request_size(16 * 1024 * 1024);
    let mut large = msghead("2025-05-01T10:00:00", sender, &[receiver], "x");
    let padding = vec![b' '; 20 * 1000 * 1000 - large.len()];
    let at = large.len() - "</MsgHead>".len();
    large.splice(at..at, padding);
    assert_eq!(large.len(), 20_000_000);
    let e = from
        .send(sender, &[receiver], &large)
        .await
        .expect_err("over the limit");
    assert_eq!(e.status(), Some(http::StatusCode::PAYLOAD_TOO_LARGE), "{e}");
    clean(&e.to_string());
    // Past the document's 35 MiB the client refuses it without sending.
    let before = emulator.msh_requests();
    let huge = vec![b' '; 27 * 1024 * 1024];
    let e = from
        .send(sender, &[receiver], &huge)
        .await
        .expect_err("over 35 MiB encoded");
    assert!(e.to_string().contains("over the API's limit"), "{e}");
    assert_eq!(emulator.msh_requests(), before);
}

#[tokio::test]
async fn a_bearer_client_and_a_missing_header_are_refused() {
    let emulator = start().await;
    let [(a, sender), _, _] = tenants(&emulator);
    let config = emulator.client_config(EPJ).expect("the test client");
    let http =
        helseid::transport::https_client::<http_body_util::Full<bytes::Bytes>>().expect("a client");

    // Bearer: the stack attaches a token without DPoP. The API's bare DPoP challenge.
    let bearer = HelseIdLayer::builder(TokenEndpoint::new(config.clone()).expect("endpoint"))
        .scopes([MSH_SCOPE])
        .build();
    let stack = tower::ServiceBuilder::new()
        .layer(bearer)
        .service(http.clone());
    let msh = Client::from_service(emulator.msh_base_url(), stack)
        .expect("a client")
        .with_source_system("bearer-test")
        .expect("a name")
        .with_tenant(a);
    let e = unread_error(&msh, sender).await;
    assert_eq!(e.status(), Some(http::StatusCode::UNAUTHORIZED), "{e}");
    let challenge = e
        .headers()
        .and_then(|h| h.get(http::header::WWW_AUTHENTICATE))
        .and_then(|v| v.to_str().ok())
        .expect("a challenge");
    assert!(challenge.starts_with("DPoP"), "{challenge}");
    clean(&e.to_string());
    assert!(!format!("{e:?}").contains("eyJ"));

    // DPoP, but no nhn-source-system (from_service sends only api-version): 400 naming it.
    let dpop = HelseIdLayer::builder(TokenEndpoint::new(config).expect("endpoint"))
        .scopes([MSH_SCOPE])
        .dpop(DpopKey::generate().expect("a key"))
        .build();
    let stack = tower::ServiceBuilder::new().layer(dpop).service(http);
    let msh = Client::from_service(emulator.msh_base_url(), stack)
        .expect("a client")
        .with_tenant(a);
    let e = unread_error(&msh, sender).await;
    assert_eq!(e.status(), Some(http::StatusCode::BAD_REQUEST));
    assert!(
        msh::describe(&e).contains("nhn-source-system"),
        "{}",
        msh::describe(&e)
    );
    // With the header the same stack is let in.
    let msh = msh.with_source_system("fixed 1.0").expect("a name");
    assert!(unread(&msh, sender).await.is_empty());

    // A name that is no header value is refused by the builder.
    let e = Client::builder(emulator.client_config(EPJ).expect("the test client"))
        .source_system("line\nbreak")
        .build()
        .expect_err("not a header value");
    assert!(e.to_string().contains("source_system"), "{e}");
}

/// The first item of a draining inbox, which must be an error.
async fn unread_error(msh: &Client, her_id: i32) -> msh::Error {
    msh.inbox(her_id)
        .drain(true)
        .next()
        .await
        .expect("an item")
        .expect_err("refused")
}

#[test]
fn base_urls_follow_the_environment() {
    use helseid::config::Environment;
    assert_eq!(msh::base_url(Environment::Test), Some(msh::TEST_URL));
    assert_eq!(msh::base_url(Environment::Prod), Some(msh::PROD_URL));
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send::<msh::Inbox>();
    assert_send_sync::<msh::Error>();
}
