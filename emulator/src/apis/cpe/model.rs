//! The CPE API's JSON model, as `openapi/cpe.json` describes it (PascalCase, .NET
//! date-times): what the register stores and both APIs serve from.

use serde::Serialize;
use utoipa::ToSchema;

/// One page of the event feed.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EventResponse {
    /// The events on this page, oldest first.
    pub(crate) communication_parties: Vec<EventValue>,
    /// Links to further pages.
    #[schema(required = false)]
    pub(crate) links: Links,
}

/// Links to further pages.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Links {
    /// The next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) next: Option<Link>,
}

/// A link; absent when there is nothing to link to.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Link {
    /// The URL of the next page, absolute or relative to the API's base URL.
    pub(crate) href: String,
}

/// One change to a communication party.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EventValue {
    /// The id of the event; pass it as `EventId` to read the events after it.
    pub(crate) event_id: String,
    /// When the event was created.
    #[schema(format = DateTime)]
    pub(crate) from_datetime: String,
    /// The HER-id of the party that changed.
    pub(crate) her_id: i32,
    /// The organisation number of the party's organisation.
    pub(crate) org_nr: Option<i32>,
    /// `CommunicationPartyCreated` or `CommunicationPartyUpdated`.
    pub(crate) event_type: &'static str,
    /// The party, as it is now.
    #[schema(required = false)]
    pub(crate) communication_party: CommunicationParty,
}

/// A communication party in the legacy AR data model.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CommunicationParty {
    /// The party's HER-id.
    pub(crate) her_id: i32,
    /// The party's name.
    pub(crate) name: String,
    /// `Organization`, `Service` or `Person`.
    #[serde(rename = "Type")]
    #[schema(rename = "Type")]
    pub(crate) kind: Option<&'static str>,
    /// The HER-id of the organisation the party belongs to.
    pub(crate) parent_her_id: Option<i32>,
    /// The name of the organisation the party belongs to.
    pub(crate) parent_name: Option<String>,
    /// The organisation number (nine digits).
    pub(crate) organization_number: Option<i32>,
    /// The municipality number (four digits).
    pub(crate) municipality: Option<String>,
    /// When the party is valid.
    #[schema(required = false)]
    pub(crate) valid: Period,
}

/// When a party is valid: active while `To` is absent or in the future.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Period {
    /// Valid from.
    #[schema(format = DateTime)]
    pub(crate) from: String,
    /// Valid until; absent for no end.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub(crate) to: Option<String>,
}

/// A full export of the register.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ExportResponse {
    /// The creation time of the last event the export includes.
    #[schema(format = DateTime)]
    pub(crate) last_date_time_offset: Option<String>,
    /// The id of the last event the export includes: read the events after it.
    pub(crate) last_event_id: String,
    /// Every communication party.
    pub(crate) communication_parties: Vec<CommunicationParty>,
}
