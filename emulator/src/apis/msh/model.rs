//! The Meldingstjener (MSH) v2 model, as the emulator serves it: one Rust type per
//! schema of `openapi/msh-api-v2.json`, with the same names, properties, types,
//! formats, enums, `required` lists, nullability and closedness
//! (`tests/msh_openapi_drift.rs` holds the utoipa document made from them against it).
//!
//! Closed objects (`additionalProperties: false`) refuse unknown fields when the
//! emulator reads them (request bodies). Enums are read as ASP.NET reads them: by name
//! (any case) or by number (`1`, `"1"`).
// Written from the contract, field by field; not every field is read by the emulator.
#![allow(dead_code)]

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// An error in an application receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppRecError {
    /// The error code (code list 8221), for example `E10`.
    #[serde(rename = "errorCode")]
    #[schema(required = true)]
    pub(crate) error_code: Option<String>,
    /// What is wrong.
    #[serde(rename = "details")]
    #[schema(required = true)]
    pub(crate) details: Option<String>,
    /// The code's text.
    #[serde(rename = "description", default)]
    pub(crate) description: Option<String>,
    /// The code list's OID.
    #[serde(rename = "oid", default)]
    pub(crate) oid: Option<String>,
}

/// An application receipt's status: `Ok` (1), `Rejected` (2, "Avvist") or
/// `OkErrorInMessagePart` (3, which the Meldingstjener does not take).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) enum AppRecStatus {
    /// `Ok`.
    Ok,
    /// `Rejected`.
    Rejected,
    /// `OkErrorInMessagePart`.
    OkErrorInMessagePart,
}

impl AppRecStatus {
    /// The number the AppRec document carries.
    pub(crate) fn code(self) -> u8 {
        match self {
            AppRecStatus::Ok => 1,
            AppRecStatus::Rejected => 2,
            AppRecStatus::OkErrorInMessagePart => 3,
        }
    }
}

/// Reads an enum as ASP.NET does: a name in any case, or its number (as a number or a
/// string of digits).
fn dotnet_enum<'de, D, T>(deserializer: D, names: &[(&str, i64, T)]) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Copy,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    let found = match &value {
        serde_json::Value::String(s) => names.iter().find(|(name, number, _)| {
            name.eq_ignore_ascii_case(s) || s.trim().parse::<i64>().ok() == Some(*number)
        }),
        serde_json::Value::Number(n) => names
            .iter()
            .find(|(_, number, _)| n.as_i64() == Some(*number)),
        _ => None,
    };
    found.map(|(_, _, v)| *v).ok_or_else(|| {
        let allowed: Vec<String> = names
            .iter()
            .map(|(name, number, _)| format!("{name} ({number})"))
            .collect();
        serde::de::Error::custom(format!(
            "{} is not one of {}",
            crate::server::response::quote(&value.to_string()),
            allowed.join(", ")
        ))
    })
}

impl<'de> Deserialize<'de> for AppRecStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        dotnet_enum(
            deserializer,
            &[
                ("Ok", 1, AppRecStatus::Ok),
                ("Rejected", 2, AppRecStatus::Rejected),
                (
                    "OkErrorInMessagePart",
                    3,
                    AppRecStatus::OkErrorInMessagePart,
                ),
            ],
        )
    }
}

/// The application receipt of one receiver of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprecInfo {
    /// The receiver's HER-id.
    #[serde(rename = "receiverHerId")]
    #[schema(format = Int32)]
    pub(crate) receiver_her_id: i32,
    /// The receipt's status; `null` until one is received.
    #[serde(rename = "appRecStatus", default)]
    pub(crate) app_rec_status: Option<AppRecStatus>,
    /// The receipt's errors, if any.
    #[serde(rename = "appRecErrorList", default)]
    pub(crate) app_rec_error_list: Option<Vec<AppRecError>>,
}

/// How far a message has come to a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum DeliveryState {
    /// Sent, not yet taken by the receiver.
    Unconfirmed,
    /// The receiver has taken it (fetched the business document or marked it read).
    Acknowledged,
    /// It could not be delivered.
    Rejected,
}

/// ebXML envelope values a sender may set instead of the ones the Meldingstjener
/// derives (the emulator keeps none of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EbXmlInfo {
    /// The CPA id.
    #[serde(rename = "cpaId", default)]
    pub(crate) cpa_id: Option<String>,
    /// The conversation id.
    #[serde(rename = "conversationId", default)]
    pub(crate) conversation_id: Option<String>,
    /// The service.
    #[serde(rename = "service", default)]
    pub(crate) service: Option<String>,
    /// The service's type.
    #[serde(rename = "serviceType", default)]
    pub(crate) service_type: Option<String>,
    /// The action.
    #[serde(rename = "action", default)]
    pub(crate) action: Option<String>,
    /// The sender's role.
    #[serde(rename = "senderRole", default)]
    pub(crate) sender_role: Option<String>,
    /// Whether the organisation's (level 1) HER-id is the sender.
    #[serde(rename = "useSenderLevel1HerId", default)]
    pub(crate) use_sender_level1_her_id: Option<bool>,
    /// The receiver's role.
    #[serde(rename = "receiverRole", default)]
    pub(crate) receiver_role: Option<String>,
    /// The calling application's name.
    #[serde(rename = "applicationName", default)]
    pub(crate) application_name: Option<String>,
    /// The calling application's version.
    #[serde(rename = "applicationVersion", default)]
    pub(crate) application_version: Option<String>,
    /// A middleware's name.
    #[serde(rename = "middlewareName", default)]
    pub(crate) middleware_name: Option<String>,
    /// A middleware's version.
    #[serde(rename = "middlewareVersion", default)]
    pub(crate) middleware_version: Option<String>,
    /// Whether to gzip the payload before encryption.
    #[serde(rename = "compressPayload", default)]
    pub(crate) compress_payload: Option<bool>,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorMessage {
    /// What went wrong.
    #[serde(rename = "error")]
    pub(crate) error: Option<String>,
    /// A code for it: 1000 for a validation error, 0 otherwise.
    #[serde(rename = "errorCode")]
    #[schema(required = false, format = Int32)]
    pub(crate) error_code: i32,
    /// Each thing that is wrong with the request, for a validation error.
    #[serde(rename = "validationErrors")]
    pub(crate) validation_errors: Option<Vec<String>>,
    /// Always `null` (a production server's answer).
    #[serde(rename = "stackTrace")]
    pub(crate) stack_trace: Option<String>,
    /// The request's id, for the logs.
    #[serde(rename = "requestId")]
    pub(crate) request_id: String,
}

/// A message's business document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetBusinessDocumentResponse {
    /// The document, encoded as `contentTransferEncoding` says (base64).
    #[serde(rename = "businessDocument")]
    #[schema(min_length = 1)]
    pub(crate) business_document: String,
    /// The document's content type (`application/xml`).
    #[serde(rename = "contentType")]
    #[schema(min_length = 1)]
    pub(crate) content_type: String,
    /// `base64`.
    #[serde(rename = "contentTransferEncoding")]
    #[schema(min_length = 1)]
    pub(crate) content_transfer_encoding: String,
}

/// A message to one receiver. Without `IncludeMetadata=true` only `id` and
/// `receiverHerId` are present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Message {
    /// The message's id (a GUID), for the `/Messages/{id}/...` operations.
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uuid")]
    pub(crate) id: Option<String>,
    /// The business document's content type.
    #[serde(
        rename = "contentType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) content_type: Option<String>,
    /// The receiver's HER-id.
    #[serde(
        rename = "receiverHerId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = Int32)]
    pub(crate) receiver_her_id: Option<i32>,
    /// The sender's HER-id.
    #[serde(
        rename = "senderHerId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = Int32)]
    pub(crate) sender_her_id: Option<i32>,
    /// The business document's MsgId.
    #[serde(
        rename = "businessDocumentId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) business_document_id: Option<String>,
    /// The business document's GenDate, as .NET writes a `DateTimeOffset` (UTC,
    /// `+00:00`, up to seven fractional digits).
    #[serde(
        rename = "businessDocumentGenDate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = DateTime)]
    pub(crate) business_document_gen_date: Option<String>,
    /// Whether the business document is an application receipt.
    #[serde(rename = "isAppRec", default, skip_serializing_if = "Option::is_none")]
    pub(crate) is_app_rec: Option<bool>,
}

/// How `GET /Messages` orders by GenDate: `Ascending` (1, the default) or
/// `Descending` (2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) enum OrderBy {
    /// `Ascending`.
    #[default]
    Ascending,
    /// `Descending`.
    Descending,
}

impl<'de> Deserialize<'de> for OrderBy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        dotnet_enum(
            deserializer,
            &[
                ("Ascending", 1, OrderBy::Ascending),
                ("Descending", 2, OrderBy::Descending),
            ],
        )
    }
}

/// An application receipt for a received message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostAppRecRequest {
    /// The receipt's status.
    #[serde(rename = "appRecStatus")]
    pub(crate) app_rec_status: AppRecStatus,
    /// The errors; required when the status is `Rejected`.
    #[serde(rename = "appRecErrorList", default)]
    pub(crate) app_rec_error_list: Option<Vec<AppRecError>>,
    /// ebXML values to use instead of the derived ones.
    #[serde(rename = "ebXmlOverrides", default)]
    pub(crate) eb_xml_overrides: Option<EbXmlInfo>,
}

/// A message to send: its business document and how it is encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostMessageRequest {
    /// The business document (a MsgHead, UTF-8 XML), base64-encoded.
    #[serde(rename = "businessDocument")]
    #[schema(min_length = 1)]
    pub(crate) business_document: String,
    /// `application/xml`.
    #[serde(rename = "contentType")]
    #[schema(min_length = 1)]
    pub(crate) content_type: String,
    /// `base64`.
    #[serde(rename = "contentTransferEncoding")]
    #[schema(min_length = 1)]
    pub(crate) content_transfer_encoding: String,
    /// ebXML values to use instead of the derived ones.
    #[serde(rename = "ebXmlOverrides", default)]
    pub(crate) eb_xml_overrides: Option<EbXmlInfo>,
    /// Of the document's receivers, the ones to send to (all when absent).
    #[serde(rename = "receiverHerIdsSubset", default)]
    #[schema(value_type = Option<Vec<i32>>)]
    pub(crate) receiver_her_ids_subset: Option<Vec<i32>>,
}

/// How far a message has come to one receiver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusInfo {
    /// The receiver's HER-id.
    #[serde(rename = "receiverHerId")]
    #[schema(format = Int32)]
    pub(crate) receiver_her_id: i32,
    /// The transport state.
    #[serde(rename = "transportDeliveryState")]
    pub(crate) transport_delivery_state: DeliveryState,
    /// The application receipt's status; `null` until one is received.
    #[serde(rename = "appRecStatus", default)]
    pub(crate) app_rec_status: Option<AppRecStatus>,
}
