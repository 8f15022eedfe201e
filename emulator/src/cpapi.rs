//! The CommunicationParty API v2 side of the emulator ("cpapi"): the register of
//! [`super::register`] as a slim event feed with sequence numbers, parties and an
//! export, behind DPoP-bound HelseID tokens, documented with utoipa and served at
//! `/cpapi/openapi.json`.
//!
//! The response types here are the contract of `openapi/cpapi.json`: their JSON field
//! names (camelCase), types, formats and `required` lists are what the utoipa document
//! says, and `tests/cpapi_openapi_drift.rs` holds that document against cpapi.json.
//! They are only serialised: `deny_unknown_fields` changes nothing on the wire, it only
//! documents the objects as closed (`additionalProperties: false`), as cpapi.json has
//! them. A field is required unless it is marked `required = false`; every field is
//! always sent (optional ones as `null`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Path, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi, ToSchema};

use super::cpe::{ProblemDetails, authorization_token, check_scope, problem, strict_query};
use super::dpop::{self, DPOP_NONCE, Expected, ProofError, proof_header};
use super::response::{challenge_text, quote};
use super::state::State;

/// The scope a token needs for the CommunicationParty API v2.
pub(crate) const CPAPI_SCOPE: &str = "nhn:cp-api/access-v2-dpop";

/// The API's name in descriptions.
const API: &str = "the CommunicationParty API v2";

/// The most events one call of `GET /api/v1/event` returns, and its default.
pub(crate) const MAX_EVENTS: i32 = 1000;

/// The content type of ProblemDetails answers.
const PROBLEM_JSON: &str = "application/problem+json";

/// The API's state: whether it requires a DPoP nonce, and a request counter.
#[derive(Debug, Default)]
pub(crate) struct Cpapi {
    require_nonce: AtomicBool,
    requests: AtomicU64,
}

impl Cpapi {
    /// Makes proofs need the API's nonce (set once, before the emulator serves).
    pub(crate) fn set_require_nonce(&self, require: bool) {
        self.require_nonce.store(require, Ordering::Relaxed);
    }

    /// How many requests reached the API's endpoints.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Some events of the feed.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EventsResponse {
    /// The events, by ascending sequence number.
    pub(crate) results: Vec<Event>,
    /// How many events `results` holds.
    #[schema(required = false)]
    pub(crate) count: i32,
}

/// One change to a communication party. Read the party itself with
/// `GET /api/v1/communicationparty/{herId}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Event {
    /// The event's position in the feed, from 1; continue after the last one read.
    pub(crate) sequence_number: i64,
    /// The HER-id of the party that changed.
    pub(crate) her_id: i32,
    /// What happened to the party.
    pub(crate) event_type: EventType,
    /// When the event was created.
    #[schema(format = DateTime)]
    pub(crate) event_timestamp: String,
}

/// What happened to a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) enum EventType {
    /// The party was added to the register.
    CommunicationPartyCreated,
    /// The party changed.
    CommunicationPartyUpdated,
}

/// A communication party.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CommunicationParty {
    /// The party's HER-id.
    pub(crate) her_id: i32,
    /// The party's name.
    #[schema(required = false)]
    pub(crate) name: Option<String>,
    /// The name to show: for a service or a person, with its organisation's name.
    #[schema(required = false)]
    pub(crate) display_name: Option<String>,
    /// What kind of party it is.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub(crate) kind: CommunicationPartyType,
    /// The organisation number (nine digits).
    #[schema(required = false)]
    pub(crate) organization_number: Option<i32>,
    /// The party's EDI address for messages.
    #[schema(required = false)]
    pub(crate) edi_address: Option<String>,
    /// Valid from.
    #[schema(format = DateTime, required = false)]
    pub(crate) valid_from: String,
    /// Valid until; `null` for no end. The party is active while this is `null` or in
    /// the future.
    #[schema(format = DateTime, required = false)]
    pub(crate) valid_to: Option<String>,
}

/// What kind of party it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) enum CommunicationPartyType {
    /// An organisation, with an organisation number.
    Organization,
    /// A person with a role in an organisation.
    Person,
    /// A service (a department, a unit) of an organisation.
    Service,
}

/// The HER-ids of the register's parties.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CommunicationPartyExport {
    /// The sequence number of the feed's last event: continue with the events after it.
    pub(crate) last_sequence_number: i64,
    /// How many HER-ids `communicationParties` holds.
    #[schema(required = false)]
    pub(crate) count: i32,
    /// The HER-ids of the parties.
    pub(crate) communication_parties: Vec<i32>,
}

/// The CommunicationParty API v2's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CommunicationParty API v2 (cpapi)",
        version = "2",
        description = "Norsk Helsenett's CommunicationParty API (Adresseregisteret) with \
            DPoP-bound HelseID tokens, as the helseid emulator serves it. Every call needs \
            `Authorization: DPoP <token>` with the scope `nhn:cp-api/access-v2-dpop` and a \
            `DPoP` proof (RFC 9449) for the call."
    ),
    paths(events, latest_event, party, export),
    components(schemas(
        EventsResponse,
        Event,
        EventType,
        CommunicationParty,
        CommunicationPartyType,
        CommunicationPartyExport,
        ProblemDetails
    )),
    modifiers(&DpopScheme),
    security(("DPoP" = []))
)]
struct CpapiDoc;

/// Adds the `DPoP` security scheme.
struct DpopScheme;

impl Modify for DpopScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The crate's license is not the API's.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "DPoP",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`DPoP <access token>`: a DPoP-bound HelseID access token with the scope \
                 `nhn:cp-api/access-v2-dpop`, sent with a `DPoP` header holding a proof \
                 (RFC 9449) whose `ath` is the token's hash.",
            ))),
        );
    }
}

/// The CommunicationParty API v2's OpenAPI document, without servers.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    CpapiDoc::openapi()
}

/// `GET /cpapi/openapi.json`: the API's OpenAPI document, with this emulator as its
/// server. Needs no token.
pub(crate) async fn openapi(Extract(state): Extract<Arc<State>>) -> Response {
    let mut doc = document();
    doc.servers = Some(vec![Server::new(state.issuer.clone())]);
    Json(doc).into_response()
}

/// `GET /api/v1/event`.
#[utoipa::path(
    get,
    path = "/api/v1/event",
    operation_id = "getEvents",
    tag = "Event",
    summary = "Events from (and including) a sequence number",
    description = "At most `maxEvents` events whose sequence number is `fromSequenceNumber` \
        or more, by ascending sequence number. Past the end of the feed, `results` is empty. \
        Continue with `fromSequenceNumber` = the last sequence number read + 1.",
    params(
        ("fromSequenceNumber" = Option<i64>, Query, minimum = 1,
            description = "The first sequence number to return. Default: 1."),
        ("maxEvents" = Option<i32>, Query, minimum = 1, maximum = 1000,
            description = "The most events to return. Default: 1000."),
    ),
    responses(
        (status = 200, description = "The events", body = EventsResponse),
        (status = 400, description = "A parameter is malformed or out of range",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "The access token or the DPoP proof is missing or invalid"),
    )
)]
pub(crate) async fn events(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<EventsResponse>, Refusal> {
    let [from, max] = authorized(&state, &request, ["fromSequenceNumber", "maxEvents"])?;
    let from = match from {
        Some(value) => number_in::<i64>(&value, "fromSequenceNumber", 1, i64::MAX),
        None => Ok(1),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let max = match max {
        Some(value) => number_in::<i32>(&value, "maxEvents", 1, MAX_EVENTS),
        None => Ok(MAX_EVENTS),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let results = state
        .cpe
        .register()
        .sequenced_events(from, usize::try_from(max).unwrap_or_default());
    let count = i32::try_from(results.len()).unwrap_or(i32::MAX);
    Ok(Json(EventsResponse { results, count }))
}

/// `GET /api/v1/event/latest`.
#[utoipa::path(
    get,
    path = "/api/v1/event/latest",
    operation_id = "getLatestEvent",
    tag = "Event",
    summary = "The feed's last event",
    responses(
        (status = 200, description = "The event with the highest sequence number", body = Event),
        (status = 401, description = "The access token or the DPoP proof is missing or invalid"),
        (status = 404, description = "The feed holds no events",
            body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn latest_event(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<Event>, Refusal> {
    let [] = authorized(&state, &request, [])?;
    let latest = state.cpe.register().latest_sequenced_event();
    latest.map(Json).ok_or_else(|| Refusal::Problem {
        status: StatusCode::NOT_FOUND,
        detail: "the feed holds no events".to_owned(),
        instance: request.uri.path().to_owned(),
    })
}

/// `GET /api/v1/communicationparty/{herId}`.
#[utoipa::path(
    get,
    path = "/api/v1/communicationparty/{herId}",
    operation_id = "getCommunicationParty",
    tag = "CommunicationParty",
    summary = "One communication party",
    params(
        ("herId" = i32, Path, description = "The party's HER-id."),
    ),
    responses(
        (status = 200, description = "The party", body = CommunicationParty),
        (status = 400, description = "The HER-id is not a 32-bit integer",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "The access token or the DPoP proof is missing or invalid"),
        (status = 404, description = "No party has this HER-id",
            body = ProblemDetails, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn party(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<CommunicationParty>, Refusal> {
    let [] = authorized(&state, &request, [])?;
    let Ok(number) = her_id.parse::<i32>() else {
        return Err(Refusal::bad_request(
            format!(
                "herId {} is not a HER-id: a 32-bit integer is expected",
                quote(&her_id)
            ),
            &request.uri,
        ));
    };
    let found = state.cpe.register().party_v2(number);
    found.map(Json).ok_or_else(|| Refusal::Problem {
        status: StatusCode::NOT_FOUND,
        detail: format!("no communication party has herId {number}"),
        instance: request.uri.path().to_owned(),
    })
}

/// `GET /api/v1/communicationparty/export`.
#[utoipa::path(
    get,
    path = "/api/v1/communicationparty/export",
    operation_id = "exportCommunicationParties",
    tag = "CommunicationParty",
    summary = "The HER-ids of the register's parties",
    description = "The HER-ids of the active parties (of all, with `includeDeactivated=true`), \
        with the sequence number of the feed's last event: continue with the events after it.",
    params(
        ("includeDeactivated" = Option<bool>, Query,
            description = "Whether to include deactivated parties. Default: false."),
    ),
    responses(
        (status = 200, description = "The export", body = CommunicationPartyExport),
        (status = 400, description = "A parameter is malformed",
            body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "The access token or the DPoP proof is missing or invalid"),
    )
)]
pub(crate) async fn export(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<CommunicationPartyExport>, Refusal> {
    let [include] = authorized(&state, &request, ["includeDeactivated"])?;
    let include_deactivated = match include.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Refusal::bad_request(
                format!(
                    "includeDeactivated {} is not a boolean: use true or false",
                    quote(other)
                ),
                &request.uri,
            ));
        }
    };
    let export = state
        .cpe
        .register()
        .export_v2(include_deactivated, Utc::now());
    Ok(Json(export))
}

/// A whole number in `low..=high` from a query parameter.
fn number_in<T>(value: &str, name: &str, low: T, high: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let bits = std::mem::size_of::<T>() * 8;
    if value.is_empty() {
        return Err(format!(
            "the query parameter {name} is empty; leave it out for its default"
        ));
    }
    let all_digits = value
        .strip_prefix('-')
        .unwrap_or(value)
        .bytes()
        .all(|b| b.is_ascii_digit());
    let Ok(number) = value.parse::<T>() else {
        return Err(if all_digits {
            format!(
                "{name} {} is out of range: it must be from {low} to {high}",
                quote(value)
            )
        } else {
            format!(
                "{name} {} is not a whole number: a {bits}-bit integer is expected",
                quote(value)
            )
        });
    };
    if number < low || number > high {
        return Err(format!(
            "{name} {number} is out of range: it must be from {low} to {high}"
        ));
    }
    Ok(number)
}

/// Why a request was refused, and how to answer.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 401 with a `WWW-Authenticate: DPoP` challenge, and the nonce to hand out.
    Unauthorized {
        error: &'static str,
        description: String,
        nonce: Option<String>,
    },
    /// A ProblemDetails answer.
    Problem {
        status: StatusCode,
        detail: String,
        instance: String,
    },
}

impl Refusal {
    /// 400 with a ProblemDetails body for the request at `uri`.
    fn bad_request(detail: String, uri: &Uri) -> Self {
        Refusal::Problem {
            status: StatusCode::BAD_REQUEST,
            detail,
            instance: uri.path().to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized {
                error,
                description,
                nonce,
            } => unauthorized(error, &description, nonce.as_deref()),
            Refusal::Problem {
                status,
                detail,
                instance,
            } => problem_json(status, detail, &instance),
        }
    }
}

/// A ProblemDetails answer with `Content-Type: application/problem+json`.
fn problem_json(status: StatusCode, detail: String, instance: &str) -> Response {
    let mut response = problem(status, detail, instance);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// [`authorize`], then the query read strictly (see [`strict_query`]): the values of
/// the `known` parameters.
fn authorized<const N: usize>(
    state: &State,
    request: &Parts,
    known: [&str; N],
) -> Result<[Option<String>; N], Refusal> {
    authorize(state, request)?;
    let uri = &request.uri;
    strict_query(uri.query().unwrap_or_default(), known, uri.path())
        .map_err(|detail| Refusal::bad_request(detail, uri))
}

/// Counts the request and checks `Authorization: DPoP <token>` and the `DPoP` proof:
/// the token is this emulator's, unexpired, with [`CPAPI_SCOPE`] and a `cnf.jkt`; the
/// proof verifies for the request's method at this URL, with `ath` for the token and
/// the key the token is bound to, and carries the API's nonce when one is required.
/// Otherwise the 401 to answer with.
fn authorize(state: &State, request: &Parts) -> Result<(), Refusal> {
    let headers = &request.headers;
    state.cpapi.requests.fetch_add(1, Ordering::Relaxed);
    let token = authorization_token(headers, "DPoP", API).map_err(invalid_token)?;
    let claims = state.verify_access_token(token).map_err(invalid_token)?;
    check_scope(&claims, CPAPI_SCOPE, API).map_err(invalid_token)?;
    let jkt = match claims.get("cnf").and_then(|cnf| cnf.get("jkt")) {
        Some(Value::String(jkt)) => jkt.as_str(),
        Some(_) => return Err(invalid_token("the access token's cnf.jkt is not a string")),
        None => {
            return Err(invalid_token(
                "the access token is not DPoP-bound (it has no cnf.jkt): get a token with a \
                 DPoP proof at the token endpoint",
            ));
        }
    };
    let proof = match proof_header(headers) {
        Ok(Some(proof)) => proof,
        Ok(None) => {
            return Err(invalid_proof(
                "the request has no DPoP header: a DPoP-bound token is sent with a DPoP proof",
            ));
        }
        Err(error) => return Err(refuse_proof(state, error)),
    };
    let url = format!("{}{}", state.issuer, request.uri.path());
    let nonces = state
        .cpapi
        .require_nonce
        .load(Ordering::Relaxed)
        .then_some(&state.dpop.api_nonces);
    let expected = Expected {
        method: request.method.as_str(),
        url: &url,
        bound_to: Some((token, jkt)),
        nonces,
    };
    state
        .dpop
        .verify(proof, &expected)
        .map(|_| ())
        .map_err(|error| refuse_proof(state, error))
}

/// The 401 for a proof refused: `invalid_dpop_proof`, or `use_dpop_nonce` with the
/// API's nonce.
fn refuse_proof(state: &State, error: ProofError) -> Refusal {
    match error {
        ProofError::Invalid(description) => invalid_proof(description),
        ProofError::UseNonce(description) => {
            state.dpop.count_challenge();
            Refusal::Unauthorized {
                error: "use_dpop_nonce",
                description,
                nonce: Some(state.dpop.api_nonces.current()),
            }
        }
    }
}

fn invalid_proof(description: impl Into<String>) -> Refusal {
    Refusal::Unauthorized {
        error: "invalid_dpop_proof",
        description: description.into(),
        nonce: None,
    }
}

fn invalid_token(description: impl Into<String>) -> Refusal {
    Refusal::Unauthorized {
        error: "invalid_token",
        description: description.into(),
        nonce: None,
    }
}

/// A 401 with `WWW-Authenticate: DPoP error="..", error_description="..", algs=".."`,
/// and `DPoP-Nonce` when a nonce is handed out.
fn unauthorized(error: &str, description: &str, nonce: Option<&str>) -> Response {
    tracing::debug!(
        error,
        description,
        "helseid emulator refused a CommunicationParty API v2 request"
    );
    let challenge = format!(
        "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
        challenge_text(description),
        dpop::ALGS.join(" ")
    );
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    let headers = response.headers_mut();
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if let Some(nonce) = nonce.and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert(DPOP_NONCE, nonce);
    }
    response
}
