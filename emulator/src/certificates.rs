//! The parties' X.509 certificates: a signing and an encryption certificate per pair,
//! the current pair and up to two earlier ones, for every organisation and service
//! (persons have none: their messages go through their organisation).
//!
//! Real certificates, DER-encoded, that standard tools read (`openssl x509 -inform der`):
//! self-signed, with an EC P-256 key made for each when it is first asked for and kept
//! for the emulator's life. Everything but the key and the signature follows from the
//! HER-id, the same on every run: the subject (the party's name, its organisation's
//! name and organisation number), the serial number, the validity (three years, the
//! pairs one after another) and the key usage (digital signature and non-repudiation
//! for signing; key agreement and data encipherment for encryption). The thumbprint is
//! the SHA-1 of the DER in upper-case hexadecimal, as .NET writes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use chrono::{DateTime, NaiveDate, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, KeyUsagePurpose};

use super::cpapi::{Certificate, CertificateMetadata, CertificatePairInfo, Use};
use super::cpe::CommunicationParty;
use super::dotnet::write_dotnet;
use super::register::mix64;

/// One certificate, made.
#[derive(Debug)]
pub(crate) struct Made {
    der: Vec<u8>,
    thumbprint: String,
    valid_from: DateTime<Utc>,
    valid_to: DateTime<Utc>,
}

impl Made {
    /// The certificate with its DER.
    pub(crate) fn certificate(&self) -> Certificate {
        Certificate {
            thumbprint: Some(self.thumbprint.clone()),
            valid_from: Some(write_dotnet(self.valid_from, true)),
            valid_to: Some(write_dotnet(self.valid_to, true)),
            certificate_value: Some(base64_standard(&self.der)),
        }
    }

    /// What identifies it.
    pub(crate) fn metadata(&self) -> CertificateMetadata {
        CertificateMetadata {
            thumbprint: Some(self.thumbprint.clone()),
            valid_from: Some(write_dotnet(self.valid_from, true)),
            valid_to: Some(write_dotnet(self.valid_to, true)),
        }
    }
}

fn base64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The certificates made so far: by HER-id, pair (0 for the current one) and use.
#[derive(Debug, Default)]
pub(crate) struct Certificates {
    made: Mutex<HashMap<(i32, u8, bool), Arc<Made>>>,
}

/// Whether a party has certificates.
fn has_certificates(party: &CommunicationParty) -> bool {
    party.kind != Some("Person")
}

/// How many earlier pairs a party has: 0 to 2, from its HER-id.
fn historic_pairs(her_id: i32) -> u8 {
    u8::try_from(mix64(u64::from(her_id.unsigned_abs()) ^ 0x6365_7274) % 3).unwrap_or(0)
}

impl Certificates {
    /// The party's pairs: the current one, then with `historic` the earlier ones, newest
    /// first. None for a person.
    pub(crate) fn pairs(
        &self,
        party: &CommunicationParty,
        organisation: &CommunicationParty,
        historic: bool,
    ) -> Vec<CertificatePairInfo> {
        if !has_certificates(party) {
            return Vec::new();
        }
        let last = if historic {
            historic_pairs(party.her_id)
        } else {
            0
        };
        (0..=last)
            .filter_map(|pair| {
                let signing = self.get(party, organisation, pair, Use::Signing)?;
                let encryption = self.get(party, organisation, pair, Use::Encryption)?;
                Some(CertificatePairInfo {
                    is_current: Some(pair == 0),
                    signing_certificate: Some(signing.metadata()),
                    encryption_certificate: Some(encryption.metadata()),
                })
            })
            .collect()
    }

    /// The party's current certificate for `usage`; none for a person.
    pub(crate) fn current(
        &self,
        party: &CommunicationParty,
        organisation: &CommunicationParty,
        usage: Use,
    ) -> Option<Arc<Made>> {
        if !has_certificates(party) {
            return None;
        }
        self.get(party, organisation, 0, usage)
    }

    /// The certificate of `party` for `usage` in pair `pair`, made on first use.
    fn get(
        &self,
        party: &CommunicationParty,
        organisation: &CommunicationParty,
        pair: u8,
        usage: Use,
    ) -> Option<Arc<Made>> {
        let key = (party.her_id, pair, usage == Use::Signing);
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = made.get(&key) {
            return Some(Arc::clone(found));
        }
        let certificate = Arc::new(make(party, organisation, pair, usage)?);
        made.insert(key, Arc::clone(&certificate));
        Some(certificate)
    }
}

/// Makes a certificate; `None` if rcgen refuses (it does not, for these parameters).
fn make(
    party: &CommunicationParty,
    organisation: &CommunicationParty,
    pair: u8,
    usage: Use,
) -> Option<Made> {
    let her_id = party.her_id;
    // The current pair began in 2024 or 2025; each earlier one three years before.
    let offset = mix64(u64::from(her_id.unsigned_abs())) % 600;
    let start = NaiveDate::from_ymd_opt(2024, 1, 1)? + chrono::Days::new(offset)
        - chrono::Months::new(36 * u32::from(pair));
    let end = start + chrono::Months::new(36);
    let date = |d: NaiveDate| {
        use chrono::Datelike;
        Some(rcgen::date_time_ymd(
            d.year(),
            u8::try_from(d.month()).ok()?,
            u8::try_from(d.day()).ok()?,
        ))
    };
    let mut params = CertificateParams::default();
    params.not_before = date(start)?;
    params.not_after = date(end)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "NO");
    name.push(DnType::OrganizationName, organisation.name.clone());
    if let Some(number) = organisation.organization_number {
        name.push(
            DnType::CustomDnType(vec![2, 5, 4, 5]),
            format!("{number:09}"),
        );
    }
    name.push(DnType::CommonName, party.name.clone());
    params.distinguished_name = name;
    let serial = (u64::from(her_id.unsigned_abs()) << 8)
        | u64::from(pair) << 1
        | u64::from(usage == Use::Signing);
    params.serial_number = Some(serial.into());
    params.key_usages = match usage {
        Use::Signing => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ],
        Use::Encryption => vec![
            KeyUsagePurpose::KeyAgreement,
            KeyUsagePurpose::DataEncipherment,
        ],
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).ok()?;
    let certificate = params.self_signed(&key).ok()?;
    let der = certificate.der().to_vec();
    let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    Some(Made {
        der,
        thumbprint,
        valid_from: midnight(start)?,
        valid_to: midnight(end)?,
    })
}
