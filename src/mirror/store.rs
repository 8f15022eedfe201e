//! Where the mirror keeps the parties and its cursor.

use crate::cpapi::types::CommunicationParty;

/// Where a mirror stands: the cursor a [`Store`] keeps with the parties.
///
/// A sync first copies the register (the export's HER-ids, looked up in bulk), then
/// follows the event feed. The cursor moves in the same write as the parties it covers,
/// so after a crash the mirror goes on from the cursor: nothing it covers is lost, and a
/// party written twice is written over (parties are keyed by HER-id), never duplicated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// The initial copy: the first `copied` HER-ids of the export (which
    /// [`Store::begin_copy`] stored) are in the store. The events to follow afterwards
    /// start at `last_sequence_number + 1`.
    Copying {
        /// The sequence number of the last event the export reflects.
        last_sequence_number: i64,
        /// How many of the export's HER-ids have been looked up and written.
        copied: usize,
    },
    /// Following the feed: every event before `next_sequence_number` has been applied
    /// (its party read again after the event and written).
    Following {
        /// The sequence number of the next event to read.
        next_sequence_number: i64,
    },
}

/// What a [`Store`] failed with: what it was doing, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct StoreError {
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure while doing `context` (lowercase, such as `"write the parties"`),
    /// caused by `source`.
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A failure described by `context` alone.
    pub fn msg(context: impl Into<String>) -> Self {
        StoreError {
            context: context.into(),
            source: None,
        }
    }
}

/// Where a [`Mirror`](super::Mirror) keeps the parties and its [`Cursor`].
///
/// The methods are synchronous: a local store (SQLite, a file, memory) answers in
/// microseconds to milliseconds, and one write per hundred parties between two network
/// calls is not worth an async trait's boxed futures, nor a blocking-thread hop that
/// would need the store to be `Send + 'static`. The mirror holds no lock across an
/// `.await` and calls the store between its API calls. A store that is slow (a database
/// across a network) should run its mirror on a runtime with threads to spare, or in
/// `tokio::task::block_in_place`.
///
/// The contract that makes a sync resumable: [`write`](Self::write) stores the parties
/// and the cursor in one atomic step (a transaction): either both are stored, or neither.
/// A party is keyed by its HER-id: writing it again replaces it.
pub trait Store {
    /// The stored cursor; `None` for a store no sync has started in.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn cursor(&mut self) -> Result<Option<Cursor>, StoreError>;

    /// Starts the initial copy, atomically: keeps the export's HER-ids (in this order)
    /// and sets the cursor to [`Cursor::Copying`] with `copied` 0.
    ///
    /// # Errors
    /// When the store cannot be written; nothing is stored then.
    fn begin_copy(&mut self, last_sequence_number: i64, her_ids: &[i32]) -> Result<(), StoreError>;

    /// The HER-ids [`begin_copy`](Self::begin_copy) kept, in their order.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn export_her_ids(&mut self) -> Result<Vec<i32>, StoreError>;

    /// Stores `parties` (replacing any with the same HER-id) and `cursor`, atomically.
    /// When the cursor is [`Cursor::Following`], the HER-ids of the export are no
    /// longer needed and may be dropped.
    ///
    /// # Errors
    /// When the store cannot be written; nothing is stored then.
    fn write(&mut self, parties: &[CommunicationParty], cursor: &Cursor) -> Result<(), StoreError>;
}

impl<S: Store + ?Sized> Store for &mut S {
    fn cursor(&mut self) -> Result<Option<Cursor>, StoreError> {
        (**self).cursor()
    }

    fn begin_copy(&mut self, last_sequence_number: i64, her_ids: &[i32]) -> Result<(), StoreError> {
        (**self).begin_copy(last_sequence_number, her_ids)
    }

    fn export_her_ids(&mut self) -> Result<Vec<i32>, StoreError> {
        (**self).export_her_ids()
    }

    fn write(&mut self, parties: &[CommunicationParty], cursor: &Cursor) -> Result<(), StoreError> {
        (**self).write(parties, cursor)
    }
}
