//! Organisation numbers in client assertions (`assertion_details`, or its older name
//! `authorization_details`), and the organisations an issued token names.
//!
//! Problems are `invalid_request`, and each description starts with the HelseID code
//! whose meaning fits:
//! - `HID-1004`: an organisation number has the wrong format (HelseID: "The format of
//!   the organization number was incorrect. Valid organization numbers must be nine
//!   digits").
//! - `HID-1007`: the structure does not follow the specification: not an object (or an
//!   array of detail objects: `helseid_authorization` and SFM's `nhn:sfm:journal-id`,
//!   each at most once), a wrong `type`, a missing member, the wrong
//!   identifier `system` for the client's tenancy, or both claim names at once (HelseID:
//!   "The supplied request object or client assertion does not comply to the
//!   specification").

use serde_json::{Map, Value};

use crate::idp::clients::RegisteredClient;
use crate::idp::clients::Tenancy;
use crate::server::response::{TokenError, quote};

/// The identifier system of multi-tenant clients (the international organisation
/// register, ISO 6523).
pub(crate) const MULTI_TENANT_SYSTEM: &str = "urn:oid:1.0.6523";

/// The identifier system of single-tenant clients (the Norwegian organisation register).
pub(crate) const SINGLE_TENANT_SYSTEM: &str = "urn:oid:2.16.578.1.12.4.1.4.101";

/// The `type` of HelseID's structured claim.
const DETAILS_TYPE: &str = "helseid_authorization";

/// The `type` of SFM's journal id detail.
const JOURNAL_ID_TYPE: &str = "nhn:sfm:journal-id";

/// The prefix of multi-tenant identifier values.
const ORGNR_PREFIX: &str = "NO:ORGNR:";

/// Whether `s` is an organisation number: nine ASCII digits.
pub(crate) fn is_orgnr(s: &str) -> bool {
    s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The organisations a token is issued for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Organisation {
    /// The parent organisation (the legal entity).
    pub(crate) parent: Option<String>,
    /// The child organisation (a sub-unit).
    pub(crate) child: Option<String>,
}

/// The organisation identifier a client assertion carries.
struct Identifier<'a> {
    /// The JSON path of the identifier object, for error descriptions.
    path: String,
    system: &'a str,
    value: &'a str,
}

fn hid1004(description: String) -> TokenError {
    TokenError::invalid_request(format!("HID-1004: {description}"))
}

fn hid1007(description: String) -> TokenError {
    TokenError::invalid_request(format!("HID-1007: {description}"))
}

/// The organisations of a request: from the assertion's claims and the client's
/// registration. A single-tenant client always has its registered parent.
pub(crate) fn organisation(
    claims: &Map<String, Value>,
    client: &RegisteredClient,
) -> Result<Organisation, TokenError> {
    let details = match (
        claims.get("assertion_details"),
        claims.get("authorization_details"),
    ) {
        (Some(_), Some(_)) => {
            return Err(hid1007(
                "the client assertion carries both assertion_details and authorization_details; send only one"
                    .to_owned(),
            ));
        }
        (Some(details), None) => Some(("assertion_details", details)),
        (None, Some(details)) => Some(("authorization_details", details)),
        (None, None) => None,
    };
    let identifier = details
        .map(|(claim, details)| identifier(claim, details))
        .transpose()?
        .flatten();
    match &client.tenancy {
        Tenancy::Multi => {
            identifier.map_or_else(|| Ok(Organisation::default()), |id| multi_tenant(&id))
        }
        Tenancy::Single { parent_orgnr } => Ok(Organisation {
            parent: Some(parent_orgnr.clone()),
            child: identifier.map(|id| single_tenant(&id)).transpose()?,
        }),
    }
}

/// Reads the claim: one detail object, or an array of detail objects (HelseID's
/// `helseid_authorization` at most once, SFM's `nhn:sfm:journal-id` at most once), and
/// returns the organisation identifier when there is one.
fn identifier<'a>(claim: &str, details: &'a Value) -> Result<Option<Identifier<'a>>, TokenError> {
    let items: Vec<(String, &'a Value)> = match details {
        Value::Object(_) => vec![(claim.to_owned(), details)],
        Value::Array(items) if items.is_empty() => {
            return Err(hid1007(format!(
                "{claim} must be an object, or an array of detail objects (it is an empty array)"
            )));
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{claim}[{i}]"), item))
            .collect(),
        _ => {
            return Err(hid1007(format!(
                "{claim} must be an object, or an array of detail objects"
            )));
        }
    };
    let (mut authorization, mut journal) = (None, false);
    for (path, item) in items {
        if !item.is_object() {
            return Err(hid1007(format!("{path} must be an object")));
        }
        match item.get("type") {
            Some(Value::String(t)) if t == DETAILS_TYPE => {
                if authorization.is_some() {
                    return Err(hid1007(format!(
                        "{claim} holds more than one {DETAILS_TYPE} detail"
                    )));
                }
                authorization = Some(organisation_identifier(path, item)?);
            }
            Some(Value::String(t)) if t == JOURNAL_ID_TYPE => {
                if journal {
                    return Err(hid1007(format!(
                        "{claim} holds more than one {JOURNAL_ID_TYPE} detail"
                    )));
                }
                journal = true;
                journal_id(&path, item)?;
            }
            Some(Value::String(t)) => {
                return Err(hid1007(format!(
                    "{path}.type is {}; it must be {DETAILS_TYPE} or {JOURNAL_ID_TYPE}",
                    quote(t)
                )));
            }
            Some(_) => {
                return Err(hid1007(format!(
                    "{path}.type must be the string {DETAILS_TYPE} or {JOURNAL_ID_TYPE}"
                )));
            }
            None => {
                return Err(hid1007(format!(
                    "{path}.type is missing; it must be {DETAILS_TYPE} or {JOURNAL_ID_TYPE}"
                )));
            }
        }
    }
    Ok(authorization)
}

/// The journal id of SFM's detail in the assertion's `assertion_details` (or
/// `authorization_details`), when it carries one; [`organisation`] has checked its shape.
pub(crate) fn assertion_journal_id(claims: &Map<String, Value>) -> Option<String> {
    let details = claims
        .get("assertion_details")
        .or_else(|| claims.get("authorization_details"))?;
    let items = match details {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    items
        .iter()
        .find(|item| item.get("type").and_then(Value::as_str) == Some(JOURNAL_ID_TYPE))
        .and_then(|item| item.get("value")?.get("journal_id")?.as_str())
        .map(str::to_owned)
}

/// Checks SFM's journal id detail: `{"type": "nhn:sfm:journal-id", "value":
/// {"journal_id": "<id>"}}` with a non-empty id without white space.
fn journal_id(path: &str, item: &Value) -> Result<(), TokenError> {
    match item.get("value").map(|v| v.get("journal_id")) {
        Some(Some(Value::String(id)))
            if !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        Some(Some(Value::String(_))) => Err(hid1007(format!(
            "{path}.value.journal_id must be a non-empty string without white space"
        ))),
        Some(Some(_)) => Err(hid1007(format!("{path}.value.journal_id must be a string"))),
        Some(None) => Err(hid1007(format!("{path}.value.journal_id is missing"))),
        None => Err(hid1007(format!("{path}.value is missing"))),
    }
}

/// Finds `practitioner_role.organization.identifier` in a `helseid_authorization`
/// detail at `path` and checks its shape.
fn organisation_identifier(mut path: String, object: &Value) -> Result<Identifier<'_>, TokenError> {
    let mut node = object;
    for member in ["practitioner_role", "organization", "identifier"] {
        path.push('.');
        path.push_str(member);
        node = match node.get(member) {
            Some(child @ Value::Object(_)) => child,
            Some(_) => return Err(hid1007(format!("{path} must be an object"))),
            None => return Err(hid1007(format!("{path} is missing"))),
        };
    }
    let text = |name: &str| match node.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(hid1007(format!("{path}.{name} must be a string"))),
        None => Err(hid1007(format!("{path}.{name} is missing"))),
    };
    let (system, kind, value) = (text("system")?, text("type")?, text("value")?);
    if kind != "ENH" {
        return Err(hid1007(format!(
            "{path}.type is {}; it must be ENH",
            quote(kind)
        )));
    }
    Ok(Identifier {
        path,
        system,
        value,
    })
}

/// A multi-tenant client names `NO:ORGNR:<parent>` or `NO:ORGNR:<parent>:<child>`.
fn multi_tenant(id: &Identifier<'_>) -> Result<Organisation, TokenError> {
    let path = &id.path;
    if id.system != MULTI_TENANT_SYSTEM {
        return Err(hid1007(format!(
            "{path}.system is {}; a multi-tenant client must use {MULTI_TENANT_SYSTEM}",
            quote(id.system)
        )));
    }
    let format_error = || {
        hid1004(format!(
            "{path}.value {} must be {ORGNR_PREFIX}<parent> or {ORGNR_PREFIX}<parent>:<child>, \
             with organisation numbers of nine digits",
            quote(id.value)
        ))
    };
    let numbers = id
        .value
        .strip_prefix(ORGNR_PREFIX)
        .ok_or_else(format_error)?;
    // A parent alone is written `NO:ORGNR:<parent>` (NHN's Java library) or
    // `NO:ORGNR:<parent>:` (NHN's .NET library): both are read.
    let (parent, child) = match numbers.split_once(':') {
        Some((parent, "")) => (parent, None),
        Some((parent, child)) => (parent, Some(child)),
        None => (numbers, None),
    };
    if !is_orgnr(parent) || child.is_some_and(|child| !is_orgnr(child)) {
        return Err(format_error());
    }
    Ok(Organisation {
        parent: Some(parent.to_owned()),
        child: child.map(str::to_owned),
    })
}

/// A single-tenant client names its child organisation: `<child>`.
fn single_tenant(id: &Identifier<'_>) -> Result<String, TokenError> {
    let path = &id.path;
    if id.system != SINGLE_TENANT_SYSTEM {
        return Err(hid1007(format!(
            "{path}.system is {}; a single-tenant client must use {SINGLE_TENANT_SYSTEM}",
            quote(id.system)
        )));
    }
    if !is_orgnr(id.value) {
        return Err(hid1004(format!(
            "{path}.value {} must be the child organisation's number: nine digits",
            quote(id.value)
        )));
    }
    Ok(id.value.to_owned())
}
