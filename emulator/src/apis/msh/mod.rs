//! The Meldingstjener (MSH, "EDI 2.0") REST API v2 side of the emulator: health
//! messages routed between the HER-ids of the register CPE and the CommunicationParty
//! API v2 serve ([`crate::apis::register`]), as `openapi/msh-api-v2.json` (NHN's
//! document, byte for byte) describes it, behind DPoP-bound HelseID tokens
//! ([`auth`]: the token, the two headers, and the HER-ids a client may act for),
//! documented with utoipa and served at `/msh/openapi.json`.
//!
//! The base URL is the issuer ([`Emulator::msh_base_url`](crate::Emulator::msh_base_url)).
//! The operations (paths as the document spells them; ASP.NET's routes are
//! case-insensitive, so the lowercase `/messages...` are served too):
//!
//! - `POST /Messages` with a `PostMessageRequest` (`application/json`, `text/json` or
//!   `application/*+json`; anything else 415): the business document is a MsgHead
//!   (UTF-8 XML with its declaration, `contentType` `application/xml`,
//!   `contentTransferEncoding` `base64`), from which the emulator reads the sender, the
//!   receivers, `MsgId` and `GenDate` ([`xml`]). The sender is the MsgHead's
//!   (its level-1 HER-id with `ebXmlOverrides.useSenderLevel1HerId`), the receivers
//!   are every `Receiver`'s, cut to `receiverHerIdsSubset` when given (each of which
//!   must be one of them). Sender and receivers must be active parties of the register
//!   (400 naming the others); the client must be allowed to act for the sender (403).
//!   Answer: 201 with the new message's id as a JSON string and `Location:
//!   /Messages/{id}`. A request body over the cap (35 MiB, as the document's "35 MB";
//!   [`Emulator::set_msh_max_request_size`](crate::Emulator::set_msh_max_request_size))
//!   gets 413 with an `ErrorMessage`.
//! - `GET /Messages?ReceiverHerIds=..&ReceiverHerIds=..`: the receivers' **unread**
//!   messages, one entry per message and receiver, by the business document's GenDate
//!   (`OrderBy` `Ascending`/`1`, the default, or `Descending`/`2`; ties in arrival
//!   order), at most `MessagesToFetch` (1 to 100, default 10), filtered by
//!   `SenderHerId` and `BusinessDocumentId`. Without `IncludeMetadata=true` an entry is
//!   only `id` and `receiverHerId`. The client must be allowed to act for every
//!   receiver (403 naming the others).
//! - `GET /Messages/{id}`: the message with its metadata (for the first of its
//!   receivers the client acts for, or its first receiver when the client is its
//!   sender).
//! - `GET /Messages/{id}/business-document`: the business document as sent; the first
//!   fetch by a receiver moves its delivery state from `Unconfirmed` to `Acknowledged`
//!   (for every receiver of the message the client acts for).
//! - `PUT /Messages/{id}/read/{herId}`: 204; the message leaves `herId`'s unread list
//!   for good (and is `Acknowledged`). Marking it again is no error.
//! - `POST /Messages/{id}/apprec/{appRecSenderHerId}` with a `PostAppRecRequest`: the
//!   receiver `appRecSenderHerId` answers with an application receipt: an AppRec
//!   document (KITH's apprec 1.1) sent as a new message (`isAppRec: true`) to the
//!   original sender, whose id is answered (201, as `POST /Messages`). `Rejected` needs
//!   a non-empty `appRecErrorList` whose entries have an `errorCode`;
//!   `OkErrorInMessagePart` is refused, as the document says the Meldingstjener does;
//!   one receipt per receiver; no receipt for a receipt.
//! - `GET /Messages/{id}/status`: a `StatusInfo` per receiver:
//!   `transportDeliveryState` (`Unconfirmed`, then `Acknowledged`) and `appRecStatus`
//!   (`null` until the receiver's receipt).
//! - `GET /Messages/{id}/apprec`: an `ApprecInfo` per receiver, with the receipt's
//!   status and errors (`null` until it arrives).
//!
//! **The inbox rule (the cursor).** The document gives no cursor: `GET /Messages` lists
//! what is unread, and a receiver marks each message read once it has handled it. A
//! message stays in the list until it is marked read by that receiver, and never
//! comes back after; so a receiver that stops (with messages fetched but not marked)
//! and starts again gets those again and misses nothing, and one that marks what it
//! handled sees nothing twice. Each receiver of a message has its own read mark.
//!
//! The operations on one message (`/Messages/{id}/...`) are open to its sender and its
//! receivers (403 for other clients); an id that is not a GUID gets 400, an unknown one
//! 404. Every error answer is the document's `ErrorMessage`: `error`, `errorCode` (1000
//! with `validationErrors` for a request that is malformed, 0 otherwise),
//! `validationErrors`, `stackTrace` (`null`, as in production) and a fresh `requestId`.
//! Date-times are written as .NET writes a `DateTimeOffset`: UTC with `+00:00` and up
//! to seven fractional digits (`2025-09-22T05:56:36.3095151+00:00`).
//! [`Emulator::msh_requests`](crate::Emulator::msh_requests) counts the calls.

pub(crate) mod answer;
pub(crate) mod auth;
mod emulator;
pub(crate) mod model;
pub(crate) mod store;
pub(crate) mod xml;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path, Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Timelike, Utc};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi};

use self::answer::{Failure, new_guid};
use self::auth::{Caller, is_active};
use self::model::*;
use self::store::{Delivery, Query, Store, Stored};
use crate::apis::register::Register;
use crate::server::lock;
use crate::server::response::quote;
use crate::server::verify::{Api, Verifier};
use helseid::verify::Dpop;

/// The largest request body `POST /Messages` takes by default: the document's 35 MB,
/// read as MiB.
pub(crate) const DEFAULT_MAX_REQUEST: usize = 35 * 1024 * 1024;

/// The largest body the application receipt operation takes.
const MAX_APPREC_REQUEST: usize = 1024 * 1024;

/// The most messages one `GET /Messages` returns, and its default.
const MAX_TO_FETCH: usize = 100;
const DEFAULT_TO_FETCH: usize = 10;

/// The Meldingstjener's state: the messages, the request cap and counter, its token
/// verifier, and the APIs' state (the register, and the IdP whose tokens it takes).
pub(crate) struct Msh {
    pub(crate) apis: Arc<crate::apis::state::State>,
    store: Mutex<Store>,
    max_request: AtomicUsize,
    pub(crate) requests: Arc<AtomicU64>,
    /// In front of every operation; rebuilt when the IdP retires signing keys.
    pub(crate) verifier: Arc<Verifier>,
}

impl std::fmt::Debug for Msh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Msh")
            .field("messages", &lock(&self.store).all().len())
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Msh {
    /// An empty Meldingstjener in front of the APIs' register and IdP, with its
    /// verifier: DPoP-bound tokens for [`auth::AUDIENCE`] with [`auth::SCOPE`].
    ///
    /// # Errors
    /// [`Error::Key`](crate::server::error::Error::Key) when the verifier cannot be
    /// built.
    pub(crate) fn new(apis: Arc<crate::apis::state::State>) -> crate::server::error::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let verifier = Verifier::new(
            Arc::clone(&apis.idp),
            Api {
                audience: auth::AUDIENCE,
                scope: auth::SCOPE,
                dpop: Dpop::Required,
            },
            false,
            move || {
                counter.fetch_add(1, Ordering::Relaxed);
            },
        )?;
        Ok(Msh {
            apis,
            store: Mutex::new(Store::default()),
            max_request: AtomicUsize::new(DEFAULT_MAX_REQUEST),
            requests,
            verifier,
        })
    }

    /// Sets the largest request body `POST /Messages` takes.
    pub(crate) fn set_max_request(&self, bytes: usize) {
        self.max_request.store(bytes, Ordering::Relaxed);
    }

    /// How many requests reached the operations.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A snapshot of every message, oldest arrival first.
    pub(crate) fn messages(&self) -> Vec<MshMessage> {
        lock(&self.store).all().iter().map(MshMessage::of).collect()
    }

    /// Routes a business document (the XML) as `POST /Messages` would, without a
    /// token: returns the new message's id, or what is wrong.
    pub(crate) fn seed(&self, document: &[u8]) -> Result<String, String> {
        let request = PostMessageRequest {
            business_document: base64::engine::general_purpose::STANDARD.encode(document),
            content_type: "application/xml".to_owned(),
            content_transfer_encoding: "base64".to_owned(),
            eb_xml_overrides: None,
            receiver_her_ids_subset: None,
        };
        self.send(&request, None)
            .map_err(|failure| failure.describe())
    }

    /// The HER-ids a token for organisation `orgnr` may act for, in register order.
    pub(crate) fn her_ids_of(&self, orgnr: &str) -> Vec<i32> {
        let caller = Caller {
            orgnrs: vec![orgnr.to_owned()],
        };
        let register = self.apis.cpe.register();
        register
            .all()
            .iter()
            .map(|p| p.her_id)
            .filter(|h| caller.may_act_for(&register, *h))
            .collect()
    }

    /// The organisation number a token needs to act for `her_id`: that of the party's
    /// organisation, when the party is active and its organisation has one.
    pub(crate) fn organisation_of(&self, her_id: i32) -> Option<String> {
        let register = self.apis.cpe.register();
        let party = register.party(her_id).filter(|p| is_active(p))?;
        let number = register.organisation_of(party).organization_number?;
        Some(format!("{number:09}"))
    }

    /// The organisation numbers of the register's active organisations, in register
    /// order.
    pub(crate) fn organisations(&self) -> Vec<String> {
        let register = self.apis.cpe.register();
        register
            .all()
            .iter()
            .filter(|p| p.kind == Some("Organization") && is_active(p))
            .filter_map(|p| p.organization_number.map(|n| format!("{n:09}")))
            .collect()
    }

    /// Sends a message: checks it, routes it, stores it. `caller` is `None` for a
    /// message the emulator is given directly.
    fn send(
        &self,
        request: &PostMessageRequest,
        caller: Option<&Caller>,
    ) -> Result<String, Failure> {
        let mut problems = Vec::new();
        if !request
            .content_type
            .trim()
            .eq_ignore_ascii_case("application/xml")
        {
            problems.push(format!(
                "contentType {} is not supported: the business document is application/xml",
                quote(&request.content_type)
            ));
        }
        if !request
            .content_transfer_encoding
            .trim()
            .eq_ignore_ascii_case("base64")
        {
            problems.push(format!(
                "contentTransferEncoding {} is not supported: the business document is base64",
                quote(&request.content_transfer_encoding)
            ));
        }
        if !problems.is_empty() {
            return Err(Failure::validation(problems));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(request.business_document.trim())
            .map_err(|e| {
                Failure::validation(vec![format!("businessDocument is not base64: {e}")])
            })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Failure::validation(vec![
                "businessDocument is not UTF-8: the XML document must be UTF-8".to_owned(),
            ])
        })?;
        if !xml::declares_utf8(text) {
            return Err(Failure::validation(vec![
                "businessDocument must start with an XML declaration naming UTF-8: \
                 <?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                    .to_owned(),
            ]));
        }
        let head = xml::read_msghead(text).map_err(|e| Failure::validation(vec![e]))?;
        let level1 = request
            .eb_xml_overrides
            .as_ref()
            .and_then(|o| o.use_sender_level1_her_id)
            .unwrap_or(false);
        let sender = if level1 {
            head.sender.level1
        } else {
            head.sender.her_id()
        };
        let mut receivers: Vec<i32> = Vec::new();
        for her_id in head.receivers.iter().map(|r| r.her_id()) {
            if !receivers.contains(&her_id) {
                receivers.push(her_id);
            }
        }
        if let Some(subset) = &request.receiver_her_ids_subset {
            let strangers: Vec<String> = subset
                .iter()
                .filter(|h| !receivers.contains(h))
                .map(ToString::to_string)
                .collect();
            if !strangers.is_empty() {
                return Err(Failure::validation(vec![format!(
                    "receiverHerIdsSubset names HER-ids that are not receivers in the business \
                     document: {}",
                    strangers.join(", ")
                )]));
            }
            if subset.is_empty() {
                return Err(Failure::validation(vec![
                    "receiverHerIdsSubset is empty: leave it out to send to every receiver"
                        .to_owned(),
                ]));
            }
            receivers.retain(|h| subset.contains(h));
        }
        {
            let register = self.apis.cpe.register();
            let mut problems = Vec::new();
            if let Err(problem) = known(&register, sender, "the sender") {
                problems.push(problem);
            }
            for receiver in &receivers {
                if let Err(problem) = known(&register, *receiver, "a receiver") {
                    problems.push(problem);
                }
            }
            if !problems.is_empty() {
                return Err(Failure::validation(problems));
            }
            if let Some(caller) = caller {
                caller.require(&register, &[sender])?;
            }
        }
        let id = new_guid();
        lock(&self.store).add(Stored {
            id: id.clone(),
            sender,
            deliveries: receivers.into_iter().map(Delivery::new).collect(),
            business_document: request.business_document.trim().to_owned(),
            content_type: "application/xml".to_owned(),
            msg_id: head.msg_id,
            msg_type: head.kind.unwrap_or_default(),
            gen_date: head.gen_date,
            is_apprec: false,
            apprec_of: None,
        });
        Ok(id)
    }
}

/// Whether `her_id` is an active party of the register; `who` names it in the problem.
fn known(register: &Register, her_id: i32, who: &str) -> Result<(), String> {
    match register.party(her_id) {
        None => Err(format!(
            "{who}'s HER-id {her_id} is not in the CommunicationParty register"
        )),
        Some(party) if !is_active(party) => Err(format!(
            "{who}'s HER-id {her_id} is deactivated in the CommunicationParty register"
        )),
        Some(_) => Ok(()),
    }
}

/// A GUID as ASP.NET reads one (`D`, `N`, `B` or `P` form, any case), lowercase with
/// dashes; `None` when it is not one.
fn parse_guid(value: &str) -> Option<String> {
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('(').and_then(|v| v.strip_suffix(')')))
        .unwrap_or(value);
    let hex: String = match inner.len() {
        36 => {
            let dashes = [8, 13, 18, 23];
            if !dashes
                .iter()
                .all(|&i| inner.as_bytes().get(i) == Some(&b'-'))
            {
                return None;
            }
            inner.chars().filter(|c| *c != '-').collect()
        }
        32 if inner.len() == value.len() => inner.to_owned(),
        _ => return None,
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// An instant as .NET writes a `DateTimeOffset` in UTC: up to seven fractional digits
/// (trailing zeros trimmed) and `+00:00`.
fn write_utc(at: DateTime<Utc>) -> String {
    let mut written = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ticks = at.nanosecond().min(999_999_999) / 100;
    if ticks != 0 {
        written.push('.');
        written.push_str(format!("{ticks:07}").trim_end_matches('0'));
    }
    written.push_str("+00:00");
    written
}

/// A snapshot of a message the emulator's Meldingstjener holds
/// ([`Emulator::msh_messages`](crate::Emulator::msh_messages)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MshMessage {
    /// The message's id, as `POST /Messages` answered it.
    pub id: String,
    /// The sender's HER-id.
    pub sender_her_id: i32,
    /// The business document's `MsgId`.
    pub business_document_id: String,
    /// Whether it is an application receipt.
    pub is_app_rec: bool,
    /// For an application receipt: the id of the message it answers.
    pub app_rec_of: Option<String>,
    /// How far it has come to each receiver, in the document's order.
    pub receivers: Vec<MshReceiver>,
}

/// How far a message has come to one receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MshReceiver {
    /// The receiver's HER-id.
    pub her_id: i32,
    /// `Unconfirmed`, `Acknowledged` or `Rejected`, as `GET /Messages/{id}/status`
    /// writes it.
    pub delivery_state: &'static str,
    /// Whether the receiver marked it read.
    pub read: bool,
    /// The receiver's application receipt (`Ok`, `Rejected`), when it sent one.
    pub app_rec_status: Option<&'static str>,
}

impl MshMessage {
    fn of(message: &Stored) -> Self {
        MshMessage {
            id: message.id.clone(),
            sender_her_id: message.sender,
            business_document_id: message.msg_id.clone(),
            is_app_rec: message.is_apprec,
            app_rec_of: message.apprec_of.clone(),
            receivers: message
                .deliveries
                .iter()
                .map(|d| MshReceiver {
                    her_id: d.her_id,
                    delivery_state: match d.state {
                        DeliveryState::Unconfirmed => "Unconfirmed",
                        DeliveryState::Acknowledged => "Acknowledged",
                        DeliveryState::Rejected => "Rejected",
                    },
                    read: d.read,
                    app_rec_status: d.apprec.as_ref().map(|(status, _, _)| match status {
                        AppRecStatus::Ok => "Ok",
                        AppRecStatus::Rejected => "Rejected",
                        AppRecStatus::OkErrorInMessagePart => "OkErrorInMessagePart",
                    }),
                })
                .collect(),
        }
    }
}

/// The message `id` (a GUID) names, checked to be the caller's: `(index of the
/// receivers the caller acts for)`.
fn mine<'s>(
    store: &'s Store,
    register: &Register,
    caller: &Caller,
    id: &str,
) -> Result<(&'s Stored, Vec<i32>), Failure> {
    let guid = guid(id)?;
    let message = store.get(&guid).ok_or_else(|| Failure::not_found(&guid))?;
    let receivers: Vec<i32> = message
        .deliveries
        .iter()
        .map(|d| d.her_id)
        .filter(|h| caller.may_act_for(register, *h))
        .collect();
    if receivers.is_empty() && !caller.may_act_for(register, message.sender) {
        return Err(Failure::not_yours(&guid));
    }
    Ok((message, receivers))
}

/// The path's message id, or the 400.
fn guid(id: &str) -> Result<String, Failure> {
    parse_guid(id).ok_or_else(|| {
        Failure::validation(vec![format!(
            "id {} is not a GUID (such as 3d924740-9f7b-4c33-93af-ff72e118d1e6)",
            quote(id)
        )])
    })
}

/// A path's HER-id (1 to 2147483647), or the 400.
fn her_id_in(value: &str, name: &str) -> Result<i32, Failure> {
    value
        .parse::<i32>()
        .ok()
        .filter(|h| *h >= 1)
        .ok_or_else(|| {
            Failure::validation(vec![format!(
                "{name} {} is not a HER-id: a whole number from 1 to 2147483647",
                quote(value)
            )])
        })
}

/// The 201 of the two operations that create a message: the id as a JSON string, and
/// its URL in `Location`.
fn created(id: &str) -> Response {
    let mut response = (StatusCode::CREATED, Json(id)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/Messages/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Reads a JSON body of one of the three content types the document lists, at most
/// `max` bytes: 415 for another content type, 413 for a larger body, 400 for JSON that
/// is not a `T`.
async fn json_body<T: serde::de::DeserializeOwned>(
    request: Request,
    max: usize,
) -> Result<T, Failure> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let accepted = essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !accepted {
        let got = if content_type.is_empty() {
            "none".to_owned()
        } else {
            quote(&content_type)
        };
        return Err(Failure::other(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "The body must be JSON: Content-Type application/json, text/json or \
                 application/*+json (got {got})"
            ),
        ));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = read_capped(request.into_body(), max).await?;
    let Some(body) = body else {
        let size = declared.map_or_else(|| "more".to_owned(), |n| format!("{n} bytes"));
        return Err(Failure::other(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is too large: {size}, over the limit of {max} bytes"),
        ));
    };
    serde_json::from_slice(&body).map_err(|e| {
        Failure::validation(vec![format!(
            "the body is not what the operation takes: {}",
            crate::server::response::escape(&e.to_string())
        )])
    })
}

/// The body, or `None` when it is over `max` bytes (read on, and dropped, up to four
/// times that, so that the client sees the answer rather than a reset connection).
async fn read_capped(mut body: axum::body::Body, max: usize) -> Result<Option<Vec<u8>>, Failure> {
    use http_body::Body as _;
    let mut kept = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Err(_)) => {
                return Err(Failure::validation(vec![
                    "the request body could not be read to its end".to_owned(),
                ]));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    total = total.saturating_add(data.len());
                    if total <= max {
                        kept.extend_from_slice(&data);
                    } else if total > max.saturating_mul(4) {
                        return Ok(None);
                    }
                }
            }
        }
    }
    Ok((total <= max).then_some(kept))
}

/// The document's query parameters of `GET /Messages`, read as ASP.NET binds them
/// (names in any case; `ReceiverHerIds` repeated), stricter in that an unknown
/// parameter or a repeated single one is refused.
fn inbox_query(query: &str) -> Result<(Query, bool), Failure> {
    const NAMES: [&str; 6] = [
        "ReceiverHerIds",
        "SenderHerId",
        "BusinessDocumentId",
        "IncludeMetadata",
        "MessagesToFetch",
        "OrderBy",
    ];
    let mut receivers = Vec::new();
    let mut single: [Option<String>; 5] = Default::default();
    let mut problems = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(index) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(&name)) else {
            problems.push(format!(
                "unknown query parameter {}: GET /Messages takes {}",
                quote(&name),
                NAMES.join(", ")
            ));
            continue;
        };
        if index == 0 {
            match value.trim().parse::<i32>() {
                Ok(her_id) if her_id >= 1 => {
                    if !receivers.contains(&her_id) {
                        receivers.push(her_id);
                    }
                }
                _ => problems.push(format!(
                    "ReceiverHerIds {} is not a HER-id: a whole number from 1 to 2147483647",
                    quote(&value)
                )),
            }
            continue;
        }
        if single[index - 1].replace(value.into_owned()).is_some() {
            problems.push(format!(
                "the query parameter {} is given more than once",
                NAMES[index]
            ));
        }
    }
    let [sender, document, metadata, fetch, order] = single;
    if receivers.is_empty() && problems.is_empty() {
        problems.push(
            "ReceiverHerIds is required: one or more HER-ids whose messages to list".to_owned(),
        );
    }
    let sender = sender.and_then(|v| match v.trim().parse::<i32>() {
        Ok(h) => Some(h),
        Err(_) => {
            problems.push(format!("SenderHerId {} is not a HER-id", quote(&v)));
            None
        }
    });
    if document.as_ref().is_some_and(|d| d.chars().count() > 100) {
        problems.push("BusinessDocumentId is longer than 100 characters".to_owned());
    }
    let metadata = match metadata.as_deref().map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            problems.push(format!(
                "IncludeMetadata {} is not a boolean: use true or false",
                quote(v)
            ));
            false
        }
    };
    let max = match fetch.as_deref().map(str::trim) {
        None => DEFAULT_TO_FETCH,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_TO_FETCH).contains(&n) => n,
            _ => {
                problems.push(format!(
                    "MessagesToFetch {} is out of range: it must be from 1 to {MAX_TO_FETCH}",
                    quote(v)
                ));
                DEFAULT_TO_FETCH
            }
        },
    };
    let order = match order.as_deref().map(str::trim) {
        None => OrderBy::Ascending,
        Some(v) => match serde_json::from_value::<OrderBy>(serde_json::Value::String(v.to_owned()))
        {
            Ok(order) => order,
            Err(_) => {
                problems.push(format!(
                    "OrderBy {} is not Ascending (1) or Descending (2)",
                    quote(v)
                ));
                OrderBy::Ascending
            }
        },
    };
    if !problems.is_empty() {
        return Err(Failure::validation(problems));
    }
    Ok((
        Query {
            receivers,
            sender,
            business_document_id: document,
            max,
            order,
        },
        metadata,
    ))
}

/// A message as `GET /Messages` and `GET /Messages/{id}` show it to `receiver`.
fn message_view(message: &Stored, receiver: i32, metadata: bool) -> Message {
    let mut view = Message {
        id: Some(message.id.clone()),
        receiver_her_id: Some(receiver),
        ..Message::default()
    };
    if metadata {
        view.content_type = Some(message.content_type.clone());
        view.sender_her_id = Some(message.sender);
        view.business_document_id = Some(message.msg_id.clone());
        view.business_document_gen_date = Some(write_utc(message.gen_date));
        view.is_app_rec = Some(message.is_apprec);
    }
    view
}

/// The descriptions of what every operation may answer.
const BAD_REQUEST: &str = "The request is malformed (a header, a parameter or the body): \
    `validationErrors` names each problem";
const FORBIDDEN: &str = "The client may not act for a HER-id the request names, or the \
    message is neither from nor to one it acts for";
const SERVER_ERROR: &str = "Unexpected server error (the emulator gives none)";
const NOT_FOUND: &str = "No message has this id";
const UNAUTHORIZED: &str = "The DPoP-bound access token (audience `nhn:msh`, scope \
    `nhn:msh/api`) or its DPoP proof is missing, invalid or expired (see `WWW-Authenticate`)";

/// `GET /Messages`.
#[utoipa::path(
    get,
    path = "/Messages",
    operation_id = "GetMessages",
    tag = "MessagesController",
    summary = "The unread messages of one or more receivers",
    description = "One entry per message and receiver, by GenDate, at most `MessagesToFetch`. \
        A message stays here until the receiver marks it read.",
    params(
        ("ReceiverHerIds" = Vec<i32>, Query, description = "The receivers whose messages to list."),
        ("SenderHerId" = Option<i32>, Query, description = "Only messages from this sender."),
        ("BusinessDocumentId" = Option<String>, Query, max_length = 100, min_length = 0,
            description = "Only messages whose business document has this MsgId."),
        ("IncludeMetadata" = Option<bool>, Query,
            description = "Whether to include the metadata, or only `id` and `receiverHerId`. Default: false."),
        ("MessagesToFetch" = Option<i32>, Query, minimum = 1, maximum = 100,
            description = "The most messages to return. Default: 10."),
        ("OrderBy" = Option<OrderBy>, Query,
            description = "By GenDate: `Ascending` (1, the default) or `Descending` (2)."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 200, description = "The unread messages", body = Vec<Message>),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn get_messages(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Json<Vec<Message>>, Failure> {
    let (query, metadata) = inbox_query(request.uri().query().unwrap_or_default())?;
    {
        let register = msh.apis.cpe.register();
        let problems: Vec<String> = query
            .receivers
            .iter()
            .filter_map(|h| known(&register, *h, "a receiver").err())
            .collect();
        if !problems.is_empty() {
            return Err(Failure::validation(problems));
        }
        caller.require(&register, &query.receivers)?;
    }
    let store = lock(&msh.store);
    Ok(Json(
        store
            .unread(&query)
            .into_iter()
            .map(|(message, receiver)| message_view(message, receiver, metadata))
            .collect(),
    ))
}

/// `POST /Messages`.
#[utoipa::path(
    post,
    path = "/Messages",
    operation_id = "PostMessage",
    tag = "MessagesController",
    summary = "Send a message",
    description = "The business document (a MsgHead, UTF-8 XML, base64) names the sender and the \
        receivers. The request may be at most 35 MB.",
    params(
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    request_body(
        description = "The business document and how it is encoded",
        content(
            (PostMessageRequest = "application/json"),
            (PostMessageRequest = "text/json"),
            (PostMessageRequest = "application/*+json"),
        )
    ),
    responses(
        (status = 201, description = "Sent: the body is the new message's id, `Location` its URL",
            body = String, content_type = "application/json"),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 413, description = "The request body is over the limit (35 MB)", body = ErrorMessage),
        (status = 415, description = "The body is not JSON", body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn post_message(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, Failure> {
    let max = msh.max_request.load(Ordering::Relaxed);
    let body: PostMessageRequest = json_body(request, max).await?;
    let id = msh.send(&body, Some(&caller))?;
    Ok(created(&id))
}

/// `GET /Messages/{id}`.
#[utoipa::path(
    get,
    path = "/Messages/{id}",
    operation_id = "GetMessage",
    tag = "MessagesController",
    summary = "One message, with its metadata",
    params(
        ("id" = String, Path, format = "uuid", description = "The message's id."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 200, description = "The message", body = Message),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn get_message(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Message>, Failure> {
    let register = msh.apis.cpe.register();
    let store = lock(&msh.store);
    let (message, receivers) = mine(&store, &register, &caller, &id)?;
    let receiver = receivers
        .first()
        .copied()
        .or_else(|| message.deliveries.first().map(|d| d.her_id))
        .unwrap_or_default();
    Ok(Json(message_view(message, receiver, true)))
}

/// `GET /Messages/{id}/business-document`.
#[utoipa::path(
    get,
    path = "/Messages/{id}/business-document",
    operation_id = "GetBusinessDocument",
    tag = "MessagesController",
    summary = "A message's business document",
    description = "The first fetch by a receiver acknowledges the message for it.",
    params(
        ("id" = String, Path, format = "uuid", description = "The message's id."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 200, description = "The business document", body = GetBusinessDocumentResponse),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn get_business_document(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<GetBusinessDocumentResponse>, Failure> {
    let register = msh.apis.cpe.register();
    let mut store = lock(&msh.store);
    let (message, receivers) = mine(&store, &register, &caller, &id)?;
    let answer = GetBusinessDocumentResponse {
        business_document: message.business_document.clone(),
        content_type: message.content_type.clone(),
        content_transfer_encoding: "base64".to_owned(),
    };
    let id = message.id.clone();
    if let Some(message) = store.get_mut(&id) {
        for delivery in &mut message.deliveries {
            if receivers.contains(&delivery.her_id) && delivery.state == DeliveryState::Unconfirmed
            {
                delivery.state = DeliveryState::Acknowledged;
            }
        }
    }
    Ok(Json(answer))
}

/// `GET /Messages/{id}/status`.
#[utoipa::path(
    get,
    path = "/Messages/{id}/status",
    operation_id = "GetStatus",
    tag = "MessagesController",
    summary = "How far a message has come to each receiver",
    params(
        ("id" = String, Path, format = "uuid", description = "The message's id."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 200, description = "A status per receiver", body = Vec<StatusInfo>),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn get_status(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<StatusInfo>>, Failure> {
    let register = msh.apis.cpe.register();
    let store = lock(&msh.store);
    let (message, _) = mine(&store, &register, &caller, &id)?;
    Ok(Json(
        message
            .deliveries
            .iter()
            .map(|d| StatusInfo {
                receiver_her_id: d.her_id,
                transport_delivery_state: d.state,
                app_rec_status: d.apprec.as_ref().map(|(status, _, _)| *status),
            })
            .collect(),
    ))
}

/// `GET /Messages/{id}/apprec`.
#[utoipa::path(
    get,
    path = "/Messages/{id}/apprec",
    operation_id = "GetApprecInfo",
    tag = "MessagesController",
    summary = "The application receipts of a message's receivers",
    params(
        ("id" = String, Path, format = "uuid", description = "The message's id."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 200, description = "A receipt (or `null`) per receiver", body = Vec<ApprecInfo>),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn get_apprec_info(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ApprecInfo>>, Failure> {
    let register = msh.apis.cpe.register();
    let store = lock(&msh.store);
    let (message, _) = mine(&store, &register, &caller, &id)?;
    Ok(Json(
        message
            .deliveries
            .iter()
            .map(|d| ApprecInfo {
                receiver_her_id: d.her_id,
                app_rec_status: d.apprec.as_ref().map(|(status, _, _)| *status),
                app_rec_error_list: d
                    .apprec
                    .as_ref()
                    .map(|(_, errors, _)| errors.clone())
                    .filter(|errors| !errors.is_empty()),
            })
            .collect(),
    ))
}

/// `POST /Messages/{id}/apprec/{appRecSenderHerId}`.
#[utoipa::path(
    post,
    path = "/Messages/{id}/apprec/{appRecSenderHerId}",
    operation_id = "PostAppRec",
    tag = "MessagesController",
    summary = "Send an application receipt for a received message",
    description = "`Rejected` needs `appRecErrorList`; `OkErrorInMessagePart` is not taken.",
    params(
        ("id" = String, Path, format = "uuid", description = "The received message's id."),
        ("appRecSenderHerId" = i32, Path, minimum = 1, maximum = 2147483647,
            description = "The receiver sending the receipt."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    request_body(
        description = "The receipt",
        content(
            (PostAppRecRequest = "application/json"),
            (PostAppRecRequest = "text/json"),
            (PostAppRecRequest = "application/*+json"),
        )
    ),
    responses(
        (status = 201, description = "Sent: the body is the receipt message's id, `Location` its URL",
            body = String, content_type = "application/json"),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 413, description = "The request body is over the limit", body = ErrorMessage),
        (status = 415, description = "The body is not JSON", body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn post_apprec(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path((id, apprec_sender)): Path<(String, String)>,
    request: Request,
) -> Result<Response, Failure> {
    let guid = guid(&id)?;
    let apprec_sender = her_id_in(&apprec_sender, "appRecSenderHerId")?;
    let body: PostAppRecRequest = json_body(request, MAX_APPREC_REQUEST).await?;
    let errors = body.app_rec_error_list.clone().unwrap_or_default();
    let mut problems = Vec::new();
    match body.app_rec_status {
        AppRecStatus::OkErrorInMessagePart => problems.push(
            "appRecStatus OkErrorInMessagePart (3) is not supported by the Meldingstjener: use \
             Ok (1) or Rejected (2)"
                .to_owned(),
        ),
        AppRecStatus::Rejected if errors.is_empty() => problems.push(
            "appRecErrorList must name at least one error when appRecStatus is Rejected".to_owned(),
        ),
        _ => {}
    }
    for (i, error) in errors.iter().enumerate() {
        if error
            .error_code
            .as_deref()
            .is_none_or(|c| c.trim().is_empty())
        {
            problems.push(format!("appRecErrorList[{i}].errorCode is required"));
        }
    }
    if !problems.is_empty() {
        return Err(Failure::validation(problems));
    }
    let register = msh.apis.cpe.register();
    let mut store = lock(&msh.store);
    let message = store.get(&guid).ok_or_else(|| Failure::not_found(&guid))?;
    caller.require(&register, &[apprec_sender])?;
    if message.is_apprec {
        return Err(Failure::validation(vec![format!(
            "message {guid} is an application receipt: a receipt is not answered with another"
        )]));
    }
    let Some(delivery) = message
        .deliveries
        .iter()
        .find(|d| d.her_id == apprec_sender)
    else {
        return Err(Failure::validation(vec![format!(
            "appRecSenderHerId {apprec_sender} is not a receiver of message {guid}"
        )]));
    };
    if delivery.apprec.is_some() {
        return Err(Failure::validation(vec![format!(
            "{apprec_sender} has already sent an application receipt for message {guid}"
        )]));
    }
    let now = Utc::now();
    let apprec_id = new_guid();
    let document = xml::AppRec {
        id: &new_guid(),
        gen_date: &write_utc(now),
        sender: apprec_sender,
        receiver: message.sender,
        status: body.app_rec_status.code(),
        errors: errors
            .iter()
            .map(|e| {
                (
                    e.error_code.clone().unwrap_or_default(),
                    e.details.clone().unwrap_or_default(),
                )
            })
            .collect(),
        original_id: &message.msg_id,
        original_type: &message.msg_type,
        original_date: &write_utc(message.gen_date),
    }
    .write();
    let receipt = Stored {
        id: apprec_id.clone(),
        sender: apprec_sender,
        deliveries: vec![Delivery::new(message.sender)],
        business_document: base64::engine::general_purpose::STANDARD.encode(document),
        content_type: "application/xml".to_owned(),
        msg_id: new_guid(),
        msg_type: "APPREC".to_owned(),
        gen_date: now,
        is_apprec: true,
        apprec_of: Some(guid.clone()),
    };
    if let Some(delivery) = store
        .get_mut(&guid)
        .and_then(|m| m.deliveries.iter_mut().find(|d| d.her_id == apprec_sender))
    {
        delivery.apprec = Some((body.app_rec_status, errors, apprec_id.clone()));
        delivery.state = DeliveryState::Acknowledged;
    }
    store.add(receipt);
    Ok(created(&apprec_id))
}

/// `PUT /Messages/{id}/read/{herId}`.
#[utoipa::path(
    put,
    path = "/Messages/{id}/read/{herId}",
    operation_id = "MarkMessageAsRead",
    tag = "MessagesController",
    summary = "Mark a message read for one of its receivers",
    description = "The message leaves the receiver's unread list for good.",
    params(
        ("id" = String, Path, format = "uuid", description = "The message's id."),
        ("herId" = i32, Path, minimum = 1, maximum = 2147483647,
            description = "The receiver marking it read."),
        ("api-version" = String, Header, description = "`2`."),
        ("nhn-source-system" = String, Header, description = "The calling system's name and version."),
    ),
    responses(
        (status = 204, description = "Marked read"),
        (status = 400, description = BAD_REQUEST, body = ErrorMessage),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN, body = ErrorMessage),
        (status = 404, description = NOT_FOUND, body = ErrorMessage),
        (status = 500, description = SERVER_ERROR, body = ErrorMessage),
    )
)]
pub(crate) async fn mark_read(
    Extract(msh): Extract<Arc<Msh>>,
    Extension(caller): Extension<Caller>,
    Path((id, her_id)): Path<(String, String)>,
) -> Result<StatusCode, Failure> {
    let guid = guid(&id)?;
    let her_id = her_id_in(&her_id, "herId")?;
    let register = msh.apis.cpe.register();
    let mut store = lock(&msh.store);
    let message = store
        .get_mut(&guid)
        .ok_or_else(|| Failure::not_found(&guid))?;
    caller.require(&register, &[her_id])?;
    let delivery = message
        .deliveries
        .iter_mut()
        .find(|d| d.her_id == her_id)
        .ok_or_else(|| {
            Failure::validation(vec![format!(
                "herId {her_id} is not a receiver of message {guid}"
            )])
        })?;
    delivery.read = true;
    if delivery.state == DeliveryState::Unconfirmed {
        delivery.state = DeliveryState::Acknowledged;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The Meldingstjener's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "MSH API v2",
        version = "v2",
        description = "Norsk Helsenett's Meldingstjener (MSH) REST API v2 as the helseid \
            emulator serves it: health messages between the HER-ids of its register. Every \
            call needs `Authorization: DPoP <token>` (audience `nhn:msh`, scope `nhn:msh/api`) \
            with a `DPoP` proof (RFC 9449), and the headers `api-version: 2` and \
            `nhn-source-system`."
    ),
    paths(
        get_apprec_info,
        get_messages,
        post_message,
        get_message,
        get_business_document,
        get_status,
        post_apprec,
        mark_read
    ),
    components(schemas(
        AppRecError,
        AppRecStatus,
        ApprecInfo,
        DeliveryState,
        EbXmlInfo,
        ErrorMessage,
        GetBusinessDocumentResponse,
        Message,
        OrderBy,
        PostAppRecRequest,
        PostMessageRequest,
        StatusInfo
    )),
    modifiers(&Finish),
    security(("Bearer" = []))
)]
struct MshDoc;

/// Adds the security scheme, and what the macros cannot write: the `uuid` format of
/// the two 201 bodies.
struct Finish;

impl Modify for Finish {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        // NHN's document names its scheme `Bearer`; the Meldingstjener takes DPoP-bound
        // tokens only, which the document's `http` scheme cannot say: the same name
        // stands for the `Authorization` header, described.
        components.add_security_scheme(
            "Bearer",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`DPoP <access token>`: a DPoP-bound HelseID access token with the audience \
                 `nhn:msh` and the scope `nhn:msh/api`, sent with a `DPoP` header holding a \
                 proof (RFC 9449) whose `ath` is the token's hash. Bearer tokens are refused.",
            ))),
        );
        for (path, method) in [
            ("/Messages", "post"),
            ("/Messages/{id}/apprec/{appRecSenderHerId}", "post"),
        ] {
            let Ok(mut value) = serde_json::to_value(&*openapi) else {
                return;
            };
            let pointer = format!(
                "/paths/{}/{method}/responses/201/content/application~1json/schema",
                path.replace('/', "~1")
            );
            if let Some(schema) = value.pointer_mut(&pointer).and_then(|s| s.as_object_mut()) {
                schema.insert("format".to_owned(), "uuid".into());
            }
            if let Ok(document) = serde_json::from_value(value) {
                *openapi = document;
            }
        }
    }
}

/// The Meldingstjener's OpenAPI document, without servers.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    MshDoc::openapi()
}

/// `GET /msh/openapi.json`: the API's OpenAPI document with this emulator as its
/// server. Needs no token.
async fn openapi(Extract(msh): Extract<Arc<Msh>>) -> Response {
    let mut doc = document();
    doc.servers = Some(vec![Server::new(msh.apis.idp.issuer.clone())]);
    Json(doc).into_response()
}

/// The Meldingstjener's routes (the document's paths and their lowercase forms), behind
/// its verifier and [`auth::guard`], and its document at `/msh/openapi.json`.
pub(crate) fn router(msh: Arc<Msh>) -> Router {
    let mut routes = Router::new();
    for prefix in ["/Messages", "/messages"] {
        routes = routes
            .route(prefix, get(get_messages).post(post_message))
            .route(&format!("{prefix}/{{id}}"), get(get_message))
            .route(
                &format!("{prefix}/{{id}}/business-document"),
                get(get_business_document),
            )
            .route(&format!("{prefix}/{{id}}/status"), get(get_status))
            .route(&format!("{prefix}/{{id}}/apprec"), get(get_apprec_info))
            .route(
                &format!("{prefix}/{{id}}/apprec/{{appRecSenderHerId}}"),
                post(post_apprec),
            )
            .route(&format!("{prefix}/{{id}}/read/{{herId}}"), put(mark_read));
    }
    routes
        .route_layer(axum::middleware::from_fn(auth::guard))
        .route_layer(msh.verifier.gate())
        .route("/msh/openapi.json", get(openapi))
        .with_state(msh)
}

/// The OpenAPI document as JSON, for [`crate::msh_openapi`].
pub(crate) fn document_json() -> serde_json::Value {
    serde_json::to_value(document()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::answer::VALIDATION;
    use super::*;

    #[test]
    fn guids_are_read_as_asp_net_reads_them() {
        let d = "3d924740-9f7b-4c33-93af-ff72e118d1e6";
        assert_eq!(parse_guid(d).as_deref(), Some(d));
        assert_eq!(parse_guid(&d.to_uppercase()).as_deref(), Some(d));
        assert_eq!(parse_guid(&d.replace('-', "")).as_deref(), Some(d));
        assert_eq!(parse_guid(&format!("{{{d}}}")).as_deref(), Some(d));
        for bad in [
            "",
            "3d924740",
            "zz924740-9f7b-4c33-93af-ff72e118d1e6",
            "{3d9247409f7b4c3393afff72e118d1e6}",
        ] {
            assert_eq!(parse_guid(bad), None, "{bad}");
        }
        let new = new_guid();
        assert_eq!(parse_guid(&new).as_deref(), Some(new.as_str()));
        assert_eq!(new.as_bytes()[14], b'4');
        assert_ne!(new, new_guid());
    }

    #[test]
    fn date_times_are_written_as_dotnet_writes_them() {
        let at = DateTime::from_timestamp(1_758_520_596, 309_515_100).expect("a time");
        assert_eq!(write_utc(at), "2025-09-22T05:56:36.3095151+00:00");
        let whole = DateTime::from_timestamp(1_758_520_596, 0).expect("a time");
        assert_eq!(write_utc(whole), "2025-09-22T05:56:36+00:00");
    }

    #[test]
    fn the_inbox_query_is_read_and_its_problems_named() {
        let (query, metadata) =
            inbox_query("ReceiverHerIds=42&receiverherids=1337&ReceiverHerIds=42&IncludeMetadata=True&OrderBy=2&MessagesToFetch=5")
                .expect("a query");
        assert_eq!(query.receivers, [42, 1337]);
        assert!(metadata);
        assert_eq!(query.order, OrderBy::Descending);
        assert_eq!(query.max, 5);
        let Err(failure) = inbox_query("MessagesToFetch=0&OrderBy=Sideways&Bogus=1") else {
            panic!("refused");
        };
        let problems = failure.validation.expect("validation errors");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("unknown query parameter `Bogus`"));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("MessagesToFetch `0` is out of range"))
        );
        assert!(problems.iter().any(|p| p.contains("OrderBy `Sideways`")));
        let Err(failure) = inbox_query("") else {
            panic!("refused");
        };
        assert_eq!(failure.code, VALIDATION);
        assert!(failure.describe().contains("ReceiverHerIds is required"));
    }
}
