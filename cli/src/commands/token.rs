//! `helseid token`: an access token with client credentials (or renewed from a token
//! set), printed on stdout, with a DPoP proof for it on request.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use helseid::assertion::Tenant;
use helseid::config::{Authority, ClientConfig, Environment};
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::refresh::{FileStore, RefreshSession, TokenStore};
use helseid::text::escape;

use super::{BoxError, CliResult};
use crate::args::EnvArg;
use crate::demo::config_or_demo;
use crate::output::Stdout;

#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    /// A client configuration file downloaded from HelseID's self-service portal.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this HelseID environment instead of the file's authority.
    #[arg(long, value_enum, conflicts_with = "authority")]
    env: Option<EnvArg>,
    /// Use this authority (issuer URL) instead of the file's.
    #[arg(long, value_name = "URL")]
    authority: Option<String>,
    /// A scope to ask for; repeat for several. Default: the file's scopes.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Act for an organisation: PARENT or PARENT:CHILD organisation numbers.
    #[arg(long, value_name = "PARENT[:CHILD]")]
    tenant: Option<Tenant>,
    /// Print the token's header and claims instead of the token.
    #[arg(long)]
    decode: bool,
    /// Ask for a DPoP-bound token (RFC 9449) with a new P-256 key, answering HelseID's
    /// nonce challenge, and print a sample DPoP proof on the line after the token.
    #[arg(long)]
    dpop: bool,
    /// The URL the sample proof is for (its `htu`, without the query). Default: CP API
    /// v2's event feed in the authority's environment.
    #[arg(long, value_name = "URL", requires = "dpop")]
    proof_url: Option<String>,
    /// Renew a user's access token from the token set in FILE (refresh_token grant),
    /// and write the rotated set back to FILE.
    #[arg(
        long,
        value_name = "FILE",
        requires = "config",
        conflicts_with = "tenant"
    )]
    refresh_token_file: Option<PathBuf>,
}

/// `helseid token`.
pub(crate) async fn token(args: TokenArgs) -> CliResult {
    let tenant = args.tenant;
    // Keeps the embedded emulator running until the token is printed.
    let mut demo = None;
    let mut config = config_or_demo(args.config.as_deref(), &mut demo).await?;
    if let Some(env) = args.env {
        config = config.with_authority(env.environment().authority());
    }
    if let Some(authority) = &args.authority {
        config = config.with_authority(Authority::parse(authority)?);
    }
    let scopes = if args.scopes.is_empty() {
        config.scopes().to_vec()
    } else {
        args.scopes.clone()
    };
    let dpop = if args.dpop {
        let url = match &args.proof_url {
            Some(url) => url.clone(),
            None => format!("{}/api/v1/event", cpapi_base_url(&config)?),
        };
        let url: http::Uri = url
            .parse()
            .map_err(|e| format!("--proof-url `{url}` is not a URL: {e}"))?;
        Some((DpopKey::generate()?, url))
    } else {
        None
    };
    let endpoint = TokenEndpoint::new(config)?;
    let token = match &args.refresh_token_file {
        Some(path) => refresh_from_file(endpoint, path, &args.scopes).await?,
        None => {
            let mut request = TokenRequest::client_credentials(scopes);
            if let Some(tenant) = tenant {
                request = request.with_tenant(tenant);
            }
            if let Some((key, _)) = &dpop {
                request = request.with_dpop(key.clone());
            }
            endpoint.request(&request).await?
        }
    };
    let proof = match &dpop {
        Some((key, url)) => Some(key.proof(&http::Method::GET, url, Some(token.secret()))?),
        None => None,
    };
    let mut out = Stdout::lock();
    for jwt in std::iter::once(token.secret()).chain(proof.as_ref().map(|p| p.as_str())) {
        if args.decode {
            let (header, claims) = decode_jwt(jwt)?;
            out.raw(&serde_json::to_string_pretty(&header)?)?;
            out.raw(&serde_json::to_string_pretty(&claims)?)?;
        } else {
            out.raw(jwt)?;
        }
    }
    out.flush()?;
    let rejected: Vec<&str> = token.rejected_scopes().collect();
    if !rejected.is_empty() {
        eprintln!(
            "helseid: warning: HelseID left out scope {} (rejected_scope): the token does not carry it",
            escape(&rejected.join(" "))
        );
    }
    if let Some(proof) = &proof {
        eprintln!(
            "helseid: a DPoP-bound token, then a DPoP proof for GET {}: send both once, within a minute, as `Authorization: DPoP <token>` and `DPoP: <proof>`",
            proof.htu()
        );
    }
    Ok(())
}

/// CP API v2 in the environment of `config`'s authority: the emulator itself, or NHN's
/// test environment.
fn cpapi_base_url(config: &ClientConfig) -> Result<String, String> {
    let issuer = config.authority().issuer();
    let known = [Environment::Test, Environment::Prod]
        .into_iter()
        .find(|env| env.issuer() == issuer)
        .and_then(helseid::cpapi::base_url);
    match known {
        Some(url) => Ok(url.to_owned()),
        // Only a loopback authority may be http: the emulator, which serves CP API v2.
        None if issuer.starts_with("http://") => Ok(issuer.to_owned()),
        None => Err(format!(
            "no CP API v2 URL is known for the authority {issuer}: give --proof-url"
        )),
    }
}

/// Renews the access token of the set in `path` and writes the rotated set back.
async fn refresh_from_file(
    endpoint: TokenEndpoint,
    path: &Path,
    scopes: &[String],
) -> Result<helseid::token::AccessToken, BoxError> {
    let store = FileStore::new(path);
    let set = store
        .load()
        .await?
        .ok_or_else(|| format!("token store: {} does not exist", path.display()))?;
    let session = RefreshSession::new(endpoint, set);
    let token = session.refresh(scopes).await?;
    if let Some(rotated) = session.token_set().await {
        // The old refresh token is spent: without this file the user logs in again.
        store.save(&rotated).await?;
    }
    Ok(token)
}

/// Splits a JWT and decodes its header and claims, without verifying it.
fn decode_jwt(jwt: &str) -> Result<(serde_json::Value, serde_json::Value), String> {
    let part = |i: usize| -> Result<serde_json::Value, String> {
        let text = jwt.split('.').nth(i).ok_or("the token is not a JWT")?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "the token is not a JWT (base64url)")?;
        serde_json::from_slice(&bytes).map_err(|_| "the token is not a JWT (JSON)".to_owned())
    };
    Ok((part(0)?, part(1)?))
}
