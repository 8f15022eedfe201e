//! The parties' X.509 certificates: a signing and an encryption certificate per pair,
//! the current pair and up to two earlier ones, for every organisation and service
//! (persons have none: their messages go through their organisation).
//!
//! Real certificates, DER-encoded, that standard tools read (`openssl x509 -inform der`),
//! made when first asked for and kept for the emulator's life, and the same on every
//! run, byte for byte: everything follows from the HER-id. Each has an EC P-256 key
//! whose private scalar is mixed from the HER-id, the pair and the use; the subject (the
//! party's name, its organisation's name and organisation number), the serial number,
//! the validity (three years, the pairs one after another) and the key usage (digital
//! signature and non-repudiation for signing; key agreement and data encipherment for
//! encryption). They are issued by the emulator's own certificate authority
//! (`CN=helseid emulator CA`), whose Ed25519 key comes from a fixed seed: Ed25519
//! signatures are deterministic, so the DER and its thumbprint are too. The thumbprint
//! is the SHA-1 of the DER in upper-case hexadecimal, as .NET writes it. These keys are
//! public knowledge: the certificates are for tests only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::digest;
use chrono::{DateTime, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::apis::cpapi::model::{Certificate, CertificateMetadata, CertificatePairInfo};
use crate::apis::cpe::model::CommunicationParty;
use crate::apis::register::dotnet::write_dotnet;
use crate::apis::register::mix64;

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    Signing,
    Encryption,
}

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

/// The certificates made so far: by HER-id, pair (0 for the current one) and use; and
/// the authority that issues them, made with the first.
#[derive(Default)]
pub(crate) struct Certificates {
    made: Mutex<HashMap<(i32, u8, bool), Arc<Made>>>,
    authority: OnceLock<Option<Authority>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

/// The emulator's certificate authority.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
}

/// 32 bytes mixed from `salt`.
fn bytes32(salt: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix64(salt ^ (i as u64).wrapping_mul(0x9e37_79b9)).to_be_bytes());
    }
    bytes
}

/// An Ed25519 key from a seed, as PKCS#8.
fn ed25519(seed: [u8; 32]) -> Option<KeyPair> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), &rcgen::PKCS_ED25519).ok()
}

/// An EC P-256 key with the private scalar `scalar` (below the group order: its first
/// byte is cleared of its top bit), as PKCS#8.
fn p256(mut scalar: [u8; 32]) -> Option<KeyPair> {
    scalar[0] &= 0x7f;
    let mut der = vec![
        0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25,
        0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    der.extend_from_slice(&scalar);
    KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), &rcgen::PKCS_ECDSA_P256_SHA256).ok()
}

/// The authority: `CN=helseid emulator CA`, valid 2020 to 2040.
fn authority() -> Option<Authority> {
    let mut params = CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "NO");
    name.push(DnType::OrganizationName, "helseid emulator");
    name.push(DnType::CommonName, "helseid emulator CA");
    params.distinguished_name = name;
    params.serial_number = Some(1u64.into());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = ed25519(bytes32(0x0043_412d_7365_6564))?;
    Some(Authority { params, key })
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
        let authority = self.authority.get_or_init(authority).as_ref()?;
        let certificate = Arc::new(make(authority, party, organisation, pair, usage)?);
        made.insert(key, Arc::clone(&certificate));
        Some(certificate)
    }
}

/// Makes a certificate; `None` if rcgen refuses (it does not, for these parameters).
fn make(
    authority: &Authority,
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
    let key = p256(bytes32(serial ^ 0x6b65_7973))?;
    let issuer = Issuer::from_params(&authority.params, &authority.key);
    let certificate = params.signed_by(&key, &issuer).ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::register::Register;

    #[test]
    fn certificates_are_the_same_on_every_run() {
        let register = Register::seed();
        let party = register
            .all()
            .iter()
            .find(|p| p.kind == Some("Service"))
            .expect("a service");
        let organisation = register.organisation_of(party);
        let der = |certificates: &Certificates, usage| {
            certificates
                .current(party, organisation, usage)
                .map(|made| made.der.clone())
                .expect("a certificate")
        };
        let (first, second) = (Certificates::default(), Certificates::default());
        assert_eq!(der(&first, Use::Signing), der(&second, Use::Signing));
        assert_ne!(der(&first, Use::Signing), der(&first, Use::Encryption));
        let person = register
            .all()
            .iter()
            .find(|p| p.kind == Some("Person"))
            .expect("a person");
        assert!(first.current(person, organisation, Use::Signing).is_none());
    }
}
