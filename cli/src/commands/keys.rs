//! `helseid keys`: the client's key at Selvbetjening (its expiration, its rotation).

use std::path::PathBuf;

use helseid::config::ClientConfig;
use helseid::endpoint::TokenEndpoint;
use helseid::key::Algorithm;

use super::CliResult;
use crate::demo::{Scratch, config_file_or_demo};
use crate::output::Stdout;

#[derive(clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Print when the current key expires, and the days left.
    Status(KeysArgs),
    /// Register a new key and switch the configuration to it: the new key is written to
    /// FILE.new first, registered with a token of the current key, and FILE is replaced
    /// (the old one kept as FILE.bak) only when HelseID gives a token for the new key.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
pub(crate) struct KeysArgs {
    /// A client configuration file; its client needs the scope nhn:selvbetjening/client.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Selvbetjening's API. Default: the one of the authority's environment (or the
    /// emulator).
    #[arg(long, value_name = "URL", requires = "config")]
    selvbetjening_url: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// The new key's algorithm (RS256..RS512, PS256..PS512, ES256, ES384, ES512).
    /// Default: the current key's.
    #[arg(long, value_name = "ALG")]
    alg: Option<Algorithm>,
}

/// `helseid keys status`.
pub(crate) async fn status(args: KeysArgs) -> CliResult {
    let (mut demo, mut dir) = (None, None);
    let path = config_file_or_demo(args.config.as_deref(), &mut demo, &mut dir).await?;
    let _scratch = Scratch(dir);
    let config = ClientConfig::from_file(&path)?;
    let base = match args.selvbetjening_url {
        Some(url) => url,
        None => helseid::selvbetjening::base_url(&config).ok_or(
            "the authority is neither NHN's test nor production HelseID: give --selvbetjening-url",
        )?,
    };
    let api = helseid::selvbetjening::Selvbetjening::new(TokenEndpoint::new(config)?, &base)?;
    let expiration = api.key_expiration().await?;
    let mut out = Stdout::lock();
    out.line(&format!(
        "the key expires {} ({} days left)",
        expiration.to_rfc3339(),
        expiration.days_left()
    ))?;
    out.flush()?;
    Ok(())
}

/// `helseid keys rotate`.
pub(crate) async fn rotate(args: RotateArgs) -> CliResult {
    let (mut demo, mut dir) = (None, None);
    let path = config_file_or_demo(args.keys.config.as_deref(), &mut demo, &mut dir).await?;
    let _scratch = Scratch(dir);
    let rotation = helseid::selvbetjening::rotate_config_file(
        &path,
        args.keys.selvbetjening_url.as_deref(),
        args.alg,
    )
    .await?;
    let expires = rotation.expiration;
    let mut out = Stdout::lock();
    out.line(&format!(
        "{} now holds the new key, which expires {} ({} days left); the previous configuration is in {}",
        rotation.config.display(),
        expires.to_rfc3339(),
        expires.days_left(),
        rotation.backup.display(),
    ))?;
    out.flush()?;
    Ok(())
}
