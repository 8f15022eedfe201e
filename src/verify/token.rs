//! The access token's checks: the JWS, the key, the signature, and every claim rule.

use std::sync::Arc;

use serde_json::Value;

use super::Settings;
use super::answer::Reason;
use super::claims::{HelseIdClaims, audience, scopes, seconds};
use super::jws::{self, JwsError};
use super::keys::Lookup;

/// A token that passed every check, as the cache keeps it.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) claims: Arc<HelseIdClaims>,
    /// The issuer's index in the settings.
    pub(crate) issuer: usize,
    pub(crate) kid: Arc<str>,
    pub(crate) nbf: Option<u64>,
}

impl Verified {
    /// Checks `exp` and `nbf` again (at a cache hit), with the leeway.
    pub(crate) fn check_times(&self, now: u64, leeway: u64) -> Result<(), Reason> {
        times(self.claims.exp, self.nbf, None, now, leeway)
    }
}

/// `exp`, `nbf` and `iat` against `now`, with `leeway` seconds either way.
fn times(
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
    now: u64,
    leeway: u64,
) -> Result<(), Reason> {
    if now >= exp.saturating_add(leeway) {
        return Err(Reason::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(Reason::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(Reason::IssuedInFuture);
    }
    Ok(())
}

fn jws_reason(e: JwsError) -> Reason {
    match e {
        JwsError::TooLong | JwsError::Parts | JwsError::Base64 | JwsError::Json => {
            Reason::MalformedToken
        }
        JwsError::Duplicate => Reason::DuplicateMember,
        JwsError::Crit => Reason::CriticalHeader,
        JwsError::Alg => Reason::UnsupportedAlgorithm,
    }
}

/// The header members that carry a key or point at one: a token never brings its own.
const KEY_MEMBERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// Verifies `token`: every check of the JWS and its claims, the key from the issuer's
/// key set, never from the token.
pub(crate) async fn verify(settings: &Settings, token: &str, now: u64) -> Result<Verified, Reason> {
    let jws = jws::parse(token).map_err(jws_reason)?;
    let header = &jws.header;
    // `x5t` names a certificate and brings no key (HelseID sends it): harmless.
    if KEY_MEMBERS.iter().any(|m| header.contains_key(*m)) {
        return Err(Reason::EmbeddedKey);
    }
    let typ = header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let jwt_typ = typ.eq_ignore_ascii_case("JWT");
    let at_typ =
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt");
    if !(at_typ || (jwt_typ && settings.allow_jwt_typ)) {
        return Err(Reason::WrongType);
    }
    let Some(kid) = header.get("kid").and_then(Value::as_str) else {
        return Err(Reason::NoKeyId);
    };
    let claims = &jws.payload;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(issuer) = settings.issuers.iter().position(|i| *i.issuer == *iss) else {
        return Err(Reason::UnknownIssuer);
    };
    let key = match settings.issuers[issuer].key(kid).await {
        Lookup::Found(key) => key,
        Lookup::Unknown => return Err(Reason::UnknownKey),
        Lookup::Unavailable => return Err(Reason::Unavailable),
    };
    if !key.fits(jws.alg) {
        return Err(Reason::KeyMismatch);
    }
    if !key.verifies(jws.alg, jws.signing_input.as_bytes(), &jws.signature) {
        return Err(Reason::BadSignature);
    }
    // The signature holds: now the rules.
    let exp = match claims.get("exp") {
        None => return Err(Reason::NoExpiry),
        Some(v) => seconds(v).ok_or(Reason::NoExpiry)?,
    };
    let number = |name: &str| match claims.get(name) {
        None => Ok(None),
        Some(v) => seconds(v).map(Some).ok_or(Reason::MalformedClaim),
    };
    let nbf = number("nbf")?;
    let iat = number("iat")?;
    times(exp, nbf, iat, now, settings.leeway)?;
    let aud = audience(claims.get("aud")).ok_or(Reason::WrongAudience)?;
    if !aud
        .iter()
        .any(|a| settings.audiences.iter().any(|want| want == a))
    {
        return Err(Reason::WrongAudience);
    }
    if settings.strict_single_audience && aud.len() != 1 {
        return Err(Reason::SeveralAudiences);
    }
    // What only an ID token has; and a `JWT` without `client_id` is no access token.
    if claims.contains_key("nonce")
        || claims.contains_key("at_hash")
        || claims.contains_key("c_hash")
    {
        return Err(Reason::IdToken);
    }
    if jwt_typ && !claims.contains_key("client_id") {
        return Err(Reason::IdToken);
    }
    // A client assertion names itself as issuer and subject.
    let sub = claims.get("sub").and_then(Value::as_str);
    if sub == Some(iss) || claims.get("client_id").and_then(Value::as_str) == Some(iss) {
        return Err(Reason::ClientAssertion);
    }
    let scopes = scopes(claims.get("scope")).ok_or(Reason::MalformedClaim)?;
    let kid: Arc<str> = Arc::from(kid);
    let claims = HelseIdClaims::from_payload(jws.payload, exp, aud, scopes)
        .map_err(|()| Reason::MalformedClaim)?;
    Ok(Verified {
        claims: Arc::new(claims),
        issuer,
        kid,
        nbf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_leeway() {
        assert_eq!(times(100, None, None, 99, 0), Ok(()));
        assert_eq!(times(100, None, None, 100, 0), Err(Reason::Expired));
        assert_eq!(times(100, None, None, 104, 5), Ok(()));
        assert_eq!(times(100, Some(60), None, 50, 5), Err(Reason::NotYetValid));
        assert_eq!(times(100, Some(55), None, 50, 5), Ok(()));
        assert_eq!(
            times(100, None, Some(56), 50, 5),
            Err(Reason::IssuedInFuture)
        );
        assert_eq!(times(u64::MAX, Some(u64::MAX), None, 50, u64::MAX), Ok(()));
    }
}
