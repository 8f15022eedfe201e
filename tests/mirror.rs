//! The mirror against the emulator over real HTTP, into real SQLite files: a full sync
//! holds every party once with every field, a second sync picks up exactly what the
//! emulator published, and a sync stopped after any write and run again ends with the
//! same database as one that was never stopped.
#![cfg(feature = "sqlite")]

#[path = "support/cpapi.rs"]
mod cpapi_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cpapi_support::exported;
use helseid::cpapi::{Client, types::CommunicationParty};
use helseid::mirror::{Cursor, Mirror, SqliteStore, Store, StoreError, SyncProgress};
use helseid_emulator::Emulator;
use serde_json::Value;
use support::TempDir;

async fn emulator_and_client() -> (Emulator, Client) {
    cpapi_support::cpapi_against(Emulator::builder(), "mirror").await
}

fn no_progress(_: &SyncProgress) {}

/// The parties as the typed client reads them from the emulator now, by HER-id, as JSON.
async fn register(cpapi: &Client, her_ids: &[i32]) -> BTreeMap<i32, Value> {
    cpapi
        .communication_parties(her_ids)
        .await
        .expect("bulk lookup")
        .into_iter()
        .map(|p| (p.her_id, serde_json::to_value(&p).expect("JSON")))
        .collect()
}

/// The parties of a store, by HER-id, as JSON.
fn stored(store: &SqliteStore) -> BTreeMap<i32, Value> {
    store
        .parties()
        .expect("parties")
        .into_iter()
        .map(|p| (p.her_id, serde_json::to_value(&p).expect("JSON")))
        .collect()
}

/// Every row of every table of the database, as text, and the cursor.
fn dump(path: &Path) -> (Vec<String>, Option<Cursor>) {
    let mut store = SqliteStore::open(path).expect("open");
    let rows = |sql: &str| -> Vec<String> {
        let mut statement = store.connection().prepare(sql).expect("query");
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let mut all = rows(
        "SELECT json_array(her_id, type, name, display_name, organization_number, parent_her_id, \
         parent_name, parent_organization_number, hpr_number, edi_address, email, \
         amqp_transport_status, valid_from, valid_to, json) FROM party ORDER BY her_id",
    );
    all.extend(rows(
        "SELECT json_array(position, her_id) FROM sync_export ORDER BY position",
    ));
    (all, store.cursor().expect("cursor"))
}

#[tokio::test]
async fn a_full_sync_holds_every_party_once_with_every_field() {
    let (emulator, cpapi) = emulator_and_client().await;
    let dir = TempDir::new("mirror-full");
    let mut store = SqliteStore::open(dir.path("register.db")).expect("open");
    let mut seen = Vec::new();
    let report = Mirror::new(cpapi.clone())
        .sync(&mut store, |p: &SyncProgress| seen.push(p.clone()))
        .await
        .expect("sync");

    let her_ids = exported(&cpapi).await;
    let expected = register(&cpapi, &her_ids).await;
    assert_eq!(expected.len(), her_ids.len());
    assert_eq!(report.parties_copied, her_ids.len() as u64);
    assert_eq!(report.parties_missing, 0);
    assert_eq!(store.count().expect("count"), her_ids.len() as u64);
    let mirrored = stored(&store);
    assert_eq!(
        mirrored.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (her_id, party) in &expected {
        assert_eq!(&mirrored[her_id], party, "party {her_id}");
    }
    // Every kind, with the fields NHN's model has for it.
    let kinds: BTreeSet<String> = mirrored
        .values()
        .map(|p| p["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");

    // The queryable columns agree with the JSON.
    let connection = store.connection();
    let (her_id, number): (i32, String) = connection
        .query_row(
            "SELECT her_id, organization_number FROM party WHERE type = 'Organization' \
             ORDER BY her_id LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("an organisation");
    assert_eq!(
        expected[&her_id]["organizationDetails"]["organizationNumber"],
        number.as_str()
    );
    let (her_id, parent, hpr): (i32, i32, i32) = connection
        .query_row(
            "SELECT her_id, parent_her_id, hpr_number FROM party WHERE type = 'Person' \
             ORDER BY her_id LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("a person");
    let details = &expected[&her_id]["personDetails"];
    assert_eq!(details["parentOrganization"]["herId"], parent);
    assert_eq!(details["hprNumber"], hpr);

    // Then the feed: the export covered every event.
    let next = emulator.cpapi_events() as i64 + 1;
    assert_eq!(
        store.cursor().expect("cursor"),
        Some(Cursor::Following {
            next_sequence_number: next
        })
    );
    assert_eq!(report.next_sequence_number, next);
    assert_eq!(report.events_read, 0);
    // One export, the latest event twice (before the export, before the feed), a lookup
    // per hundred, one empty page of events.
    assert_eq!(report.requests, 3 + her_ids.len().div_ceil(100) as u64 + 1);
    let last = seen.last().expect("progress");
    assert_eq!(last.parties_done, her_ids.len() as u64);
    assert_eq!(last.parties_total, her_ids.len() as u64);
    assert!(
        seen.windows(2)
            .all(|w| w[0].parties_done <= w[1].parties_done)
    );
}

#[tokio::test]
async fn a_second_sync_picks_up_exactly_the_published_changes() {
    let (emulator, cpapi) = emulator_and_client().await;
    let dir = TempDir::new("mirror-updates");
    let path = dir.path("register.db");
    let mirror = Mirror::new(cpapi.clone());
    let mut store = SqliteStore::open(&path).expect("open");
    mirror
        .sync(&mut store, no_progress)
        .await
        .expect("first sync");
    let before = stored(&store);

    // A person renamed, an organisation renamed (its parties change with it), a
    // service deactivated, an organisation added.
    let by_type = |kind: &str| -> Vec<i32> {
        before
            .iter()
            .filter(|(_, p)| p["type"] == kind)
            .map(|(her_id, _)| *her_id)
            .collect()
    };
    let person = by_type("Person")[3];
    let organisation = *by_type("Organization")
        .iter()
        .find(|her_id| {
            before[*her_id]["organizationDetails"]["services"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        })
        .expect("an organisation with services");
    let service = by_type("Service")
        .into_iter()
        .find(|her_id| {
            before[her_id]["serviceDetails"]["parentOrganization"]["herId"] != organisation
        })
        .expect("a service elsewhere");
    let first_event = emulator.cpapi_events() as i64 + 1;
    let mut published = emulator
        .rename_party(person, "Fastlege Kari Nordmann")
        .expect("person");
    published.extend(
        emulator
            .rename_party(organisation, "Nytt navn legesenter")
            .expect("organisation"),
    );
    published.push(emulator.deactivate_party(service).expect("service"));
    let (added, created) = emulator.add_organization("Helsehuset i Nordgata", "0301");
    published.push(created);
    assert_eq!(published.first(), Some(&first_event));

    let report = mirror
        .sync(&mut store, no_progress)
        .await
        .expect("second sync");
    assert_eq!(report.events_read, published.len() as u64);
    assert_eq!(report.parties_copied, 0);
    assert_eq!(
        report.next_sequence_number,
        emulator.cpapi_events() as i64 + 1
    );
    let after = stored(&store);

    // What changed is what was published: no more, no less.
    let children: Vec<i32> = before
        .iter()
        .filter(|(_, p)| {
            [&p["personDetails"], &p["serviceDetails"]]
                .iter()
                .any(|d| d["parentOrganization"]["herId"] == organisation)
        })
        .map(|(her_id, _)| *her_id)
        .collect();
    assert!(!children.is_empty());
    let mut expected_changes: BTreeSet<i32> = [person, organisation, service, added].into();
    expected_changes.extend(children);
    let changed: BTreeSet<i32> = after
        .iter()
        .filter(|(her_id, party)| before.get(her_id) != Some(party))
        .map(|(her_id, _)| *her_id)
        .collect();
    assert_eq!(changed, expected_changes);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(report.parties_updated, expected_changes.len() as u64);

    // And each is as the emulator has it now.
    let everyone: Vec<i32> = after.keys().copied().collect();
    assert_eq!(after, register(&cpapi, &everyone).await);
    assert_eq!(after[&person]["name"], "Fastlege Kari Nordmann");
    assert!(after[&service]["validTo"].is_string());
    assert_eq!(after[&added]["name"], "Helsehuset i Nordgata");

    // A third sync finds nothing to do.
    let report = mirror
        .sync(&mut store, no_progress)
        .await
        .expect("third sync");
    assert_eq!((report.events_read, report.parties_updated), (0, 0));
    assert_eq!(stored(&store), after);
}

/// A store that fails its `n`th write (counting `begin_copy`), before writing it, or
/// after: a crash between two writes, or just after one.
struct Failing<'a> {
    inner: &'a mut SqliteStore,
    left: usize,
    after_writing: bool,
}

impl Failing<'_> {
    fn countdown(
        &mut self,
        write: impl FnOnce(&mut SqliteStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.left > 0 {
            self.left -= 1;
            return write(self.inner);
        }
        if self.after_writing {
            write(self.inner)?;
        }
        Err(StoreError::msg("stopped by the test"))
    }
}

impl Store for Failing<'_> {
    fn cursor(&mut self) -> Result<Option<Cursor>, StoreError> {
        self.inner.cursor()
    }

    fn begin_copy(&mut self, last: i64, her_ids: &[i32]) -> Result<(), StoreError> {
        self.countdown(|store| store.begin_copy(last, her_ids))
    }

    fn export_her_ids(&mut self) -> Result<Vec<i32>, StoreError> {
        self.inner.export_her_ids()
    }

    fn write(&mut self, parties: &[CommunicationParty], cursor: &Cursor) -> Result<(), StoreError> {
        self.countdown(|store| store.write(parties, cursor))
    }
}

/// Starting from a copy of `base` (or an empty database), syncs with a store that
/// fails after `n` writes, then again; checks that the result is `reference`. Returns
/// whether the first sync failed.
async fn stopped_and_resumed(
    mirror: &Mirror,
    dir: &TempDir,
    base: Option<&Path>,
    n: usize,
    after_writing: bool,
    reference: &(Vec<String>, Option<Cursor>),
) -> bool {
    let path = dir.path(&format!("stopped-{n}-{after_writing}.db"));
    if let Some(base) = base {
        std::fs::copy(base, &path).expect("copy the base");
    }
    let mut store = SqliteStore::open(&path).expect("open");
    let failing = Failing {
        inner: &mut store,
        left: n,
        after_writing,
    };
    let stopped = match mirror.sync(failing, no_progress).await {
        Ok(_) => false,
        Err(e) => {
            assert!(matches!(e, helseid::mirror::MirrorError::Store(_)), "{e}");
            mirror
                .sync(&mut store, no_progress)
                .await
                .expect("resumed sync");
            true
        }
    };
    drop(store);
    assert_eq!(
        &dump(&path),
        reference,
        "stopped after {n} writes ({})",
        if after_writing {
            "the last one written"
        } else {
            "the last one not written"
        }
    );
    stopped
}

#[tokio::test]
async fn a_sync_stopped_after_any_write_and_run_again_ends_as_one_never_stopped() {
    let (emulator, cpapi) = emulator_and_client().await;
    let dir = TempDir::new("mirror-stopped");

    // The initial copy, 25 parties a write.
    let copying = Mirror::new(cpapi.clone()).batch_size(25);
    let base = dir.path("base.db");
    let mut store = SqliteStore::open(&base).expect("open");
    copying.sync(&mut store, no_progress).await.expect("sync");
    drop(store);
    let reference = dump(&base);
    let mut stops = 0;
    for after_writing in [false, true] {
        for n in 0.. {
            if !stopped_and_resumed(&copying, &dir, None, n, after_writing, &reference).await {
                break;
            }
            stops += 1;
        }
    }
    // begin_copy and 12 batches, each stopped before and after it is written.
    let parties = exported(&cpapi).await.len();
    assert_eq!(stops, 2 * (1 + parties.div_ceil(25)));

    // Following the feed, two parties a write: changes published after the copy.
    for (i, her_id) in exported(&cpapi).await.into_iter().step_by(37).enumerate() {
        if i % 3 == 0 {
            emulator.deactivate_party(her_id).expect("a party");
        } else {
            emulator
                .rename_party(her_id, &format!("Omdøpt {i}"))
                .expect("a party");
        }
    }
    emulator.add_organization("Helsehuset i Sørgata", "4601");
    let following = Mirror::new(cpapi.clone()).batch_size(2);
    let caught_up = dir.path("caught-up.db");
    std::fs::copy(&base, &caught_up).expect("copy");
    let mut store = SqliteStore::open(&caught_up).expect("open");
    let report = following.sync(&mut store, no_progress).await.expect("sync");
    assert!(report.events_read >= 9, "{report:?}");
    drop(store);
    let reference = dump(&caught_up);
    assert_ne!(reference, dump(&base));
    let mut stops = 0;
    for after_writing in [false, true] {
        for n in 0.. {
            if !stopped_and_resumed(&following, &dir, Some(&base), n, after_writing, &reference)
                .await
            {
                break;
            }
            stops += 1;
        }
    }
    assert!(stops >= 10, "{stops} stops");
}

#[tokio::test]
async fn a_database_of_another_schema_is_refused() {
    let dir = TempDir::new("mirror-schema");
    let path = dir.path("other.db");
    {
        let store = SqliteStore::open(&path).expect("open");
        store
            .connection()
            .pragma_update(None, "user_version", 7)
            .expect("pragma");
    }
    let error = SqliteStore::open(&path).expect_err("schema 7");
    assert!(error.to_string().contains("schema version 7"), "{error}");
    std::fs::write(
        dir.path("text.db"),
        "not a database, just some text in a file",
    )
    .expect("write");
    let error = SqliteStore::open(dir.path("text.db")).expect_err("not SQLite");
    assert!(error.to_string().contains("SQLite"), "{error}");
}
