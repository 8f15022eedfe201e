//! `helseid emulator`: the local HelseID + NHN APIs emulator in the foreground.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use helseid::refresh::{FileStore, TokenSet, TokenStore};

use super::CliResult;
use crate::demo::{DEMO_CLIENT_ID, start_demo};
use crate::output::{Stdout, write_secret};

#[derive(clap::Args)]
pub(crate) struct EmulatorArgs {
    /// The port to listen on, on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a client configuration file (Selvbetjening format) for a client registered
    /// at this emulator; `helseid token --config FILE` accepts it.
    #[arg(long, value_name = "FILE")]
    write_config: Option<PathBuf>,
    /// Write a test user's token set (access and refresh token) for that client;
    /// `helseid token --config .. --refresh-token-file FILE` renews it.
    #[arg(long, value_name = "FILE")]
    write_token_set: Option<PathBuf>,
}

/// `helseid emulator`.
pub(crate) async fn emulator(args: EmulatorArgs) -> CliResult {
    let demo = start_demo(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    if let Some(path) = &args.write_config {
        write_secret(path, &serde_json::to_vec_pretty(&demo.config_file())?)?;
        eprintln!(
            "helseid: wrote a client configuration for `{DEMO_CLIENT_ID}` to {}",
            path.display()
        );
    }
    if let Some(path) = &args.write_token_set {
        let minted = demo
            .emulator
            .mint_user_tokens(DEMO_CLIENT_ID, &[])
            .map_err(|e| format!("cannot mint a test user's tokens: {}", e.error))?;
        FileStore::new(path)
            .save(&TokenSet::from_json(&minted.to_string())?)
            .await?;
        eprintln!(
            "helseid: wrote a test user's token set for `{DEMO_CLIENT_ID}` to {}",
            path.display()
        );
    }
    {
        let mut out = Stdout::lock();
        out.raw(demo.emulator.issuer())?;
        out.flush()?;
    }
    eprintln!("helseid: HelseID + CPE emulator running; stop it with Ctrl-C");
    tokio::signal::ctrl_c().await?;
    demo.emulator.shutdown().await;
    Ok(())
}
