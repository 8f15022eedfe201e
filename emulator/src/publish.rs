//! Changing the register while the emulator runs, so that the event feeds of both APIs
//! publish what changed: for tests of a local copy of the register (a mirror).

use chrono::Utc;

use super::Emulator;

impl Emulator {
    /// Renames the party with this HER-id and publishes a `CommunicationPartyUpdated`
    /// event for it, and one for each party under it (their `displayName` and parent
    /// organisation carry the name). Returns the events' sequence numbers in the
    /// CommunicationParty API v2's feed, in order; `None` when no party has this HER-id.
    ///
    /// # Example
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = helseid_emulator::Emulator::builder().start().await?;
    /// let before = emulator.cpapi_events() as i64;
    /// let her_id = emulator.add_organization("Legekontoret i Nordgata", "0301").0;
    /// assert_eq!(emulator.rename_party(her_id, "Nordgata legesenter"), Some(vec![before + 2]));
    /// assert_eq!(emulator.rename_party(1, "nobody"), None);
    /// # Ok(()) }
    /// ```
    pub fn rename_party(&self, her_id: i32, name: &str) -> Option<Vec<i64>> {
        self.state
            .apis
            .cpe
            .register()
            .rename(her_id, name, Utc::now())
    }

    /// Deactivates the party with this HER-id (its `validTo` becomes now: it leaves the
    /// export of active parties) and publishes a `CommunicationPartyUpdated` event.
    /// Returns the event's sequence number; `None` when no party has this HER-id.
    pub fn deactivate_party(&self, her_id: i32) -> Option<i64> {
        self.state
            .apis
            .cpe
            .register()
            .deactivate(her_id, Utc::now())
    }

    /// Adds an organisation named `name` in the municipality with this four-digit number
    /// (such as `"0301"`, Oslo), with a new HER-id and organisation number, valid from
    /// now, and publishes a `CommunicationPartyCreated` event. Returns its HER-id and the
    /// event's sequence number.
    pub fn add_organization(&self, name: &str, municipality: &str) -> (i32, i64) {
        self.state
            .apis
            .cpe
            .register()
            .add_organization(name, municipality, Utc::now())
    }
}
