//! The embedded emulator's demo client, which a command uses when no `--config` is
//! given.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use helseid::config::ClientConfig;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_emulator::{ClientRegistration, Emulator};

use crate::commands::BoxError;
use crate::output::write_secret;

/// The scope of NHN's CommunicationParty Events API.
pub(crate) const CPE_SCOPE: &str = "nhn:cp-api/access";
/// The client id of the client the embedded emulator registers.
pub(crate) const DEMO_CLIENT_ID: &str = "helseid-rs-demo";
/// Every scope the demo client is registered with: CPE, CP API v2, and Selvbetjening
/// (for `keys status` and `keys rotate`).
const DEMO_SCOPES: [&str; 4] = [
    CPE_SCOPE,
    helseid::cpapi::SCOPE,
    helseid::selvbetjening::SCOPE,
    helseid_emulator::MSH_SCOPE,
];

/// A demo client: a fresh key, registered at a new emulator.
pub(crate) struct Demo {
    pub(crate) emulator: Emulator,
    jwk: PrivateJwk,
}

pub(crate) async fn start_demo(bind: SocketAddr) -> Result<Demo, BoxError> {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let public = SigningKey::from_jwk(&jwk)?.public_jwk().clone();
    let emulator = Emulator::builder()
        .bind(bind)
        .client(ClientRegistration::new(DEMO_CLIENT_ID, public).scopes(DEMO_SCOPES))
        .start()
        .await?;
    Ok(Demo { emulator, jwk })
}

impl Demo {
    pub(crate) fn config(&self) -> Result<ClientConfig, helseid::Error> {
        ClientConfig::builder()
            .client_id(DEMO_CLIENT_ID)
            .authority_url(self.emulator.issuer())
            .scopes([CPE_SCOPE])
            .private_jwk(&self.jwk)
            .build()
    }

    /// The client configuration file, in the self-service portal's format (the JWK as
    /// a JSON string inside the JSON, as the portal writes it), listing every scope the
    /// client has.
    pub(crate) fn config_file(&self) -> serde_json::Value {
        serde_json::json!({
            "clientName": "helseid-rs emulator demo client",
            "authority": self.emulator.issuer(),
            "clientId": DEMO_CLIENT_ID,
            "grantTypes": ["client_credentials"],
            "scopes": DEMO_SCOPES,
            "secretType": "private_key_jwt:JwkPrivateKeyJwtSecret",
            "privateJwk": self.jwk.to_json().as_str(),
        })
    }
}

/// The configuration from `--config`, or the embedded emulator's demo client (which
/// `demo` then keeps running).
pub(crate) async fn config_or_demo(
    path: Option<&Path>,
    demo: &mut Option<Demo>,
) -> Result<ClientConfig, BoxError> {
    if let Some(path) = path {
        return Ok(ClientConfig::from_file(path)?);
    }
    let started = start_demo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    eprintln!(
        "helseid: no --config given: using the embedded HelseID + CPE emulator at {}",
        started.emulator.issuer()
    );
    let config = started.config()?;
    *demo = Some(started);
    Ok(config)
}

/// The configuration `--config` names, or the embedded emulator's demo client written
/// to a file of its own (which `demo` keeps running, and `dir` removes).
pub(crate) async fn config_file_or_demo(
    path: Option<&Path>,
    demo: &mut Option<Demo>,
    dir: &mut Option<PathBuf>,
) -> Result<PathBuf, BoxError> {
    if let Some(path) = path {
        return Ok(path.to_path_buf());
    }
    let started = start_demo(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    eprintln!(
        "helseid: no --config given: using the embedded emulator's demo client at {}",
        started.emulator.issuer()
    );
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| "cannot make a temporary name")?;
    let scratch =
        std::env::temp_dir().join(format!("helseid-demo-{:016x}", u64::from_le_bytes(random)));
    std::fs::create_dir_all(&scratch)?;
    let file = scratch.join("client.json");
    write_secret(&file, &serde_json::to_vec_pretty(&started.config_file())?)?;
    *demo = Some(started);
    *dir = Some(scratch);
    Ok(file)
}

/// Removes the demo's scratch directory when the command ends.
pub(crate) struct Scratch(pub(crate) Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
