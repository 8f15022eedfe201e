//! The register's seed: a fixed set of communication parties (organisations, their
//! services, persons with a role) and the event feed that created and changed them.
//!
//! Everything is generated from a fixed seed with a small mixing function, so every run
//! (and every emulator) starts with the same register: 300 parties and 487 events between
//! January and June 2025, five pages at the default page size. Every fifth party's
//! `Valid.From` has no offset (a UTC wall-clock date, the way AR often has it); the
//! register writes the events' date-times (see [`crate::apis::register`]).

use std::collections::HashSet;

use crate::apis::cpe::model::{CommunicationParty, Period};
use crate::apis::register::dotnet::{TICKS_PER_SECOND, instant, local_midnight, write_dotnet};
use crate::apis::register::{EventKind, Register, mix64};

/// How many parties the seed holds.
pub(crate) const SEED_PARTIES: usize = 300;

/// How many `CommunicationPartyUpdated` events the seed holds, besides one
/// `CommunicationPartyCreated` per party.
pub(crate) const SEED_UPDATES: usize = 187;

/// The seed of the generator.
const SEED: u64 = 0x6865_6c73_6569_6421;

/// The feed's first event: 2025-01-06T07:12:03.4518273Z, in ticks since the Unix epoch.
pub(crate) const FIRST_EVENT: i64 = 1_736_147_523 * TICKS_PER_SECOND + 4_518_273;

impl Register {
    /// The seeded register (the same on every call).
    pub(crate) fn seed() -> Self {
        register()
    }
}

/// The seeded register (the same on every call).
pub(crate) fn register() -> Register {
    register_of(SEED_PARTIES)
}

/// A register of `parties` parties, made the way the seed is (the seed itself for
/// [`SEED_PARTIES`]), with updates, event gaps and HER-id steps scaled to its size so
/// that the HER-ids stay within `i32` and the feed within months.
pub(crate) fn register_of(parties: usize) -> Register {
    Seeder::new(parties.max(1)).run()
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
pub(crate) const MUNICIPALITIES: &[(&str, &str)] = &[
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
    /// How many parties to draft.
    size: usize,
    rng: Mix,
    drafts: Vec<Draft>,
    names: HashSet<String>,
    org_numbers: HashSet<i32>,
}

impl Seeder {
    fn new(size: usize) -> Self {
        Seeder {
            size,
            rng: Mix(SEED),
            drafts: Vec::with_capacity(size),
            names: HashSet::new(),
            org_numbers: HashSet::new(),
        }
    }

    fn run(mut self) -> Register {
        self.parties();
        self.timeline()
    }

    /// Drafts `size` parties, every organisation before the parties under it.
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
        while self.drafts.len() < self.size {
            let block = blocks.next().unwrap_or(Block::GpOffice);
            self.block(block);
        }
        self.drafts.truncate(self.size);
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
        // The seed's proportions at any size: as many updates per party, events as dense
        // (so the feed spans the same months), HER-id steps small enough for `i32`.
        let size = self.size;
        let updates = SEED_UPDATES * size / SEED_PARTIES;
        let total = size + updates;
        let scale = |n: usize| (n * SEED_PARTIES / size.max(SEED_PARTIES)).max(1);
        let max_step = 80_000.min(2_000_000_000 / size);
        // Each party with the `OrgNr` of its events; each event as (party, kind, ticks).
        let mut parties: Vec<(CommunicationParty, Option<i32>)> =
            Vec::with_capacity(self.drafts.len());
        let mut events = Vec::with_capacity(total);
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
                her_id += i32::try_from(self.rng.between(1, max_step)).unwrap_or(1);
                let parent = draft
                    .parent
                    .and_then(|p| parties.get(p))
                    .map(|(p, _)| (p.her_id, p.name.clone()));
                let from = if created % 5 == 3 {
                    // Written as a date without offset, the way AR often has it.
                    format!("{}T00:00:00", instant(at).format("%Y-%m-%d"))
                } else {
                    write_dotnet(local_midnight(instant(at)), true)
                };
                let party = CommunicationParty {
                    her_id,
                    name: draft.name.clone(),
                    kind: Some(draft.kind.as_str()),
                    parent_her_id: parent.as_ref().map(|(her_id, _)| *her_id),
                    parent_name: parent.map(|(_, name)| name),
                    organization_number: draft.organization_number,
                    municipality: draft.municipality.map(str::to_owned),
                    valid: Period { from, to: None },
                };
                parties.push((party, draft.org_nr));
                events.push((created, EventKind::Created, at));
                created += 1;
            } else {
                let party = self.rng.below(created);
                events.push((party, EventKind::Updated, at));
                if let Some(last) = last_update.get_mut(party) {
                    *last = Some(at);
                }
            }
            // 20 minutes to 15 hours to the next event, to the tick.
            let gap = self.rng.between(scale(20 * 60), scale(15 * 3600)) as i64 * TICKS_PER_SECOND
                + self.rng.below(TICKS_PER_SECOND as usize) as i64;
            at += gap;
        }
        // Some updated parties were deactivated by their last update; a few are valid
        // until a date in the future.
        for (index, (party, _)) in parties.iter_mut().enumerate() {
            let last = last_update.get(index).copied().flatten();
            if let Some(last) = last.filter(|_| self.rng.one_in(8)) {
                party.valid.to = Some(write_dotnet(instant(last), true));
            } else if index % 97 == 13 {
                party.valid.to = Some("2030-12-31T00:00:00+01:00".to_owned());
            }
        }
        Register::new(parties, events)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::register::dotnet::parse_dotnet;

    #[test]
    fn dotnet_date_times_are_written_as_dotnet_writes_them() {
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
    fn the_seed_is_deterministic_and_shaped_as_documented() {
        let (a, b) = (Register::seed(), Register::seed());
        assert_eq!(a.parties(), SEED_PARTIES);
        assert_eq!(a.events(), SEED_PARTIES + SEED_UPDATES);
        let ids = |r: &Register| r.feed().iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(
            a.export().communication_parties.len(),
            b.export().communication_parties.len()
        );
        let json = |r: &Register| serde_json::to_string(&r.export()).expect("export");
        assert_eq!(json(&a), json(&b));
        // Ids are unique, times never decrease, every party is created once, before any
        // update, and its parent before it.
        let unique: HashSet<&String> = a.feed().iter().map(|e| &e.id).collect();
        assert_eq!(unique.len(), a.feed().len());
        assert!(a.feed().windows(2).all(|w| w[0].at < w[1].at));
        let mut seen = HashSet::new();
        for event in a.feed() {
            match event.kind {
                EventKind::Created => assert!(seen.insert(event.party)),
                EventKind::Updated => assert!(seen.contains(&event.party)),
            }
            let party = &a.all_parties()[event.party];
            if let Some(parent) = party.parent_her_id {
                assert!(seen.contains(&a.index_of(parent).expect("parent is a party")));
            }
        }
        assert_eq!(seen.len(), SEED_PARTIES);
        assert_eq!(a.all_parties()[0].name, "Oslo universitetssykehus HF");
    }

    #[test]
    fn seeded_parties_are_realistic() {
        let register = Register::seed();
        let names: HashSet<&str> = register
            .all_parties()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert!(
            names.len() > 200,
            "names are mostly distinct: {}",
            names.len()
        );
        for party in register.all_parties() {
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
                .all_parties()
                .iter()
                .filter(|p| p.kind == Some(kind))
                .count()
        };
        assert!(kinds("Organization") >= 50);
        assert!(kinds("Service") >= 50);
        assert!(kinds("Person") >= 50);
        let deactivated = register
            .all_parties()
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
    fn seeded_date_times_round_trip() {
        for event in Register::seed().feed() {
            assert_eq!(
                parse_dotnet(&event.written),
                Ok(event.at),
                "{}",
                event.written
            );
        }
    }

    #[test]
    fn a_large_register_keeps_its_her_ids_apart_and_within_i32() {
        let register = register_of(30_000);
        assert_eq!(register.parties(), 30_000);
        assert_eq!(register.events(), 30_000 + SEED_UPDATES * 100);
        let her_ids: HashSet<i32> = register.all().iter().map(|p| p.her_id).collect();
        assert_eq!(her_ids.len(), 30_000);
        assert!(her_ids.iter().all(|her_id| *her_id > 100_000));
        let feed = register.feed();
        assert!(feed.windows(2).all(|w| w[0].at < w[1].at));
        let span = feed.last().expect("events").at - feed.first().expect("events").at;
        assert!(span < chrono::Duration::days(366), "{span}");
    }

    #[test]
    fn organisation_numbers_have_valid_check_digits() {
        // Two real-format examples: 974760673 (Brønnøysundregistrene) and 983044778.
        assert_eq!(mod11_check_digit(97476067), Some(3));
        assert_eq!(mod11_check_digit(98304477), Some(8));
    }
}
