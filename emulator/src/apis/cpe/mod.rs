//! The CPE side of the emulator: NHN's CommunicationParty Events API over the seeded
//! register ([`crate::apis::register`]), behind HelseID bearer tokens, documented with
//! utoipa
//! and served at `/openapi.json`.
//!
//! The response types here are the contract of `openapi/cpe.json`: their JSON field
//! names (PascalCase), types and formats are what the utoipa document says, and the
//! drift test holds that document against `openapi/cpe.json`.
//!
//! On the same listener, with the issuer as its base URL
//! ([`Emulator::cpe_base_url`](crate::Emulator::cpe_base_url)),
//! it serves the CPE API as `openapi/cpe.json` describes it:
//!
//! - `GET /CommunicationPartyEvents?EventId=..&fromDatetime=..`: the event feed, oldest
//!   first, one page at a time
//!   ([`EmulatorBuilder::cpe_page_size`](crate::EmulatorBuilder::cpe_page_size),
//!   default 100).
//!   Without `EventId` the feed starts at its beginning, with it at the event after
//!   that one; `fromDatetime` keeps the events created at or after that time (with an
//!   offset, or without one for UTC; up to seven fractional digits).
//!   `Links.Next.Href` is `/CommunicationPartyEvents?EventId=<last event on the page>`
//!   while more events follow, and absent (`"Links": {}`) on the last page;
//! - `GET /CommunicationPartyExport`: every party, with `LastEventId` and
//!   `LastDateTimeOffset` of the feed's last event;
//! - `GET /CommunicationParties/{herId}`: one party;
//! - `GET /openapi.json`: the CPE API's OpenAPI 3.1 document (no token needed).
//!
//! Each CPE call needs `Authorization: Bearer <token>` with an unexpired access token
//! this emulator issued, for the audience [`CPE_AUDIENCE`] with the scope
//! `nhn:cp-api/access`, checked by `helseid::verify`'s `VerifyLayer` in front of the
//! routes ([`crate::server::verify`]): the signature with a key of the emulator's JWKS,
//! `typ: at+jwt`, `iss`, `aud`, `exp`. Anything else is answered as RFC 6750 says: no
//! token gets 401 with `WWW-Authenticate: Bearer` and no error, a bad one 401
//! `error="invalid_token"`, a DPoP-bound one sent as Bearer too, one without the scope
//! 403 `error="insufficient_scope"`, each `error_description` a fixed text that never
//! quotes the token. The handlers read the verified claims from the request's
//! extensions. Parameters are read strictly, more strictly than
//! ASP.NET: names are case-sensitive, each may appear once, unknown parameters are
//! refused; an unknown or malformed `EventId`, a malformed `fromDatetime` (a `+` that was
//! not URL-encoded as `%2B` is named as such) or a `herId` that is not a 32-bit integer
//! gets 400, an unknown `herId` 404, each with a ProblemDetails body whose `detail` names
//! the parameter.

pub(crate) mod model;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use helseid::verify::HelseIdClaims;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi};

use self::model::{
    CommunicationParty, EventResponse, EventValue, ExportResponse, Link, Links, Period,
};
use crate::apis::register::Register;
use crate::apis::register::dotnet::parse_dotnet;
use crate::apis::state::State;
use crate::server::lock;
use crate::server::response::quote;
use crate::server::response::{ProblemDetails, problem};

/// The scope a token needs for the CPE API.
pub(crate) const CPE_SCOPE: &str = "nhn:cp-api/access";

/// The audience of the CPE API's tokens (and of the CommunicationParty API v2's).
pub(crate) const CPE_AUDIENCE: &str = "nhn:cp-api";

/// The default number of events on a page of the feed.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100;

/// The path of the event feed.
const EVENTS_PATH: &str = "/CommunicationPartyEvents";

/// The CPE API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CommunicationParty Events API (CPE)",
        version = "1",
        description = "Norsk Helsenett's event feed of changes to the communication parties in \
            Adresseregisteret (AR), as the helseid emulator serves it. Every call needs a HelseID \
            access token with the scope `nhn:cp-api/access`."
    ),
    paths(events, export, party),
    components(schemas(
        EventResponse,
        Links,
        Link,
        EventValue,
        CommunicationParty,
        Period,
        ExportResponse,
        ProblemDetails
    )),
    modifiers(&HelseIdScheme),
    security(("HelseID" = []))
)]
pub(crate) struct CpeApi;

/// Adds the `HelseID` security scheme: a bearer JWT.
struct HelseIdScheme;

impl Modify for HelseIdScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The crate's license is not the API's.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "HelseID",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A HelseID access token with the scope `nhn:cp-api/access`, as \
                         `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /openapi.json`: the CPE API's OpenAPI document, with this emulator as its
/// server. Needs no token.
pub(crate) async fn openapi(Extract(state): Extract<Arc<State>>) -> Response {
    let mut doc = CpeApi::openapi();
    doc.servers = Some(vec![Server::new(state.idp.issuer.clone())]);
    Json(doc).into_response()
}

/// `GET /CommunicationPartyEvents`.
#[utoipa::path(
    get,
    path = "/CommunicationPartyEvents",
    operation_id = "getCommunicationPartyEvents",
    tag = "CPE",
    summary = "Events after a given event",
    description = "The events that follow the event `EventId` (or that were created after \
        `fromDatetime`), oldest first, one page at a time. Follow `Links.Next.Href` until it is \
        absent to read the whole feed.",
    params(
        ("EventId" = Option<String>, Query,
            description = "The id of the last event already processed; start from the \
                `LastEventId` of an export. Without it the feed starts at its beginning."),
        ("fromDatetime" = Option<String>, Query, format = DateTime,
            description = "Only events created at or after this time (URL encoded)."),
    ),
    responses(
        (status = 200, description = "One page of events", body = EventResponse),
        (status = 400, description = "A parameter is malformed", body = ProblemDetails),
        (status = 401, description = "The access token is missing, invalid, expired or lacks the scope"),
    )
)]
pub(crate) async fn events(
    Extract(state): Extract<Arc<State>>,
    Extension(claims): Extension<Arc<HelseIdClaims>>,
    RawQuery(query): RawQuery,
) -> Response {
    served("events", &claims);
    let register = lock(&state.cpe.register);
    let query = match EventsQuery::parse(&register, query.as_deref().unwrap_or_default()) {
        Ok(query) => query,
        Err(detail) => return problem(StatusCode::BAD_REQUEST, detail, EVENTS_PATH),
    };
    let page = register.page(query.after, query.from, state.cpe.page_size);
    drop(register);
    let next = page.next_after.map(|id| Link {
        href: format!("{EVENTS_PATH}?EventId={id}"),
    });
    Json(EventResponse {
        communication_parties: page.events,
        links: Links { next },
    })
    .into_response()
}

/// `GET /CommunicationPartyExport`.
#[utoipa::path(
    get,
    path = "/CommunicationPartyExport",
    operation_id = "getCommunicationPartyExport",
    tag = "CPE",
    summary = "A full export of the register",
    description = "Every communication party, with the id of the last event the export \
        includes: continue with the events after `LastEventId`.",
    responses(
        (status = 200, description = "The export", body = ExportResponse),
        (status = 401, description = "The access token is missing, invalid, expired or lacks the scope"),
    )
)]
pub(crate) async fn export(
    Extract(state): Extract<Arc<State>>,
    Extension(claims): Extension<Arc<HelseIdClaims>>,
) -> Response {
    served("export", &claims);
    let export = lock(&state.cpe.register).export();
    Json(export).into_response()
}

/// `GET /CommunicationParties/{herId}`.
#[utoipa::path(
    get,
    path = "/CommunicationParties/{herId}",
    operation_id = "getCommunicationParty",
    tag = "CPE",
    summary = "One communication party",
    params(
        ("herId" = i32, Path, description = "The party's HER-id."),
    ),
    responses(
        (status = 200, description = "The party", body = CommunicationParty),
        (status = 400, description = "The HER-id is not a 32-bit integer", body = ProblemDetails),
        (status = 401, description = "The access token is missing, invalid, expired or lacks the scope"),
        (status = 404, description = "No party has this HER-id", body = ProblemDetails),
    )
)]
pub(crate) async fn party(
    Extract(state): Extract<Arc<State>>,
    Extension(claims): Extension<Arc<HelseIdClaims>>,
    uri: axum::http::Uri,
    her_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    served("party", &claims);
    // A segment that does not percent-decode to UTF-8 is quoted as it was sent.
    let her_id = match her_id {
        Ok(Path(her_id)) => her_id,
        Err(_) => uri
            .path()
            .strip_prefix("/CommunicationParties/")
            .unwrap_or_default()
            .to_owned(),
    };
    let instance = format!("/CommunicationParties/{her_id}");
    let Ok(number) = her_id.parse::<i32>() else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!(
                "herId {} is not a HER-id: a 32-bit integer is expected",
                quote(&her_id)
            ),
            &instance,
        );
    };
    let found = lock(&state.cpe.register).party(number).cloned();
    match found {
        Some(party) => Json(party).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no communication party has herId {number}"),
            &instance,
        ),
    }
}

/// The parameters of `GET /CommunicationPartyEvents`.
#[derive(Debug, Default)]
struct EventsQuery {
    /// The position of the event `EventId`.
    after: Option<usize>,
    from: Option<DateTime<Utc>>,
}

impl EventsQuery {
    /// Reads the (URL-encoded) query string, strictly (see [`strict_query`]).
    fn parse(register: &Register, query: &str) -> Result<Self, String> {
        let mut parsed = EventsQuery::default();
        let [event_id, from] = strict_query(
            query,
            ["EventId", "fromDatetime"],
            "CommunicationPartyEvents",
        )?;
        if let Some(value) = event_id {
            if value.is_empty() {
                return Err(
                    "the query parameter EventId is empty; leave it out to read the feed from \
                     its beginning"
                        .into(),
                );
            }
            let Some(position) = register.position(&value) else {
                return Err(if is_event_id_shaped(&value) {
                    format!(
                        "EventId {} is not the id of an event in the feed",
                        quote(&value)
                    )
                } else {
                    format!(
                        "EventId {} is malformed: event ids are 16 hexadecimal digits, as the \
                         feed and the export give them",
                        quote(&value)
                    )
                });
            };
            parsed.after = Some(position);
        }
        if let Some(value) = from {
            let from = parse_dotnet(&value)
                .map_err(|reason| format!("fromDatetime {} {reason}", quote(&value)))?;
            parsed.from = Some(from);
        }
        Ok(parsed)
    }
}

/// Reads a (URL-encoded) query string strictly, more strictly than ASP.NET: parameter
/// names are matched exactly (case-sensitive), each may appear once, and parameters
/// other than `known` are refused, naming `endpoint`. Returns the value of each known
/// parameter, in the order of `known`.
pub(crate) fn strict_query<const N: usize>(
    query: &str,
    known: [&str; N],
    endpoint: &str,
) -> Result<[Option<String>; N], String> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let Some(index) = known.iter().position(|known| *known == name) else {
            let takes = if known.is_empty() {
                "no query parameters".to_owned()
            } else {
                known.join(" and ")
            };
            return Err(
                match known.iter().find(|known| known.eq_ignore_ascii_case(&name)) {
                    Some(known) => format!(
                        "the query parameter {} must be spelled {known}",
                        quote(&name)
                    ),
                    None => format!(
                        "unknown query parameter {}: {endpoint} takes {takes}",
                        quote(&name)
                    ),
                },
            );
        };
        let Some(slot) = values.get_mut(index) else {
            continue;
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(format!(
                "the query parameter {name} is given more than once"
            ));
        }
    }
    Ok(values)
}

/// Whether a value looks like one of the feed's event ids: 16 lowercase hexadecimal
/// digits.
fn is_event_id_shaped(value: &str) -> bool {
    value.len() == 16
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Logs which client a CPE operation serves, from the verified claims.
fn served(operation: &str, claims: &HelseIdClaims) {
    tracing::debug!(
        operation,
        client_id = %helseid::text::escape(claims.client_id.as_deref().unwrap_or_default()),
        "helseid emulator serves CPE"
    );
}
