//! `helseid keys`: the client's key at Selvbetjening (its expiration, its rotation).

use std::path::{Path, PathBuf};

use helseid::config::ClientConfig;
use helseid::endpoint::TokenEndpoint;
use helseid::key::{Algorithm, PrivateJwk};
use helseid::text::escape;

use super::CliResult;
use crate::demo::{Scratch, config_file_or_demo};
use crate::output::{Stdout, report, write_secret};

#[derive(clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Print when the current key expires, and the days left.
    Status(KeysArgs),
    /// Register a new key and switch the configuration to it: the new key is written to
    /// FILE.new first, registered with a token of the current key, and FILE is replaced
    /// (the old one kept as FILE.bak) only when HelseID gives a token for the new key.
    Rotate(RotateArgs),
    /// Make a new key pair: write the private JWK to FILE (owner-only) and print the
    /// public JWK on stdout, to register in Selvbetjening ("upload your own key").
    ///
    /// With --config, the configuration file gets the new key in place of the one it
    /// holds (the previous file is kept as FILE.bak); HelseID accepts the new key once
    /// its public JWK is registered. The private key is never printed.
    New(NewArgs),
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

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true))]
pub(crate) struct NewArgs {
    /// The key's algorithm: RS512, PS512 (RSA, 3072 bits), ES256, ES512 (EC), or another
    /// that HelseID accepts (RS256, RS384, PS256, PS384, ES384).
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    alg: Algorithm,
    /// Where to write the private JWK (owner-only).
    #[arg(long, value_name = "FILE", group = "target")]
    out: Option<PathBuf>,
    /// A client configuration file (as downloaded from Selvbetjening) to write with the
    /// new key instead of the one it holds; the previous file is kept as FILE.bak.
    #[arg(long, value_name = "FILE", group = "target")]
    config: Option<PathBuf>,
    /// Replace the files that exist: --out's FILE, and the configuration's FILE.bak.
    #[arg(long)]
    force: bool,
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
    if let Some(e) = &rotation.api_scopes_error {
        eprintln!(
            "helseid: the rotation stands, but a token for the configuration's API scopes with the new key was refused: {}",
            helseid::text::escape(&e.to_string())
        );
    }
    Ok(())
}

/// `helseid keys new`.
pub(crate) async fn new(args: NewArgs) -> CliResult {
    // Everything is read and checked before anything is written.
    let refuse = |path: &Path, what: &str| -> CliResult {
        if !args.force && std::fs::symlink_metadata(path).is_ok() {
            return Err(format!(
                "{} exists: give --force to replace {what}",
                escape(&path.display().to_string())
            )
            .into());
        }
        Ok(())
    };
    if let Some(out) = &args.out {
        refuse(out, "it")?;
    }
    let original = match &args.config {
        Some(path) => {
            refuse(&beside(path, ".bak"), "the backup")?;
            Some((path, read_config(path)?))
        }
        None => None,
    };
    let jwk = if args.alg.is_rsa() {
        PrivateJwk::generate_rsa(RSA_BITS, args.alg)?
    } else {
        PrivateJwk::generate_ec(args.alg)?
    };
    let public = jwk.public()?;
    let updated = match &original {
        Some((path, (text, json))) => {
            let updated = helseid::selvbetjening::config_with_key(json, &jwk, None);
            // The file must still be a configuration the library reads.
            ClientConfig::from_json(&updated).map_err(|e| {
                format!(
                    "{} with the new key would not be a usable configuration: {}",
                    escape(&path.display().to_string()),
                    report(&e)
                )
            })?;
            Some((*path, text, updated))
        }
        None => None,
    };

    if let Some(out) = &args.out {
        write_secret(out, jwk.to_json().as_bytes())?;
        eprintln!(
            "helseid: wrote the private key ({}, kid {}) to {}",
            args.alg,
            public.kid.as_deref().unwrap_or("-"),
            escape(&out.display().to_string())
        );
    }
    if let Some((path, text, updated)) = updated {
        let backup = beside(path, ".bak");
        write_secret(&backup, text.as_bytes())?;
        write_secret(path, updated.as_bytes())?;
        eprintln!(
            "helseid: {} now holds the new key; the previous configuration is in {}",
            escape(&path.display().to_string()),
            escape(&backup.display().to_string())
        );
    }
    let mut out = Stdout::lock();
    out.raw(&serde_json::to_string_pretty(&public)?)?;
    out.flush()?;
    eprintln!(
        "helseid: register the public key above in Selvbetjening (the client's keys); HelseID accepts the new key from then on"
    );
    Ok(())
}

/// The size of the RSA keys `keys new` makes, as the library's key rotation makes them.
const RSA_BITS: usize = 3072;

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The text of the configuration file at `path` and its JSON object, read as the
/// library reads configurations (a regular file of at most 64 KiB); one line when it
/// cannot be.
fn read_config(path: &Path) -> Result<(String, serde_json::Value), String> {
    use std::io::Read;
    let shown = || escape(&path.display().to_string());
    let cannot = |e: std::io::Error| format!("cannot read configuration file {}: {e}", shown());
    let kind = std::fs::metadata(path).map_err(cannot)?.file_type();
    if !kind.is_file() {
        return Err(format!(
            "cannot read configuration file {}: it is not a regular file",
            shown()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(helseid::config::MAX_CONFIG_FILE + 1)
                .read_to_string(&mut text)
        })
        .map_err(cannot)?;
    if text.len() as u64 > helseid::config::MAX_CONFIG_FILE {
        return Err(format!(
            "cannot read configuration file {}: it is larger than {} bytes",
            shown(),
            helseid::config::MAX_CONFIG_FILE
        ));
    }
    let json: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| {
            format!(
                "configuration file {} is not JSON (line {}, column {})",
                shown(),
                e.line(),
                e.column()
            )
        })?;
    if !json.is_object() {
        return Err(format!(
            "configuration file {} is not a JSON object",
            shown()
        ));
    }
    Ok((text, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_key_replaces_the_old_in_the_form_the_file_had_and_nothing_else_changes() {
        let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
        let old = PrivateJwk::generate_ec(Algorithm::ES384).expect("key");
        let original = serde_json::json!({
            "clientName": "x",
            "clientId": "c",
            "authority": "https://helseid-sts.test.nhn.no",
            "scopes": ["a", "b"],
            "privateJwk": old.to_json().as_str(),
            "rsaPrivateKey": "<RSAKeyValue/>",
            "rsaKeySizeBits": 4096,
            "keyExpiration": "2030-01-01T00:00:00Z",
            "somethingNew": {"kept": true},
        });
        let updated: serde_json::Value = serde_json::from_str(
            &helseid::selvbetjening::config_with_key(&original, &jwk, None),
        )
        .expect("JSON");
        let mut expected = original.clone();
        let map = expected.as_object_mut().expect("object");
        map.insert("privateJwk".into(), jwk.to_json().as_str().into());
        map.remove("rsaPrivateKey");
        map.remove("rsaKeySizeBits");
        map.remove("keyExpiration");
        assert_eq!(updated, expected);

        // A JWK object stays an object.
        let object = serde_json::json!({"clientId": "c", "privateJwk": {"kty": "EC"}});
        let updated: serde_json::Value = serde_json::from_str(
            &helseid::selvbetjening::config_with_key(&object, &jwk, None),
        )
        .expect("JSON");
        assert_eq!(updated["privateJwk"]["kid"], jwk.kid().expect("kid"));
        assert_eq!(updated["privateJwk"]["crv"], "P-256");
    }
}
