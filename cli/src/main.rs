//! The `helseid` command line: list CPE events, get HelseID tokens, and run a local
//! HelseID + CPE emulator.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Parser, Subcommand};
use futures_util::TryStreamExt;
use helseid::assertion::Tenant;
use helseid::config::{Authority, ClientConfig, Environment};
use helseid::dpop::DpopKey;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::refresh::{FileStore, RefreshSession, TokenSet, TokenStore};
use helseid_emulator::{ClientRegistration, Emulator};

mod login;
mod register;

/// The scope of NHN's CommunicationParty Events API.
const CPE_SCOPE: &str = "nhn:cp-api/access";
/// The client id of the client the embedded emulator registers.
const DEMO_CLIENT_ID: &str = "helseid-rs-demo";

#[derive(Parser)]
#[command(
    name = "helseid",
    version,
    about = "NHN's CommunicationParty events with HelseID tokens, and a local HelseID + CPE emulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the events of NHN's CommunicationParty Events API (CPE), or with --api v2 of
    /// the CommunicationParty API v2 (DPoP-bound tokens), oldest first.
    ///
    /// Without --config, starts the embedded emulator in-process, registers a demo
    /// client there, and runs the whole flow against it: a token from its HelseID side,
    /// events from its API side.
    Events(EventsArgs),
    /// Get an access token with client credentials and print it on stdout.
    ///
    /// Without --config, starts the embedded emulator in-process, registers a demo
    /// client there, and gets a token from it.
    Token(TokenArgs),
    /// Run the local HelseID emulator in the foreground until interrupted.
    Emulator(EmulatorArgs),
    /// The client's key at Selvbetjening: its expiration, and its rotation.
    ///
    /// Without --config, runs against the embedded emulator's demo client.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Log a person in with the browser (PAR, PKCE, DPoP, a loopback redirect), write
    /// the token set (owner-only) and print who logged in.
    ///
    /// Without --config, logs in at the embedded emulator's login page.
    Login(login::LoginArgs),
    /// End a login's session: revoke the token set's refresh token, end the session at
    /// HelseID, and remove the file.
    Logout(login::LogoutArgs),
    /// Look up communication parties by HER-id in the CommunicationParty API v2 (100 a
    /// call). Without --config, runs against the embedded emulator.
    Party(register::PartyArgs),
    /// Search the register of communication parties, a page at a time. Without
    /// --config, runs against the embedded emulator.
    Search(register::SearchArgs),
    /// Look up an organisation by its organisation number. Without --config, runs
    /// against the embedded emulator.
    Org(register::OrgArgs),
    /// A party's certificates: the current (and with --historic earlier) pairs, or the
    /// current signing or encryption certificate, as PEM with --pem. Without --config,
    /// runs against the embedded emulator.
    Cert(register::CertArgs),
    /// Mirror the register into a SQLite database (export, bulk lookups, then the event
    /// feed); run again, it catches up from the database's cursor. Without --config,
    /// mirrors the embedded emulator's register.
    Sync(register::SyncArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print when the current key expires, and the days left.
    Status(KeysArgs),
    /// Register a new key and switch the configuration to it: the new key is written to
    /// FILE.new first, registered with a token of the current key, and FILE is replaced
    /// (the old one kept as FILE.bak) only when HelseID gives a token for the new key.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
struct KeysArgs {
    /// A client configuration file; its client needs the scope nhn:selvbetjening/client.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Selvbetjening's API. Default: the one of the authority's environment (or the
    /// emulator).
    #[arg(long, value_name = "URL", requires = "config")]
    selvbetjening_url: Option<String>,
}

#[derive(clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// The new key's algorithm (RS256..RS512, PS256..PS512, ES256, ES384, ES512).
    /// Default: the current key's.
    #[arg(long, value_name = "ALG")]
    alg: Option<Algorithm>,
}

#[derive(clap::Args)]
struct EventsArgs {
    /// A client configuration file downloaded from HelseID's self-service portal.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use this HelseID environment, and CPE in it, instead of the file's authority.
    #[arg(long, value_enum, requires = "config")]
    env: Option<EnvArg>,
    /// The API: v1 is CPE (Bearer tokens); v2 is the CommunicationParty API v2, called
    /// with a DPoP-bound token and a fresh DPoP proof per request.
    #[arg(long, value_enum, default_value = "v1")]
    api: ApiArg,
    /// The API's base URL. Default: the API in the authority's environment (or the
    /// emulator).
    #[arg(long, value_name = "URL", requires = "config")]
    base_url: Option<String>,
    /// v1: start after this event (the last one you processed). Default: the beginning.
    #[arg(long, value_name = "ID", conflicts_with = "from_sequence_number")]
    from_event_id: Option<String>,
    /// v2: start at this sequence number (the last one you processed + 1). Default: 1.
    #[arg(long, value_name = "N")]
    from_sequence_number: Option<i64>,
    /// Stop after N events. Default: read the whole feed.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print one JSON object per line, as the API sends each event.
    #[arg(long)]
    json: bool,
    /// Act for an organisation: PARENT or PARENT:CHILD organisation numbers.
    #[arg(long, value_name = "PARENT[:CHILD]")]
    tenant: Option<Tenant>,
}

#[derive(clap::Args)]
struct TokenArgs {
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

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApiArg {
    V1,
    V2,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EnvArg {
    Test,
    Prod,
}

#[derive(clap::Args)]
struct EmulatorArgs {
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

/// An error and its sources on one line, safe for a terminal: whatever a server or a
/// file put into them, control characters (a newline, an escape sequence) are escaped.
fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    terminal_safe(&line)
}

/// `text` with its control characters escaped as Rust writes them (`\n`, `\u{1b}`).
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Events(args) => events(args).await,
            Command::Token(args) => token(args).await,
            Command::Emulator(args) => emulator(args).await,
            Command::Keys(KeysCommand::Status(args)) => keys_status(args).await,
            Command::Keys(KeysCommand::Rotate(args)) => keys_rotate(args).await,
            Command::Login(args) => login::login(args).await,
            Command::Logout(args) => login::logout(args).await,
            Command::Party(args) => register::party(args).await,
            Command::Search(args) => register::search(args).await,
            Command::Org(args) => register::org(args).await,
            Command::Cert(args) => register::cert(args).await,
            Command::Sync(args) => register::sync(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A demo client: a fresh key, registered at a new emulator.
struct Demo {
    emulator: Emulator,
    jwk: PrivateJwk,
}

async fn start_demo(bind: SocketAddr) -> Result<Demo, Box<dyn std::error::Error + Send + Sync>> {
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let public = SigningKey::from_jwk(&jwk)?.public_jwk().clone();
    let emulator = Emulator::builder()
        .bind(bind)
        .client(ClientRegistration::new(DEMO_CLIENT_ID, public).scopes([
            CPE_SCOPE,
            helseid::cpapi::SCOPE,
            helseid::selvbetjening::SCOPE,
        ]))
        .start()
        .await?;
    Ok(Demo { emulator, jwk })
}

impl Demo {
    fn config(&self) -> Result<ClientConfig, helseid::Error> {
        ClientConfig::builder()
            .client_id(DEMO_CLIENT_ID)
            .authority_url(self.emulator.issuer())
            .scopes([CPE_SCOPE])
            .private_jwk(&self.jwk)
            .build()
    }

    /// The client configuration file, in the self-service portal's format (the JWK as
    /// a JSON string inside the JSON, as the portal writes it).
    fn config_file(&self) -> serde_json::Value {
        serde_json::json!({
            "clientName": "helseid-rs emulator demo client",
            "authority": self.emulator.issuer(),
            "clientId": DEMO_CLIENT_ID,
            "grantTypes": ["client_credentials"],
            "scopes": [CPE_SCOPE],
            "secretType": "private_key_jwt:JwkPrivateKeyJwtSecret",
            "privateJwk": self.jwk.to_json().as_str(),
        })
    }
}

impl EnvArg {
    fn environment(self) -> Environment {
        match self {
            EnvArg::Test => Environment::Test,
            EnvArg::Prod => Environment::Prod,
        }
    }
}

/// The configuration from `--config`, or the embedded emulator's demo client (which
/// `demo` then keeps running).
async fn config_or_demo(
    path: Option<&Path>,
    demo: &mut Option<Demo>,
) -> Result<ClientConfig, Box<dyn std::error::Error + Send + Sync>> {
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

async fn events(args: EventsArgs) -> CliResult {
    match (args.api, &args.from_event_id, args.from_sequence_number) {
        (ApiArg::V1, _, Some(_)) => {
            return Err(
                "--from-sequence-number is for --api v2; CPE (v1) takes --from-event-id".into(),
            );
        }
        (ApiArg::V2, Some(_), _) => {
            return Err(
                "--from-event-id is for CPE (--api v1); --api v2 takes --from-sequence-number"
                    .into(),
            );
        }
        _ => {}
    }
    // Keeps the embedded emulator running until the events are printed.
    let mut demo = None;
    let mut config = config_or_demo(args.config.as_deref(), &mut demo).await?;
    if let Some(env) = args.env {
        // The default base URL follows the authority: the API in that environment.
        config = config.with_authority(env.environment().authority());
    }
    match args.api {
        ApiArg::V1 => events_v1(config, &args).await,
        ApiArg::V2 => events_v2(config, &args).await,
    }
}

/// How many events were printed, and where to continue.
fn summary(count: usize, resume: Option<String>) {
    match resume {
        Some(resume) if count > 0 => eprintln!(
            "helseid: {count} event{}; continue with {}",
            if count == 1 { "" } else { "s" },
            terminal_safe(&resume)
        ),
        _ => eprintln!("helseid: no events"),
    }
}

async fn events_v1(config: ClientConfig, args: &EventsArgs) -> CliResult {
    let tenant = args.tenant;
    let mut builder = helseid::cpe::Client::builder(config);
    if let Some(url) = &args.base_url {
        builder = builder.base_url(url);
    }
    let mut cpe = builder.build()?;
    if let Some(tenant) = tenant {
        cpe = cpe.with_tenant(tenant);
    }

    let limit = args.limit.unwrap_or(usize::MAX);
    let mut stream = cpe.events_after(args.from_event_id.as_deref());
    let mut out = std::io::stdout().lock();
    let mut count = 0;
    let mut last = None;
    while count < limit {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => return Err(describe_api_error("CPE", &e).into()),
        };
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            let name = event
                .communication_party
                .as_ref()
                .map_or("", |party| party.name.as_str());
            let line = format!(
                "{}  {:<27} {:>9}  {}  [event {}]",
                event.from_datetime, event.event_type, event.her_id, name, event.event_id
            );
            writeln!(out, "{}", terminal_safe(&line))?;
        }
        count += 1;
        last = Some(event.event_id);
    }
    out.flush()?;
    summary(count, last.map(|id| format!("--from-event-id {id}")));
    Ok(())
}

async fn events_v2(config: ClientConfig, args: &EventsArgs) -> CliResult {
    let mut builder = helseid::cpapi::Client::builder(config);
    if let Some(url) = &args.base_url {
        builder = builder.base_url(url);
    }
    let mut cpapi = builder.build()?;
    if let Some(tenant) = args.tenant {
        cpapi = cpapi.with_tenant(tenant);
    }
    let limit = args.limit.unwrap_or(usize::MAX);
    // Never more per page than will be printed.
    let page = u32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
    let mut stream = cpapi
        .events_from(args.from_sequence_number.unwrap_or(1))
        .max_events(page);
    let mut out = std::io::stdout().lock();
    let mut count = 0;
    while count < limit {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => return Err(describe_api_error("CP API v2", &e).into()),
        };
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            let line = format!(
                "{}  {:<27} {:>9}  [sequence number {}]",
                shown(event.event_timestamp.as_ref()),
                shown(event.event_type.as_ref()),
                shown(event.her_id.as_ref()),
                shown(event.sequence_number.as_ref())
            );
            writeln!(out, "{}", terminal_safe(&line))?;
        }
        count += 1;
    }
    out.flush()?;
    summary(
        count,
        Some(format!(
            "--from-sequence-number {}",
            stream.next_sequence_number()
        )),
    );
    Ok(())
}

/// A ProblemDetails body, as both APIs' generated types have it.
trait Problem {
    fn text(&self) -> Option<&str>;
}

impl Problem for helseid::cpe::types::ProblemDetails {
    fn text(&self) -> Option<&str> {
        self.detail.as_deref().or(self.title.as_deref())
    }
}

/// The CP API v2 documents its errors without a body.
impl Problem for () {
    fn text(&self) -> Option<&str> {
        None
    }
}

/// A field of NHN's schemas, all of which may be absent: `-` for none.
fn shown<T: std::fmt::Display>(value: Option<&T>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// ` (<WWW-Authenticate>)` when the answer has a challenge.
fn challenge(headers: &http::HeaderMap) -> String {
    headers
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" ({v})"))
        .unwrap_or_default()
}

/// One line for a failed API call: the stack's own error when there is one, else what
/// the API answered.
fn describe_api_error<P: Problem + std::fmt::Debug + 'static>(
    api: &str,
    error: &progenitor_client::Error<P>,
) -> String {
    if let Some(e) = helseid::cpe::helseid_error(error) {
        return report(e);
    }
    match error {
        progenitor_client::Error::ErrorResponse(problem) => match problem.text() {
            Some(text) => format!("{api} answered HTTP {}: {text}", problem.status()),
            None => format!(
                "{api} answered HTTP {}{}",
                problem.status(),
                challenge(problem.headers())
            ),
        },
        progenitor_client::Error::UnexpectedResponse(response) => {
            format!(
                "{api} answered HTTP {}{}",
                response.status(),
                challenge(response.headers())
            )
        }
        other => format!("{api} call failed: {}", report(other)),
    }
}

async fn token(args: TokenArgs) -> CliResult {
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
    let mut out = std::io::stdout().lock();
    for jwt in std::iter::once(token.secret()).chain(proof.as_ref().map(|p| p.as_str())) {
        if args.decode {
            let (header, claims) = decode_jwt(jwt)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&header)?)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&claims)?)?;
        } else {
            writeln!(out, "{jwt}")?;
        }
    }
    out.flush()?;
    let rejected: Vec<&str> = token.rejected_scopes().collect();
    if !rejected.is_empty() {
        eprintln!(
            "helseid: warning: HelseID left out scope {} (rejected_scope): the token does not carry it",
            terminal_safe(&rejected.join(" "))
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
) -> Result<helseid::token::AccessToken, Box<dyn std::error::Error + Send + Sync>> {
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

async fn emulator(args: EmulatorArgs) -> CliResult {
    let demo = start_demo(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    if let Some(path) = &args.write_config {
        write_private_file(path, &serde_json::to_vec_pretty(&demo.config_file())?)?;
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
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", demo.emulator.issuer())?;
        out.flush()?;
    }
    eprintln!("helseid: HelseID + CPE emulator running; stop it with Ctrl-C");
    tokio::signal::ctrl_c().await?;
    demo.emulator.shutdown().await;
    Ok(())
}

/// Writes a file that holds a private key: readable by its owner only.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An existing file keeps its mode on open: narrow it before writing the key.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// The configuration `--config` names, or the embedded emulator's demo client written
/// to a file of its own (which `demo` keeps running, and `dir` removes).
async fn config_file_or_demo(
    path: Option<&Path>,
    demo: &mut Option<Demo>,
    dir: &mut Option<PathBuf>,
) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
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
    write_private_file(&file, &serde_json::to_vec_pretty(&started.config_file())?)?;
    *demo = Some(started);
    *dir = Some(scratch);
    Ok(file)
}

/// Removes the demo's scratch directory when the command ends.
struct Scratch(Option<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn keys_status(args: KeysArgs) -> CliResult {
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
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "the key expires {} ({} days left)",
        expiration.to_rfc3339(),
        expiration.days_left()
    )?;
    out.flush()?;
    Ok(())
}

async fn keys_rotate(args: RotateArgs) -> CliResult {
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
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} now holds the new key, which expires {} ({} days left); the previous configuration is in {}",
        terminal_safe(&rotation.config.display().to_string()),
        expires.to_rfc3339(),
        expires.days_left(),
        terminal_safe(&rotation.backup.display().to_string()),
    )?;
    out.flush()?;
    Ok(())
}
