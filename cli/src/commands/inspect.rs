//! `helseid inspect`: any JWT the crate deals in (an access token, an ID token, a client
//! assertion, a DPoP proof) decoded, its HelseID claims explained in words, the time it
//! has left, and what NHN's rules would refuse in it; with `--verify`, checked against
//! the issuer's keys by the library's verifier.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use helseid::text::escape;
use helseid::verify::{Dpop, VerifyLayer, names};
use serde_json::{Map, Value};

use super::CliResult;
use crate::output::Stdout;

/// The most `inspect` reads: many times any token HelseID issues.
const MAX_TOKEN: usize = 64 * 1024;

/// The lifetime of HelseID's access tokens, as observed.
const ACCESS_TOKEN_LIFETIME: i64 = 600;

/// The longest client assertion HelseID takes.
const ASSERTION_LIFETIME: i64 = 60;

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// The JWT, or `-` (the default) to read it from standard input. A leading `Bearer `
    /// or `DPoP ` (an `Authorization` value) is taken off.
    #[arg(value_name = "TOKEN")]
    token: Option<String>,
    /// Check the token against the issuer's keys with the library's verifier (every
    /// check an API makes of a Bearer token); exit 0 only when every check passes.
    #[arg(long, requires = "audience")]
    verify: bool,
    /// The issuer to verify against. Default: the token's `iss` when it is HelseID's
    /// test or production issuer, or a loopback address (the emulator).
    #[arg(long, value_name = "URL", requires = "verify")]
    issuer: Option<String>,
    /// The API's name the token must be for (its `aud`), with `--verify`.
    #[arg(long, value_name = "AUD", requires = "verify")]
    audience: Option<String>,
    /// Show the national identity number (masked by default: personal data).
    #[arg(long)]
    show_personal_data: bool,
}

/// What kind of JWT this is, told from its header and claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    AccessToken,
    IdToken,
    ClientAssertion,
    DpopProof,
    Unknown,
}

impl Kind {
    fn of(header: &Map<String, Value>, claims: &Map<String, Value>) -> Kind {
        let typ = text(header, "typ").unwrap_or_default().to_ascii_lowercase();
        match typ.as_str() {
            "dpop+jwt" => return Kind::DpopProof,
            "client-authentication+jwt" => return Kind::ClientAssertion,
            "at+jwt" | "application/at+jwt" => return Kind::AccessToken,
            _ => {}
        }
        if claims.contains_key("nonce") || claims.contains_key("at_hash") {
            return Kind::IdToken;
        }
        if text(claims, "iss").is_some() && text(claims, "iss") == text(claims, "sub") {
            return Kind::ClientAssertion;
        }
        if claims.contains_key("client_id") || claims.contains_key("scope") {
            return Kind::AccessToken;
        }
        if claims.contains_key("htm") && claims.contains_key("htu") {
            return Kind::DpopProof;
        }
        Kind::Unknown
    }

    fn name(self) -> &'static str {
        match self {
            Kind::AccessToken => "an access token",
            Kind::IdToken => "an ID token",
            Kind::ClientAssertion => "a client assertion",
            Kind::DpopProof => "a DPoP proof",
            Kind::Unknown => "a JWT of no kind HelseID issues",
        }
    }
}

fn text<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    map.get(name).and_then(Value::as_str)
}

/// What a header member or claim means, in words.
fn explain(name: &str) -> &'static str {
    match name {
        "alg" => "the signature's algorithm",
        "typ" => "the kind of JWT",
        "kid" => "which of the issuer's keys signed it",
        "x5t" => "the SHA-1 thumbprint of the signing key's certificate",
        "jwk" => "the public key the proof is signed with",
        "iss" => "who issued it",
        "sub" => "whom it is about (for a person: HelseID's pseudonym)",
        "aud" => "whom it is for (an API's name, or the token endpoint)",
        "exp" => "when it expires",
        "nbf" => "not valid before",
        "iat" => "when it was issued",
        "jti" => "its unique id",
        "scope" => "what it allows",
        "client_id" => "the calling system",
        "client_amr" => "how the client authenticated",
        "cnf" => "the DPoP key it is bound to (cnf.jkt: its thumbprint)",
        "act" => "who acts for whom after a token exchange",
        "nonce" => "the login's nonce",
        "at_hash" => "the hash of the access token issued with it",
        "sid" => "the login session",
        "auth_time" => "when the person logged in",
        "amr" => "how the person logged in",
        "idp" => "the identity provider the person used",
        "azp" => "the client it was issued to",
        "htm" => "the HTTP method the proof is for",
        "htu" => "the URL the proof is for",
        "ath" => "the hash of the access token the proof goes with",
        names::CLIENT_NAME => "the client's name",
        names::CLIENT_TENANCY => "single- or multi-tenant client",
        names::ORGNR_PARENT => "the legal entity the client acts for",
        names::ORGNR_CHILD => "the sub-unit the client says it acts for (checked by nobody)",
        names::ORGNR_SUPPLIER => "the vendor that owns the client",
        names::PID => "the person's national identity number (personal data)",
        names::PID_PSEUDONYM => "a pseudonym of the national identity number",
        names::SECURITY_LEVEL => "the login's security level (4: high)",
        names::ASSURANCE_LEVEL => "the login's assurance level",
        names::HPR_NUMBER => "the person's health-personnel number",
        names::SFM_ID => "SFM's instance id",
        names::JOURNAL_ID => "SFM's journal id",
        _ => "",
    }
}

/// `value` with every national identity number in it masked (nested objects too).
fn masked(name: &str, value: &Value) -> Value {
    if name == names::PID {
        return Value::String("[masked: personal data; --show-personal-data shows it]".into());
    }
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), masked(k, v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| masked("", v)).collect()),
        other => other.clone(),
    }
}

/// The token from the argument or standard input, at most [`MAX_TOKEN`] bytes of text.
fn read_token(arg: Option<&str>) -> Result<String, String> {
    let text = match arg {
        Some(token) if token != "-" => token.to_owned(),
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_TOKEN as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            if bytes.len() > MAX_TOKEN {
                return Err(format!(
                    "the input is larger than {} KiB: not a token HelseID issues",
                    MAX_TOKEN / 1024
                ));
            }
            String::from_utf8(bytes).map_err(|_| "the input is not text: not a JWT".to_owned())?
        }
    };
    if text.len() > MAX_TOKEN {
        return Err(format!(
            "the token is larger than {} KiB: not a token HelseID issues",
            MAX_TOKEN / 1024
        ));
    }
    let trimmed = text.trim();
    let token = ["Bearer ", "DPoP ", "bearer ", "dpop "]
        .iter()
        .find_map(|scheme| trimmed.strip_prefix(scheme))
        .unwrap_or(trimmed)
        .trim();
    if token.is_empty() {
        return Err("no token given: pass it as an argument or on standard input".to_owned());
    }
    Ok(token.to_owned())
}

/// A JSON object: a JWT's header or its claims.
type Object = Map<String, Value>;

/// The header and claims of a compact JWS, or what is wrong with it.
fn decode(token: &str) -> Result<(Object, Object), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, _signature] = parts[..] else {
        return Err(format!(
            "not a JWT: {} part{} separated by dots, where a signed JWT has three",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        ));
    };
    let object = |part: &str, what: &str| -> Result<Map<String, Value>, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| format!("not a JWT: its {what} is not base64url"))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(format!("not a JWT: its {what} is not a JSON object")),
        }
    };
    Ok((object(header, "header")?, object(claims, "payload")?))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `seconds` in words: "9 min 32 s", "2 h 5 min".
fn span(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// What NHN's rules (and HelseID's) would refuse or question in a JWT of `kind`.
fn findings(kind: Kind, header: &Map<String, Value>, claims: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    let alg = text(header, "alg").unwrap_or_default();
    if !matches!(
        alg,
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" | "ES256" | "ES384" | "ES512"
    ) {
        found.push(format!(
            "alg `{}` is not one of the asymmetric algorithms HelseID uses",
            escape(alg)
        ));
    }
    if header.contains_key("crit") {
        found.push("crit names header extensions no verifier here understands".to_owned());
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    let iat = claims.get("iat").and_then(Value::as_i64);
    match exp {
        None if kind != Kind::DpopProof => found.push("no numeric exp".to_owned()),
        Some(exp) if exp <= now() => found.push(format!("expired {} ago", span(now() - exp))),
        _ => {}
    }
    let lifetime = exp.zip(iat).map(|(exp, iat)| exp - iat);
    match kind {
        Kind::AccessToken => {
            let typ = text(header, "typ").unwrap_or_default();
            if !matches!(
                typ.to_ascii_lowercase().as_str(),
                "at+jwt" | "application/at+jwt"
            ) {
                found.push(format!(
                    "typ is `{}`: APIs expect at+jwt (only some allow JWT)",
                    escape(typ)
                ));
            }
            for member in ["jwk", "jku", "x5u", "x5c"] {
                if header.contains_key(member) {
                    found.push(format!(
                        "the header carries `{member}`: an API never takes a key from the token"
                    ));
                }
            }
            match claims.get("aud") {
                None => found.push("no aud: no API takes it".to_owned()),
                Some(Value::Array(auds)) if auds.len() > 1 => found.push(format!(
                    "{} audiences: NHN's APIs want their own name as the only audience",
                    auds.len()
                )),
                _ => {}
            }
            if claims.get("cnf").and_then(|cnf| cnf.get("jkt")).is_none() {
                found.push(
                    "not DPoP-bound (no cnf.jkt): DPoP-only APIs (CP API v2, MSH and NHN's newer APIs) refuse it"
                        .to_owned(),
                );
            }
            if lifetime.is_some_and(|l| l > ACCESS_TOKEN_LIFETIME) {
                found.push(format!(
                    "a lifetime of {}: longer than the {ACCESS_TOKEN_LIFETIME} s HelseID's access tokens live",
                    span(lifetime.unwrap_or_default())
                ));
            }
            if matches!(claims.get("scope"), Some(Value::String(_))) {
                found.push(
                    "scope is a string: HelseID writes an array (APIs should take both)".to_owned(),
                );
            }
        }
        Kind::ClientAssertion => {
            if text(header, "typ") != Some("client-authentication+jwt") {
                found.push("typ is not client-authentication+jwt".to_owned());
            }
            if lifetime.is_some_and(|l| l > ASSERTION_LIFETIME) {
                found.push(format!(
                    "a lifetime of {}: HelseID takes assertions of at most {ASSERTION_LIFETIME} s",
                    span(lifetime.unwrap_or_default())
                ));
            }
            if !claims.contains_key("jti") {
                found.push("no jti: HelseID refuses an assertion it cannot tell apart".to_owned());
            }
        }
        Kind::DpopProof => {
            match header.get("jwk") {
                None => {
                    found.push("no jwk in the header: a proof carries its public key".to_owned())
                }
                Some(jwk) if jwk.get("d").is_some() => {
                    found.push("the jwk holds a private key (d)".to_owned());
                }
                _ => {}
            }
            for claim in ["htm", "htu", "iat", "jti"] {
                if !claims.contains_key(claim) {
                    found.push(format!("no {claim}: every proof has one"));
                }
            }
        }
        Kind::IdToken => {
            if !claims.contains_key("nonce") {
                found.push("no nonce: a login's ID token carries the one it sent".to_owned());
            }
        }
        Kind::Unknown => {}
    }
    found
}

/// One `name  value  (meaning)` line.
fn member_line(name: &str, value: &Value, show_personal: bool) -> String {
    let value = if show_personal {
        value.clone()
    } else {
        masked(name, value)
    };
    let meaning = explain(name);
    let shown = escape(&value.to_string());
    if meaning.is_empty() {
        format!("  {}  {shown}", escape(name))
    } else {
        format!("  {}  {shown}  ({meaning})", escape(name))
    }
}

/// `helseid inspect`.
pub(crate) async fn inspect(args: InspectArgs) -> CliResult {
    let token = read_token(args.token.as_deref())?;
    let (header, claims) = decode(&token)?;
    let kind = Kind::of(&header, &claims);
    let mut out = Stdout::lock();
    out.line(kind.name())?;
    out.line("header:")?;
    for (name, value) in &header {
        out.line(&member_line(name, value, args.show_personal_data))?;
    }
    out.line("claims:")?;
    for (name, value) in &claims {
        out.line(&member_line(name, value, args.show_personal_data))?;
    }
    let now = now();
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        if exp > now {
            out.line(&format!("time left: {}", span(exp - now)))?;
        } else {
            out.line(&format!("expired: {} ago", span(now - exp)))?;
        }
    }
    let found = findings(kind, &header, &claims);
    if found.is_empty() {
        out.line("NHN's rules: nothing to refuse")?;
    } else {
        out.line("NHN's rules would refuse or question:")?;
        for finding in &found {
            out.line(&format!("  - {finding}"))?;
        }
    }
    out.flush()?;
    if args.verify {
        verify(
            &token,
            &claims,
            args.issuer.as_deref(),
            args.audience.as_deref(),
        )
        .await?;
    }
    Ok(())
}

/// Whether the issuer named by a token may be trusted as a default: HelseID's test or
/// production issuer, or one on a loopback address (the emulator).
fn default_issuer(iss: &str) -> bool {
    use helseid::config::Environment;
    if [Environment::Test, Environment::Prod]
        .iter()
        .any(|env| env.issuer() == iss)
    {
        return true;
    }
    iss.parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("http")
            && uri.host().is_some_and(|host| {
                host == "localhost"
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    })
}

/// Verifies `token` as an API would a Bearer token; names the first check that failed.
async fn verify(
    token: &str,
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> CliResult {
    let audience = audience.ok_or("--verify needs --audience")?;
    let issuer = match issuer {
        Some(issuer) => issuer.to_owned(),
        None => match text(claims, "iss") {
            Some(iss) if default_issuer(iss) => iss.to_owned(),
            Some(iss) => {
                return Err(format!(
                    "the token's iss `{}` is not HelseID's: name the issuer to trust with --issuer",
                    escape(iss)
                )
                .into());
            }
            None => return Err("the token has no iss: name the issuer with --issuer".into()),
        },
    };
    let layer = VerifyLayer::builder(issuer.clone())
        .audience(audience)
        .dpop(Dpop::Disabled)
        .allow_jwt_typ(true)
        .build()?;
    match layer.verify_token(token).await {
        Ok(_) => {
            let mut out = Stdout::lock();
            out.line(&format!(
                "verified: signed by {}, for {}, every check passed",
                escape(&issuer),
                escape(audience)
            ))?;
            out.flush()?;
            Ok(())
        }
        Err(refusal) => Err(format!("not verified: {refusal}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_kind_is_told_from_typ_and_claims() {
        let kind = |h: Value, c: Value| Kind::of(&map(h), &map(c));
        let none = serde_json::json!({});
        assert_eq!(
            kind(serde_json::json!({"typ": "at+jwt"}), none.clone()),
            Kind::AccessToken
        );
        assert_eq!(
            kind(serde_json::json!({"typ": "dpop+jwt"}), none.clone()),
            Kind::DpopProof
        );
        assert_eq!(
            kind(
                serde_json::json!({"typ": "client-authentication+jwt"}),
                none.clone()
            ),
            Kind::ClientAssertion
        );
        assert_eq!(
            kind(
                serde_json::json!({"typ": "JWT"}),
                serde_json::json!({"nonce": "n"})
            ),
            Kind::IdToken
        );
        assert_eq!(
            kind(
                serde_json::json!({"typ": "JWT"}),
                serde_json::json!({"iss": "c", "sub": "c"})
            ),
            Kind::ClientAssertion
        );
        assert_eq!(
            kind(
                serde_json::json!({"typ": "JWT"}),
                serde_json::json!({"client_id": "c"})
            ),
            Kind::AccessToken
        );
        assert_eq!(kind(none.clone(), none), Kind::Unknown);
    }

    #[test]
    fn the_pid_is_masked_wherever_it_stands() {
        let value = serde_json::json!({"act": {names::PID: "13116900216"}});
        let shown = masked("", &value).to_string();
        assert!(!shown.contains("13116900216"), "{shown}");
        assert!(member_line(names::PID, &Value::from("13116900216"), false).contains("masked"));
        assert!(member_line(names::PID, &Value::from("13116900216"), true).contains("13116900216"));
    }

    #[test]
    fn nhn_rules_name_what_they_would_refuse() {
        let header = map(serde_json::json!({"alg": "HS256", "typ": "JWT", "jku": "https://x"}));
        let claims = map(serde_json::json!({
            "iat": 0, "exp": 7200, "aud": ["a", "b"], "scope": "a b", "client_id": "c"
        }));
        let found = findings(Kind::AccessToken, &header, &claims).join("\n");
        for expected in [
            "alg `HS256`",
            "expired",
            "typ is `JWT`",
            "`jku`",
            "2 audiences",
            "not DPoP-bound",
            "longer than the 600 s",
            "scope is a string",
        ] {
            assert!(found.contains(expected), "{expected}: {found}");
        }
    }

    #[test]
    fn bad_input_is_named_in_one_line() {
        for (token, expected) in [
            ("abc", "1 part"),
            ("a.b", "2 parts"),
            ("!!.e30.x", "header is not base64url"),
            ("e30.W10.x", "payload is not a JSON object"),
        ] {
            let e = decode(token).unwrap_err();
            assert!(e.contains(expected), "{token}: {e}");
            assert!(!e.contains('\n'));
        }
        let long = "a".repeat(MAX_TOKEN + 1);
        assert!(read_token(Some(&long)).unwrap_err().contains("larger than"));
        assert_eq!(read_token(Some("Bearer  x.y.z ")).unwrap(), "x.y.z");
    }
}
