//! `helseid events`: the event feed of CPE (v1) or of the CommunicationParty API v2.

use futures_util::TryStreamExt;
use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::text::escape;

use super::CliResult;
use crate::args::Target;
use crate::output::{Stdout, describe_api_error, shown};

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    target: Target,
    /// The API: v1 is CPE (Bearer tokens); v2 is the CommunicationParty API v2, called
    /// with a DPoP-bound token and a fresh DPoP proof per request.
    #[arg(long, value_enum, default_value = "v1")]
    api: ApiArg,
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

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApiArg {
    V1,
    V2,
}

/// `helseid events`.
pub(crate) async fn events(args: EventsArgs) -> CliResult {
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
    let config = args.target.client_config(&mut demo).await?;
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
            escape(&resume)
        ),
        _ => eprintln!("helseid: no events"),
    }
}

async fn events_v1(config: ClientConfig, args: &EventsArgs) -> CliResult {
    let tenant = args.tenant;
    let mut builder = helseid::cpe::Client::builder(config);
    if let Some(url) = &args.target.base_url {
        builder = builder.base_url(url);
    }
    let mut cpe = builder.build()?;
    if let Some(tenant) = tenant {
        cpe = cpe.with_tenant(tenant);
    }

    let limit = args.limit.unwrap_or(usize::MAX);
    let mut stream = cpe.events_after(args.from_event_id.as_deref());
    let mut out = Stdout::lock();
    let mut count = 0;
    let mut last = None;
    while count < limit {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => return Err(describe_api_error("CPE", &e).into()),
        };
        if args.json {
            out.raw(&serde_json::to_string(&event)?)?;
        } else {
            let name = event
                .communication_party
                .as_ref()
                .map_or("", |party| party.name.as_str());
            out.line(&format!(
                "{}  {:<27} {:>9}  {}  [event {}]",
                event.from_datetime, event.event_type, event.her_id, name, event.event_id
            ))?;
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
    if let Some(url) = &args.target.base_url {
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
    let mut out = Stdout::lock();
    let mut count = 0;
    while count < limit {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => return Err(describe_api_error("CP API v2", &e).into()),
        };
        if args.json {
            out.raw(&serde_json::to_string(&event)?)?;
        } else {
            out.line(&format!(
                "{}  {:<27} {:>9}  [sequence number {}]",
                shown(event.event_timestamp.as_ref()),
                shown(event.event_type.as_ref()),
                shown(event.her_id.as_ref()),
                shown(event.sequence_number.as_ref())
            ))?;
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
