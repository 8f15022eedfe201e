//! Client authentication with `private_key_jwt`: the client assertion, checked as
//! strictly as HelseID checks it (or more strictly).
//!
//! A client assertion is rejected (`invalid_client`) unless its header has
//! `typ: client-authentication+jwt` and an asymmetric `alg` that fits the registered key,
//! its signature verifies with that key, `iss` and `sub` are the client id, `aud` is
//! exactly the issuer (not the token endpoint), `iat`, `nbf` and `exp` are numbers with
//! `exp - iat` at most 60 seconds and the assertion is currently valid (5 seconds of
//! clock skew allowed), and its `jti` has not been seen before. Scopes the client was not
//! granted give `invalid_scope`; a malformed `assertion_details` (or
//! `authorization_details`) claim gives `invalid_request` with a `HID-10xx` code in the
//! description. Error descriptions say precisely what is wrong, and never quote the
//! assertion.

use std::str::FromStr;

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use crate::idp::clients::{ClientKey, RegisteredClient};
use crate::idp::state::State;
use crate::idp::tenancy::{self, Organisation};
use crate::server::error::b64_decode;
use crate::server::form::TokenForm;
use crate::server::response::{TokenError, quote};
use crate::server::{LEEWAY, unix_now};
use helseid::key::Algorithm;

/// The only `client_assertion_type` HelseID accepts.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The `typ` a client assertion must carry (HelseID's current rule; `JWT` is refused).
pub(crate) const ASSERTION_TYP: &str = "client-authentication+jwt";

/// The longest lifetime (`exp - iat`) of a client assertion, in seconds.
const MAX_LIFETIME: i64 = 60;

/// The algorithms accepted for client assertions, for error descriptions.
const ACCEPTED_ALGS: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512";

/// A client whose assertion was accepted.
#[derive(Debug)]
pub(crate) struct AuthenticatedClient<'a> {
    pub(crate) client: &'a RegisteredClient,
    /// The organisations the client acts for, from `assertion_details` or the
    /// registration.
    pub(crate) organisation: Organisation,
    /// SFM's journal id, when the assertion names one (`nhn:sfm:journal-id`).
    pub(crate) journal_id: Option<String>,
}

/// Authenticates the client of a token request from `client_id`,
/// `client_assertion_type` and `client_assertion`.
///
/// Once the assertion's signature and claims are accepted, its `jti` is spent, even if
/// the request fails later (for example on `assertion_details` or scopes).
pub(crate) fn authenticate<'a>(
    state: &'a State,
    form: &TokenForm,
) -> Result<AuthenticatedClient<'a>, TokenError> {
    let Some(client_id) = form.get("client_id") else {
        return Err(TokenError::invalid_client("client_id is missing"));
    };
    let Some(client) = state.clients.get(client_id) else {
        return Err(TokenError::invalid_client(format!(
            "unknown client_id {}",
            quote(client_id)
        )));
    };
    match form.get("client_assertion_type") {
        Some(ASSERTION_TYPE) => {}
        Some(other) => {
            return Err(TokenError::invalid_client(format!(
                "client_assertion_type {} is not supported; HelseID accepts only {ASSERTION_TYPE}",
                quote(other)
            )));
        }
        None => {
            return Err(TokenError::invalid_client(format!(
                "client_assertion_type is missing; it must be {ASSERTION_TYPE}"
            )));
        }
    }
    let Some(assertion) = form.get("client_assertion") else {
        return Err(TokenError::invalid_client(
            "client_assertion is missing: HelseID authenticates clients only with private_key_jwt",
        ));
    };

    let claims = verify(state, client, assertion)?;
    let organisation = tenancy::organisation(&claims, client)?;
    Ok(AuthenticatedClient {
        client,
        organisation,
        journal_id: tenancy::assertion_journal_id(&claims),
    })
}

/// Checks the assertion's header, signature and claims, spends its `jti`, and returns
/// its claims.
fn verify(
    state: &State,
    client: &RegisteredClient,
    assertion: &str,
) -> Result<Map<String, Value>, TokenError> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, payload, _signature] = parts[..] else {
        return Err(TokenError::invalid_client(
            "client_assertion is not a signed JWT in compact form (three base64url parts separated by dots)",
        ));
    };
    let header = json_object(header).ok_or_else(|| {
        TokenError::invalid_client(
            "the client assertion's header is not a base64url-encoded JSON object",
        )
    })?;

    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Algorithm::from_str(alg).map_err(|_| {
            TokenError::invalid_client(format!(
                "alg {} is not accepted for client assertions; use one of {ACCEPTED_ALGS}",
                quote(alg)
            ))
        })?,
        Some(_) => {
            return Err(TokenError::invalid_client(
                "the client assertion's alg must be a string",
            ));
        }
        None => {
            return Err(TokenError::invalid_client(
                "the client assertion's header has no alg",
            ));
        }
    };
    match header.get("typ") {
        Some(Value::String(typ)) if typ == ASSERTION_TYP => {}
        Some(Value::String(typ)) => {
            return Err(TokenError::invalid_client(format!(
                "typ {} is not accepted; a client assertion must have typ {ASSERTION_TYP}",
                quote(typ)
            )));
        }
        Some(_) => {
            return Err(TokenError::invalid_client(
                "the client assertion's typ must be a string",
            ));
        }
        None => {
            return Err(TokenError::invalid_client(format!(
                "the client assertion's header has no typ; it must be {ASSERTION_TYP}"
            )));
        }
    }
    if header.contains_key("crit") {
        return Err(TokenError::invalid_client(
            "the client assertion's header has crit; no critical extensions are understood",
        ));
    }
    let (key, expires_at) = client.keys.current();
    if unix_now() >= expires_at {
        return Err(TokenError::invalid_client(format!(
            "the key registered for client {} expired at {}: register a new key (Selvbetjening's client-secret API)",
            quote(&client.id),
            crate::idp::selvbetjening::rfc3339(expires_at)
        )));
    }
    if !key.fits(alg) {
        return Err(TokenError::invalid_client(format!(
            "alg {alg} does not fit the {} key registered for client {}",
            key.describe(),
            quote(&client.id)
        )));
    }

    verify_signature(client, &key, assertion, alg)?;

    let claims = json_object(payload).ok_or_else(|| {
        TokenError::invalid_client("the client assertion's payload is not a JSON object")
    })?;
    check_claims(state, client, &claims)?;
    Ok(claims)
}

/// Decodes one base64url part of a JWT into a JSON object.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64_decode(part)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Verifies the signature with jsonwebtoken (ES512, which it does not know, with
/// aws-lc-rs); every claim check is done here, for precise errors.
fn verify_signature(
    client: &RegisteredClient,
    key: &ClientKey,
    assertion: &str,
    alg: Algorithm,
) -> Result<(), TokenError> {
    let refused = || {
        TokenError::invalid_client(format!(
            "the client assertion's signature does not verify with the key registered for client {}",
            quote(&client.id)
        ))
    };
    if let Some(point) = &key.point {
        let Some((input, signature)) = assertion.rsplit_once('.') else {
            return Err(refused());
        };
        let signature = b64_decode(signature).ok_or_else(refused)?;
        return aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P521_SHA512_FIXED,
            point,
        )
        .verify(input.as_bytes(), &signature)
        .map_err(|_| refused());
    }
    let (Ok(jwt_alg), Some(decoding)) = (
        jsonwebtoken::Algorithm::from_str(alg.as_str()),
        key.decoding.as_ref(),
    ) else {
        return Err(TokenError::server_error(format!("cannot verify {alg}")));
    };
    let mut validation = Validation::new(jwt_alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    match jsonwebtoken::decode::<Value>(assertion, decoding, &validation) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => Err(refused()),
        Err(e) => Err(TokenError::invalid_client(match e.kind() {
            ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
            | ErrorKind::InvalidToken => "the client assertion is not a well-formed JWT".to_owned(),
            _ => format!(
                "the client assertion's signature cannot be verified with the key registered for client {}",
                quote(&client.id)
            ),
        })),
    }
}

/// A claim that must be a string.
fn string_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<&'c str, TokenError> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(TokenError::invalid_client(format!(
            "the client assertion's {name} must be a string"
        ))),
        None => Err(TokenError::invalid_client(format!(
            "the client assertion has no {name} claim"
        ))),
    }
}

/// A NumericDate claim: a JSON number of whole seconds.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<i64, TokenError> {
    match claims.get(name) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            TokenError::invalid_client(format!(
                "the client assertion's {name} must be a whole number of seconds since the epoch"
            ))
        }),
        Some(Value::String(_)) => Err(TokenError::invalid_client(format!(
            "the client assertion's {name} is a string; it must be a JSON number (seconds since the epoch)"
        ))),
        Some(_) => Err(TokenError::invalid_client(format!(
            "the client assertion's {name} must be a JSON number (seconds since the epoch)"
        ))),
        None => Err(TokenError::invalid_client(format!(
            "the client assertion has no {name} claim"
        ))),
    }
}

/// Checks `iss`, `sub`, `aud`, the times and `jti`, and spends the `jti`.
fn check_claims(
    state: &State,
    client: &RegisteredClient,
    claims: &Map<String, Value>,
) -> Result<(), TokenError> {
    for name in ["iss", "sub"] {
        let value = string_claim(claims, name)?;
        if value != client.id {
            return Err(TokenError::invalid_client(format!(
                "the client assertion's {name} {} must equal the client_id {}",
                quote(value),
                quote(&client.id)
            )));
        }
    }
    check_audience(state, claims.get("aud"))?;

    let iat = time_claim(claims, "iat")?;
    let nbf = time_claim(claims, "nbf")?;
    let exp = time_claim(claims, "exp")?;
    let now = unix_now();
    if exp <= iat {
        return Err(TokenError::invalid_client(
            "the client assertion's exp must be later than its iat",
        ));
    }
    let lifetime = exp.saturating_sub(iat);
    if lifetime > MAX_LIFETIME {
        return Err(TokenError::invalid_client(format!(
            "the client assertion's lifetime exp - iat is {lifetime} s; at most {MAX_LIFETIME} s is accepted"
        )));
    }
    if exp < now.saturating_sub(LEEWAY) {
        return Err(TokenError::invalid_client(format!(
            "the client assertion has expired: exp is {} s in the past",
            now.saturating_sub(exp)
        )));
    }
    if nbf > now.saturating_add(LEEWAY) {
        return Err(TokenError::invalid_client(format!(
            "the client assertion is not valid yet: nbf is {} s in the future",
            nbf.saturating_sub(now)
        )));
    }
    if iat > now.saturating_add(LEEWAY) {
        return Err(TokenError::invalid_client(format!(
            "the client assertion is not valid yet: iat is {} s in the future",
            iat.saturating_sub(now)
        )));
    }

    let jti = string_claim(claims, "jti")?;
    if jti.is_empty() {
        return Err(TokenError::invalid_client(
            "the client assertion's jti is empty",
        ));
    }
    if !state.remember_jti(jti, exp.saturating_add(LEEWAY), now) {
        return Err(TokenError::invalid_client(format!(
            "the client assertion's jti {} has been used before: sign a new assertion for every request",
            quote(jti)
        )));
    }
    Ok(())
}

/// `aud` must be exactly the issuer: the issuer as a string, or an array holding only
/// the issuer.
fn check_audience(state: &State, aud: Option<&Value>) -> Result<(), TokenError> {
    let issuer = state.issuer.as_str();
    let ok = match aud {
        Some(Value::String(aud)) => aud == issuer,
        Some(Value::Array(auds)) => {
            !auds.is_empty() && auds.iter().all(|a| a.as_str() == Some(issuer))
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let names_token_endpoint = match aud {
        Some(Value::String(aud)) => *aud == state.token_endpoint,
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str() == Some(&state.token_endpoint)),
        _ => false,
    };
    let description = if aud.is_none() {
        format!("the client assertion has no aud claim; aud must be the issuer `{issuer}`")
    } else if names_token_endpoint {
        format!(
            "the client assertion's aud must be the issuer `{issuer}`, not the token endpoint `{}`",
            state.token_endpoint
        )
    } else {
        format!(
            "the client assertion's aud must be exactly the issuer `{issuer}` (a string, or an array holding only the issuer)"
        )
    };
    Err(TokenError::invalid_client(description))
}
