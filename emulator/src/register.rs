//! The CPE register the emulator serves: a deterministic seed of communication parties
//! (organisations, their services, persons with a role) and the event feed that created
//! and changed them.
//!
//! Everything is generated from a fixed seed with a small mixing function, so every run
//! (and every emulator) starts with the same register: 300 parties and 487 events between
//! January and June 2025, five pages at the default page size. Date-times are written the
//! way .NET writes a `DateTimeOffset`: up to seven fractional digits (trailing zeros
//! trimmed) and an offset (`+01:00` or `+02:00`, Norwegian time), except every seventh
//! event's `FromDatetime` and every fifth party's `Valid.From`, which have no offset and
//! are UTC wall-clock times.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, Timelike, Utc, Weekday};

use super::cpapi;
use super::cpe::{CommunicationParty, EventValue, ExportResponse, Period};

/// How many parties the seed holds.
pub(crate) const SEED_PARTIES: usize = 300;

/// How many `CommunicationPartyUpdated` events the seed holds, besides one
/// `CommunicationPartyCreated` per party.
pub(crate) const SEED_UPDATES: usize = 187;

/// The seed of the generator.
const SEED: u64 = 0x6865_6c73_6569_6421;

/// Mixed into event indexes to make event ids.
const EVENT_ID_SALT: u64 = 0x4350_455f_6576_656e;

/// 100-nanosecond ticks (the .NET unit) per second.
const TICKS_PER_SECOND: i64 = 10_000_000;

/// The feed's first event: 2025-01-06T07:12:03.4518273Z, in ticks since the Unix epoch.
const FIRST_EVENT: i64 = 1_736_147_523 * TICKS_PER_SECOND + 4_518_273;

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
struct Event {
    id: String,
    /// When the event was created, to the tick.
    at: DateTime<Utc>,
    /// `at` as the feed writes it.
    written: String,
    /// The index of the party in [`Register::parties`].
    party: usize,
    kind: EventKind,
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
    /// The seeded register (the same on every call).
    pub(crate) fn seed() -> Self {
        Seeder::new().run()
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
    pub(crate) fn sequenced_events(&self, from: i64, max: usize) -> Vec<cpapi::Event> {
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
    pub(crate) fn latest_sequenced_event(&self) -> Option<cpapi::Event> {
        let index = self.events.len().checked_sub(1)?;
        self.sequenced(index, self.events.get(index)?)
    }

    /// The event at `index` as the CommunicationParty API v2 shows it: date-times always
    /// with their offset.
    fn sequenced(&self, index: usize, event: &Event) -> Option<cpapi::Event> {
        Some(cpapi::Event {
            sequence_number: i64::try_from(index).ok()?.checked_add(1)?,
            her_id: self.parties.get(event.party)?.her_id,
            event_type: match event.kind {
                EventKind::Created => cpapi::EventType::CommunicationPartyCreated,
                EventKind::Updated => cpapi::EventType::CommunicationPartyUpdated,
            },
            event_timestamp: write_dotnet(event.at, true),
        })
    }

    /// The party with this HER-id as the CommunicationParty API v2 shows it.
    pub(crate) fn party_v2(&self, her_id: i32) -> Option<cpapi::CommunicationParty> {
        let party = self.party(her_id)?;
        let kind = match party.kind {
            Some("Person") => cpapi::CommunicationPartyType::Person,
            Some("Service") => cpapi::CommunicationPartyType::Service,
            _ => cpapi::CommunicationPartyType::Organization,
        };
        let display_name = match &party.parent_name {
            Some(parent) => format!("{}, {parent}", party.name),
            None => party.name.clone(),
        };
        // Persons receive their messages through their organisation.
        let edi_address = (kind != cpapi::CommunicationPartyType::Person)
            .then(|| format!("{}@edi.nhn.no", party.her_id));
        // The legacy model writes some date-times without an offset; v2 always has one.
        let with_offset = |written: &str| {
            parse_dotnet(written).map_or_else(|_| written.to_owned(), |at| write_dotnet(at, true))
        };
        Some(cpapi::CommunicationParty {
            her_id: party.her_id,
            name: Some(party.name.clone()),
            display_name: Some(display_name),
            kind,
            organization_number: party.organization_number,
            edi_address,
            valid_from: with_offset(&party.valid.from),
            valid_to: party.valid.to.as_deref().map(with_offset),
        })
    }

    /// The CommunicationParty API v2's export: the HER-ids of the parties active at
    /// `now` (valid without end, or until a later time), or of all of them.
    pub(crate) fn export_v2(
        &self,
        include_deactivated: bool,
        now: DateTime<Utc>,
    ) -> cpapi::CommunicationPartyExport {
        let active = |party: &&CommunicationParty| match &party.valid.to {
            None => true,
            Some(to) => parse_dotnet(to).is_ok_and(|to| to > now),
        };
        let her_ids: Vec<i32> = self
            .parties
            .iter()
            .filter(|party| include_deactivated || active(party))
            .map(|party| party.her_id)
            .collect();
        cpapi::CommunicationPartyExport {
            last_sequence_number: i64::try_from(self.events.len()).unwrap_or(i64::MAX),
            count: i32::try_from(her_ids.len()).unwrap_or(i32::MAX),
            communication_parties: her_ids,
        }
    }
}

/// The id of the event at `index`: 16 hexadecimal digits that do not reveal the order.
/// Distinct indexes give distinct ids (the mixing function is a bijection).
fn event_id(index: usize) -> String {
    format!("{:016x}", mix64(index as u64 ^ EVENT_ID_SALT))
}

/// SplitMix64's finalizer: a bijection on `u64` that scatters its input.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A tiny deterministic generator (SplitMix64).
#[derive(Debug)]
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..n` (`n` at least 1).
    fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        // The remainder is below `n`, which came from a usize.
        usize::try_from(self.next() % n).unwrap_or_default()
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// True once in `n` times.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items` (which must not be empty).
    fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or_default()
    }
}

/// Municipalities: number and name.
const MUNICIPALITIES: &[(&str, &str)] = &[
    ("0301", "Oslo"),
    ("4601", "Bergen"),
    ("5001", "Trondheim"),
    ("1103", "Stavanger"),
    ("1108", "Sandnes"),
    ("4204", "Kristiansand"),
    ("5501", "Tromsø"),
    ("1804", "Bodø"),
    ("1508", "Ålesund"),
    ("3301", "Drammen"),
    ("3107", "Fredrikstad"),
    ("3105", "Sarpsborg"),
    ("3403", "Hamar"),
    ("3405", "Lillehammer"),
    ("3407", "Gjøvik"),
    ("3905", "Tønsberg"),
    ("4003", "Skien"),
    ("4203", "Arendal"),
    ("1106", "Haugesund"),
    ("1506", "Molde"),
    ("5503", "Harstad"),
    ("3222", "Lørenskog"),
    ("4647", "Sunnfjord"),
    ("1833", "Rana"),
];

/// Health trusts and the municipality they sit in.
const HOSPITALS: &[(&str, &str)] = &[
    ("Oslo universitetssykehus HF", "0301"),
    ("Akershus universitetssykehus HF", "3222"),
    ("Helse Bergen HF", "4601"),
    ("Helse Stavanger HF", "1103"),
    ("St. Olavs hospital HF", "5001"),
    ("Universitetssykehuset Nord-Norge HF", "5501"),
    ("Sykehuset Innlandet HF", "3403"),
    ("Vestre Viken HF", "3301"),
    ("Sørlandet sykehus HF", "4203"),
    ("Sykehuset Østfold HF", "3105"),
    ("Helse Møre og Romsdal HF", "1508"),
    ("Nordlandssykehuset HF", "1804"),
    ("Helse Førde HF", "4647"),
    ("Sykehuset i Vestfold HF", "3905"),
    ("Sykehuset Telemark HF", "4003"),
    ("Helse Fonna HF", "1106"),
    ("Helgelandssykehuset HF", "1833"),
];

const DEPARTMENTS: &[&str] = &[
    "Kardiologisk avdeling",
    "Ortopedisk avdeling",
    "Akuttmottak",
    "Barne- og ungdomsklinikken",
    "Kvinneklinikken",
    "Avdeling for medisinsk biokjemi",
    "Radiologisk avdeling",
    "Nevrologisk avdeling",
    "Kreftavdelingen",
    "Psykiatrisk poliklinikk",
    "Lungeavdelingen",
    "Fødeavdelingen",
    "Gastromedisinsk avdeling",
    "Mikrobiologisk avdeling",
    "Patologiavdelingen",
];

/// Municipal services; `{}` is the municipality's name.
const MUNICIPAL_SERVICES: &[&str] = &[
    "Helsestasjon {}",
    "Legevakten i {}",
    "Hjemmetjenesten {}",
    "Fysioterapitjenesten {}",
    "Jordmortjenesten {}",
    "Rus og psykisk helse {}",
    "Skolehelsetjenesten {}",
    "Tildelingskontoret {}",
];

/// Names of GP offices; `{}` is a street or an area.
const GP_OFFICES: &[&str] = &[
    "Legekontoret {}",
    "{} legesenter",
    "Legesenteret {}",
    "{} legekontor",
];

const STREETS: &[&str] = &[
    "Storgata",
    "Kirkegata",
    "Torggata",
    "Kongens gate",
    "Dronningens gate",
    "Parkveien",
    "Strandgata",
    "Jernbanegata",
    "Sjøgata",
    "Elvegata",
    "Sentrum",
];

/// City districts and the municipality they are in.
const DISTRICTS: &[(&str, &str)] = &[
    ("Majorstuen", "0301"),
    ("Grünerløkka", "0301"),
    ("Frogner", "0301"),
    ("Lambertseter", "0301"),
    ("Nordnes", "4601"),
    ("Sandviken", "4601"),
    ("Lade", "5001"),
    ("Byåsen", "5001"),
    ("Madla", "1103"),
    ("Tromsdalen", "5501"),
];

const FIRST_NAMES: &[&str] = &[
    "Kari", "Ola", "Ingrid", "Lars", "Nora", "Emil", "Sofie", "Jakob", "Ida", "Henrik", "Marte",
    "Sindre", "Astrid", "Magnus", "Silje", "Eirik", "Hanne", "Per", "Anne", "Thomas", "Linn",
    "Øyvind", "Maria", "Knut", "Ragnhild",
];

const LAST_NAMES: &[&str] = &[
    "Nordmann",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Jensen",
    "Karlsen",
    "Johnsen",
    "Pettersen",
    "Eriksen",
    "Berg",
    "Haugen",
    "Hagen",
    "Johannessen",
    "Andreassen",
    "Jacobsen",
    "Dahl",
    "Jørgensen",
    "Halvorsen",
    "Henriksen",
    "Lund",
    "Sørensen",
    "Moen",
    "Solberg",
    "Bakken",
    "Strand",
];

/// The kind of a party, as `Type` writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Organization,
    Service,
    Person,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Organization => "Organization",
            Kind::Service => "Service",
            Kind::Person => "Person",
        }
    }
}

/// A block of the seed: an organisation and the parties under it.
#[derive(Clone, Copy, Debug)]
enum Block {
    Hospital(usize),
    Municipality(usize),
    GpOffice,
    Pharmacy,
    Laboratory,
    Dentist,
    Physiotherapy,
}

/// A party before the timeline gives it dates.
#[derive(Debug)]
struct Draft {
    name: String,
    kind: Kind,
    parent: Option<usize>,
    organization_number: Option<i32>,
    org_nr: Option<i32>,
    municipality: Option<&'static str>,
}

/// Builds the seed.
#[derive(Debug)]
struct Seeder {
    rng: Mix,
    drafts: Vec<Draft>,
    names: HashSet<String>,
    org_numbers: HashSet<i32>,
}

impl Seeder {
    fn new() -> Self {
        Seeder {
            rng: Mix(SEED),
            drafts: Vec::with_capacity(SEED_PARTIES),
            names: HashSet::new(),
            org_numbers: HashSet::new(),
        }
    }

    fn run(mut self) -> Register {
        self.parties();
        self.timeline()
    }

    /// Drafts [`SEED_PARTIES`] parties, every organisation before the parties under it.
    fn parties(&mut self) {
        let mut blocks: Vec<Block> = (0..HOSPITALS.len()).map(Block::Hospital).collect();
        blocks.extend((0..MUNICIPALITIES.len()).map(Block::Municipality));
        blocks.extend([Block::GpOffice; 30]);
        blocks.extend([Block::Pharmacy; 8]);
        blocks.extend([Block::Laboratory; 3]);
        blocks.extend([Block::Dentist; 6]);
        blocks.extend([Block::Physiotherapy; 4]);
        // Oslo universitetssykehus stays first; the rest is shuffled (Fisher-Yates).
        for i in (2..blocks.len()).rev() {
            let j = 1 + self.rng.below(i);
            blocks.swap(i, j);
        }
        let mut blocks = blocks.into_iter();
        while self.drafts.len() < SEED_PARTIES {
            let block = blocks.next().unwrap_or(Block::GpOffice);
            self.block(block);
        }
        self.drafts.truncate(SEED_PARTIES);
    }

    /// Drafts one organisation and the parties under it.
    fn block(&mut self, block: Block) {
        match block {
            Block::Hospital(index) => {
                let (name, number) = HOSPITALS.get(index).copied().unwrap_or_default();
                let org = self.organisation(name.to_owned(), number);
                let mut departments = DEPARTMENTS.to_vec();
                for _ in 0..self.rng.between(4, 7) {
                    let department = departments.remove(self.rng.below(departments.len()));
                    self.service(org, department.to_owned());
                }
                for _ in 0..self.rng.between(1, 3) {
                    let role = self
                        .rng
                        .pick(&["Lege", "Overlege", "Sykepleier", "Jordmor"]);
                    self.person(org, role);
                }
            }
            Block::Municipality(index) => {
                let (number, name) = MUNICIPALITIES.get(index).copied().unwrap_or_default();
                let org = self.organisation(format!("{name} kommune"), number);
                let mut services = MUNICIPAL_SERVICES.to_vec();
                for _ in 0..self.rng.between(2, 4) {
                    let service = services.remove(self.rng.below(services.len()));
                    self.service(org, service.replace("{}", name));
                }
                if self.rng.one_in(2) {
                    let role = self.rng.pick(&["Helsesykepleier", "Fysioterapeut"]);
                    self.person(org, role);
                }
            }
            Block::GpOffice => {
                // Named after a street anywhere, or a district of a city.
                let (name, number) = self.untaken(|rng| {
                    let pattern = rng.pick(GP_OFFICES);
                    let (place, number) = if rng.one_in(2) {
                        (rng.pick(STREETS), rng.pick(MUNICIPALITIES).0)
                    } else {
                        rng.pick(DISTRICTS)
                    };
                    (pattern.replace("{}", place), number)
                });
                let org = self.organisation(name, number);
                for _ in 0..self.rng.between(2, 4) {
                    self.person(org, "Fastlege");
                }
                if self.rng.one_in(4) {
                    self.service(org, "Laboratoriet".to_owned());
                }
            }
            Block::Pharmacy => {
                let (name, number) = self.untaken(|rng| {
                    let chain = rng.pick(&["Apotek 1", "Vitusapotek", "Boots apotek"]);
                    let street = rng.pick(STREETS);
                    (format!("{chain} {street}"), rng.pick(MUNICIPALITIES).0)
                });
                self.organisation(name, number);
            }
            Block::Laboratory => {
                let name = self.rng.pick(&[
                    "Fürst Medisinsk Laboratorium",
                    "Unilabs Laboratoriemedisin",
                    "Oslo Medisinske Laboratorium",
                ]);
                let (number, _) = self.rng.pick(MUNICIPALITIES);
                let org = self.organisation(name.to_owned(), number);
                self.service(org, "Prøvemottak".to_owned());
            }
            Block::Dentist => {
                let (name, number) = self.untaken(|rng| {
                    let street = rng.pick(STREETS);
                    (format!("Tannlegene i {street}"), rng.pick(MUNICIPALITIES).0)
                });
                let org = self.organisation(name, number);
                for _ in 0..self.rng.between(1, 2) {
                    self.person(org, "Tannlege");
                }
            }
            Block::Physiotherapy => {
                let (name, number) = self.untaken(|rng| {
                    let (number, place) = rng.pick(MUNICIPALITIES);
                    (format!("{place} fysioterapi"), number)
                });
                let org = self.organisation(name, number);
                self.person(org, "Fysioterapeut");
            }
        }
    }

    /// A name and municipality from `make` whose name is not taken yet, within a few
    /// tries (then the last try: [`unique_name`](Self::unique_name) tells it apart).
    fn untaken(
        &mut self,
        mut make: impl FnMut(&mut Mix) -> (String, &'static str),
    ) -> (String, &'static str) {
        let mut tried = make(&mut self.rng);
        for _ in 0..8 {
            if !self.names.contains(&tried.0) {
                break;
            }
            tried = make(&mut self.rng);
        }
        tried
    }

    /// A unique name: `name`, or `name` with the municipality's name after it.
    fn unique_name(&mut self, name: String, municipality: &str) -> String {
        let mut candidate = name.clone();
        let mut n = 1;
        while !self.names.insert(candidate.clone()) {
            let place = MUNICIPALITIES
                .iter()
                .find(|(number, _)| *number == municipality)
                .map_or(municipality, |(_, place)| *place);
            n += 1;
            candidate = if n == 2 {
                format!("{name}, {place}")
            } else {
                format!("{name} {n}, {place}")
            };
        }
        candidate
    }

    /// A fresh organisation number: nine digits starting with 9, with a valid modulus-11
    /// check digit.
    fn org_number(&mut self) -> i32 {
        loop {
            let body = 90_000_000 + self.rng.below(10_000_000);
            if let Some(check) = mod11_check_digit(body) {
                let number = i32::try_from(body * 10 + check).unwrap_or_default();
                if self.org_numbers.insert(number) {
                    return number;
                }
            }
        }
    }

    /// Drafts an organisation and returns its index.
    fn organisation(&mut self, name: String, municipality: &'static str) -> usize {
        let name = self.unique_name(name, municipality);
        let number = self.org_number();
        self.drafts.push(Draft {
            name,
            kind: Kind::Organization,
            parent: None,
            organization_number: Some(number),
            org_nr: Some(number),
            municipality: Some(municipality),
        });
        self.drafts.len() - 1
    }

    /// Drafts a service under `org`: half of them are sub-units with their own
    /// organisation number.
    fn service(&mut self, org: usize, name: String) {
        let (org_nr, municipality) = self
            .drafts
            .get(org)
            .map_or((None, None), |o| (o.org_nr, o.municipality));
        let organization_number = if self.rng.one_in(2) {
            Some(self.org_number())
        } else {
            org_nr
        };
        self.drafts.push(Draft {
            name,
            kind: Kind::Service,
            parent: Some(org),
            organization_number,
            org_nr,
            municipality,
        });
    }

    /// Drafts a person with a role under `org`.
    fn person(&mut self, org: usize, role: &str) {
        let name = format!(
            "{role} {} {}",
            self.rng.pick(FIRST_NAMES),
            self.rng.pick(LAST_NAMES)
        );
        let org_nr = self.drafts.get(org).and_then(|o| o.org_nr);
        self.drafts.push(Draft {
            name,
            kind: Kind::Person,
            parent: Some(org),
            organization_number: None,
            org_nr,
            municipality: None,
        });
    }

    /// Gives the parties HER-ids and dates, and writes the feed: one creation per party
    /// (in draft order, so organisations come before their parties) and
    /// [`SEED_UPDATES`] updates, spread over the first half of 2025.
    fn timeline(mut self) -> Register {
        let total = SEED_PARTIES + SEED_UPDATES;
        let mut register = Register {
            parties: Vec::with_capacity(self.drafts.len()),
            org_nrs: Vec::with_capacity(self.drafts.len()),
            by_her_id: HashMap::with_capacity(self.drafts.len()),
            events: Vec::with_capacity(total),
            by_event_id: HashMap::with_capacity(total),
        };
        let mut her_id: i32 = 100_000;
        let mut at = FIRST_EVENT;
        let mut created = 0;
        let mut last_update: Vec<Option<i64>> = vec![None; self.drafts.len()];
        for slot in 0..total {
            let creates_left = self.drafts.len() - created;
            let create = created == 0
                || creates_left == total - slot
                || (creates_left > 0 && self.rng.below(total - slot) < creates_left);
            if create {
                let Some(draft) = self.drafts.get(created) else {
                    break;
                };
                her_id += i32::try_from(self.rng.between(1, 80_000)).unwrap_or(1);
                let parent = draft
                    .parent
                    .and_then(|p| register.parties.get(p))
                    .map(|p| (p.her_id, p.name.clone()));
                let from = if created % 5 == 3 {
                    // Written as a date without offset, the way AR often has it.
                    format!("{}T00:00:00", instant(at).format("%Y-%m-%d"))
                } else {
                    write_dotnet(local_midnight(instant(at)), true)
                };
                register.parties.push(CommunicationParty {
                    her_id,
                    name: draft.name.clone(),
                    kind: Some(draft.kind.as_str()),
                    parent_her_id: parent.as_ref().map(|(her_id, _)| *her_id),
                    parent_name: parent.map(|(_, name)| name),
                    organization_number: draft.organization_number,
                    municipality: draft.municipality.map(str::to_owned),
                    valid: Period { from, to: None },
                });
                register.org_nrs.push(draft.org_nr);
                register.by_her_id.insert(her_id, created);
                register.push_event(created, EventKind::Created, at);
                created += 1;
            } else {
                let party = self.rng.below(created);
                register.push_event(party, EventKind::Updated, at);
                if let Some(last) = last_update.get_mut(party) {
                    *last = Some(at);
                }
            }
            // 20 minutes to 15 hours to the next event, to the tick.
            let gap = self.rng.between(20 * 60, 15 * 3600) as i64 * TICKS_PER_SECOND
                + self.rng.below(TICKS_PER_SECOND as usize) as i64;
            at += gap;
        }
        // Some updated parties were deactivated by their last update; a few are valid
        // until a date in the future.
        for (index, party) in register.parties.iter_mut().enumerate() {
            let last = last_update.get(index).copied().flatten();
            if let Some(last) = last.filter(|_| self.rng.one_in(8)) {
                party.valid.to = Some(write_dotnet(instant(last), true));
            } else if index % 97 == 13 {
                party.valid.to = Some("2030-12-31T00:00:00+01:00".to_owned());
            }
        }
        register
    }
}

/// The modulus-11 check digit of an organisation number's first eight digits, or `None`
/// when the remainder makes no valid number.
pub(crate) fn mod11_check_digit(first_eight: usize) -> Option<usize> {
    const WEIGHTS: [usize; 8] = [3, 2, 7, 6, 5, 4, 3, 2];
    let mut rest = first_eight;
    let mut sum = 0;
    for weight in WEIGHTS.iter().rev() {
        sum += (rest % 10) * weight;
        rest /= 10;
    }
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        check => Some(check),
    }
}

/// An instant from ticks since the Unix epoch.
fn instant(ticks: i64) -> DateTime<Utc> {
    let nanos = u32::try_from(ticks.rem_euclid(TICKS_PER_SECOND) * 100).unwrap_or_default();
    DateTime::from_timestamp(ticks.div_euclid(TICKS_PER_SECOND), nanos).unwrap_or_default()
}

/// An instant in ticks since the Unix epoch (finer digits dropped).
fn to_ticks(at: DateTime<Utc>) -> i64 {
    at.timestamp()
        .saturating_mul(TICKS_PER_SECOND)
        .saturating_add(i64::from(
            at.timestamp_subsec_nanos().min(999_999_999) / 100,
        ))
}

/// The last Sunday of a month, or `None` for an impossible date.
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let mut day = NaiveDate::from_ymd_opt(next_year, next_month, 1)?.pred_opt()?;
    while day.weekday() != Weekday::Sun {
        day = day.pred_opt()?;
    }
    Some(day)
}

/// Norway's offset at `at`: `+02:00` in summer time (from 01:00 UTC on the last Sunday
/// of March to 01:00 UTC on the last Sunday of October), `+01:00` otherwise.
pub(crate) fn oslo_offset(at: DateTime<Utc>) -> FixedOffset {
    let switch = |month| {
        last_sunday(at.year(), month)
            .and_then(|day| day.and_hms_opt(1, 0, 0))
            .map(|time| time.and_utc())
    };
    let summer = match (switch(3), switch(10)) {
        (Some(start), Some(end)) => at >= start && at < end,
        _ => false,
    };
    FixedOffset::east_opt(if summer { 7200 } else { 3600 }).unwrap_or(Utc.fix())
}

/// Midnight, Norwegian time, of the day `at` falls on in Norway.
fn local_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    let offset = oslo_offset(at);
    let local = at.with_timezone(&offset);
    local
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(offset).single())
        .map_or(at, |midnight| midnight.with_timezone(&Utc))
}

/// Writes an instant the way .NET writes a `DateTimeOffset`: `2025-05-01T12:00:00.1234567+02:00`,
/// with at most seven fractional digits (trailing zeros trimmed, no dot when there are
/// none). With `offset`, in Norwegian time with its offset; without, as the UTC
/// wall-clock time with no offset (`2025-05-01T10:00:00.1234567`).
pub(crate) fn write_dotnet(at: DateTime<Utc>, offset: bool) -> String {
    let (local, suffix) = if offset {
        let offset = oslo_offset(at);
        (at.with_timezone(&offset).naive_local(), offset.to_string())
    } else {
        (at.naive_utc(), String::new())
    };
    let mut written = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ticks = local.nanosecond().min(999_999_999) / 100;
    if ticks != 0 {
        let fraction = format!("{ticks:07}");
        written.push('.');
        written.push_str(fraction.trim_end_matches('0'));
    }
    written.push_str(&suffix);
    written
}

/// Reads a date-time the way the CPE API accepts one: `YYYY-MM-DDTHH:MM:SS`, then up to
/// seven fractional digits after a dot, then `Z`, an offset `+HH:MM`/`-HH:MM`, or nothing
/// (read as UTC).
///
/// # Errors
/// What is wrong, to follow the parameter's name and value in a message.
pub(crate) fn parse_dotnet(value: &str) -> Result<DateTime<Utc>, String> {
    const EXPECTED: &str = "a date-time such as 2025-05-01T12:00:00.1234567+02:00 (with an offset, or \
         without one for UTC)";
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let shape = bytes.len() >= 19
        && bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    let fields = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    );
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return Err(format!("is not {EXPECTED}"));
    };
    if !shape {
        return Err(format!("is not {EXPECTED}"));
    }
    match bytes.get(10) {
        Some(b'T') => {}
        Some(b' ') => return Err("has a space between date and time; use `T`".to_owned()),
        _ => return Err(format!("is not {EXPECTED}")),
    }
    let date = i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(|| "is not a date in the calendar".to_owned())?;

    let mut rest = value.get(19..).unwrap_or_default();
    let mut nanos = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let count = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return Err("has a dot but no fractional digits after the seconds".to_owned());
        }
        if count > 7 {
            return Err(format!(
                "has {count} fractional digits; at most seven (100 ns) are allowed"
            ));
        }
        let (fraction, tail) = after_dot.split_at(count);
        let ticks: u32 = format!("{fraction:0<7}").parse().unwrap_or_default();
        nanos = ticks * 100;
        rest = tail;
    }
    let time = date
        .and_hms_nano_opt(hour, minute, second, nanos)
        .filter(|_| second < 60)
        .ok_or_else(|| "is not a time of day".to_owned())?;
    let offset_seconds = match rest.as_bytes() {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |a: u8, b: u8| -> Option<i32> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i32::from(a - b'0') * 10 + i32::from(b - b'0'))
            };
            let (Some(hours), Some(minutes)) = (field(*h1, *h2), field(*m1, *m2)) else {
                return Err(format!("has a malformed offset; {EXPECTED}"));
            };
            if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
                return Err("has an offset beyond ±14:00".to_owned());
            }
            let seconds = (hours * 60 + minutes) * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        [b' ', _, _, b':', _, _] => {
            return Err(
                "has a space where its offset's `+` should be: URL-encode `+` as `%2B`".to_owned(),
            );
        }
        _ => {
            return Err(format!(
                "ends in something that is not an offset; {EXPECTED}"
            ));
        }
    };
    let offset = FixedOffset::east_opt(offset_seconds)
        .ok_or_else(|| "has an offset beyond ±14:00".to_owned())?;
    time.and_local_timezone(offset)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| "is not a representable instant".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_deterministic_and_shaped_as_documented() {
        let (a, b) = (Register::seed(), Register::seed());
        assert_eq!(a.parties(), SEED_PARTIES);
        assert_eq!(a.events(), SEED_PARTIES + SEED_UPDATES);
        let ids = |r: &Register| r.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(
            a.export().communication_parties.len(),
            b.export().communication_parties.len()
        );
        let json = |r: &Register| serde_json::to_string(&r.export()).expect("export");
        assert_eq!(json(&a), json(&b));
        // Ids are unique, times never decrease, every party is created once, before any
        // update, and its parent before it.
        let unique: HashSet<&String> = a.events.iter().map(|e| &e.id).collect();
        assert_eq!(unique.len(), a.events.len());
        assert!(a.events.windows(2).all(|w| w[0].at < w[1].at));
        let mut seen = HashSet::new();
        for event in &a.events {
            match event.kind {
                EventKind::Created => assert!(seen.insert(event.party)),
                EventKind::Updated => assert!(seen.contains(&event.party)),
            }
            let party = &a.parties[event.party];
            if let Some(parent) = party.parent_her_id {
                assert!(seen.contains(&a.by_her_id[&parent]));
            }
        }
        assert_eq!(seen.len(), SEED_PARTIES);
        assert_eq!(a.parties[0].name, "Oslo universitetssykehus HF");
    }

    #[test]
    fn seeded_parties_are_realistic() {
        let register = Register::seed();
        let names: HashSet<&str> = register.parties.iter().map(|p| p.name.as_str()).collect();
        assert!(
            names.len() > 200,
            "names are mostly distinct: {}",
            names.len()
        );
        for party in &register.parties {
            assert!((100_000..100_000_000).contains(&party.her_id));
            if let Some(number) = party.organization_number {
                let number = usize::try_from(number).expect("positive");
                assert!((100_000_000..1_000_000_000).contains(&number));
                assert_eq!(mod11_check_digit(number / 10), Some(number % 10));
            }
            if let Some(municipality) = &party.municipality {
                assert!(
                    municipality.len() == 4 && municipality.bytes().all(|b| b.is_ascii_digit())
                );
            }
            match party.kind {
                Some("Organization") => assert!(party.parent_her_id.is_none()),
                Some("Service" | "Person") => assert!(party.parent_name.is_some()),
                other => panic!("unexpected Type {other:?}"),
            }
            parse_dotnet(&party.valid.from).expect("Valid.From parses");
        }
        let kinds = |kind| {
            register
                .parties
                .iter()
                .filter(|p| p.kind == Some(kind))
                .count()
        };
        assert!(kinds("Organization") >= 50);
        assert!(kinds("Service") >= 50);
        assert!(kinds("Person") >= 50);
        let deactivated = register
            .parties
            .iter()
            .filter(|p| {
                p.valid
                    .to
                    .as_deref()
                    .is_some_and(|to| to.starts_with("2025"))
            })
            .count();
        assert!((5..40).contains(&deactivated), "{deactivated} deactivated");
    }

    #[test]
    fn dotnet_date_times_round_trip() {
        for event in &Register::seed().events {
            assert_eq!(
                parse_dotnet(&event.written),
                Ok(event.at),
                "{}",
                event.written
            );
        }
        let at = instant(FIRST_EVENT);
        assert_eq!(write_dotnet(at, true), "2025-01-06T08:12:03.4518273+01:00");
        assert_eq!(write_dotnet(at, false), "2025-01-06T07:12:03.4518273");
        let summer = instant(FIRST_EVENT + 150 * 86_400 * TICKS_PER_SECOND);
        assert!(write_dotnet(summer, true).ends_with("+02:00"));
        let whole = instant(1_746_093_600 * TICKS_PER_SECOND);
        assert_eq!(write_dotnet(whole, true), "2025-05-01T12:00:00+02:00");
        assert_eq!(
            write_dotnet(instant(1_746_093_600 * TICKS_PER_SECOND + 1_200_000), true),
            "2025-05-01T12:00:00.12+02:00"
        );
    }

    #[test]
    fn dotnet_date_times_are_read_strictly() {
        let utc = |s: &str| parse_dotnet(s).map(|at| at.to_rfc3339());
        assert_eq!(
            utc("2025-05-01T12:00:00.1234567+02:00"),
            Ok("2025-05-01T10:00:00.123456700+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00"),
            Ok("2025-05-01T12:00:00+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00.5Z"),
            Ok("2025-05-01T12:00:00.500+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00-03:30"),
            Ok("2025-05-01T15:30:00+00:00".to_owned())
        );
        for (bad, fragment) in [
            ("2025-05-01T12:00:00.12345678+02:00", "8 fractional digits"),
            ("2025-05-01T12:00:00 02:00", "URL-encode"),
            ("2025-05-01 12:00:00", "space between date and time"),
            ("2025-02-30T12:00:00", "not a date in the calendar"),
            ("2025-05-01T24:00:00", "not a time of day"),
            ("2025-05-01T12:00:60", "not a time of day"),
            ("2025-05-01T12:00:00+15:00", "beyond"),
            ("2025-05-01T12:00:00.", "no fractional digits"),
            ("2025-05-01T12:00:00+0200", "not an offset"),
            ("2025-05-01", "is not a date-time"),
            ("yesterday", "is not a date-time"),
            ("", "is not a date-time"),
            ("2025-05-01T12:00:00Zulu", "not an offset"),
            ("２０２５-05-01T12:00:00", "is not a date-time"),
        ] {
            let error = parse_dotnet(bad).expect_err(bad);
            assert!(error.contains(fragment), "{bad}: {error}");
        }
    }

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

    #[test]
    fn organisation_numbers_have_valid_check_digits() {
        // Two real-format examples: 974760673 (Brønnøysundregistrene) and 983044778.
        assert_eq!(mod11_check_digit(97476067), Some(3));
        assert_eq!(mod11_check_digit(98304477), Some(8));
    }
}
