//! `helseid events`: the event feed of CPE (v1) or of the CommunicationParty API v2.

use futures_util::TryStreamExt;
use helseid::assertion::Tenant;
use helseid::config::ClientConfig;
use helseid::cpapi::types::Event;
use helseid::text::escape;

use super::{BoxError, CliResult};
use crate::args::Target;
use crate::output::{Stdout, describe_api_error, shown};

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    target: Target,
    /// The API: v1 is CPE (Bearer tokens); v2 is the CommunicationParty API v2, called
    /// with a DPoP-bound token and a fresh DPoP proof per request. Default: v1, or v2
    /// with --latest.
    #[arg(long, value_enum)]
    api: Option<ApiArg>,
    /// v1: start after this event (the last one you processed). Default: the beginning.
    #[arg(long, value_name = "ID", conflicts_with = "from_sequence_number")]
    from_event_id: Option<String>,
    /// v2: start at this sequence number (the last one you processed + 1). Default: 1.
    #[arg(long, value_name = "N")]
    from_sequence_number: Option<i64>,
    /// Stop after N events. Default: read the whole feed.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print the newest N events, oldest first (CP API v2 only: CPE v1 has no call for
    /// the newest events, its feed is read from the start). Reads the latest event's
    /// sequence number (GET /api/v1/event/latest), then the events up to it from N
    /// numbers earlier, going further back while numbers were skipped, up to N events.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..),
        conflicts_with_all = ["limit", "from_event_id", "from_sequence_number"]
    )]
    latest: Option<u32>,
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
    let api = match (args.api, args.latest) {
        (Some(ApiArg::V1), Some(_)) => {
            return Err(
                "--latest is for --api v2: CPE (v1) has no call for the newest events, its feed is read from the start"
                    .into(),
            );
        }
        (Some(api), _) => api,
        (None, Some(_)) => ApiArg::V2,
        (None, None) => ApiArg::V1,
    };
    match (api, &args.from_event_id, args.from_sequence_number) {
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
    match (api, args.latest) {
        (ApiArg::V2, Some(n)) => latest_v2(config, &args, n).await,
        (ApiArg::V1, _) => events_v1(config, &args).await,
        (ApiArg::V2, None) => events_v2(config, &args).await,
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

/// The CP API v2 client of `args`.
fn cpapi(config: ClientConfig, args: &EventsArgs) -> Result<helseid::cpapi::Client, BoxError> {
    let mut builder = helseid::cpapi::Client::builder(config);
    if let Some(url) = &args.target.base_url {
        builder = builder.base_url(url);
    }
    let mut cpapi = builder.build()?;
    if let Some(tenant) = args.tenant {
        cpapi = cpapi.with_tenant(tenant);
    }
    Ok(cpapi)
}

/// Prints a CP API v2 event: as the API sent it with --json, else on one line.
fn print_v2(out: &mut Stdout, event: &Event, json: bool) -> CliResult {
    if json {
        out.raw(&serde_json::to_string(event)?)?;
    } else {
        out.line(&format!(
            "{}  {:<27} {:>9}  [sequence number {}]",
            shown(event.event_timestamp.as_ref()),
            shown(event.event_type.as_ref()),
            shown(event.her_id.as_ref()),
            shown(event.sequence_number.as_ref())
        ))?;
    }
    Ok(())
}

async fn events_v2(config: ClientConfig, args: &EventsArgs) -> CliResult {
    let cpapi = cpapi(config, args)?;
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
        print_v2(&mut out, &event, args.json)?;
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

/// The events numbered from `from` up to (not including) `until`, oldest first.
async fn numbered(
    cpapi: &helseid::cpapi::Client,
    from: i64,
    until: i64,
) -> Result<Vec<Event>, BoxError> {
    let page = u32::try_from((until - from).clamp(1, 1000)).unwrap_or(1000);
    let mut stream = cpapi.events_from(from).max_events(page);
    let mut events = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) if event.sequence_number.is_none_or(|n| n < until) => {
                events.push(event);
            }
            Ok(_) => return Ok(events),
            Err(e) => return Err(describe_api_error("CP API v2", &e).into()),
        }
    }
}

/// The latest event's sequence number and the newest `n` events, oldest first; `None`
/// when the feed has no event yet.
///
/// CP API v2 has no call for "the last N": the latest event's number comes from
/// `GET /api/v1/event/latest`, then the events numbered from N before it are read; where
/// numbers were skipped, the window goes further back (twice as wide each time) until
/// it holds N events or reaches the first.
async fn newest(
    cpapi: &helseid::cpapi::Client,
    n: u32,
) -> Result<Option<(i64, Vec<Event>)>, BoxError> {
    let latest = match cpapi.get_event_latest().await {
        Ok(event) => event.into_inner().sequence_number,
        // 404: no event yet.
        Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) => None,
        Err(e) => return Err(describe_api_error("CP API v2", &e).into()),
    };
    let Some(latest) = latest else {
        return Ok(None);
    };
    let wanted = usize::try_from(n).unwrap_or(usize::MAX);
    let mut from = latest.saturating_sub(i64::from(n) - 1).max(1);
    let mut events = numbered(cpapi, from, latest.saturating_add(1)).await?;
    let mut width = i64::from(n);
    while events.len() < wanted && from > 1 {
        width = width.saturating_mul(2);
        let earlier = from.saturating_sub(width).max(1);
        let mut before = numbered(cpapi, earlier, from).await?;
        let missing = wanted - events.len();
        if before.len() > missing {
            before.drain(..before.len() - missing);
        }
        before.append(&mut events);
        events = before;
        from = earlier;
    }
    Ok(Some((latest, events)))
}

/// `helseid events --latest N`: the newest `n` events, oldest first.
async fn latest_v2(config: ClientConfig, args: &EventsArgs, n: u32) -> CliResult {
    let cpapi = cpapi(config, args)?;
    let Some((latest, events)) = newest(&cpapi, n).await? else {
        summary(0, None);
        return Ok(());
    };
    let mut out = Stdout::lock();
    for event in &events {
        print_v2(&mut out, event, args.json)?;
    }
    out.flush()?;
    summary(
        events.len(),
        Some(format!(
            "--from-sequence-number {}",
            latest.saturating_add(1)
        )),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;

    use super::*;

    /// A client of a CP API v2 whose feed holds the events numbered `numbers`.
    fn feed(numbers: &'static [i64]) -> helseid::cpapi::Client {
        let event = |n: i64| serde_json::json!({"sequenceNumber": n, "herId": 1});
        let service = tower::service_fn(move |request: http::Request<Full<Bytes>>| {
            let uri = request.uri();
            let body = if uri.path() == "/api/v1/event/latest" {
                numbers.last().map(|n| event(*n))
            } else {
                let query: Vec<(String, String)> = uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let number = |name: &str, default: i64| {
                    query
                        .iter()
                        .find(|(k, _)| k == name)
                        .map_or(default, |(_, v)| v.parse().expect("a number"))
                };
                let (from, max) = (number("fromSequenceNumber", 1), number("maxEvents", 1000));
                let page: Vec<_> = numbers
                    .iter()
                    .filter(|n| **n >= from)
                    .take(usize::try_from(max).expect("max"))
                    .map(|n| event(*n))
                    .collect();
                Some(serde_json::json!({"results": page}))
            };
            let response = match body {
                Some(body) => http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.to_string()))),
                None => http::Response::builder()
                    .status(404)
                    .body(Full::new(Bytes::new())),
            };
            std::future::ready(Ok::<_, Infallible>(response.expect("a response")))
        });
        helseid::cpapi::Client::from_service("http://127.0.0.1:9", service).expect("client")
    }

    async fn newest_numbers(numbers: &'static [i64], n: u32) -> Option<(i64, Vec<i64>)> {
        newest(&feed(numbers), n)
            .await
            .expect("read")
            .map(|(latest, events)| {
                let numbers = events
                    .iter()
                    .map(|e| e.sequence_number.expect("numbered"))
                    .collect();
                (latest, numbers)
            })
    }

    #[tokio::test]
    async fn the_newest_events_skip_back_over_gaps_to_n_or_to_the_first() {
        const GAPS: &[i64] = &[1, 2, 3, 4, 5, 40, 41, 90, 100];
        assert_eq!(newest_numbers(GAPS, 1).await, Some((100, vec![100])));
        assert_eq!(
            newest_numbers(GAPS, 5).await,
            Some((100, vec![5, 40, 41, 90, 100]))
        );
        assert_eq!(newest_numbers(GAPS, 20).await, Some((100, GAPS.to_vec())));
        const DENSE: &[i64] = &[1, 2, 3, 4, 5, 6, 7];
        assert_eq!(newest_numbers(DENSE, 3).await, Some((7, vec![5, 6, 7])));
        assert_eq!(newest_numbers(&[], 3).await, None);
    }
}
