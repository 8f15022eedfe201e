//! NHN's CommunicationParty API v2 model, as the emulator serves it: one Rust type per
//! schema of `openapi/cpapi.json`, with the same names, properties, types, formats,
//! enums, `required` lists, nullability and closedness (`tests/cpapi_openapi_drift.rs`
//! holds the utoipa document made from them against cpapi.json).
//!
//! A property NHN may leave out and does not allow `null` is an `Option` that is left
//! out when `None`; one that allows `null` is an `Option` written as `null` when `None`,
//! the way ASP.NET writes it. Closed objects (`additionalProperties: false`) refuse
//! unknown fields when the emulator reads them (request bodies).
// Written from the contract, field by field; not every field is read by the emulator.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A value from one of the code lists (kodeverk) the register uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdministrativeCode {
    /// The code list's id (OID), such as 2.16.578.1.12.4.1.1.8624.
    #[serde(rename = "codeListId")]
    #[schema(required = true)]
    pub(crate) code_list_id: Option<String>,
    /// The code.
    #[serde(rename = "value")]
    #[schema(required = true)]
    pub(crate) value: Option<String>,
    /// The code's text.
    #[serde(rename = "name", default)]
    pub(crate) name: Option<String>,
    /// Where the code list is published.
    #[serde(rename = "url", default)]
    pub(crate) url: Option<String>,
}

/// The AMQP queues a party receives messages on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AmqpAddress {
    /// The queue for synchronous requests.
    #[serde(rename = "amqpSyncQueue", default)]
    pub(crate) amqp_sync_queue: Option<String>,
    /// The queue for replies to synchronous requests.
    #[serde(rename = "amqpSyncReplyQueue", default)]
    pub(crate) amqp_sync_reply_queue: Option<String>,
    /// The queue for asynchronous messages.
    #[serde(rename = "amqpAsyncQueue", default)]
    pub(crate) amqp_async_queue: Option<String>,
    /// The queue for error messages.
    #[serde(rename = "amqpErrorQueue", default)]
    pub(crate) amqp_error_queue: Option<String>,
}

/// Whether a party receives messages over AMQP: its own setting, or its parent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum AmqpTransportStatus {
    /// `Inherited`.
    Inherited,
    /// `Disabled`.
    Disabled,
    /// `Enabled`.
    Enabled,
}

/// An X.509 certificate with its thumbprint and validity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Certificate {
    /// The certificate's SHA-1 thumbprint, as hexadecimal.
    #[serde(rename = "thumbprint")]
    #[schema(required = true)]
    pub(crate) thumbprint: Option<String>,
    /// Not valid before this time.
    #[serde(rename = "validFrom", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_from: Option<String>,
    /// Not valid after this time.
    #[serde(rename = "validTo", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_to: Option<String>,
    /// The certificate, DER-encoded (base64 in JSON).
    #[serde(rename = "certificateValue")]
    #[schema(format = Byte, required = true)]
    pub(crate) certificate_value: Option<String>,
}

/// What identifies a certificate, without the certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateMetadata {
    /// The certificate's SHA-1 thumbprint, as hexadecimal.
    #[serde(rename = "thumbprint")]
    #[schema(required = true)]
    pub(crate) thumbprint: Option<String>,
    /// Not valid before this time.
    #[serde(rename = "validFrom", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_from: Option<String>,
    /// Not valid after this time.
    #[serde(rename = "validTo", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_to: Option<String>,
}

/// A signing and an encryption certificate that were in use together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificatePairInfo {
    /// Whether this is the pair in use now.
    #[serde(rename = "isCurrent", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) is_current: Option<bool>,
    /// The signing certificate.
    #[serde(
        rename = "signingCertificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) signing_certificate: Option<CertificateMetadata>,
    /// The encryption certificate.
    #[serde(
        rename = "encryptionCertificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) encryption_certificate: Option<CertificateMetadata>,
}

/// A code in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Code {
    /// The code list's number.
    #[serde(rename = "OID", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) oid: Option<i32>,
    /// The code list's short name.
    #[serde(rename = "SimpleType", default)]
    pub(crate) simple_type: Option<String>,
    /// The code.
    #[serde(rename = "CodeValue", default)]
    pub(crate) code_value: Option<String>,
    /// The code's text.
    #[serde(rename = "CodeText", default)]
    pub(crate) code_text: Option<String>,
    /// Whether the code is in use.
    #[serde(rename = "Active", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) active: Option<bool>,
    /// A longer text for the code.
    #[serde(rename = "LongDescription", default)]
    pub(crate) long_description: Option<String>,
}

/// A communication party: an organisation, a service in one, or a person with a role in one, that can send and receive health messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommunicationParty {
    /// The party's HER-id, its number in the register.
    #[serde(rename = "herId")]
    pub(crate) her_id: i32,
    /// The party's own name.
    #[serde(rename = "name", default)]
    pub(crate) name: Option<String>,
    /// The name to show; for a service or a person it includes the organisation's name.
    #[serde(rename = "displayName", default)]
    pub(crate) display_name: Option<String>,
    /// What kind of party this is; it tells which of the details objects is filled.
    #[serde(rename = "type")]
    pub(crate) kind: CommunicationPartyType,
    /// For an organisation: its organisation number, business type, persons and services.
    #[serde(
        rename = "organizationDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) organization_details: Option<OrganizationDetails>,
    /// For a person: the HPR number and the organisation the role is in.
    #[serde(
        rename = "personDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) person_details: Option<PersonDetails>,
    /// For a service: its type and the organisation it belongs to.
    #[serde(
        rename = "serviceDetails",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) service_details: Option<ServiceDetails>,
    /// The certificate the party signs with now.
    #[serde(
        rename = "currentSigningCertificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) current_signing_certificate: Option<CertificateMetadata>,
    /// The certificate to encrypt to the party with now.
    #[serde(
        rename = "currentEncryptionCertificate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) current_encryption_certificate: Option<CertificateMetadata>,
    /// E-mail address.
    #[serde(rename = "email", default)]
    pub(crate) email: Option<String>,
    /// Web site.
    #[serde(rename = "homepageUrl", default)]
    pub(crate) homepage_url: Option<String>,
    /// Telephone number.
    #[serde(rename = "phoneNumber", default)]
    pub(crate) phone_number: Option<String>,
    /// Fax number.
    #[serde(rename = "faxNumber", default)]
    pub(crate) fax_number: Option<String>,
    /// The address for EDI messages.
    #[serde(rename = "ediAddress", default)]
    pub(crate) edi_address: Option<String>,
    /// The base URL of the party's FHIR endpoint.
    #[serde(rename = "fhirAddress", default)]
    pub(crate) fhir_address: Option<String>,
    /// Where post to the party goes.
    #[serde(
        rename = "postalAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) postal_address: Option<PostalAddress>,
    /// Whether the party takes messages over AMQP.
    #[serde(rename = "amqpTransportStatus")]
    pub(crate) amqp_transport_status: AmqpTransportStatus,
    /// The party's AMQP queues.
    #[serde(
        rename = "amqpAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) amqp_address: Option<AmqpAddress>,
    /// When the party became valid.
    #[serde(rename = "validFrom", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_from: Option<String>,
    /// When the party stops (or stopped) being valid.
    #[serde(rename = "validTo", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) valid_to: Option<String>,
}

/// The HER-ids in the register, and where in the event feed the export stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommunicationPartyExport {
    /// The sequence number of the last event the export includes.
    #[serde(
        rename = "lastSequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) last_sequence_number: Option<i64>,
    /// How many HER-ids `communicationParties` holds.
    #[serde(rename = "count", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) count: Option<i32>,
    /// The HER-ids.
    #[serde(rename = "communicationParties", default)]
    pub(crate) communication_parties: Option<Vec<i32>>,
}

/// The kind of a communication party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum CommunicationPartyType {
    /// `Organization`.
    Organization,
    /// `Person`.
    Person,
    /// `Service`.
    Service,
}

/// The kind of a communication party, in the older data model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum CommunicationPartyTypeLegacy {
    /// `None`.
    None,
    /// `Person`.
    Person,
    /// `Organization`.
    Organization,
    /// `Service`.
    Service,
    /// `All`.
    All,
}

/// A communication party in the older data model, with PascalCase field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = CommunicationParty_Legacy)]
pub(crate) struct CommunicationPartyLegacy {
    /// When the party last changed.
    #[serde(rename = "LastChanged", default)]
    #[schema(format = DateTime)]
    pub(crate) last_changed: Option<String>,
    /// The party's HER-id.
    #[serde(rename = "HerId", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) her_id: Option<i32>,
    /// What kind of party this is.
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) kind: Option<CommunicationPartyTypeLegacy>,
    /// The party's own name.
    #[serde(rename = "Name", default)]
    pub(crate) name: Option<String>,
    /// The name to show.
    #[serde(rename = "DisplayName", default)]
    pub(crate) display_name: Option<String>,
    /// The HER-id of the organisation the party belongs to.
    #[serde(rename = "ParentHerId", default)]
    pub(crate) parent_her_id: Option<i32>,
    /// The name of that organisation.
    #[serde(rename = "ParentName", default)]
    pub(crate) parent_name: Option<String>,
    /// The organisation number of that organisation.
    #[serde(rename = "ParentOrganizationNumber", default)]
    pub(crate) parent_organization_number: Option<i32>,
    /// The business type of that organisation.
    #[serde(
        rename = "ParentBusinessType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) parent_business_type: Option<Code>,
    /// Visiting and postal addresses.
    #[serde(rename = "PhysicalAddresses", default)]
    pub(crate) physical_addresses: Option<Vec<PhysicalAddress>>,
    /// EDI, e-mail, telephone and other electronic addresses.
    #[serde(rename = "ElectronicAddresses", default)]
    pub(crate) electronic_addresses: Option<Vec<ElectronicAddress>>,
    /// Electronic addresses that take effect later.
    #[serde(rename = "FutureElectronicAddresses", default)]
    pub(crate) future_electronic_addresses: Option<Vec<FutureElectronicAddress>>,
    /// The municipality the party is in.
    #[serde(
        rename = "Municipality",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) municipality: Option<Code>,
    /// When the party is valid.
    #[serde(rename = "Valid", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) valid: Option<Period>,
    /// Whether the party can take part in messaging.
    #[serde(rename = "IsValidCommunicationParty", default)]
    pub(crate) is_valid_communication_party: Option<bool>,
    /// The kind of area the party covers.
    #[serde(
        rename = "CoverageAreaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) coverage_area_type: Option<Code>,
    /// The party's organisation number.
    #[serde(rename = "OrganizationNumber", default)]
    pub(crate) organization_number: Option<i32>,
    /// Industry codes (næringskoder).
    #[serde(rename = "IndustryCodes", default)]
    pub(crate) industry_codes: Option<Vec<Code>>,
    /// The business type.
    #[serde(
        rename = "BusinessType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) business_type: Option<Code>,
    /// Further classifications.
    #[serde(rename = "Properties", default)]
    pub(crate) properties: Option<Vec<Code>>,
    /// The party's own code.
    #[serde(rename = "Code", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) code: Option<Code>,
    /// Where to find the party.
    #[serde(rename = "LocationDescription", default)]
    pub(crate) location_description: Option<String>,
    /// The organisations whose area the party covers.
    #[serde(rename = "CoverageAreas", default)]
    pub(crate) coverage_areas: Option<Vec<CoverageInfo>>,
    /// Free text about the party.
    #[serde(rename = "Description", default)]
    pub(crate) description: Option<String>,
    /// For a person: the health personnel details.
    #[serde(rename = "Person", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) person: Option<Person>,
    /// A person's title.
    #[serde(rename = "Title", default)]
    pub(crate) title: Option<String>,
}

/// An organisation whose area a party covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct CoverageInfo {
    /// Its organisation number.
    #[serde(
        rename = "OrganizationNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) organization_number: Option<i32>,
    /// Its HER-id.
    #[serde(rename = "HerId", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) her_id: Option<i32>,
    /// Its name.
    #[serde(rename = "Name", default)]
    pub(crate) name: Option<String>,
    /// The name to show.
    #[serde(rename = "DisplayName", default)]
    pub(crate) display_name: Option<String>,
}

/// An electronic address in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ElectronicAddress {
    /// When the address last changed.
    #[serde(
        rename = "LastChanged",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) last_changed: Option<String>,
    /// The address type's code.
    #[serde(rename = "TypeCodeValue", default)]
    pub(crate) type_code_value: Option<String>,
    /// What kind of address it is.
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) kind: Option<Code>,
    /// The address.
    #[serde(rename = "Address")]
    #[schema(min_length = 1)]
    pub(crate) address: String,
    /// Whether the address is the parent organisation's.
    #[serde(rename = "Inherited", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) inherited: Option<bool>,
}

/// A change to a communication party, numbered in the order the changes happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    /// The event's number; later events have higher numbers.
    #[serde(
        rename = "sequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) sequence_number: Option<i64>,
    /// The HER-id of the party that changed.
    #[serde(rename = "herId", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) her_id: Option<i32>,
    /// Whether the party was created or updated.
    #[serde(rename = "eventType", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) event_type: Option<EventType>,
    /// When the change was recorded.
    #[serde(
        rename = "eventTimestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) event_timestamp: Option<String>,
}

/// What happened to a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) enum EventType {
    /// `CommunicationPartyCreated`.
    CommunicationPartyCreated,
    /// `CommunicationPartyUpdated`.
    CommunicationPartyUpdated,
}

/// A page of events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsResponse {
    /// The events, oldest first.
    #[serde(rename = "results")]
    #[schema(required = true)]
    pub(crate) results: Option<Vec<Event>>,
    /// How many events `results` holds.
    #[serde(rename = "count", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, read_only)]
    pub(crate) count: Option<i32>,
}

/// An electronic address that takes effect later, in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct FutureElectronicAddress {
    /// When the address last changed.
    #[serde(
        rename = "LastChanged",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) last_changed: Option<String>,
    /// The address type's code.
    #[serde(rename = "TypeCodeValue", default)]
    pub(crate) type_code_value: Option<String>,
    /// What kind of address it is.
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) kind: Option<Code>,
    /// The address.
    #[serde(rename = "Address")]
    #[schema(min_length = 1)]
    pub(crate) address: String,
    /// Whether the address is the parent organisation's.
    #[serde(rename = "Inherited", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) inherited: Option<bool>,
    /// When the address takes effect.
    #[serde(rename = "ValidFrom")]
    #[schema(format = DateTime)]
    pub(crate) valid_from: String,
}

/// A person's entry in the health personnel register (HPR).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = HPRInformation)]
pub(crate) struct HprInformation {
    /// The HPR number.
    #[serde(rename = "HPRNumber", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) hpr_number: Option<i32>,
}

/// HER-ids to look up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HerIdInputCollection {
    /// The HER-ids, at most 100.
    #[serde(rename = "herIds", default)]
    pub(crate) her_ids: Option<Vec<i32>>,
}

/// The municipalities a service shared between municipalities covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InterMunicipalityCoverageArea {
    /// The HER-ids of the municipalities.
    #[serde(rename = "municipalityHerIds")]
    #[schema(required = true)]
    pub(crate) municipality_her_ids: Option<Vec<i32>>,
}

/// What only an organisation has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrganizationDetails {
    /// The organisation number: nine digits.
    #[serde(rename = "organizationNumber", default)]
    pub(crate) organization_number: Option<String>,
    /// The kind of business.
    #[serde(rename = "businessType")]
    pub(crate) business_type: AdministrativeCode,
    /// The HER-ids of the persons with a role in the organisation.
    #[serde(rename = "persons")]
    #[schema(required = true)]
    pub(crate) persons: Option<Vec<i32>>,
    /// The HER-ids of the organisation's services.
    #[serde(rename = "services")]
    #[schema(required = true)]
    pub(crate) services: Option<Vec<i32>>,
}

/// Criteria for organisations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrganizationSearchParameters {
    /// The code list of the business type to match.
    #[serde(rename = "businessTypeCodeListId", default)]
    pub(crate) business_type_code_list_id: Option<String>,
    /// The business type code to match.
    #[serde(rename = "businessTypeCodeValue", default)]
    pub(crate) business_type_code_value: Option<String>,
}

/// The organisation a service or a person belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParentOrganization {
    /// Its name.
    #[serde(rename = "name")]
    #[schema(required = true)]
    pub(crate) name: Option<String>,
    /// Its HER-id.
    #[serde(rename = "herId")]
    pub(crate) her_id: i32,
    /// Its organisation number.
    #[serde(rename = "organizationNumber", default)]
    pub(crate) organization_number: Option<String>,
}

/// A span of time in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Period {
    /// The start.
    #[serde(rename = "From", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) from: Option<String>,
    /// The end.
    #[serde(rename = "To", default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) to: Option<String>,
}

/// A person in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct Person {
    /// The person's HPR entry.
    #[serde(
        rename = "HPRInformation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) hpr_information: Option<HprInformation>,
}

/// What only a person has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonDetails {
    /// The person's number in the health personnel register.
    #[serde(rename = "hprNumber")]
    pub(crate) hpr_number: i32,
    /// The organisation the person's role is in.
    #[serde(rename = "parentOrganization")]
    pub(crate) parent_organization: ParentOrganization,
}

/// Criteria for persons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonSearchParameters {
    /// The HPR number to match.
    #[serde(rename = "hprNumber", default)]
    pub(crate) hpr_number: Option<i32>,
}

/// An address in the older data model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct PhysicalAddress {
    /// When the address last changed.
    #[serde(
        rename = "LastChanged",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(format = DateTime, nullable = false)]
    pub(crate) last_changed: Option<String>,
    /// What kind of address it is.
    #[serde(rename = "Type", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) kind: Option<Code>,
    /// The address type's code.
    #[serde(rename = "TypeCodeValue", default)]
    pub(crate) type_code_value: Option<String>,
    /// The post box.
    #[serde(rename = "Postbox", default)]
    pub(crate) postbox: Option<String>,
    /// The street and number.
    #[serde(rename = "StreetAddress", default)]
    pub(crate) street_address: Option<String>,
    /// The postal code.
    #[serde(
        rename = "PostalCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) postal_code: Option<i32>,
    /// The postal town.
    #[serde(rename = "City", default)]
    pub(crate) city: Option<String>,
    /// Free text about the address.
    #[serde(rename = "Description", default)]
    pub(crate) description: Option<String>,
    /// Whether the address is the parent organisation's.
    #[serde(rename = "Inherited", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) inherited: Option<bool>,
    /// The country.
    #[serde(rename = "Country", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) country: Option<Code>,
}

/// A postal address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostalAddress {
    /// The street address.
    #[serde(rename = "address", default)]
    pub(crate) address: Option<String>,
    /// The post box.
    #[serde(rename = "postalBox", default)]
    pub(crate) postal_box: Option<String>,
    /// The postal code: four digits.
    #[serde(rename = "postalCode")]
    #[schema(pattern = "^\\d{4}$", required = true)]
    pub(crate) postal_code: Option<String>,
    /// The postal town.
    #[serde(rename = "city")]
    #[schema(required = true)]
    pub(crate) city: Option<String>,
}

/// What to search for. Criteria left out match every party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParameters {
    /// Criteria for organisations.
    #[serde(
        rename = "organizationSearchParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) organization_search_parameters: Option<OrganizationSearchParameters>,
    /// Criteria for persons.
    #[serde(
        rename = "personSearchParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) person_search_parameters: Option<PersonSearchParameters>,
    /// Criteria for services.
    #[serde(
        rename = "serviceSearchParameters",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) service_search_parameters: Option<ServiceSearchParameters>,
    /// Text the party's name contains.
    #[serde(rename = "name", default)]
    pub(crate) name: Option<String>,
}

/// A page of search results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchResponse {
    /// The parties on this page.
    #[serde(rename = "communicationParties")]
    #[schema(required = true)]
    pub(crate) communication_parties: Option<Vec<CommunicationParty>>,
}

/// What only a service has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceDetails {
    /// The kind of service.
    #[serde(rename = "serviceType")]
    pub(crate) service_type: AdministrativeCode,
    /// For a service shared between municipalities: which.
    #[serde(
        rename = "interMunicipalityCoverageArea",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(nullable = false)]
    pub(crate) inter_municipality_coverage_area: Option<InterMunicipalityCoverageArea>,
    /// Free text about the service.
    #[serde(rename = "serviceSpecification", default)]
    pub(crate) service_specification: Option<String>,
    /// The organisation the service belongs to.
    #[serde(rename = "parentOrganization")]
    pub(crate) parent_organization: ParentOrganization,
}

/// Criteria for services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceSearchParameters {
    /// The code list of the service type to match.
    #[serde(rename = "serviceTypeCodeListId", default)]
    pub(crate) service_type_code_list_id: Option<String>,
    /// The service type code to match.
    #[serde(rename = "serviceTypeCodeValue", default)]
    pub(crate) service_type_code_value: Option<String>,
}
