//! Client assertions (RFC 7523 `private_key_jwt`) as HelseID wants them.
//!
//! A client assertion is a JWT the client signs with its private key to authenticate at
//! the token endpoint. HelseID's rules: header `typ: client-authentication+jwt`;
//! `iss` = `sub` = the client id; `aud` = the issuer (not the token endpoint);
//! numeric `iat`, `nbf`, `exp` with `exp` at most 60 s after `iat`; a fresh `jti`, since
//! each assertion is accepted once. A client acting for an organisation adds an
//! `assertion_details` claim naming it ([`Tenant`]).
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use helseid::assertion::{ClientAssertion, Tenant};
//! use helseid::key::{Algorithm, PrivateJwk, SigningKey};
//!
//! # fn main() -> Result<(), helseid::Error> {
//! let key = Arc::new(SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256)?)?);
//! let assertions = ClientAssertion::new("my-client", "https://helseid-sts.test.nhn.no", key);
//! let tenant: Tenant = "999999999:888888888".parse()?;
//! let first = assertions.sign(Some(&tenant))?;
//! let second = assertions.sign(Some(&tenant))?;
//! assert_ne!(first.jti(), second.jti());
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::jose::b64;
use crate::key::SigningKey;

/// The `typ` header of a HelseID client assertion.
pub const ASSERTION_TYP: &str = "client-authentication+jwt";
/// The `client_assertion_type` form value for JWT client assertions (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest assertion lifetime HelseID accepts.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// The assertion lifetime used unless configured otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(10);

/// The identifier system for organisation numbers of multi-tenant clients.
pub const MULTI_TENANT_SYSTEM: &str = "urn:oid:1.0.6523";
/// The identifier system for organisation numbers of single-tenant clients.
pub const SINGLE_TENANT_SYSTEM: &str = "urn:oid:2.16.578.1.12.4.1.4.101";

/// A Norwegian organisation number: nine digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgNumber([u8; 9]);

impl OrgNumber {
    /// The nine ASCII digits.
    pub(crate) fn digits(&self) -> &[u8; 9] {
        &self.0
    }

    /// The nine digits as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for OrgNumber {
    type Err = Error;

    /// Parses nine digits.
    ///
    /// # Errors
    /// [`Error::Config`] naming `orgnr` when the text is not exactly nine ASCII digits.
    fn from_str(s: &str) -> Result<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(Error::config(
                "orgnr",
                format!("`{s}` is not an organisation number (nine digits)"),
            ));
        }
        let mut digits = [0; 9];
        digits.copy_from_slice(bytes);
        Ok(OrgNumber(digits))
    }
}

impl fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgNumber({})", self.as_str())
    }
}

/// The organisation a client acts for, sent as `assertion_details` in the client
/// assertion. A token belongs to its tenant: tokens are cached per tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tenant {
    /// A multi-tenant client (an EPJ vendor's system serving many organisations) acting
    /// for `parent`, optionally for one of its sub-units `child`.
    Multi {
        /// The legal entity.
        parent: OrgNumber,
        /// A sub-unit of the legal entity.
        child: Option<OrgNumber>,
    },
    /// A single-tenant client (registered to one organisation) naming one of its
    /// sub-units. The parent comes from the client's registration.
    Single {
        /// The sub-unit.
        child: OrgNumber,
    },
}

impl Tenant {
    /// The parent organisation, for a multi-tenant client.
    pub fn parent(&self) -> Option<OrgNumber> {
        match self {
            Tenant::Multi { parent, .. } => Some(*parent),
            Tenant::Single { .. } => None,
        }
    }

    /// The child organisation (sub-unit), when there is one.
    pub fn child(&self) -> Option<OrgNumber> {
        match self {
            Tenant::Multi { child, .. } => *child,
            Tenant::Single { child } => Some(*child),
        }
    }

    /// The `assertion_details` claim for this tenant.
    pub fn assertion_details(&self) -> serde_json::Value {
        let (system, value) = match self {
            Tenant::Multi {
                parent,
                child: None,
            } => (MULTI_TENANT_SYSTEM, format!("NO:ORGNR:{parent}")),
            Tenant::Multi {
                parent,
                child: Some(child),
            } => (MULTI_TENANT_SYSTEM, format!("NO:ORGNR:{parent}:{child}")),
            Tenant::Single { child } => (SINGLE_TENANT_SYSTEM, child.to_string()),
        };
        serde_json::json!({
            "type": "helseid_authorization",
            "practitioner_role": {
                "organization": {
                    "identifier": { "system": system, "type": "ENH", "value": value }
                }
            }
        })
    }
}

/// An SFM journal id: the `nhn:sfm:journal-id` detail a client assertion carries
/// beside (or instead of) the tenant, for a call in the context of one patient journal
/// (`{"type": "nhn:sfm:journal-id", "value": {"journal_id": "<id>"}}`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JournalId(Arc<str>);

/// The longest journal id accepted.
const MAX_JOURNAL_ID: usize = 256;

impl JournalId {
    /// A journal id: 1 to 256 visible characters, no white space or control characters.
    ///
    /// # Errors
    /// [`Error::Config`] naming `journalId` otherwise.
    pub fn new(id: impl AsRef<str>) -> Result<Self> {
        let id = id.as_ref();
        if id.is_empty() || id.chars().count() > MAX_JOURNAL_ID {
            return Err(Error::config(
                "journalId",
                format!("must be 1 to {MAX_JOURNAL_ID} characters"),
            ));
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::config(
                "journalId",
                format!("`{id}` holds white space or control characters"),
            ));
        }
        Ok(JournalId(id.into()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its `assertion_details` entry.
    pub fn assertion_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "type": JOURNAL_ID_TYPE,
            "value": { "journal_id": &*self.0 },
        })
    }
}

impl FromStr for JournalId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// The `type` of the SFM journal id detail.
pub const JOURNAL_ID_TYPE: &str = "nhn:sfm:journal-id";

/// The `assertion_details` claim for these details: none, the one object, or an array
/// when there is more than one (as HelseID reads it).
fn assertion_details(
    tenant: Option<&Tenant>,
    journal: Option<&JournalId>,
) -> Option<serde_json::Value> {
    let mut details: Vec<serde_json::Value> = tenant
        .map(Tenant::assertion_details)
        .into_iter()
        .chain(journal.map(JournalId::assertion_detail))
        .collect();
    match details.len() {
        0 => None,
        1 => details.pop(),
        _ => Some(serde_json::Value::Array(details)),
    }
}

impl FromStr for Tenant {
    type Err = Error;

    /// Parses `PARENT` or `PARENT:CHILD` (multi-tenant), as the command line takes it.
    ///
    /// # Errors
    /// [`Error::Config`] naming `orgnr` when a part is not nine digits.
    fn from_str(s: &str) -> Result<Self> {
        let (parent, child) = match s.split_once(':') {
            Some((parent, child)) => (parent, Some(child.parse()?)),
            None => (s, None),
        };
        Ok(Tenant::Multi {
            parent: parent.parse()?,
            child,
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    assertion_details: Option<serde_json::Value>,
}

/// Signs client assertions for one client and one issuer.
///
/// Cheap to clone; the header is encoded once.
#[derive(Clone)]
pub struct ClientAssertion {
    client_id: Arc<str>,
    audience: Arc<str>,
    key: Arc<SigningKey>,
    lifetime: Duration,
    header: Arc<str>,
    rng: SystemRandom,
}

impl fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("client_id", &self.client_id)
            .field("audience", &self.audience)
            .field("key", &self.key)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl ClientAssertion {
    /// Assertions for `client_id`, with `aud` = `issuer` (HelseID's issuer, for example
    /// `https://helseid-sts.nhn.no`, not its token endpoint), signed by `key`, valid for
    /// 10 seconds.
    pub fn new(
        client_id: impl Into<Arc<str>>,
        issuer: impl Into<Arc<str>>,
        key: Arc<SigningKey>,
    ) -> Self {
        let header = key.encoded_header(ASSERTION_TYP, false).into();
        ClientAssertion {
            client_id: client_id.into(),
            audience: issuer.into(),
            key,
            lifetime: DEFAULT_LIFETIME,
            header,
            rng: SystemRandom::new(),
        }
    }

    /// Sets how long each assertion is valid (default 10 s).
    ///
    /// # Errors
    /// [`Error::Config`] naming `assertionLifetime` for zero or more than 60 s, which
    /// HelseID refuses.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self> {
        check_lifetime(lifetime)?;
        self.lifetime = lifetime;
        Ok(self)
    }

    /// The client id (`iss` and `sub`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The audience (`aud`): the issuer.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs a new assertion, with a fresh `jti`, valid from now for the lifetime.
    ///
    /// # Errors
    /// [`Error::Sign`] if the signature fails.
    pub fn sign(&self, tenant: Option<&Tenant>) -> Result<SignedAssertion> {
        self.sign_with(tenant, None)
    }

    /// As [`sign`](Self::sign), with an SFM journal id as well: `assertion_details`
    /// becomes an array when it holds both.
    ///
    /// # Errors
    /// [`Error::Sign`] if the signature fails.
    pub fn sign_with(
        &self,
        tenant: Option<&Tenant>,
        journal: Option<&JournalId>,
    ) -> Result<SignedAssertion> {
        let mut random = [0u8; 16];
        self.rng.fill(&mut random).map_err(|_| Error::Sign {
            what: "a client assertion",
        })?;
        let jti = b64(random);
        let now = crate::jose::unix_now();
        let exp = now + self.lifetime.as_secs();
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            assertion_details: assertion_details(tenant, journal),
        };
        let jwt = self.key.sign_with_header(&self.header, &claims)?;
        Ok(SignedAssertion {
            jwt: Zeroizing::new(jwt),
            jti,
            exp,
        })
    }
}

pub(crate) fn check_lifetime(lifetime: Duration) -> Result<()> {
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(Error::config(
            "assertionLifetime",
            format!("{lifetime:?} is outside 1 s ..= 60 s, which HelseID accepts"),
        ));
    }
    Ok(())
}

/// One signed client assertion. Use it once: HelseID refuses a `jti` it has seen.
pub struct SignedAssertion {
    jwt: Zeroizing<String>,
    jti: String,
    exp: u64,
}

impl SignedAssertion {
    /// The JWT.
    ///
    /// # Security
    /// Until it expires, this authenticates as the client. Do not log it.
    pub fn as_str(&self) -> &str {
        &self.jwt
    }

    /// The assertion's unique id.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The expiry, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.exp
    }
}

impl fmt::Debug for SignedAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedAssertion")
            .field("jwt", &"[redacted]")
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64_decode;
    use crate::key::{Algorithm, PrivateJwk};

    fn claims(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let mut parts = jwt.split('.');
        let mut next = || -> serde_json::Value {
            serde_json::from_slice(&b64_decode(parts.next().expect("part")).expect("b64"))
                .expect("json")
        };
        (next(), next())
    }

    fn assertions() -> ClientAssertion {
        let mut jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
        jwk = PrivateJwk::from_json(&jwk.to_json()).expect("json");
        let key = Arc::new(SigningKey::from_jwk(&jwk).expect("key"));
        ClientAssertion::new("client-1", "https://helseid-sts.test.nhn.no", key)
    }

    #[test]
    fn claims_follow_helseid_rules() {
        let a = assertions()
            .with_lifetime(Duration::from_secs(30))
            .expect("lifetime");
        let signed = a.sign(None).expect("sign");
        let (header, claims) = claims(signed.as_str());
        assert_eq!(header["typ"], "client-authentication+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["kid"].is_string());
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://helseid-sts.test.nhn.no");
        for c in ["iat", "nbf", "exp"] {
            assert!(claims[c].is_u64(), "{c} must be a number: {}", claims[c]);
        }
        assert_eq!(
            claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
            30
        );
        assert_eq!(claims["jti"], signed.jti());
        assert!(claims.get("assertion_details").is_none());
        assert!(!format!("{signed:?}").contains(signed.as_str()));
    }

    #[test]
    fn every_assertion_has_a_new_jti() {
        let a = assertions();
        let jtis: std::collections::HashSet<String> = (0..100)
            .map(|_| a.sign(None).expect("sign").jti().to_owned())
            .collect();
        assert_eq!(jtis.len(), 100);
    }

    #[test]
    fn lifetime_bounds() {
        assert!(assertions().with_lifetime(Duration::from_secs(60)).is_ok());
        for bad in [Duration::ZERO, Duration::from_secs(61)] {
            let err = assertions().with_lifetime(bad).expect_err("out of bounds");
            assert!(err.to_string().contains("assertionLifetime"), "{err}");
        }
    }

    #[test]
    fn tenancy_claims() {
        let a = assertions();
        let multi: Tenant = "111111111:222222222".parse().expect("tenant");
        let (_, c) = claims(a.sign(Some(&multi)).expect("sign").as_str());
        let id = &c["assertion_details"]["practitioner_role"]["organization"]["identifier"];
        assert_eq!(c["assertion_details"]["type"], "helseid_authorization");
        assert_eq!(id["system"], MULTI_TENANT_SYSTEM);
        assert_eq!(id["type"], "ENH");
        assert_eq!(id["value"], "NO:ORGNR:111111111:222222222");

        let parent_only: Tenant = "111111111".parse().expect("tenant");
        let (_, c) = claims(a.sign(Some(&parent_only)).expect("sign").as_str());
        assert_eq!(
            c["assertion_details"]["practitioner_role"]["organization"]["identifier"]["value"],
            "NO:ORGNR:111111111"
        );

        let single = Tenant::Single {
            child: "333333333".parse().expect("orgnr"),
        };
        let (_, c) = claims(a.sign(Some(&single)).expect("sign").as_str());
        let id = &c["assertion_details"]["practitioner_role"]["organization"]["identifier"];
        assert_eq!(id["system"], SINGLE_TENANT_SYSTEM);
        assert_eq!(id["value"], "333333333");
    }

    #[test]
    fn bad_org_numbers_are_named() {
        for bad in [
            "12345678",
            "1234567890",
            "12345678x",
            "123456789:",
            "123456789:12",
            ":123456789",
            "",
        ] {
            let err = bad.parse::<Tenant>().expect_err(bad);
            assert!(err.to_string().contains("orgnr"), "{bad}: {err}");
        }
    }
}
