//! The claims of a verified HelseID access token, typed.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::answer::{Refusal, Scheme};

/// HelseID's claim names.
pub mod names {
    /// The client's name.
    pub const CLIENT_NAME: &str = "helseid://claims/client/client_name";
    /// The client's tenancy: `multi`, `single`, or absent (single).
    pub const CLIENT_TENANCY: &str = "helseid://claims/client/client_tenancy";
    /// The legal entity the client acts for.
    pub const ORGNR_PARENT: &str = "helseid://claims/client/claims/orgnr_parent";
    /// The sub-unit the client says it acts for: HelseID checks it against nothing.
    pub const ORGNR_CHILD: &str = "helseid://claims/client/claims/orgnr_child";
    /// The vendor that owns the client.
    pub const ORGNR_SUPPLIER: &str = "helseid://claims/client/claims/orgnr_supplier";
    /// The person's national identity number (personal data).
    pub const PID: &str = "helseid://claims/identity/pid";
    /// A pseudonym of the national identity number.
    pub const PID_PSEUDONYM: &str = "helseid://claims/identity/pid_pseudonym";
    /// The login's security level (`"2"`, `"3"`, `"4"`).
    pub const SECURITY_LEVEL: &str = "helseid://claims/identity/security_level";
    /// The login's assurance level (`low`, `substantial`, `high`).
    pub const ASSURANCE_LEVEL: &str = "helseid://claims/identity/assurance_level";
    /// The health-personnel number.
    pub const HPR_NUMBER: &str = "helseid://claims/hpr/hpr_number";
    /// SFM's instance id (single-tenant).
    pub const SFM_ID: &str = "e-helse:sfm.api/client/claims/sfm-id";
    /// SFM's journal id (multi-tenant).
    pub const JOURNAL_ID: &str = "nhn:sfm:journal-id";
}

/// A national identity number. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pid(String);

impl Pid {
    /// The number itself.
    ///
    /// # Security
    /// Personal data: never log it, and keep it out of errors and metrics.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pid([redacted])")
    }
}

/// The actor of an exchanged token (RFC 8693 `act`), and the actor before it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Actor {
    /// The actor's `client_id`, when the claim has one.
    pub client_id: Option<String>,
    /// The actor's `sub`, when the claim has one.
    pub sub: Option<String>,
    /// The actor's own `act`: who acted before it.
    pub act: Option<Box<Actor>>,
    /// The claim as it is.
    pub raw: Map<String, Value>,
}

impl Actor {
    fn from_value(value: &Value, depth: usize) -> Option<Self> {
        let object = value.as_object()?;
        Some(Actor {
            client_id: string(object, "client_id"),
            sub: string(object, "sub"),
            act: if depth < 16 {
                object
                    .get("act")
                    .and_then(|a| Actor::from_value(a, depth + 1))
                    .map(Box::new)
            } else {
                None
            },
            raw: object.clone(),
        })
    }
}

/// The claims of a verified HelseID access token, as the layer puts them into the
/// request's extensions (`Extension<Arc<HelseIdClaims>>` in axum,
/// `request.extensions().get::<Arc<HelseIdClaims>>()` in hyper).
///
/// `Debug` never shows the national identity number ([`Pid`]) or the raw claims.
///
/// A note on organisation numbers: HelseID checks `orgnr_parent` (for a multi-tenant
/// client, against a delegation in Altinn) but checks
/// [`orgnr_child`](Self::orgnr_child) against nothing: the client writes what it
/// likes. An API must not grant anything on `orgnr_child` alone.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct HelseIdClaims {
    /// `iss`.
    pub issuer: String,
    /// `aud`, as a list (a single string becomes one element).
    pub audience: Vec<String>,
    /// `scope`, as a list (from a JSON array or a space-separated string).
    pub scopes: Vec<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `helseid://claims/client/client_name`.
    pub client_name: Option<String>,
    /// `client_amr`: how the client authenticated (`private_key_jwt`).
    pub client_amr: Option<String>,
    /// `helseid://claims/client/client_tenancy`: `multi`, `single`, or `None` (single).
    pub tenancy: Option<String>,
    /// `helseid://claims/client/claims/orgnr_parent`: the legal entity.
    pub orgnr_parent: Option<String>,
    /// `helseid://claims/client/claims/orgnr_child`: the sub-unit. **Checked by
    /// nobody**: HelseID takes it from the client as it is.
    pub orgnr_child: Option<String>,
    /// `helseid://claims/client/claims/orgnr_supplier`: the vendor owning the client.
    pub orgnr_supplier: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `helseid://claims/identity/pid`: the person's national identity number.
    pub pid: Option<Pid>,
    /// `helseid://claims/identity/pid_pseudonym`.
    pub pid_pseudonym: Option<String>,
    /// `helseid://claims/hpr/hpr_number`: the health-personnel number.
    pub hpr_number: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `helseid://claims/identity/security_level`, from `"4"` or `4`.
    pub security_level: Option<u8>,
    /// `helseid://claims/identity/assurance_level`: `low`, `substantial`, `high`.
    pub assurance_level: Option<String>,
    /// `cnf.jkt`: the thumbprint of the key the token is bound to (DPoP).
    pub jkt: Option<String>,
    /// `act`: the actor chain of an exchanged token.
    pub act: Option<Actor>,
    /// `e-helse:sfm.api/client/claims/sfm-id`.
    pub sfm_id: Option<String>,
    /// `nhn:sfm:journal-id`.
    pub journal_id: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// `iat`, when present.
    pub iat: Option<u64>,
    /// `jti`, when present.
    pub jti: Option<String>,
    raw: Arc<Map<String, Value>>,
}

impl fmt::Debug for HelseIdClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelseIdClaims")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("scopes", &self.scopes)
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("tenancy", &self.tenancy)
            .field("orgnr_parent", &self.orgnr_parent)
            .field("orgnr_child", &self.orgnr_child)
            .field("has_person", &self.pid.is_some())
            .field("hpr_number", &self.hpr_number)
            .field("security_level", &self.security_level)
            .field("assurance_level", &self.assurance_level)
            .field("jkt", &self.jkt)
            .field("act", &self.act.as_ref().map(|a| &a.client_id))
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

fn string(object: &Map<String, Value>, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// A NumericDate as whole seconds (a fraction is cut; a negative or non-number is
/// `None`).
pub(crate) fn seconds(value: &Value) -> Option<u64> {
    if let Some(s) = value.as_u64() {
        return Some(s);
    }
    value
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| f.min(u64::MAX as f64) as u64)
}

/// `scope` as a list: a JSON array of strings, or a space-separated string.
pub(crate) fn scopes(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None => Some(Vec::new()),
        Some(Value::String(s)) => Some(
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

/// `aud` as a list: a string, or an array of strings.
pub(crate) fn audience(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// A claim that must be a string when present: `Err` for another type.
fn optional_string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ()> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

impl HelseIdClaims {
    /// Types the claims of a token whose signature and rules were checked. `Err` when
    /// a claim has the wrong JSON type.
    pub(crate) fn from_payload(
        payload: Map<String, Value>,
        exp: u64,
        audience: Vec<String>,
        scopes: Vec<String>,
    ) -> Result<Self, ()> {
        let s = |name: &str| optional_string(&payload, name);
        let security_level = match payload.get(names::SECURITY_LEVEL) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim().parse::<u8>().map_err(|_| ())?),
            Some(Value::Number(n)) => {
                Some(n.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or(())?)
            }
            Some(_) => return Err(()),
        };
        let jkt = match payload.get("cnf") {
            None => None,
            Some(Value::Object(cnf)) => Some(string(cnf, "jkt").ok_or(())?),
            Some(_) => return Err(()),
        };
        let act = match payload.get("act") {
            None => None,
            Some(value) => Some(Actor::from_value(value, 0).ok_or(())?),
        };
        Ok(HelseIdClaims {
            issuer: s("iss")?.unwrap_or_default(),
            audience,
            scopes,
            client_id: s("client_id")?,
            client_name: s(names::CLIENT_NAME)?,
            client_amr: s("client_amr")?,
            tenancy: s(names::CLIENT_TENANCY)?,
            orgnr_parent: s(names::ORGNR_PARENT)?,
            orgnr_child: s(names::ORGNR_CHILD)?,
            orgnr_supplier: s(names::ORGNR_SUPPLIER)?,
            sub: s("sub")?,
            pid: s(names::PID)?.map(Pid),
            pid_pseudonym: s(names::PID_PSEUDONYM)?,
            hpr_number: match payload.get(names::HPR_NUMBER) {
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => s(names::HPR_NUMBER)?,
            },
            name: s("name")?,
            security_level,
            assurance_level: s(names::ASSURANCE_LEVEL)?,
            jkt,
            act,
            sfm_id: s(names::SFM_ID)?,
            journal_id: s(names::JOURNAL_ID)?,
            exp,
            iat: payload.get("iat").and_then(seconds),
            jti: s("jti")?,
            raw: Arc::new(payload),
        })
    }

    /// Types `claims` **without verifying anything**: no signature, no issuer, no
    /// audience, no time. For tests of handlers that take claims from the extensions,
    /// and for tools that show a token.
    ///
    /// # Errors
    /// [`Reason::MalformedClaim`](super::Reason::MalformedClaim) when a claim HelseID
    /// defines has the wrong JSON type (`exp` missing counts as 0).
    pub fn unverified(claims: Map<String, Value>) -> Result<Self, super::Reason> {
        let malformed = super::Reason::MalformedClaim;
        let exp = match claims.get("exp") {
            None => 0,
            Some(v) => seconds(v).ok_or(malformed)?,
        };
        let aud = match claims.get("aud") {
            None => Vec::new(),
            some => audience(some).ok_or(malformed)?,
        };
        let scopes = scopes(claims.get("scope")).ok_or(malformed)?;
        Self::from_payload(claims, exp, aud, scopes).map_err(|()| malformed)
    }

    /// Every claim as the token carries it, HelseID's and others.
    ///
    /// # Security
    /// It holds the national identity number: never log it whole.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// Whether the token has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The scheme this token is sent with: DPoP for a bound token (`cnf.jkt`), Bearer
    /// otherwise.
    pub fn scheme(&self) -> Scheme {
        if self.jkt.is_some() {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        }
    }

    /// `Ok` when the token has `scope`; otherwise the 403 `insufficient_scope` to
    /// answer with ([`Refusal::into_response`]). For a scope one route requires.
    ///
    /// # Errors
    /// The refusal, when the scope is missing.
    pub fn require_scope(&self, scope: &str) -> Result<(), Refusal> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Refusal::insufficient_scope(self.scheme(), &[scope]))
        }
    }

    /// `Ok` when a person logged in at security level `level` or higher (PPS and SFM
    /// require 4); otherwise the 403 to answer with.
    ///
    /// # Errors
    /// The refusal, when there is no person or the level is lower.
    pub fn require_security_level(&self, level: u8) -> Result<(), Refusal> {
        let person =
            self.pid.is_some() || self.hpr_number.is_some() || self.pid_pseudonym.is_some();
        if person && self.security_level.is_some_and(|l| l >= level) {
            Ok(())
        } else {
            Err(Refusal::security_level(self.scheme()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(payload: Value) -> Result<HelseIdClaims, ()> {
        let Value::Object(map) = payload else {
            return Err(());
        };
        HelseIdClaims::from_payload(map, 1, vec![], vec![])
    }

    #[test]
    fn security_level_from_a_string_or_a_number() {
        for level in [json!("4"), json!(4)] {
            let c = claims(json!({ names::SECURITY_LEVEL: level, names::PID: "13116900216" }))
                .expect("claims");
            assert_eq!(c.security_level, Some(4));
            assert!(c.require_security_level(4).is_ok());
            assert!(c.require_security_level(5).is_err());
        }
        for bad in [json!("high"), json!(-1), json!(300), json!([4])] {
            assert!(claims(json!({ names::SECURITY_LEVEL: bad })).is_err());
        }
        // A client without a person never meets a security level.
        let c = claims(json!({ names::SECURITY_LEVEL: "4" })).expect("claims");
        assert!(c.require_security_level(3).is_err());
    }

    #[test]
    fn the_pid_never_shows_in_debug() {
        let c = claims(json!({ names::PID: "13116900216", "act": {"client_id": "a", "act": {"client_id": "b"}} }))
            .expect("claims");
        assert_eq!(c.pid.as_ref().map(Pid::expose), Some("13116900216"));
        let shown = format!("{c:?} {:?}", c.pid);
        assert!(!shown.contains("13116900216"), "{shown}");
        let act = c.act.expect("act");
        assert_eq!(act.client_id.as_deref(), Some("a"));
        assert_eq!(act.act.and_then(|a| a.client_id).as_deref(), Some("b"));
    }

    #[test]
    fn scopes_and_audience_in_both_forms() {
        assert_eq!(
            scopes(Some(&json!("a  b"))),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            scopes(Some(&json!(["a", "b"]))),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(scopes(Some(&json!(["a", 1]))), None);
        assert_eq!(scopes(Some(&json!(5))), None);
        assert_eq!(audience(Some(&json!("x"))), Some(vec!["x".into()]));
        assert_eq!(audience(None), None);
    }
}
