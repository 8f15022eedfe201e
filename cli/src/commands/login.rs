//! `helseid login` and `helseid logout`: a person logs in with the browser (PAR, PKCE,
//! DPoP, a loopback redirect), and the token set is written owner-only; logging out
//! revokes its refresh token and opens (or prints) the URL that ends the session in the
//! browser.

use std::path::PathBuf;
use std::time::Duration;

use helseid::endpoint::TokenEndpoint;
use helseid::login::LoginClient;
use helseid::refresh::TokenSet;

use super::CliResult;
use crate::demo::{Demo, config_or_demo};
use crate::output::{Stdout, write_secret};

/// The scopes a login asks for without `--scope`: the person's identity, and a refresh
/// token.
const DEFAULT_SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "offline_access",
    "helseid://scopes/identity/pid",
    "helseid://scopes/identity/security_level",
    "helseid://scopes/hpr/hpr_number",
];

#[derive(clap::Args)]
pub(crate) struct LoginArgs {
    /// A client configuration file downloaded from HelseID's self-service portal; its
    /// client must be allowed to log people in.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A scope to ask for; repeat for several (`openid` is always added). Default:
    /// openid, profile, offline_access and the pid, security level and HPR number scopes.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Where to write the token set (owner-only).
    #[arg(long, value_name = "FILE", default_value = "helseid-tokens.json")]
    out: PathBuf,
    /// Do not open the browser: only print the URL on stderr.
    #[arg(long)]
    no_browser: bool,
    /// How many seconds to wait for the login in the browser.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

#[derive(clap::Args)]
pub(crate) struct LogoutArgs {
    /// The token set `helseid login` wrote.
    #[arg(long, value_name = "FILE")]
    token_set: PathBuf,
    /// The client configuration file the login used. Default: the embedded emulator's
    /// demo client (which knows no session but its own).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not open the browser to end the session at HelseID: print the URL on stderr
    /// instead (the session lives in the browser and ends only when it opens the URL).
    #[arg(long)]
    no_browser: bool,
}

/// `helseid login`.
pub(crate) async fn login(args: LoginArgs) -> CliResult {
    let mut demo: Option<Demo> = None;
    let config = config_or_demo(args.config.as_deref(), &mut demo).await?;
    let client = LoginClient::new(TokenEndpoint::new(config)?)
        .with_timeout(Duration::from_secs(args.timeout));
    let scopes: Vec<String> = if args.scopes.is_empty() {
        DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.scopes
    };
    let pending = client.start(scopes).await?;
    eprintln!("helseid: log in with the browser at this URL:");
    eprintln!("{}", pending.authorize_url());
    if !args.no_browser {
        open_browser(pending.authorize_url());
    }
    eprintln!(
        "helseid: waiting up to {} s for the login (redirect to {})",
        args.timeout,
        pending.redirect_uri()
    );
    let logged_in = pending.finish().await?;
    let Some(set) = logged_in.token_set() else {
        return Err(
            "HelseID issued no refresh token: ask for the scope offline_access to keep a token set"
                .into(),
        );
    };
    write_secret(&args.out, set.to_json().as_bytes())?;
    let claims = logged_in.claims();
    let mut out = Stdout::lock();
    out.line(&format!("name: {}", claims.name().unwrap_or("-")))?;
    out.line(&format!(
        "hpr_number: {}",
        claims.hpr_number().unwrap_or("-")
    ))?;
    out.line(&format!(
        "security_level: {}",
        claims.security_level().unwrap_or("-")
    ))?;
    out.flush()?;
    eprintln!(
        "helseid: wrote the token set (DPoP-bound, with its key) to {}",
        args.out.display()
    );
    Ok(())
}

/// Opens `url` with the system's browser (`xdg-open`); says so when it cannot.
fn open_browser(url: &str) {
    let opened = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = opened {
        eprintln!("helseid: cannot open a browser ({e}): open the URL above yourself");
    }
}

/// `helseid logout`.
pub(crate) async fn logout(args: LogoutArgs) -> CliResult {
    let text = std::fs::read_to_string(&args.token_set)
        .map_err(|e| format!("cannot read {}: {e}", args.token_set.display()))?;
    let set = TokenSet::from_json(&text)?;
    let mut demo: Option<Demo> = None;
    let config = config_or_demo(args.config.as_deref(), &mut demo).await?;
    let client = LoginClient::new(TokenEndpoint::new(config)?);
    let logout = client.logout(&set).await?;
    eprintln!(
        "helseid: refresh token {}",
        if logout.revoked {
            "revoked"
        } else {
            "not revoked (the issuer names no revocation endpoint)"
        }
    );
    match &logout.end_session {
        Some(end) if args.no_browser => {
            eprintln!(
                "helseid: to end the session at HelseID, open this URL in the browser that logged in:"
            );
            eprintln!("{}", end.url());
        }
        Some(end) => {
            eprintln!("helseid: ending the session at HelseID in the browser");
            open_browser(end.url());
        }
        None => eprintln!(
            "helseid: no session to end in the browser (no ID token, or no end session endpoint)"
        ),
    }
    std::fs::remove_file(&args.token_set)
        .map_err(|e| format!("cannot remove {}: {e}", args.token_set.display()))?;
    eprintln!("helseid: removed {}", args.token_set.display());
    Ok(())
}
