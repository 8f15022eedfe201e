//! The `helseid` command line: HelseID tokens, typed calls to NHN's CommunicationParty
//! APIs (CPE v1 and CP API v2: events and the register), client keys and
//! configurations, a person's login, and an embedded HelseID + NHN APIs emulator.
//!
//! This file parses the command line and dispatches; each command (or family of
//! commands) is a module under `commands/`, sharing `args` (the `--config`, `--env`
//! and `--base-url` group), `demo` (the embedded emulator's client) and `output`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod commands;
mod demo;
mod output;

use commands::config::ConfigCommand;
use commands::keys::KeysCommand;
use commands::msh::MshCommand;
use commands::{
    codegen, config, emulator, events, gate, inspect, keys, login, msh, proxy, register, token,
};

#[derive(Parser)]
#[command(
    name = "helseid",
    version,
    about = "HelseID from a terminal: tokens, typed calls to NHN's CommunicationParty APIs (CPE v1's events; CP API v2's events and register), client keys and configurations, a person's login, and an embedded HelseID + NHN APIs emulator"
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
    Events(events::EventsArgs),
    /// Get an access token with client credentials and print it on stdout.
    ///
    /// Without --config, starts the embedded emulator in-process, registers a demo
    /// client there, and gets a token from it.
    Token(token::TokenArgs),
    /// Decode any JWT (access token, ID token, client assertion, DPoP proof): its header
    /// and claims explained, the time left, and what NHN's rules would refuse; with
    /// --verify, checked against the issuer's keys (exit 0 only when every check
    /// passes). The national identity number is masked.
    Inspect(inspect::InspectArgs),
    /// Run the local HelseID emulator in the foreground until interrupted.
    Emulator(emulator::EmulatorArgs),
    /// The client's key: a new one to register in Selvbetjening, the current one's
    /// expiration there, and its rotation.
    ///
    /// Without --config, status and rotate run against the embedded emulator's demo
    /// client.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A client configuration file: whether it is readable, and which of its scopes
    /// HelseID grants.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Log a person in with the browser (PAR, PKCE, DPoP, a loopback redirect), write
    /// the token set (owner-only) and print who logged in.
    ///
    /// Without --config, logs in at the embedded emulator's login page.
    Login(login::LoginArgs),
    /// End a login: revoke the token set's refresh token, open (or with --no-browser
    /// print) the URL that ends the session at HelseID in the browser, and remove the
    /// file.
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
    /// An egress sidecar for services not written in Rust: plain HTTP on loopback in,
    /// each route's upstream out with a HelseID token (and a DPoP proof) attached.
    ///
    /// Without --config, runs against the embedded emulator, with its CPE at /cpe and
    /// its CP API v2 at /cpapi.
    Proxy(proxy::ProxyArgs),
    /// An ingress sidecar for services not written in Rust: verifies every request's
    /// HelseID token (and DPoP proof) and forwards the verified ones to the upstream
    /// with the claims as X-HelseID-* headers.
    ///
    /// Without --issuer, the embedded emulator is the issuer.
    Gate(gate::GateArgs),
    /// Generate the typed client of an NHN API from its OpenAPI 3.0 document (JSON or
    /// YAML, as published), as helseid-codegen does in a build.rs: the same code, every
    /// call through HelseIdLayer. What was changed in the document and what was left
    /// out go to stderr.
    Codegen(codegen::CodegenArgs),
    /// Send and receive health messages with NHN's Meldingstjener (MSH) v2, "EDI 2.0":
    /// send a business document, watch a HER-id's inbox, fetch, acknowledge (an
    /// application receipt) and follow a message's status.
    ///
    /// Without --config, runs against the embedded emulator; `msh inbox --follow` keeps
    /// it running and prints how to send to it from another terminal.
    #[command(subcommand)]
    Msh(MshCommand),
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
            Command::Events(args) => events::events(args).await,
            Command::Token(args) => token::token(args).await,
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Emulator(args) => emulator::emulator(args).await,
            Command::Keys(KeysCommand::Status(args)) => keys::status(args).await,
            Command::Keys(KeysCommand::Rotate(args)) => keys::rotate(args).await,
            Command::Keys(KeysCommand::New(args)) => keys::new(args).await,
            Command::Config(ConfigCommand::Check(args)) => config::check(args).await,
            Command::Login(args) => login::login(args).await,
            Command::Logout(args) => login::logout(args).await,
            Command::Party(args) => register::party(args).await,
            Command::Search(args) => register::search(args).await,
            Command::Org(args) => register::org(args).await,
            Command::Cert(args) => register::cert(args).await,
            Command::Sync(args) => register::sync(args).await,
            Command::Proxy(args) => proxy::proxy(args).await,
            Command::Gate(args) => gate::gate(args).await,
            Command::Codegen(args) => codegen::codegen(args).await,
            Command::Msh(command) => msh::msh(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
