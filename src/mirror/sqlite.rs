//! The mirror in a SQLite database.

use std::fmt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::store::{Cursor, Store, StoreError};
use crate::cpapi::types::{CommunicationParty, CommunicationPartyType};

/// The version of the schema, kept in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 1;

/// The tables: the parties, the cursor (one row), and the export's HER-ids while the
/// initial copy runs.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS party (
    her_id                     INTEGER PRIMARY KEY,
    type                       TEXT NOT NULL,
    name                       TEXT,
    display_name               TEXT,
    organization_number        TEXT,
    parent_her_id              INTEGER,
    parent_name                TEXT,
    parent_organization_number TEXT,
    hpr_number                 INTEGER,
    edi_address                TEXT,
    email                      TEXT,
    amqp_transport_status      TEXT NOT NULL,
    valid_from                 TEXT,
    valid_to                   TEXT,
    json                       TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS party_name ON party (name);
CREATE INDEX IF NOT EXISTS party_organization_number ON party (organization_number);
CREATE INDEX IF NOT EXISTS party_parent_her_id ON party (parent_her_id);
CREATE TABLE IF NOT EXISTS sync_cursor (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    phase                TEXT NOT NULL CHECK (phase IN ('copying', 'following')),
    last_sequence_number INTEGER,
    copied               INTEGER,
    next_sequence_number INTEGER
) STRICT;
CREATE TABLE IF NOT EXISTS sync_export (
    position INTEGER PRIMARY KEY,
    her_id   INTEGER NOT NULL
) STRICT;
";

/// Writes a party, or replaces the one with its HER-id.
const UPSERT: &str = "INSERT OR REPLACE INTO party (her_id, type, name, display_name, \
    organization_number, parent_her_id, parent_name, parent_organization_number, hpr_number, \
    edi_address, email, amqp_transport_status, valid_from, valid_to, json) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// A [`Store`] in a SQLite database file, which `sqlite3` can query.
///
/// The table `party` holds one row per HER-id: the party as the typed client decoded
/// and encoded it (`json`, the whole of NHN's model, nothing dropped), and columns to
/// query by: `her_id`, `type` (`Organization`, `Person`, `Service`), `name`,
/// `display_name`, `organization_number` (an organisation's own), `parent_her_id`,
/// `parent_name` and `parent_organization_number` (a person's or service's
/// organisation), `hpr_number`, `edi_address`, `email`, `amqp_transport_status`,
/// `valid_from`, `valid_to` (as the API wrote them). `sync_cursor` holds the cursor,
/// `sync_export` the export's HER-ids while the initial copy runs. Each
/// [`write`](Store::write) is one transaction; the database is in WAL mode, so readers
/// can query it while a sync runs.
///
/// ```text
/// $ sqlite3 register.db "select her_id, name from party where organization_number = '987654325'"
/// $ sqlite3 register.db "select json_extract(json, '$.postalAddress.city') from party where her_id = 8142"
/// ```
pub struct SqliteStore {
    connection: Connection,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.connection.path())
            .finish()
    }
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (and its tables) when it does not exist.
    ///
    /// # Errors
    /// When the file cannot be opened or created, is not a SQLite database, or holds a
    /// mirror of another schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let connection = Connection::open(path).map_err(|e| {
            StoreError::new(format!("cannot open the database {}", path.display()), e)
        })?;
        Self::from_connection(connection)
    }

    /// A store in `connection`'s database, whose tables it creates when they do not
    /// exist.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_connection(connection: Connection) -> Result<Self, StoreError> {
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sql("read the schema version (is it a SQLite database?)"))?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(StoreError::msg(format!(
                "the database holds schema version {version}; this mirror writes version {SCHEMA_VERSION}"
            )));
        }
        // WAL: readers do not block the sync; NORMAL: a crash loses at most the last
        // transactions, each whole with its cursor, and never corrupts.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("switch to WAL mode"))?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql("set synchronous"))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(sql("create the tables"))?;
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql("write the schema version"))?;
        Ok(SqliteStore { connection })
    }

    /// The database connection, to query the mirror.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The party with this HER-id, as it was stored; `None` when the mirror has none.
    ///
    /// # Errors
    /// When the database cannot be read, or the stored JSON is not a party.
    pub fn party(&self, her_id: i32) -> Result<Option<CommunicationParty>, StoreError> {
        let json: Option<String> = self
            .connection
            .query_row(
                "SELECT json FROM party WHERE her_id = ?1",
                [her_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql("read a party"))?;
        json.map(|json| decode(her_id, &json)).transpose()
    }

    /// Every party of the mirror, by HER-id.
    ///
    /// # Errors
    /// As [`party`](Self::party).
    pub fn parties(&self) -> Result<Vec<CommunicationParty>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT her_id, json FROM party ORDER BY her_id")
            .map_err(sql("read the parties"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, i32>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sql("read the parties"))?;
        let mut parties = Vec::new();
        for row in rows {
            let (her_id, json) = row.map_err(sql("read the parties"))?;
            parties.push(decode(her_id, &json)?);
        }
        Ok(parties)
    }

    /// How many parties the mirror holds.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.connection
            .query_row("SELECT count(*) FROM party", [], |row| row.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(sql("count the parties"))
    }

    fn transaction(&mut self) -> Result<Transaction<'_>, StoreError> {
        self.connection
            .transaction()
            .map_err(sql("begin a transaction"))
    }
}

fn decode(her_id: i32, json: &str) -> Result<CommunicationParty, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::new(format!("the stored party {her_id} is not a party"), e))
}

fn write_cursor(tx: &Transaction<'_>, cursor: &Cursor) -> Result<(), StoreError> {
    let (phase, last, copied, next) = match *cursor {
        Cursor::Copying {
            last_sequence_number,
            copied,
        } => (
            "copying",
            Some(last_sequence_number),
            Some(i64::try_from(copied).unwrap_or(i64::MAX)),
            None,
        ),
        Cursor::Following {
            next_sequence_number,
        } => ("following", None, None, Some(next_sequence_number)),
    };
    tx.execute(
        "INSERT OR REPLACE INTO sync_cursor (id, phase, last_sequence_number, copied, \
         next_sequence_number) VALUES (1, ?1, ?2, ?3, ?4)",
        params![phase, last, copied, next],
    )
    .map_err(sql("write the cursor"))?;
    if matches!(cursor, Cursor::Following { .. }) {
        tx.execute("DELETE FROM sync_export", [])
            .map_err(sql("drop the export's HER-ids"))?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn cursor(&mut self) -> Result<Option<Cursor>, StoreError> {
        let row = self
            .connection
            .query_row(
                "SELECT phase, last_sequence_number, copied, next_sequence_number \
                 FROM sync_cursor WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("read the cursor"))?;
        match row {
            None => Ok(None),
            Some((phase, Some(last), Some(copied), _)) if phase == "copying" => {
                Ok(Some(Cursor::Copying {
                    last_sequence_number: last,
                    copied: usize::try_from(copied).unwrap_or(0),
                }))
            }
            Some((phase, _, _, Some(next))) if phase == "following" => {
                Ok(Some(Cursor::Following {
                    next_sequence_number: next,
                }))
            }
            Some((phase, ..)) => Err(StoreError::msg(format!(
                "the cursor row (phase {phase:?}) lacks its numbers"
            ))),
        }
    }

    fn begin_copy(&mut self, last_sequence_number: i64, her_ids: &[i32]) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        tx.execute("DELETE FROM sync_export", [])
            .map_err(sql("clear the export's HER-ids"))?;
        {
            let mut insert = tx
                .prepare("INSERT INTO sync_export (position, her_id) VALUES (?1, ?2)")
                .map_err(sql("keep the export's HER-ids"))?;
            for (position, her_id) in her_ids.iter().enumerate() {
                insert
                    .execute(params![i64::try_from(position).unwrap_or(i64::MAX), her_id])
                    .map_err(sql("keep the export's HER-ids"))?;
            }
        }
        write_cursor(
            &tx,
            &Cursor::Copying {
                last_sequence_number,
                copied: 0,
            },
        )?;
        tx.commit().map_err(sql("commit the export"))
    }

    fn export_her_ids(&mut self) -> Result<Vec<i32>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT her_id FROM sync_export ORDER BY position")
            .map_err(sql("read the export's HER-ids"))?;
        let rows = statement
            .query_map([], |row| row.get::<_, i32>(0))
            .map_err(sql("read the export's HER-ids"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("read the export's HER-ids"))
    }

    fn write(&mut self, parties: &[CommunicationParty], cursor: &Cursor) -> Result<(), StoreError> {
        let tx = self.transaction()?;
        {
            let mut upsert = tx.prepare(UPSERT).map_err(sql("write a party"))?;
            for party in parties {
                let json = serde_json::to_string(party).map_err(|e| {
                    StoreError::new(format!("cannot encode party {}", party.her_id), e)
                })?;
                let parent = party.parent_organization();
                let kind = match party.type_ {
                    CommunicationPartyType::Organization => "Organization",
                    CommunicationPartyType::Person => "Person",
                    CommunicationPartyType::Service => "Service",
                };
                upsert
                    .execute(params![
                        party.her_id,
                        kind,
                        party.name,
                        party.display_name,
                        party
                            .organization_details
                            .as_ref()
                            .and_then(|d| d.organization_number.as_deref()),
                        parent.map(|p| p.her_id),
                        parent.and_then(|p| p.name.as_deref()),
                        parent.and_then(|p| p.organization_number.as_deref()),
                        party.person_details.as_ref().map(|d| d.hpr_number),
                        party.edi_address,
                        party.email,
                        party.amqp_transport_status.to_string(),
                        party.valid_from.as_ref().map(ToString::to_string),
                        party.valid_to.as_ref().map(ToString::to_string),
                        json,
                    ])
                    .map_err(sql("write a party"))?;
            }
        }
        write_cursor(&tx, cursor)?;
        tx.commit()
            .map_err(sql("commit the parties and the cursor"))
    }
}
