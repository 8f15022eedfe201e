//! A local mirror of NHN's register of communication parties, kept up to date the way
//! NHN recommends: remember where the event feed stands, take the export (every
//! HER-id), look the parties up in bulk (100 a call), then follow the event feed from
//! the export's `lastSequenceNumber + 1`, reading each changed party again (in bulk).
//!
//! [`Mirror::sync`] does all of it, or, when the [`Store`] already holds a cursor, goes
//! on from there: run it again (every hour is NHN's suggestion) and it catches up with
//! the events since the last run. The cursor is written in the same atomic step as the
//! parties it covers, so a sync that is stopped at any point (a crash, a failed write, a
//! lost connection) and run again ends with the same store as one that was never
//! stopped: no party lost, none duplicated.
//!
//! [`SqliteStore`] (feature `sqlite`) keeps the mirror in a SQLite database that
//! `sqlite3` can query; [`Store`] is the trait to keep it anywhere else.
//!
//! # Example
//! ```no_run
//! use helseid::config::ClientConfig;
//! use helseid::mirror::{Mirror, SqliteStore, SyncProgress};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let cpapi = helseid::cpapi::Client::builder(ClientConfig::from_file("helseid-client.json")?)
//!     .base_url(helseid::cpapi::TEST_URL)
//!     .build()?;
//! let mut store = SqliteStore::open("register.db")?;
//! let report = Mirror::new(cpapi)
//!     .sync(&mut store, |progress: &SyncProgress| {
//!         eprint!("\r{} parties, {} events", progress.parties_done, progress.events_done);
//!     })
//!     .await?;
//! println!("{} parties copied, {} updated", report.parties_copied, report.parties_updated);
//! // sqlite3 register.db "select her_id, name from party where type = 'Organization'"
//! # Ok(()) }
//! ```

#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

use std::collections::HashSet;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::sqlite::SqliteStore;
pub use self::store::{Cursor, Store, StoreError};
use crate::cpapi::types::{CommunicationParty, Event, HerIdInputCollection};
use crate::cpapi::{Client, ClientInfo, Error as ApiError, MAX_HER_IDS};

/// The most events the mirror asks for in one call of `GET /api/v1/event`.
const EVENTS_PER_PAGE: NonZeroU32 = NonZeroU32::new(1000).expect("1000 is not zero");

/// What a sync failed with. Whatever was written before the failure stays, with its
/// cursor: run the sync again to go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// A call of the CommunicationParty API failed; `source` is the typed client's error
    /// (its [`helseid`](crate::cpapi::Error::helseid) gives a failure of the stack back).
    #[error("CommunicationParty API: {operation} failed")]
    #[non_exhaustive]
    Api {
        /// The operation, such as `POST /api/v1/communicationparty`.
        operation: &'static str,
        /// The typed client's error.
        #[source]
        source: Box<ApiError>,
    },
    /// The store failed.
    #[error("the mirror's store failed")]
    Store(#[from] StoreError),
    /// The event feed answered something the mirror cannot follow (an event without a
    /// sequence number, or sequence numbers that do not move forward): following it
    /// could loop forever.
    #[error("the event feed cannot be followed: {0}")]
    Feed(String),
}

impl MirrorError {
    fn api(operation: &'static str) -> impl FnOnce(ApiError) -> MirrorError {
        move |source| MirrorError::Api {
            operation,
            source: Box::new(source),
        }
    }
}

/// What a sync is doing, for [`SyncProgress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Copying the register: the export's HER-ids, looked up in bulk.
    Copying,
    /// Following the event feed.
    Following,
}

/// How far a sync has come, given to its [`Progress`] after every write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncProgress {
    /// What the sync is doing.
    pub phase: Phase,
    /// How many parties of the export are in the store (counting those an earlier,
    /// stopped sync wrote).
    pub parties_done: u64,
    /// How many HER-ids the export holds (0 when this sync did not copy).
    pub parties_total: u64,
    /// How many events this sync has applied.
    pub events_done: u64,
    /// How many events there are to apply, as far as the sync knows (the feed's latest
    /// sequence number, less where the sync started); it grows while the feed does.
    pub events_total: u64,
    /// How many API calls this sync has made.
    pub requests: u64,
}

impl SyncProgress {
    /// A progress report (with no requests counted), to test a [`Progress`] with.
    pub fn new(
        phase: Phase,
        parties_done: u64,
        parties_total: u64,
        events_done: u64,
        events_total: u64,
    ) -> Self {
        SyncProgress {
            phase,
            parties_done,
            parties_total,
            events_done,
            events_total,
            requests: 0,
        }
    }
}

/// Told how far a sync has come, after every write: the command line draws a bar with
/// it. Any `FnMut(&SyncProgress)` is one.
pub trait Progress {
    /// Called after each write of the sync.
    fn update(&mut self, progress: &SyncProgress);
}

impl<F: FnMut(&SyncProgress)> Progress for F {
    fn update(&mut self, progress: &SyncProgress) {
        self(progress)
    }
}

/// What a sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Parties this sync wrote in the initial copy.
    pub parties_copied: u64,
    /// Events this sync applied.
    pub events_read: u64,
    /// Parties this sync read again and wrote because events named them.
    pub parties_updated: u64,
    /// HER-ids the API did not return when asked (a party gone between the export or
    /// an event and the lookup): left out of the store.
    pub parties_missing: u64,
    /// API calls this sync made.
    pub requests: u64,
    /// Where the next sync starts in the feed.
    pub next_sequence_number: i64,
}

/// Keeps a [`Store`] a mirror of the register; see the [module docs](self).
#[derive(Clone)]
pub struct Mirror {
    client: Client,
    batch: usize,
    include_deactivated: bool,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror")
            .field("base_url", &self.client.baseurl())
            .field("batch_size", &self.batch)
            .field("include_deactivated", &self.include_deactivated)
            .finish()
    }
}

/// The counters of one sync.
#[derive(Debug)]
struct Run {
    progress: SyncProgress,
    report: SyncReport,
}

impl Mirror {
    /// A mirror that reads the register through `client` (made with
    /// [`Client::builder`]).
    pub fn new(client: Client) -> Self {
        Mirror {
            client,
            batch: MAX_HER_IDS,
            include_deactivated: false,
        }
    }

    /// How many HER-ids each bulk lookup (and each write) carries, 1 to
    /// [`MAX_HER_IDS`]; other values are brought into that range. Default: 100, as NHN
    /// recommends. Smaller batches write more often.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch = size.clamp(1, MAX_HER_IDS);
        self
    }

    /// Whether the initial copy takes the deactivated parties too (the export's
    /// `includeDeactivated`). Default: `false`, the export's default. Parties deactivated
    /// later stay in the store, with their `validTo`, as the events bring them.
    pub fn include_deactivated(mut self, include: bool) -> Self {
        self.include_deactivated = include;
        self
    }

    /// Brings `store` up to date: the initial copy when it holds no cursor (or the rest
    /// of it, when an earlier sync was stopped during it), then every event from the
    /// cursor on, until the feed has no more. `progress` is told after every write.
    ///
    /// # Errors
    /// The first failed API call, store operation or unfollowable page of events; what
    /// was written before it stays, and the next sync goes on from there.
    pub async fn sync<S, P>(&self, mut store: S, mut progress: P) -> Result<SyncReport, MirrorError>
    where
        S: Store,
        P: Progress,
    {
        let mut run = Run {
            progress: SyncProgress::new(Phase::Copying, 0, 0, 0, 0),
            report: SyncReport {
                parties_copied: 0,
                events_read: 0,
                parties_updated: 0,
                parties_missing: 0,
                requests: 0,
                next_sequence_number: 1,
            },
        };
        let (last, copied, her_ids) = match store.cursor()? {
            Some(Cursor::Following {
                next_sequence_number,
            }) => {
                self.follow(&mut store, &mut progress, &mut run, next_sequence_number)
                    .await?;
                return Ok(run.report);
            }
            Some(Cursor::Copying {
                last_sequence_number,
                copied,
            }) => (last_sequence_number, copied, store.export_her_ids()?),
            None => {
                let (last, her_ids) = self.export(&mut run).await?;
                store.begin_copy(last, &her_ids)?;
                (last, 0, her_ids)
            }
        };
        self.copy(&mut store, &mut progress, &mut run, last, copied, &her_ids)
            .await?;
        self.follow(&mut store, &mut progress, &mut run, last.saturating_add(1))
            .await?;
        Ok(run.report)
    }

    /// Where the feed stands, then the export: the sequence number to follow the feed
    /// after, and the HER-ids to copy (each once, in the export's order).
    async fn export(&self, run: &mut Run) -> Result<(i64, Vec<i32>), MirrorError> {
        // The feed's latest event first: the export reflects at least the events up to
        // it, so following from there misses nothing (an event applied twice does no
        // harm: its party is read again).
        let latest = self.latest_sequence_number(run).await?;
        run.count_request();
        let export = self
            .client
            .get_communication_party_export(Some(self.include_deactivated))
            .await
            .map_err(MirrorError::api("GET /api/v1/communicationparty/export"))?
            .into_inner();
        let last = export
            .last_sequence_number
            .map_or(latest, |last| last.min(latest));
        let mut seen = HashSet::new();
        let her_ids = export
            .communication_parties
            .unwrap_or_default()
            .into_iter()
            .filter(|her_id| seen.insert(*her_id))
            .collect();
        Ok((last.max(0), her_ids))
    }

    /// The sequence number of the feed's latest event; 0 when the feed is empty.
    async fn latest_sequence_number(&self, run: &mut Run) -> Result<i64, MirrorError> {
        run.count_request();
        match self.client.get_event_latest().await {
            Ok(event) => Ok(event.into_inner().sequence_number.unwrap_or(0)),
            Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) => Ok(0),
            Err(e) => Err(MirrorError::api("GET /api/v1/event/latest")(e)),
        }
    }

    /// Looks the export's HER-ids up from `copied` on, a batch at a time, and writes
    /// each batch with the cursor after it; the last batch moves the cursor to the feed.
    async fn copy<S: Store, P: Progress>(
        &self,
        store: &mut S,
        progress: &mut P,
        run: &mut Run,
        last: i64,
        copied: usize,
        her_ids: &[i32],
    ) -> Result<(), MirrorError> {
        let following = Cursor::Following {
            next_sequence_number: last.saturating_add(1),
        };
        run.progress.parties_total = her_ids.len() as u64;
        run.progress.parties_done = copied.min(her_ids.len()) as u64;
        // Where this sync starts: what a progress bar measures its rate from.
        progress.update(&run.progress);
        let rest = her_ids.get(copied..).unwrap_or_default();
        if rest.is_empty() {
            // Nothing (more) to copy: on to the feed.
            store.write(&[], &following)?;
            return Ok(());
        }
        let mut done = copied;
        for batch in rest.chunks(self.batch) {
            let parties = self.lookup(run, batch).await?;
            done += batch.len();
            let cursor = if done >= her_ids.len() {
                following
            } else {
                Cursor::Copying {
                    last_sequence_number: last,
                    copied: done,
                }
            };
            store.write(&parties, &cursor)?;
            run.report.parties_copied += parties.len() as u64;
            run.report.parties_missing += (batch.len() - parties.len().min(batch.len())) as u64;
            run.progress.parties_done = done as u64;
            progress.update(&run.progress);
        }
        Ok(())
    }

    /// The parties with these HER-ids (at most [`MAX_HER_IDS`]), in one call.
    async fn lookup(
        &self,
        run: &mut Run,
        her_ids: &[i32],
    ) -> Result<Vec<CommunicationParty>, MirrorError> {
        run.count_request();
        let body = HerIdInputCollection {
            her_ids: Some(her_ids.to_vec()),
        };
        Ok(self
            .client
            .post_communication_party(&body)
            .await
            .map_err(MirrorError::api("POST /api/v1/communicationparty"))?
            .into_inner())
    }

    /// Applies every event from `next` on: page by page, each page in groups of events
    /// that name at most a batch of distinct parties, each group read in one bulk
    /// lookup and written with the cursor after its last event.
    async fn follow<S: Store, P: Progress>(
        &self,
        store: &mut S,
        progress: &mut P,
        run: &mut Run,
        mut next: i64,
    ) -> Result<(), MirrorError> {
        run.progress.phase = Phase::Following;
        run.report.next_sequence_number = next;
        let latest = self.latest_sequence_number(run).await?;
        run.progress.events_total = u64::try_from(latest.saturating_sub(next - 1)).unwrap_or(0);
        progress.update(&run.progress);
        loop {
            let events = self.page(run, next).await?;
            if events.is_empty() {
                return Ok(());
            }
            let mut group: Vec<i32> = Vec::with_capacity(self.batch);
            let mut in_group = 0u64;
            // The sequence number after the last event looked at.
            let mut floor = next;
            for event in &events {
                let number = checked_sequence_number(event, floor)?;
                let fresh = event.her_id.filter(|her_id| !group.contains(her_id));
                if fresh.is_some() && group.len() == self.batch {
                    // The group is full: apply it, up to the event before this one.
                    self.apply(store, run, &group, in_group, floor).await?;
                    progress.update(&run.progress);
                    group.clear();
                    in_group = 0;
                }
                group.extend(fresh);
                in_group += 1;
                floor = number.saturating_add(1);
            }
            // The page's last group: the cursor moves past the page.
            self.apply(store, run, &group, in_group, floor).await?;
            progress.update(&run.progress);
            next = floor;
        }
    }

    /// Reads the parties named by a group of `events` events again (`her_ids`, each
    /// once), and writes them with the cursor at `next`, the sequence number after the
    /// group's last event.
    async fn apply<S: Store>(
        &self,
        store: &mut S,
        run: &mut Run,
        her_ids: &[i32],
        events: u64,
        next: i64,
    ) -> Result<(), MirrorError> {
        let parties = if her_ids.is_empty() {
            Vec::new()
        } else {
            self.lookup(run, her_ids).await?
        };
        store.write(
            &parties,
            &Cursor::Following {
                next_sequence_number: next,
            },
        )?;
        run.report.next_sequence_number = next;
        run.report.parties_updated += parties.len() as u64;
        run.report.parties_missing += (her_ids.len() - parties.len().min(her_ids.len())) as u64;
        run.report.events_read += events;
        run.progress.events_done += events;
        run.progress.events_total = run.progress.events_total.max(run.progress.events_done);
        Ok(())
    }

    /// One page of events from `from` on.
    async fn page(&self, run: &mut Run, from: i64) -> Result<Vec<Event>, MirrorError> {
        let from_sequence_number = u64::try_from(from)
            .ok()
            .and_then(NonZeroU64::new)
            .ok_or_else(|| {
                MirrorError::Feed(format!(
                    "sequence number {from} is not one: they start at 1"
                ))
            })?;
        run.count_request();
        Ok(self
            .client
            .get_event(Some(from_sequence_number), Some(EVENTS_PER_PAGE))
            .await
            .map_err(MirrorError::api("GET /api/v1/event"))?
            .into_inner()
            .results
            .unwrap_or_default())
    }
}

impl Run {
    fn count_request(&mut self) {
        self.progress.requests += 1;
        self.report.requests += 1;
    }
}

/// The sequence number of `event`, which must be at least `floor`.
fn checked_sequence_number(event: &Event, floor: i64) -> Result<i64, MirrorError> {
    match event.sequence_number {
        None => Err(MirrorError::Feed(format!(
            "an event without a sequence number (HER-id {:?}) follows sequence number {}",
            event.her_id,
            floor - 1
        ))),
        Some(number) if number < floor => Err(MirrorError::Feed(format!(
            "sequence number {number} came after asking for {floor} and on"
        ))),
        Some(number) => Ok(number),
    }
}
