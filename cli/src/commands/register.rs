//! The register's commands: `party`, `search`, `org`, `cert` (CP API v2's lookups) and
//! `sync` (a local mirror in SQLite).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use helseid::assertion::Tenant;
use helseid::cpapi::types::{
    Certificate, CommunicationParty, OrganizationSearchParameters, PersonSearchParameters,
    SearchParameters, ServiceSearchParameters,
};
use helseid::cpapi::{Client, MAX_HER_IDS};
use helseid::mirror::{Mirror, Phase, SqliteStore, SyncProgress};
use helseid::text::escape;

use super::{BoxError, CliResult};
use crate::args::Target;
use crate::demo::Demo;
use crate::output::{Stdout, describe_api_error};

/// The API's name in messages.
const API: &str = "CP API v2";

/// What every command of the register takes to reach the API.
#[derive(clap::Args)]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    target: Target,
    /// Act for an organisation: PARENT or PARENT:CHILD organisation numbers.
    #[arg(long, value_name = "PARENT[:CHILD]")]
    tenant: Option<Tenant>,
}

impl ApiArgs {
    /// The typed client, with the embedded emulator (kept running in `demo`) when no
    /// `--config` was given.
    async fn client(&self, demo: &mut Option<Demo>) -> Result<Client, BoxError> {
        let config = self.target.client_config(demo).await?;
        let mut builder = Client::builder(config);
        if let Some(url) = &self.target.base_url {
            builder = builder.base_url(url);
        }
        let mut client = builder.build()?;
        if let Some(tenant) = self.tenant {
            client = client.with_tenant(tenant);
        }
        Ok(client)
    }
}

#[derive(clap::Args)]
pub(crate) struct PartyArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The parties' HER-ids, looked up 100 at a time.
    #[arg(value_name = "HERID", required = true)]
    her_ids: Vec<String>,
    /// Print one JSON object per line, as the typed client decodes and encodes each
    /// party.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct SearchArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Parties whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// Only parties of this type: organization, person or service.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Which page of the matches, from 1. Default: 1.
    #[arg(long, value_name = "N")]
    page: Option<String>,
    /// How many parties a page holds, 1 to 100. Default: the API's (10).
    #[arg(long, value_name = "N")]
    size: Option<String>,
    /// Print one JSON object per line, as the typed client decodes and encodes each
    /// party.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct OrgArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The organisation number: nine digits.
    #[arg(value_name = "ORGNR")]
    number: String,
    /// Print the organisation as one JSON object, as the typed client decodes and
    /// encodes it.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct CertArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The party's HER-id.
    #[arg(value_name = "HERID")]
    her_id: String,
    /// Only the current signing certificate.
    #[arg(long)]
    signing: bool,
    /// Only the current encryption certificate.
    #[arg(long)]
    encryption: bool,
    /// List the earlier certificate pairs too (thumbprints and validity).
    #[arg(long)]
    historic: bool,
    /// Print the current certificates as PEM, for openssl and the like.
    #[arg(long)]
    pem: bool,
}

#[derive(clap::Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The SQLite database to mirror the register into; created when it does not exist,
    /// brought up to date from its stored cursor when it does.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
}

/// `text` as a HER-id, or a line that says why it is not one.
fn her_id(text: &str) -> Result<i32, String> {
    text.parse::<i32>().ok().filter(|n| *n > 0).ok_or_else(|| {
        format!(
            "`{}` is not a HER-id: HER-ids are positive whole numbers",
            escape(text)
        )
    })
}

/// The value of `--{flag}`, a whole number from `low` to `high`.
fn number_in(flag: &str, text: &str, low: u32, high: u32) -> Result<std::num::NonZeroU32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .and_then(std::num::NonZeroU32::new)
        .ok_or_else(|| {
            format!(
                "--{flag} takes a whole number from {low} to {high}, not `{}`",
                escape(text)
            )
        })
}

/// Whether the API answered 404: nothing has that identifier.
fn not_found(error: &helseid::cpapi::Error) -> bool {
    error.status() == Some(http::StatusCode::NOT_FOUND)
}

/// A failed call as one line: `missing` when the API answered 404.
fn failed(error: &helseid::cpapi::Error, missing: impl FnOnce() -> String) -> BoxError {
    if not_found(error) {
        missing().into()
    } else {
        describe_api_error(API, error).into()
    }
}

/// A party on one line (to be escaped): HER-id, type, name, and what places it.
fn party_line(party: &CommunicationParty) -> String {
    let mut line = format!(
        "{:>9}  {:<12}  {}",
        party.her_id,
        party.type_.to_string(),
        party.name.as_deref().unwrap_or("-")
    );
    if let Some(number) = party
        .organization_details
        .as_ref()
        .and_then(|d| d.organization_number.as_deref())
    {
        let _ = write!(line, "  org {number}");
    }
    if let Some(details) = &party.person_details {
        let _ = write!(line, "  HPR {}", details.hpr_number);
    }
    if let Some(parent) = party.parent_organization() {
        let _ = write!(
            line,
            "  under {} {}",
            parent.her_id,
            parent.name.as_deref().unwrap_or("-")
        );
    }
    if let Some(to) = &party.valid_to {
        let _ = write!(line, "  valid until {to}");
    }
    line
}

/// Prints parties, one a line: as JSON or for people.
fn print_parties(parties: &[CommunicationParty], json: bool) -> CliResult {
    let mut out = Stdout::lock();
    for party in parties {
        if json {
            out.raw(&serde_json::to_string(party)?)?;
        } else {
            out.line(&party_line(party))?;
        }
    }
    out.flush()?;
    Ok(())
}

pub(crate) async fn party(args: PartyArgs) -> CliResult {
    let her_ids = args
        .her_ids
        .iter()
        .map(|text| her_id(text))
        .collect::<Result<Vec<_>, _>>()?;
    let mut demo = None;
    let client = args.api.client(&mut demo).await?;
    let mut parties = Vec::with_capacity(her_ids.len());
    for chunk in her_ids.chunks(MAX_HER_IDS) {
        parties.extend(
            client
                .communication_parties(chunk)
                .await
                .map_err(|e| describe_api_error(API, &e))?,
        );
    }
    // In the order asked for; each once.
    let mut ordered = Vec::with_capacity(parties.len());
    let mut missing = Vec::new();
    for her_id in &her_ids {
        match parties.iter().find(|p| p.her_id == *her_id) {
            Some(party)
                if !ordered
                    .iter()
                    .any(|p: &CommunicationParty| p.her_id == *her_id) =>
            {
                ordered.push(party.clone());
            }
            Some(_) => {}
            None => missing.push(her_id.to_string()),
        }
    }
    print_parties(&ordered, args.json)?;
    match missing.len() {
        0 => Ok(()),
        1 => Err(format!("no party has HER-id {}", missing.join("")).into()),
        _ => Err(format!("no party has HER-ids {}", missing.join(", ")).into()),
    }
}

pub(crate) async fn search(args: SearchArgs) -> CliResult {
    let page = args
        .page
        .as_deref()
        .map(|text| number_in("page", text, 1, i32::MAX as u32))
        .transpose()?;
    let size = args
        .size
        .as_deref()
        .map(|text| number_in("size", text, 1, 100))
        .transpose()?;
    let mut criteria = SearchParameters {
        name: args.name.clone(),
        organization_search_parameters: None,
        person_search_parameters: None,
        service_search_parameters: None,
    };
    match args.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => {}
        Some("organization") => {
            criteria.organization_search_parameters = Some(OrganizationSearchParameters {
                business_type_code_list_id: None,
                business_type_code_value: None,
            });
        }
        Some("person") => {
            criteria.person_search_parameters = Some(PersonSearchParameters { hpr_number: None });
        }
        Some("service") => {
            criteria.service_search_parameters = Some(ServiceSearchParameters {
                service_type_code_list_id: None,
                service_type_code_value: None,
            });
        }
        Some(_) => {
            return Err(format!(
                "--type takes organization, person or service, not `{}`",
                escape(args.kind.as_deref().unwrap_or_default())
            )
            .into());
        }
    }
    let mut demo = None;
    let client = args.api.client(&mut demo).await?;
    let found = client
        .post_communication_party_search(page, size, &criteria)
        .await
        .map_err(|e| describe_api_error(API, &e))?
        .into_inner()
        .communication_parties
        .unwrap_or_default();
    print_parties(&found, args.json)?;
    let page = page.map_or(1, |p| p.get());
    eprintln!(
        "helseid: page {page}: {} part{}",
        found.len(),
        if found.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

pub(crate) async fn org(args: OrgArgs) -> CliResult {
    let number = args.number.as_str();
    if number.len() != 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{}` is not an organisation number: they are nine digits",
            escape(number)
        )
        .into());
    }
    let mut demo = None;
    let client = args.api.client(&mut demo).await?;
    let organization = client
        .get_organization_by_organization_number(number)
        .await
        .map_err(|e| {
            failed(&e, || {
                format!("no organisation has organisation number {number}")
            })
        })?
        .into_inner();
    print_parties(&[organization], args.json)
}

/// A certificate as PEM.
fn pem(certificate: &Certificate, what: &str) -> Result<String, String> {
    let der = certificate
        .certificate_value
        .as_deref()
        .and_then(|value| STANDARD.decode(value).ok())
        .ok_or_else(|| format!("the API sent the {what} certificate without a readable DER"))?;
    let body = STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----");
    Ok(text)
}

/// A certificate's thumbprint and validity on one line (to be escaped).
fn certificate_line(
    label: &str,
    thumbprint: Option<&String>,
    from: Option<&helseid::cpapi::DateTimeOffset>,
    to: Option<&helseid::cpapi::DateTimeOffset>,
) -> String {
    let shown = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    format!(
        "{label:<20}  {}  valid {} to {}",
        shown(thumbprint.cloned()),
        shown(from.map(ToString::to_string)),
        shown(to.map(ToString::to_string)),
    )
}

pub(crate) async fn cert(args: CertArgs) -> CliResult {
    let her_id = her_id(&args.her_id)?;
    if args.signing && args.encryption {
        return Err(
            "--signing and --encryption exclude each other: give one, or neither for both".into(),
        );
    }
    if args.historic && (args.signing || args.encryption || args.pem) {
        return Err(
            "--historic lists the earlier pairs' thumbprints and validity; the API sends only the current certificates themselves (--signing, --encryption, --pem)"
                .into(),
        );
    }
    let mut demo = None;
    let client = args.api.client(&mut demo).await?;
    let missing = || format!("no party has HER-id {her_id}");
    let mut out = Stdout::lock();
    if !(args.signing || args.encryption || args.pem) {
        let pairs = client
            .get_certificate_by_her_id(her_id, Some(args.historic))
            .await
            .map_err(|e| failed(&e, missing))?
            .into_inner();
        for pair in &pairs {
            let when = if pair.is_current == Some(true) {
                "current"
            } else {
                "earlier"
            };
            for (usage, metadata) in [
                ("signing", &pair.signing_certificate),
                ("encryption", &pair.encryption_certificate),
            ] {
                if let Some(m) = metadata {
                    let label = format!("{when} {usage}");
                    let line = certificate_line(
                        &label,
                        m.thumbprint.as_ref(),
                        m.valid_from.as_ref(),
                        m.valid_to.as_ref(),
                    );
                    out.line(&line)?;
                }
            }
        }
        out.flush()?;
        if pairs.is_empty() {
            eprintln!("helseid: party {her_id} has no certificates");
        }
        return Ok(());
    }
    let mut usages = Vec::new();
    if !args.encryption {
        usages.push("signing");
    }
    if !args.signing {
        usages.push("encryption");
    }
    for usage in usages {
        let certificate = if usage == "signing" {
            client.get_certificate_signing_by_her_id(her_id).await
        } else {
            client.get_certificate_encryption_by_her_id(her_id).await
        }
        .map_err(|e| {
            failed(&e, || {
                format!("party {her_id} has no {usage} certificate (or no party has this HER-id)")
            })
        })?
        .into_inner();
        if args.pem {
            out.raw(&pem(&certificate, usage)?)?;
        } else {
            let c = &certificate;
            let line = certificate_line(
                usage,
                c.thumbprint.as_ref(),
                c.valid_from.as_ref(),
                c.valid_to.as_ref(),
            );
            out.line(&line)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The progress bar of `sync`, on stderr: drawn only on a terminal, at most ten times a
/// second.
struct Bar {
    draw: bool,
    start: Instant,
    last: Option<Instant>,
    /// Parties and events done when the bar first heard, to measure this run's rate.
    first: Option<u64>,
    drawn: bool,
}

impl Bar {
    fn new() -> Self {
        Bar {
            draw: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: None,
            first: None,
            drawn: false,
        }
    }

    fn update(&mut self, progress: &SyncProgress) {
        let done = progress.parties_done + progress.events_done;
        let first = *self.first.get_or_insert(done);
        if !self.draw
            || self
                .last
                .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        eprint!(
            "\r\x1b[K{}",
            bar_line(progress, done - first, self.start.elapsed())
        );
        self.drawn = true;
    }

    fn clear(&self) {
        if self.drawn {
            eprint!("\r\x1b[K");
        }
    }
}

/// The bar's line: how much of the sync is done, the rate of this run (`this_run` done
/// in `elapsed`) and the time left at that rate.
fn bar_line(progress: &SyncProgress, this_run: u64, elapsed: Duration) -> String {
    const WIDTH: usize = 24;
    let done = progress.parties_done + progress.events_done;
    let total = (progress.parties_total + progress.events_total).max(done);
    let filled = (done * WIDTH as u64)
        .checked_div(total)
        .map_or(WIDTH, |n| usize::try_from(n).unwrap_or(WIDTH).min(WIDTH));
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        this_run as f64 / seconds
    } else {
        0.0
    };
    let left = if rate > 0.0 {
        let secs = ((total - done) as f64 / rate).round() as u64;
        format!("{}:{:02} left", secs / 60, secs % 60)
    } else {
        "--:-- left".to_owned()
    };
    let phase = match progress.phase {
        Phase::Copying => "copying",
        _ => "following the feed",
    };
    format!(
        "[{}{}] {phase}: {}/{} parties, {}/{} events, {rate:.0}/s, {left}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        progress.parties_done,
        progress.parties_total,
        progress.events_done,
        progress.events_total,
    )
}

pub(crate) async fn sync(args: SyncArgs) -> CliResult {
    let mut store = SqliteStore::open(&args.db)?;
    let mut demo = None;
    let client = args.api.client(&mut demo).await?;
    let started = Instant::now();
    let mut bar = Bar::new();
    let result = Mirror::new(client)
        .sync(&mut store, |progress: &SyncProgress| bar.update(progress))
        .await;
    bar.clear();
    let report = result.map_err(|e| match &e {
        helseid::mirror::MirrorError::Api { source, .. } => {
            format!("{e}: {}", describe_api_error(API, source))
        }
        _ => crate::output::report(&e),
    })?;
    let count = store.count()?;
    let mut line = format!(
        "{}: {count} parties; this sync copied {}, read {} event{} and {} changed part{} again",
        args.db.display(),
        report.parties_copied,
        report.events_read,
        if report.events_read == 1 { "" } else { "s" },
        report.parties_updated,
        if report.parties_updated == 1 {
            "y"
        } else {
            "ies"
        },
    );
    if report.parties_missing > 0 {
        let _ = write!(line, " ({} not found)", report.parties_missing);
    }
    let _ = write!(
        line,
        "; {} requests in {:.1} s; next sequence number {}",
        report.requests,
        started.elapsed().as_secs_f64(),
        report.next_sequence_number
    );
    let mut out = Stdout::lock();
    out.line(&line)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_parties_events_rate_and_time_left() {
        let progress = SyncProgress::new(Phase::Copying, 3_000, 30_000, 0, 0);
        let line = bar_line(&progress, 3_000, Duration::from_secs(2));
        assert_eq!(
            line,
            "[##......................] copying: 3000/30000 parties, 0/0 events, 1500/s, 0:18 left"
        );
        let done = SyncProgress::new(Phase::Following, 300, 300, 40, 40);
        assert_eq!(
            bar_line(&done, 40, Duration::ZERO),
            "[########################] following the feed: 300/300 parties, 40/40 events, 0/s, --:-- left"
        );
    }
}
