//! `helseid config check`: whether a client configuration is readable, and which of its
//! scopes HelseID grants.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use helseid::OAuthErrorCode;
use helseid::config::ClientConfig;
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::text::escape;

use super::CliResult;
use crate::demo::{Scratch, config_file_or_demo};
use crate::output::{Stdout, report};

#[derive(clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Read a client configuration and say what is wrong with it, in one line; then get
    /// a token for each of its scopes, one request a scope, and say which scopes HelseID
    /// granted, refused (invalid_scope) or ignored (a token without the scope). Exits 0
    /// when every scope is granted, 1 otherwise.
    ///
    /// The tokens are asked for with DPoP, as HelseID's security profile wants; none is
    /// printed. Without FILE, checks the configuration `helseid emulator --write-config`
    /// writes, against the embedded emulator.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// The client configuration file (as downloaded from Selvbetjening).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The same, as the other commands take it.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    config: Option<PathBuf>,
}

/// What HelseID did with one scope.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The token carries the scope.
    Granted,
    /// HelseID answered `invalid_scope`: the text it gave.
    Refused(String),
    /// HelseID gave a token without the scope; whether it said so (`rejected_scope`).
    Ignored { said: bool },
}

/// `helseid config check`.
pub(crate) async fn check(args: CheckArgs) -> CliResult {
    let (mut demo, mut dir) = (None, None);
    let path = config_file_or_demo(
        args.file.as_deref().or(args.config.as_deref()),
        &mut demo,
        &mut dir,
    )
    .await?;
    let _scratch = Scratch(dir);
    let config = ClientConfig::from_file(&path)?;
    let mut out = Stdout::lock();
    out.line(&describe(&config))?;
    let scopes = config.scopes().to_vec();
    if scopes.is_empty() {
        out.flush()?;
        return Err(
            "the configuration lists no scopes: add the scopes the client has in Selvbetjening"
                .into(),
        );
    }
    let endpoint = TokenEndpoint::new(config)?;
    let mut granted = 0;
    for scope in &scopes {
        let request =
            TokenRequest::client_credentials([scope.clone()]).with_dpop(DpopKey::generate()?);
        let verdict = match endpoint.request(&request).await {
            Ok(token) => verdict(
                scope,
                &token.scopes().collect::<Vec<_>>(),
                &token.rejected_scopes().collect::<Vec<_>>(),
                token.secret(),
            ),
            Err(e) if e.oauth_error().map(|o| &o.error) == Some(&OAuthErrorCode::InvalidScope) => {
                Verdict::Refused(report(&e))
            }
            // Not about this scope: the client, its key or HelseID.
            Err(e) => {
                out.flush()?;
                return Err(
                    format!("getting a token for {}: {}", escape(scope), report(&e)).into(),
                );
            }
        };
        let line = match &verdict {
            Verdict::Granted => {
                granted += 1;
                format!("granted  {scope}")
            }
            Verdict::Refused(why) => format!("refused  {scope}  ({why})"),
            Verdict::Ignored { said: true } => {
                format!("ignored  {scope}  (HelseID left it out of the token: rejected_scope)")
            }
            Verdict::Ignored { said: false } => {
                format!("ignored  {scope}  (the token does not carry it)")
            }
        };
        out.line(&line)?;
    }
    out.flush()?;
    if granted == scopes.len() {
        eprintln!("helseid: every scope granted");
        Ok(())
    } else {
        Err(format!("{granted} of {} scopes granted", scopes.len()).into())
    }
}

/// The configuration on one line: the client, the authority, the key.
fn describe(config: &ClientConfig) -> String {
    let key = config.signing_key();
    let mut line = format!(
        "client {}, authority {}, key {}",
        config.client_id(),
        config.authority().issuer(),
        key.algorithm()
    );
    if let Some(kid) = key.kid() {
        line.push_str(&format!(" (kid {kid})"));
    }
    if let Some(at) = config.key_expires_at() {
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(left) => line.push_str(&format!(", expires in {} days", left.as_secs() / 86_400)),
            Err(_) => line.push_str(", expired: register a new key"),
        }
    }
    line
}

/// What HelseID did with `scope`, from the token it gave for it: the answer's `scope`
/// (`answered`), else the token's `scope` claim, else (RFC 6749 section 5.1: an answer
/// without `scope` grants what was asked) granted unless `rejected` names it.
fn verdict(scope: &str, answered: &[&str], rejected: &[&str], token: &str) -> Verdict {
    let said = rejected.contains(&scope);
    let carried = if !answered.is_empty() {
        answered.contains(&scope)
    } else {
        match claimed_scopes(token) {
            Some(claimed) => claimed.iter().any(|s| s == scope),
            None => !said,
        }
    };
    if carried {
        Verdict::Granted
    } else {
        Verdict::Ignored { said }
    }
}

/// The `scope` claim of a JWT access token (a space-separated string, or an array, as
/// HelseID writes it), when the token is a JWT that has one.
fn claimed_scopes(token: &str) -> Option<Vec<String>> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match claims.get("scope")? {
        serde_json::Value::String(s) => {
            Some(s.split_ascii_whitespace().map(str::to_owned).collect())
        }
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT whose claims are `claims` (unsigned: only its payload is read).
    fn jwt(claims: serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    #[test]
    fn a_scope_is_granted_ignored_or_as_asked_by_the_answer_then_the_token() {
        let none = jwt(serde_json::json!({}));
        // The answer's scope decides when it has one.
        assert_eq!(verdict("a", &["a", "b"], &[], &none), Verdict::Granted);
        assert_eq!(
            verdict("a", &["b"], &[], &none),
            Verdict::Ignored { said: false }
        );
        assert_eq!(
            verdict("a", &["b"], &["a"], &none),
            Verdict::Ignored { said: true }
        );
        // Else the token's claim, a string or an array.
        let string = jwt(serde_json::json!({"scope": "b a"}));
        assert_eq!(verdict("a", &[], &[], &string), Verdict::Granted);
        let array = jwt(serde_json::json!({"scope": ["b"]}));
        assert_eq!(
            verdict("a", &[], &[], &array),
            Verdict::Ignored { said: false }
        );
        // Else what was asked, unless HelseID said it left the scope out.
        assert_eq!(verdict("a", &[], &[], "opaque"), Verdict::Granted);
        assert_eq!(
            verdict("a", &[], &["a"], "opaque"),
            Verdict::Ignored { said: true }
        );
    }
}
