//! The CPE register the emulator serves: the communication parties, and the event feed
//! that created and changed them, with the queries both APIs ask of it (pages of the
//! feed, the export, one party; CommunicationParty API v2's sequence numbers).
//!
//! It starts as the seed ([`crate::apis::register::seed`]): 300 parties and 487 events.
//! Date-times are
//! written the way .NET writes a `DateTimeOffset` ([`crate::apis::register::dotnet`]):
//! up to seven
//! fractional digits (trailing zeros trimmed) and an offset (`+01:00` or `+02:00`,
//! Norwegian time), except every seventh event's `FromDatetime`, which has no offset and
//! is a UTC wall-clock time.
//!
//! The register is the same on every run: 300 parties (organisations such as
//! `Oslo universitetssykehus HF` or `Legekontoret Storgata`, their services, persons
//! with a role such as `Fastlege Kari Dahl`) with HER-ids, organisation numbers with
//! valid check digits and municipality numbers, some deactivated (`Valid.To` in the
//! past), and 487 events from January to June 2025 with opaque 16-hex-digit ids.
//! Date-times are written as .NET writes them (`2025-05-01T12:00:00.1234567+02:00`, up
//! to seven fractional digits, trailing zeros trimmed), some without an offset
//! (`2025-05-01T10:00:00.1234567`, UTC).
//! [`Emulator::publish_cpe_update`](crate::Emulator::publish_cpe_update) appends an
//! event, to test polling for changes.

pub(crate) mod dotnet;
mod publish;
pub(crate) mod seed;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::apis::cpapi::model;
use crate::apis::cpe::model::{CommunicationParty, EventValue, ExportResponse};
use crate::apis::register::dotnet::{instant, to_ticks, write_dotnet};

/// Mixed into event indexes to make event ids.
const EVENT_ID_SALT: u64 = 0x4350_455f_6576_656e;

/// The kind of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The party was added to the register.
    Created,
    /// The party changed.
    Updated,
}

impl EventKind {
    /// The `EventType` written in the feed.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "CommunicationPartyCreated",
            EventKind::Updated => "CommunicationPartyUpdated",
        }
    }
}

/// One event of the feed.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) id: String,
    /// When the event was created, to the tick.
    pub(crate) at: DateTime<Utc>,
    /// `at` as the feed writes it.
    pub(crate) written: String,
    /// The index of the party in [`Register::parties`].
    pub(crate) party: usize,
    pub(crate) kind: EventKind,
}

/// A page of the feed.
#[derive(Debug)]
pub(crate) struct Page {
    /// The events on the page, oldest first.
    pub(crate) events: Vec<EventValue>,
    /// The id of the page's last event, when more events follow it.
    pub(crate) next_after: Option<String>,
}

/// The communication parties and the event feed.
#[derive(Clone, Debug)]
pub(crate) struct Register {
    parties: Vec<CommunicationParty>,
    /// The `OrgNr` of each party's events: the organisation number of its organisation.
    org_nrs: Vec<Option<i32>>,
    by_her_id: HashMap<i32, usize>,
    /// Oldest first; `at` never decreases.
    events: Vec<Event>,
    by_event_id: HashMap<String, usize>,
}

impl Register {
    /// A register of `parties`, each with the `OrgNr` its events carry, and the events
    /// that made them, oldest first: the index of the party in `parties`, the kind of
    /// change, and when (in .NET ticks since the Unix epoch; never decreasing).
    pub(crate) fn new(
        parties: Vec<(CommunicationParty, Option<i32>)>,
        events: Vec<(usize, EventKind, i64)>,
    ) -> Self {
        let (parties, org_nrs): (Vec<_>, Vec<_>) = parties.into_iter().unzip();
        let by_her_id = parties
            .iter()
            .enumerate()
            .map(|(index, party)| (party.her_id, index))
            .collect();
        let mut register = Register {
            parties,
            org_nrs,
            by_her_id,
            events: Vec::with_capacity(events.len()),
            by_event_id: HashMap::with_capacity(events.len()),
        };
        for (party, kind, at) in events {
            register.push_event(party, kind, at);
        }
        register
    }

    /// How many parties the register holds.
    pub(crate) fn parties(&self) -> usize {
        self.parties.len()
    }

    /// How many events the feed holds.
    pub(crate) fn events(&self) -> usize {
        self.events.len()
    }

    /// The position of an event in the feed.
    pub(crate) fn position(&self, event_id: &str) -> Option<usize> {
        self.by_event_id.get(event_id).copied()
    }

    /// The party with this HER-id.
    pub(crate) fn party(&self, her_id: i32) -> Option<&CommunicationParty> {
        self.by_her_id
            .get(&her_id)
            .and_then(|&index| self.parties.get(index))
    }

    /// Up to `size` events after the event at position `after` (from the start without
    /// it), created at or after `from`.
    pub(crate) fn page(
        &self,
        after: Option<usize>,
        from: Option<DateTime<Utc>>,
        size: usize,
    ) -> Page {
        let start = after.map_or(0, |position| position.saturating_add(1));
        let rest = self.events.get(start..).unwrap_or_default();
        let skip = from.map_or(0, |from| rest.partition_point(|event| event.at < from));
        let rest = rest.get(skip..).unwrap_or_default();
        let (page, more) = rest.split_at(size.min(rest.len()));
        Page {
            events: page.iter().filter_map(|event| self.value(event)).collect(),
            next_after: if more.is_empty() {
                None
            } else {
                page.last().map(|event| event.id.clone())
            },
        }
    }

    /// The full export: every party, and the feed's last event.
    pub(crate) fn export(&self) -> ExportResponse {
        let last = self.events.last();
        ExportResponse {
            last_date_time_offset: last.map(|event| event.written.clone()),
            last_event_id: last.map(|event| event.id.clone()).unwrap_or_default(),
            communication_parties: self.parties.clone(),
        }
    }

    /// Appends a `CommunicationPartyUpdated` event for the party `her_id`, created at
    /// `now` (or just after the last event, if the clock says otherwise). Returns its id,
    /// or `None` when no party has this HER-id.
    pub(crate) fn publish_update(&mut self, her_id: i32, now: DateTime<Utc>) -> Option<String> {
        let party = *self.by_her_id.get(&her_id)?;
        let now = to_ticks(now);
        let at = match self.events.last() {
            Some(last) if to_ticks(last.at) >= now => to_ticks(last.at).saturating_add(1),
            _ => now,
        };
        Some(self.push_event(party, EventKind::Updated, at))
    }

    /// Appends an event at `at` (ticks) and returns its id.
    fn push_event(&mut self, party: usize, kind: EventKind, at: i64) -> String {
        let index = self.events.len();
        let id = event_id(index);
        let at = instant(at);
        self.events.push(Event {
            id: id.clone(),
            at,
            // Every seventh event is written without an offset, as UTC.
            written: write_dotnet(at, index % 7 != 6),
            party,
            kind,
        });
        self.by_event_id.insert(id.clone(), index);
        id
    }

    /// An event as the feed shows it, with the party as it is now.
    fn value(&self, event: &Event) -> Option<EventValue> {
        let party = self.parties.get(event.party)?;
        Some(EventValue {
            event_id: event.id.clone(),
            from_datetime: event.written.clone(),
            her_id: party.her_id,
            org_nr: self.org_nrs.get(event.party).copied().flatten(),
            event_type: event.kind.as_str(),
            communication_party: party.clone(),
        })
    }
}

impl Register {
    /// At most `max` events of the CommunicationParty API v2's feed, from sequence
    /// number `from` on. An event's sequence number is its position in the feed plus one.
    pub(crate) fn sequenced_events(&self, from: i64, max: usize) -> Vec<model::Event> {
        let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        self.events
            .iter()
            .enumerate()
            .skip(start)
            .take(max)
            .filter_map(|(index, event)| self.sequenced(index, event))
            .collect()
    }

    /// The last event of the CommunicationParty API v2's feed.
    pub(crate) fn latest_sequenced_event(&self) -> Option<model::Event> {
        let index = self.events.len().checked_sub(1)?;
        self.sequenced(index, self.events.get(index)?)
    }

    /// The event at `index` as the CommunicationParty API v2 shows it: date-times always
    /// with their offset.
    fn sequenced(&self, index: usize, event: &Event) -> Option<model::Event> {
        Some(model::Event {
            sequence_number: Some(i64::try_from(index).ok()?.checked_add(1)?),
            her_id: Some(self.parties.get(event.party)?.her_id),
            event_type: Some(match event.kind {
                EventKind::Created => model::EventType::CommunicationPartyCreated,
                EventKind::Updated => model::EventType::CommunicationPartyUpdated,
            }),
            event_timestamp: Some(write_dotnet(event.at, true)),
        })
    }

    /// Every party, in the order they were created.
    pub(crate) fn all(&self) -> &[CommunicationParty] {
        &self.parties
    }

    /// The sequence number of the feed's last event (0 for none).
    pub(crate) fn last_sequence_number(&self) -> i64 {
        i64::try_from(self.events.len()).unwrap_or(i64::MAX)
    }
}

/// The id of the event at `index`: 16 hexadecimal digits that do not reveal the order.
/// Distinct indexes give distinct ids (the mixing function is a bijection).
fn event_id(index: usize) -> String {
    format!("{:016x}", mix64(index as u64 ^ EVENT_ID_SALT))
}

/// SplitMix64's finalizer: a bijection on `u64` that scatters its input.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the tests of the seed look at.
#[cfg(test)]
impl Register {
    /// The feed, oldest first.
    pub(crate) fn feed(&self) -> &[Event] {
        &self.events
    }

    /// The parties, in the order they were created.
    pub(crate) fn all_parties(&self) -> &[CommunicationParty] {
        &self.parties
    }

    /// The index of the party with this HER-id in [`all_parties`](Self::all_parties).
    pub(crate) fn index_of(&self, her_id: i32) -> Option<usize> {
        self.by_her_id.get(&her_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other() {
        let register = Register::seed();
        let first = register.page(None, None, 100);
        assert_eq!(first.events.len(), 100);
        let after = register.position(first.next_after.as_deref().expect("more"));
        assert_eq!(after, Some(99));
        let last = register.page(Some(register.events() - 1), None, 100);
        assert!(last.events.is_empty() && last.next_after.is_none());
        let tail = register.page(Some(register.events() - 3), None, 2);
        assert_eq!(tail.events.len(), 2);
        assert!(tail.next_after.is_none(), "no Next when nothing follows");
    }

    #[test]
    fn published_updates_follow_the_last_event() {
        let mut register = Register::seed();
        let her_id = register.parties[7].her_id;
        let last = register.events.last().expect("events").at;
        let early = last - chrono::Duration::days(1);
        let id = register.publish_update(her_id, early).expect("known party");
        let event = register.events.last().expect("event");
        assert_eq!(event.id, id);
        assert!(event.at > last);
        assert_eq!(event.kind, EventKind::Updated);
        assert_eq!(register.publish_update(1, Utc::now()), None);
    }
}
