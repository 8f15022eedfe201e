//! `helseid msh`: the Meldingstjener (MSH) v2, "EDI 2.0", with the library's
//! `helseid::msh`: send a business document, watch a HER-id's inbox, fetch a message's
//! document, acknowledge it (mark it read and send an application receipt), and a
//! message's status.
//!
//! Without `--config` each command runs against an embedded emulator of its own, with a
//! demo client that may call the Meldingstjener, acting for the organisation that owns
//! the HER-id it is given. `helseid msh inbox --follow` keeps its emulator running and
//! writes what a second terminal needs to send to it: a client configuration and a
//! MsgHead, with the command line to use (the two-terminal recipe in docs/cli.md).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::msh::types::{AppRecError, AppRecStatus, Message};
use helseid::msh::{self, Client};
use helseid::text::escape;
use helseid_emulator::{Emulator, MSH_SCOPE};

use super::{BoxError, CliResult};
use crate::args::Target;
use crate::output::{Stdout, shown};

/// The client id of the embedded emulator's demo client.
const DEMO_CLIENT_ID: &str = "helseid-rs-demo";

/// What `nhn-source-system` says by default.
const SOURCE_SYSTEM: &str = concat!("helseid-cli ", env!("CARGO_PKG_VERSION"));

#[derive(clap::Subcommand)]
pub(crate) enum MshCommand {
    /// Send a business document (a MsgHead: UTF-8 XML) from one HER-id to one or more
    /// others; prints the new message's id.
    Send(SendArgs),
    /// List a HER-id's unread messages, oldest first (by the document's GenDate); with
    /// --follow, keep polling and print new ones as they arrive.
    ///
    /// Without --config and with --follow, the embedded emulator keeps running, and
    /// what another terminal needs to send to it is printed on stderr.
    Inbox(InboxArgs),
    /// Fetch a message's business document: on stdout (escaped), or to a file.
    Get(GetArgs),
    /// Acknowledge a received message: send its application receipt (Ok, or Rejected
    /// with --reject) and mark it read, so that it leaves the inbox for good.
    Ack(AckArgs),
    /// A sent message's delivery state and application receipt, per receiver.
    Status(StatusArgs),
}

/// What every `msh` command takes to reach the API.
#[derive(clap::Args)]
pub(crate) struct MshTarget {
    #[command(flatten)]
    target: Target,
    /// Act for an organisation: PARENT or PARENT:CHILD organisation numbers (the one that
    /// owns the HER-ids). Without --config: the organisation that owns the HER-id given.
    #[arg(long, value_name = "PARENT[:CHILD]")]
    tenant: Option<Tenant>,
    /// The calling system's name and version, sent as nhn-source-system.
    #[arg(long, value_name = "NAME", default_value = SOURCE_SYSTEM)]
    source_system: String,
}

#[derive(clap::Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    api: MshTarget,
    /// The sending HER-id: the MsgHead's Sender.
    #[arg(long = "from", value_name = "HERID")]
    from: String,
    /// A receiving HER-id (one of the MsgHead's Receivers); repeat for more.
    #[arg(long = "to", value_name = "HERID", required = true)]
    to: Vec<String>,
    /// The business document: a MsgHead (UTF-8 XML with its declaration).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct InboxArgs {
    #[command(flatten)]
    api: MshTarget,
    /// The receiving HER-id whose unread messages to list.
    #[arg(long, value_name = "HERID")]
    her_id: String,
    /// Keep polling (with back-off, up to 30 s apart) and print new messages as they
    /// arrive, until interrupted.
    #[arg(long)]
    follow: bool,
    /// Print one JSON object per line, as the API describes a message.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    api: MshTarget,
    /// The message's id (a GUID, as `inbox` prints it).
    #[arg(value_name = "ID")]
    id: String,
    /// Write the document to FILE (as it is) instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct AckArgs {
    #[command(flatten)]
    api: MshTarget,
    /// The message's id (a GUID, as `inbox` prints it).
    #[arg(value_name = "ID")]
    id: String,
    /// The receiving HER-id that acknowledges it. Default: the message's receiver.
    #[arg(long, value_name = "HERID")]
    her_id: Option<String>,
    /// Reject the message with an error: CODE (KITH's code list 8221, such as E10) and
    /// what is wrong; repeat for more. Default: an Ok receipt.
    #[arg(long, value_name = "CODE:DETAILS")]
    reject: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    api: MshTarget,
    /// The message's id (a GUID, as `send` prints it).
    #[arg(value_name = "ID")]
    id: String,
    /// Print one JSON object per receiver.
    #[arg(long)]
    json: bool,
}

/// `helseid msh ...`.
pub(crate) async fn msh(command: MshCommand) -> CliResult {
    match command {
        MshCommand::Send(args) => send(args).await,
        MshCommand::Inbox(args) => inbox(args).await,
        MshCommand::Get(args) => get(args).await,
        MshCommand::Ack(args) => ack(args).await,
        MshCommand::Status(args) => status(args).await,
    }
}

/// The embedded emulator, with a demo client that may call the Meldingstjener.
struct Embedded {
    emulator: Emulator,
}

impl Embedded {
    async fn start() -> Result<Self, BoxError> {
        let emulator = Emulator::builder()
            .test_client(DEMO_CLIENT_ID, [MSH_SCOPE])
            .start()
            .await?;
        eprintln!(
            "helseid: no --config given: using the embedded HelseID + Meldingstjener emulator at {}",
            emulator.issuer()
        );
        Ok(Embedded { emulator })
    }

    /// The organisation that owns `her_id` in the emulator's register.
    fn tenant_of(&self, her_id: i32) -> Result<Tenant, BoxError> {
        if let Some(orgnr) = self.emulator.msh_organisation_of(her_id) {
            return Ok(orgnr.parse()?);
        }
        let examples: Vec<String> = self
            .emulator
            .msh_organisations()
            .iter()
            .take(3)
            .filter_map(|o| self.emulator.msh_her_ids(o).first().map(|h| h.to_string()))
            .collect();
        Err(format!(
            "HER-id {her_id} is not an active party of the embedded emulator's register: try {}",
            examples.join(", ")
        )
        .into())
    }
}

/// A HER-id from the command line: a positive number.
fn her_id(what: &str, text: &str) -> Result<i32, BoxError> {
    match text.trim().parse::<i32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{what} `{}` is not a HER-id (a positive number)",
            escape(text)
        )
        .into()),
    }
}

/// A message id from the command line: a GUID.
fn message_id(text: &str) -> Result<msh::Uuid, BoxError> {
    msh::Uuid::parse_str(text.trim()).map_err(|_| {
        format!(
            "`{}` is not a message id: a GUID, as `helseid msh send` and `inbox` print it",
            escape(text)
        )
        .into()
    })
}

/// An API error as one line, with the API's validationErrors.
fn failed(error: msh::Error) -> BoxError {
    match error.helseid() {
        Some(e) => crate::output::report(e).into(),
        None => msh::describe(&error).into(),
    }
}

impl MshTarget {
    /// The client: from `--config` (with `--env`, `--base-url`, `--tenant`), or the
    /// embedded emulator's demo client acting for the owner of `her_id`.
    async fn client(
        &self,
        embedded: &mut Option<Embedded>,
        her_id: Option<i32>,
    ) -> Result<Client, BoxError> {
        let (config, tenant): (ClientConfig, Option<Tenant>) = match &self.target.config {
            Some(path) => {
                let mut config = ClientConfig::from_file(path)?;
                if let Some(env) = self.target.env {
                    config = config.with_authority(env.environment().authority());
                }
                (config, self.tenant)
            }
            None => {
                let started = Embedded::start().await?;
                let config = started.emulator.client_config(DEMO_CLIENT_ID)?;
                let tenant = match (self.tenant, her_id) {
                    (Some(tenant), _) => Some(tenant),
                    (None, Some(her_id)) => Some(started.tenant_of(her_id)?),
                    (None, None) => None,
                };
                *embedded = Some(started);
                (config, tenant)
            }
        };
        let mut builder = Client::builder(config).source_system(&self.source_system);
        if let Some(url) = &self.target.base_url {
            builder = builder.base_url(url);
        }
        if let Some(tenant) = tenant {
            builder = builder.tenant(tenant);
        }
        Ok(builder.build()?)
    }
}

/// `helseid msh send`.
async fn send(args: SendArgs) -> CliResult {
    let from = her_id("--from", &args.from)?;
    let to = args
        .to
        .iter()
        .map(|t| her_id("--to", t))
        .collect::<Result<Vec<_>, _>>()?;
    let document = read_document(&args.file)?;
    let mut embedded = None;
    let client = args.api.client(&mut embedded, Some(from)).await?;
    let id = client.send(from, &to, &document).await.map_err(failed)?;
    let mut out = Stdout::lock();
    out.raw(&id.to_string())?;
    out.flush()?;
    Ok(())
}

/// The largest file `send` reads: the API's request limit.
const MAX_FILE: u64 = msh::MAX_REQUEST as u64;

/// The business document in `path`, at most [`MAX_FILE`] bytes.
fn read_document(path: &Path) -> Result<Vec<u8>, BoxError> {
    use std::io::Read;
    let shown = escape(&path.display().to_string());
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("cannot read {shown}: it is not a regular file").into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!(
            "{shown} is larger than the Meldingstjener takes ({MAX_FILE} bytes in a request)"
        )
        .into());
    }
    Ok(bytes)
}

/// `helseid msh inbox`.
async fn inbox(args: InboxArgs) -> CliResult {
    let her_id = her_id("--her-id", &args.her_id)?;
    let mut embedded = None;
    let client = args.api.client(&mut embedded, Some(her_id)).await?;
    // Removed when the command ends.
    let mut scratch = crate::demo::Scratch(None);
    if let (Some(embedded), true) = (&embedded, args.follow) {
        scratch.0 = Some(second_terminal(embedded, her_id)?);
    }
    let mut messages = client.inbox(her_id).drain(!args.follow);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = messages.try_next() => match next {
                Ok(next) => next,
                // Following, a failure that may pass (no answer, a 5xx) is reported and
                // the stream polls on after its back-off; a refusal ends the command.
                Err(e) if args.follow && passing(&e) => {
                    eprintln!("helseid: {}; polling on", failed(e));
                    continue;
                }
                Err(e) => return Err(failed(e)),
            },
            _ = &mut interrupted => None,
        };
        let Some(message) = next else { break };
        let mut out = Stdout::lock();
        if args.json {
            out.raw(&serde_json::to_string(&message)?)?;
        } else {
            out.line(&line(&message))?;
        }
        out.flush()?;
    }
    if let Some(embedded) = embedded {
        embedded.emulator.shutdown().await;
    }
    Ok(())
}

/// Whether a failure may pass by itself: a timeout, no connection, a 5xx.
fn passing(error: &msh::Error) -> bool {
    error.is_timeout()
        || error.status().is_some_and(|s| s.is_server_error())
        || matches!(error.helseid(), Some(helseid::Error::Transport { .. }))
}

/// A message on one line: its id, sender, receiver, GenDate, business document id, and
/// whether it is an application receipt.
fn line(message: &Message) -> String {
    format!(
        "{}  from {}  to {}  {}  {}{}",
        shown(message.id.as_ref()),
        shown(message.sender_her_id.as_ref()),
        shown(message.receiver_her_id.as_ref()),
        shown(message.business_document_gen_date.as_ref()),
        shown(message.business_document_id.as_ref()),
        if message.is_app_rec == Some(true) {
            "  (application receipt)"
        } else {
            ""
        }
    )
}

/// Writes what a second terminal needs to send to the embedded emulator, and prints the
/// command: a client configuration and a MsgHead to `her_id` from a HER-id of another
/// organisation. Returns the directory, which the caller removes at the end.
fn second_terminal(embedded: &Embedded, her_id: i32) -> Result<PathBuf, BoxError> {
    let emulator = &embedded.emulator;
    let receiver_org = embedded.tenant_of(her_id)?;
    let sender = emulator
        .msh_organisations()
        .into_iter()
        .filter(|o| o.parse::<Tenant>().ok() != Some(receiver_org))
        .find_map(|o| {
            let her_id = *emulator.msh_her_ids(&o).first()?;
            Some((o, her_id))
        });
    let Some((sender_org, sender)) = sender else {
        return Err("the embedded emulator's register has a single organisation".into());
    };
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| "cannot make a temporary name")?;
    let dir = std::env::temp_dir().join(format!("helseid-msh-{:016x}", u64::from_le_bytes(random)));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("client.json");
    emulator.write_client_config(DEMO_CLIENT_ID, &config)?;
    let document = dir.join("message.xml");
    std::fs::write(&document, msghead(sender, her_id))?;
    eprintln!(
        "helseid: the emulator keeps running while this command does; send to {her_id} from \
         another terminal with:\n  helseid msh send --config {} --tenant {sender_org} --from \
         {sender} --to {her_id} {}",
        escape(&config.display().to_string()),
        escape(&document.display().to_string()),
    );
    Ok(dir)
}

/// A small MsgHead (a "helsefaglig dialog") from `sender` to `receiver`.
fn msghead(sender: i32, receiver: i32) -> String {
    let party = |her_id: i32| {
        format!(
            "<Organisation><OrganisationName>HER-id {her_id}</OrganisationName><Ident>\
             <Id>{her_id}</Id><TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.9051\" DN=\"HER-id\"/>\
             </Ident></Organisation>"
        )
    };
    let now = chrono_now();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\">\n\
         <MsgInfo><Type V=\"DIALOG_HELSEFAGLIG\" DN=\"Helsefaglig dialog\"/>\
         <MIGversion>v1.2 2006-05-24</MIGversion><GenDate>{now}</GenDate>\
         <MsgId>{}</MsgId><Sender>{}</Sender><Receiver>{}</Receiver></MsgInfo>\n\
         <Document><RefDoc><MsgType V=\"XML\" DN=\"XML-instans\"/>\
         <Content>Hei fra helseid msh</Content></RefDoc></Document>\n\
         </MsgHead>\n",
        uuid_v4(),
        party(sender),
        party(receiver)
    )
}

/// Now, as a MsgHead's GenDate (UTC).
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The date `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A random GUID (version 4), for a MsgId.
fn uuid_v4() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    msh::Uuid::from_bytes(bytes).to_string()
}

/// `helseid msh get`.
async fn get(args: GetArgs) -> CliResult {
    let id = message_id(&args.id)?;
    let mut embedded = None;
    let client = args.api.client(&mut embedded, None).await?;
    let document = client.business_document(id).await.map_err(failed)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &document).map_err(|e| {
                format!("cannot write {}: {e}", escape(&path.display().to_string()))
            })?;
            eprintln!(
                "helseid: wrote {} bytes to {}",
                document.len(),
                escape(&path.display().to_string())
            );
        }
        None => {
            let text = String::from_utf8_lossy(&document);
            let mut out = Stdout::lock();
            for line in text.lines() {
                out.line(line)?;
            }
            out.flush()?;
            if std::io::stdout().is_terminal() && document.len() > 64 * 1024 {
                eprintln!("helseid: --out FILE writes the document as it is");
            }
        }
    }
    Ok(())
}

/// `helseid msh ack`.
async fn ack(args: AckArgs) -> CliResult {
    let id = message_id(&args.id)?;
    let given = args
        .her_id
        .as_deref()
        .map(|h| her_id("--her-id", h))
        .transpose()?;
    let errors = args
        .reject
        .iter()
        .map(|r| rejection(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut embedded = None;
    let client = args.api.client(&mut embedded, given).await?;
    let message = client.get_message(&id).await.map_err(failed)?.into_inner();
    let her_id = match (given, message.receiver_her_id) {
        (Some(her_id), _) | (None, Some(her_id)) => her_id,
        (None, None) => return Err("the message names no receiver: give --her-id".into()),
    };
    let mut out = Stdout::lock();
    if message.is_app_rec == Some(true) {
        if !errors.is_empty() {
            return Err(format!(
                "{id} is an application receipt: a receipt is not answered, so --reject does not apply"
            )
            .into());
        }
        client.mark_read(id, her_id).await.map_err(failed)?;
        out.line(&format!(
            "{id}: an application receipt, marked read for {her_id}"
        ))?;
    } else {
        let status = if errors.is_empty() {
            AppRecStatus::Ok
        } else {
            AppRecStatus::Rejected
        };
        let receipt = client
            .send_apprec(id, her_id, status, errors)
            .await
            .map_err(failed)?;
        client.mark_read(id, her_id).await.map_err(failed)?;
        out.line(&format!(
            "{id}: application receipt {receipt} ({status}) sent, marked read for {her_id}"
        ))?;
    }
    out.flush()?;
    Ok(())
}

/// `--reject CODE:DETAILS` as a receipt's error.
fn rejection(text: &str) -> Result<AppRecError, BoxError> {
    let (code, details) = text.split_once(':').unwrap_or((text, ""));
    let code = code.trim();
    if code.is_empty() || code.contains(char::is_whitespace) {
        return Err(format!(
            "--reject `{}` names no error code: give CODE:DETAILS, such as E10:Unknown patient",
            escape(text)
        )
        .into());
    }
    Ok(AppRecError {
        error_code: Some(code.to_owned()),
        details: Some(details.trim().to_owned()),
        description: None,
        oid: None,
    })
}

/// `helseid msh status`.
async fn status(args: StatusArgs) -> CliResult {
    let id = message_id(&args.id)?;
    let mut embedded = None;
    let client = args.api.client(&mut embedded, None).await?;
    let statuses = client.status(id).await.map_err(failed)?;
    let receipts = client.apprecs(id).await.map_err(failed)?;
    let mut out = Stdout::lock();
    for status in &statuses {
        let errors: Vec<String> = receipts
            .iter()
            .filter(|r| r.receiver_her_id == status.receiver_her_id)
            .flat_map(|r| r.app_rec_error_list.iter().flatten())
            .map(|e| {
                format!(
                    "{}: {}",
                    e.error_code.as_deref().unwrap_or("-"),
                    e.details.as_deref().unwrap_or("")
                )
            })
            .collect();
        if args.json {
            let mut value = serde_json::to_value(status)?;
            value["appRecErrorList"] = serde_json::to_value(
                receipts
                    .iter()
                    .find(|r| r.receiver_her_id == status.receiver_her_id)
                    .and_then(|r| r.app_rec_error_list.clone()),
            )?;
            out.raw(&value.to_string())?;
        } else {
            let errors = if errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", errors.join("; "))
            };
            out.line(&format!(
                "{}  {}  apprec {}{errors}",
                status.receiver_her_id,
                status.transport_delivery_state,
                shown(status.app_rec_status.as_ref()),
            ))?;
        }
    }
    out.flush()?;
    Ok(())
}
