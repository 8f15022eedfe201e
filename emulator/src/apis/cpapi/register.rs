//! The register as the CommunicationParty API v2 shows it: each party of the seed in
//! NHN's full model (organisation, person and service details, postal address,
//! electronic addresses, AMQP status and queues, certificates), and the older model of
//! `/legacy`. What the seed does not hold is made up from the party's HER-id, so it is
//! the same on every run.

use chrono::{DateTime, Utc};

use crate::apis::cpapi::certificates::Certificates;
use crate::apis::cpapi::certificates::Use;
use crate::apis::cpapi::model::{
    AdministrativeCode, AmqpAddress, AmqpTransportStatus, Code, CommunicationParty as Party,
    CommunicationPartyExport, CommunicationPartyLegacy, CommunicationPartyType,
    CommunicationPartyTypeLegacy, CoverageInfo, ElectronicAddress, HprInformation,
    InterMunicipalityCoverageArea, OrganizationDetails, ParentOrganization, Period, Person,
    PersonDetails, PhysicalAddress, PostalAddress, SearchParameters, ServiceDetails,
};
use crate::apis::cpe::model::CommunicationParty;
use crate::apis::register::dotnet::{parse_dotnet, write_dotnet};
use crate::apis::register::seed::MUNICIPALITIES;
use crate::apis::register::{Register, mix64};

/// The code list of business types the emulator uses (made up, in the shape of
/// NHN's code lists).
const BUSINESS_TYPES: &str = "2.16.578.1.12.4.1.1.9040";

/// The code list of service types the emulator uses (made up likewise).
const SERVICE_TYPES: &str = "2.16.578.1.12.4.1.1.8655";

/// The code list of electronic address types of the older model.
const ADDRESS_TYPES: &str = "9044";

/// A number from the HER-id and a salt, the same on every run.
fn hashed(her_id: i32, salt: u64) -> u64 {
    mix64(u64::from(her_id.unsigned_abs()) ^ salt)
}

/// The name of the municipality with this number.
fn municipality_name(number: &str) -> &'static str {
    MUNICIPALITIES
        .iter()
        .find(|(n, _)| *n == number)
        .map_or("Oslo", |(_, name)| name)
}

/// A date-time the v2 way: always with its offset.
fn with_offset(written: &str) -> String {
    parse_dotnet(written).map_or_else(|_| written.to_owned(), |at| write_dotnet(at, true))
}

fn kind(party: &CommunicationParty) -> CommunicationPartyType {
    match party.kind {
        Some("Person") => CommunicationPartyType::Person,
        Some("Service") => CommunicationPartyType::Service,
        _ => CommunicationPartyType::Organization,
    }
}

/// The business type of an organisation, from its name.
fn business_type(name: &str) -> (&'static str, &'static str) {
    let lower = name.to_lowercase();
    if lower.ends_with(" hf") {
        ("1", "Helseforetak")
    } else if lower.contains("kommune") {
        ("2", "Kommune")
    } else if lower.contains("apotek") {
        ("6", "Apotek")
    } else if lower.contains("laborator") {
        ("7", "Laboratorium")
    } else if lower.contains("tann") {
        ("5", "Tannlegekontor")
    } else if lower.contains("fysio") {
        ("8", "Fysioterapiinstitutt")
    } else {
        ("3", "Legekontor")
    }
}

fn administrative_code(list: &str, value: &str, name: &str) -> AdministrativeCode {
    AdministrativeCode {
        code_list_id: Some(list.to_owned()),
        value: Some(value.to_owned()),
        name: Some(name.to_owned()),
        url: Some(format!("https://volven.no/produkt.asp?id={list}")),
    }
}

fn code(list: &str, value: &str, text: &str) -> Code {
    Code {
        oid: list.parse().ok(),
        simple_type: Some(list.to_owned()),
        code_value: Some(value.to_owned()),
        code_text: Some(text.to_owned()),
        active: Some(true),
        long_description: None,
    }
}

impl Register {
    fn party_index(&self, her_id: i32) -> Option<(usize, &CommunicationParty)> {
        self.all()
            .iter()
            .enumerate()
            .find(|(_, party)| party.her_id == her_id)
    }

    /// The organisation a party belongs to (itself for an organisation).
    pub(crate) fn organisation_of<'a>(
        &'a self,
        party: &'a CommunicationParty,
    ) -> &'a CommunicationParty {
        party
            .parent_her_id
            .and_then(|parent| self.party(parent))
            .unwrap_or(party)
    }

    /// The HER-ids of the parties of `kind` under the organisation `her_id`.
    fn children(&self, her_id: i32, kind: &str) -> Vec<i32> {
        self.all()
            .iter()
            .filter(|p| p.parent_her_id == Some(her_id) && p.kind == Some(kind))
            .map(|p| p.her_id)
            .collect()
    }

    fn parent_organization(&self, party: &CommunicationParty) -> ParentOrganization {
        let org = self.organisation_of(party);
        ParentOrganization {
            name: Some(org.name.clone()),
            her_id: org.her_id,
            organization_number: org.organization_number.map(|n| format!("{n:09}")),
        }
    }

    /// The party with this HER-id as the CommunicationParty API v2 shows it.
    pub(crate) fn party_v2(&self, her_id: i32, certificates: &Certificates) -> Option<Party> {
        let party = self.party(her_id)?;
        Some(self.v2(party, certificates))
    }

    /// `party` in NHN's full model.
    pub(crate) fn v2(&self, party: &CommunicationParty, certificates: &Certificates) -> Party {
        let her_id = party.her_id;
        let kind = kind(party);
        let org = self.organisation_of(party);
        let display_name = match &party.parent_name {
            Some(parent) => format!("{}, {parent}", party.name),
            None => party.name.clone(),
        };
        let municipality = org.municipality.as_deref().unwrap_or("0301");
        let city = municipality_name(municipality);
        let n = hashed(her_id, 0x6164_6472);
        let organization_details = (kind == CommunicationPartyType::Organization).then(|| {
            let (value, name) = business_type(&party.name);
            OrganizationDetails {
                organization_number: party.organization_number.map(|n| format!("{n:09}")),
                business_type: administrative_code(BUSINESS_TYPES, value, name),
                persons: Some(self.children(her_id, "Person")),
                services: Some(self.children(her_id, "Service")),
            }
        });
        let person_details = (kind == CommunicationPartyType::Person).then(|| PersonDetails {
            hpr_number: self.hpr_number(her_id),
            parent_organization: self.parent_organization(party),
        });
        let service_details = (kind == CommunicationPartyType::Service).then(|| ServiceDetails {
            service_type: administrative_code(
                SERVICE_TYPES,
                &format!("{}", 100 + n % 60),
                &party.name,
            ),
            inter_municipality_coverage_area: n.is_multiple_of(5).then(|| {
                InterMunicipalityCoverageArea {
                    municipality_her_ids: Some(vec![org.her_id]),
                }
            }),
            service_specification: n
                .is_multiple_of(3)
                .then(|| format!("{} i {city}", party.name)),
            parent_organization: self.parent_organization(party),
        });
        // Persons take their messages through their organisation.
        let own_transport = kind != CommunicationPartyType::Person;
        let amqp_transport_status = match (own_transport, n % 7) {
            (false, _) => AmqpTransportStatus::Inherited,
            (true, 0) => AmqpTransportStatus::Disabled,
            _ => AmqpTransportStatus::Enabled,
        };
        let amqp_address =
            (amqp_transport_status == AmqpTransportStatus::Enabled).then(|| AmqpAddress {
                amqp_sync_queue: Some(format!("{her_id}_sync")),
                amqp_sync_reply_queue: Some(format!("{her_id}_syncreply")),
                amqp_async_queue: Some(format!("{her_id}_async")),
                amqp_error_queue: Some(format!("{her_id}_error")),
            });
        let current = |usage| {
            certificates
                .current(party, org, usage)
                .map(|made| made.metadata())
        };
        Party {
            her_id,
            name: Some(party.name.clone()),
            display_name: Some(display_name),
            kind,
            organization_details,
            person_details,
            service_details,
            current_signing_certificate: current(Use::Signing),
            current_encryption_certificate: current(Use::Encryption),
            email: own_transport.then(|| format!("post{her_id}@helse.example.no")),
            homepage_url: (kind == CommunicationPartyType::Organization)
                .then(|| format!("https://{her_id}.helse.example.no")),
            phone_number: Some(format!("{}", 20_000_000 + n % 80_000_000)),
            fax_number: (n % 4 == 1).then(|| format!("{}", 20_000_000 + (n >> 8) % 80_000_000)),
            edi_address: own_transport.then(|| format!("{her_id}@edi.nhn.no")),
            fhir_address: (own_transport && n % 3 == 1)
                .then(|| format!("https://fhir.helse.example.no/{her_id}")),
            postal_address: Some(PostalAddress {
                address: Some(format!("Storgata {}", 1 + n % 120)),
                postal_box: n
                    .is_multiple_of(2)
                    .then(|| format!("Postboks {}", 1 + (n >> 4) % 900)),
                postal_code: Some(format!("{:04}", 1 + (n >> 12) % 9_990)),
                city: Some(city.to_uppercase()),
            }),
            amqp_transport_status,
            amqp_address,
            valid_from: Some(with_offset(&party.valid.from)),
            valid_to: party.valid.to.as_deref().map(with_offset),
        }
    }

    /// A person's HPR number: seven or eight digits, from the HER-id.
    fn hpr_number(&self, her_id: i32) -> i32 {
        i32::try_from(1_000_000 + hashed(her_id, 0x0068_7072) % 9_000_000).unwrap_or(1_000_000)
    }

    /// The party with this HER-id in the older model of `/legacy`.
    pub(crate) fn party_legacy(
        &self,
        her_id: i32,
        certificates: &Certificates,
    ) -> Option<CommunicationPartyLegacy> {
        let (index, party) = self.party_index(her_id)?;
        let v2 = self.v2(party, certificates);
        let org = self.organisation_of(party);
        let parent = party.parent_her_id.and_then(|p| self.party(p));
        let municipality = org.municipality.as_deref().unwrap_or("0301");
        let (business_value, business_name) = business_type(&org.name);
        let business = code("9040", business_value, business_name);
        let postal = v2.postal_address.clone();
        let physical = PhysicalAddress {
            last_changed: v2.valid_from.clone(),
            kind: Some(code("3401", "PST", "Postadresse")),
            type_code_value: Some("PST".to_owned()),
            postbox: postal.as_ref().and_then(|a| a.postal_box.clone()),
            street_address: postal.as_ref().and_then(|a| a.address.clone()),
            postal_code: postal
                .as_ref()
                .and_then(|a| a.postal_code.as_deref())
                .and_then(|c| c.parse().ok()),
            city: postal.as_ref().and_then(|a| a.city.clone()),
            description: None,
            inherited: Some(party.parent_her_id.is_some()),
            country: Some(code("9043", "NO", "Norge")),
        };
        let electronic = |value: &Option<String>, code_value: &str, text: &str| {
            value.as_ref().map(|address| ElectronicAddress {
                last_changed: v2.valid_from.clone(),
                type_code_value: Some(code_value.to_owned()),
                kind: Some(code(ADDRESS_TYPES, code_value, text)),
                address: address.clone(),
                inherited: Some(false),
            })
        };
        let electronic_addresses: Vec<ElectronicAddress> = [
            electronic(&v2.edi_address, "E_EDI", "EDI"),
            electronic(&v2.email, "E_EPOST", "E-post"),
            electronic(&v2.phone_number, "E_TLF", "Telefon"),
            electronic(&v2.homepage_url, "E_URL", "Hjemmeside"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let person = v2.person_details.as_ref().map(|details| Person {
            hpr_information: Some(HprInformation {
                hpr_number: Some(details.hpr_number),
            }),
        });
        Some(CommunicationPartyLegacy {
            last_changed: v2.valid_from.clone(),
            her_id: Some(her_id),
            kind: Some(match v2.kind {
                CommunicationPartyType::Organization => CommunicationPartyTypeLegacy::Organization,
                CommunicationPartyType::Person => CommunicationPartyTypeLegacy::Person,
                CommunicationPartyType::Service => CommunicationPartyTypeLegacy::Service,
            }),
            name: v2.name.clone(),
            display_name: v2.display_name.clone(),
            parent_her_id: parent.map(|p| p.her_id),
            parent_name: parent.map(|p| p.name.clone()),
            parent_organization_number: parent.and_then(|p| p.organization_number),
            parent_business_type: parent.map(|_| business.clone()),
            physical_addresses: Some(vec![physical]),
            electronic_addresses: Some(electronic_addresses),
            future_electronic_addresses: Some(Vec::new()),
            municipality: Some(code("3402", municipality, municipality_name(municipality))),
            valid: Some(Period {
                from: v2.valid_from.clone(),
                to: v2.valid_to.clone(),
            }),
            is_valid_communication_party: Some(v2.edi_address.is_some()),
            coverage_area_type: None,
            organization_number: party.organization_number,
            industry_codes: Some(vec![code("7040", "86.211", "Allmenn legetjeneste")]),
            business_type: Some(business.clone()),
            properties: Some(Vec::new()),
            code: None,
            location_description: None,
            coverage_areas: (index % 5 == 0).then(|| {
                vec![CoverageInfo {
                    organization_number: org.organization_number,
                    her_id: Some(org.her_id),
                    name: Some(org.name.clone()),
                    display_name: Some(org.name.clone()),
                }]
            }),
            description: None,
            person,
            title: None,
        })
    }

    /// The organisation with this organisation number.
    pub(crate) fn organization_v2(
        &self,
        number: &str,
        certificates: &Certificates,
    ) -> Option<Party> {
        let number: i32 = number.parse().ok()?;
        let party = self
            .all()
            .iter()
            .find(|p| p.kind == Some("Organization") && p.organization_number == Some(number))?;
        Some(self.v2(party, certificates))
    }

    /// Page `page` (from 1) of `size` of the parties that match `criteria`, by HER-id.
    pub(crate) fn search_v2(
        &self,
        criteria: &SearchParameters,
        page: i32,
        size: i32,
        certificates: &Certificates,
    ) -> Vec<Party> {
        let name = criteria.name.as_deref().map(str::to_lowercase);
        let mut matches: Vec<Party> = self
            .all()
            .iter()
            .filter(|p| {
                name.as_deref()
                    .is_none_or(|name| p.name.to_lowercase().contains(name))
            })
            .map(|p| self.v2(p, certificates))
            .filter(|p| matches(p, criteria))
            .collect();
        matches.sort_by_key(|p| p.her_id);
        let size = usize::try_from(size).unwrap_or(1);
        let skip = usize::try_from(page.saturating_sub(1))
            .unwrap_or_default()
            .saturating_mul(size);
        matches.into_iter().skip(skip).take(size).collect()
    }

    /// The CommunicationParty API v2's export: the HER-ids of the parties active at
    /// `now` (valid without end, or until a later time), or of all of them.
    pub(crate) fn export_v2(
        &self,
        include_deactivated: bool,
        now: DateTime<Utc>,
    ) -> CommunicationPartyExport {
        let active = |party: &&CommunicationParty| match &party.valid.to {
            None => true,
            Some(to) => parse_dotnet(to).is_ok_and(|to| to > now),
        };
        let her_ids: Vec<i32> = self
            .all()
            .iter()
            .filter(|party| include_deactivated || active(party))
            .map(|party| party.her_id)
            .collect();
        CommunicationPartyExport {
            last_sequence_number: Some(self.last_sequence_number()),
            count: Some(i32::try_from(her_ids.len()).unwrap_or(i32::MAX)),
            communication_parties: Some(her_ids),
        }
    }
}

/// Whether a party matches the criteria of a search beyond its name.
fn matches(party: &Party, criteria: &SearchParameters) -> bool {
    if let Some(org) = &criteria.organization_search_parameters {
        let Some(details) = &party.organization_details else {
            return false;
        };
        let code = &details.business_type;
        if org.business_type_code_list_id.is_some()
            && org.business_type_code_list_id != code.code_list_id
        {
            return false;
        }
        if org.business_type_code_value.is_some() && org.business_type_code_value != code.value {
            return false;
        }
    }
    if let Some(person) = &criteria.person_search_parameters {
        let Some(details) = &party.person_details else {
            return false;
        };
        if person.hpr_number.is_some_and(|n| n != details.hpr_number) {
            return false;
        }
    }
    if let Some(service) = &criteria.service_search_parameters {
        let Some(details) = &party.service_details else {
            return false;
        };
        let code = &details.service_type;
        if service.service_type_code_list_id.is_some()
            && service.service_type_code_list_id != code.code_list_id
        {
            return false;
        }
        if service.service_type_code_value.is_some()
            && service.service_type_code_value != code.value
        {
            return false;
        }
    }
    true
}
