//! The bulk lookup, split into calls the API accepts.

use super::types::{CommunicationParty, HerIdInputCollection};
use super::{Client, Error};

/// The most HER-ids one call of the bulk lookup (`POST /api/v1/communicationparty`) may
/// carry.
pub const MAX_HER_IDS: usize = 100;

impl Client {
    /// The parties with these HER-ids, looked up [`MAX_HER_IDS`] at a time (one call of
    /// [`post_communication_party`](Client::post_communication_party) per hundred, one
    /// after another), in the order the API returns them. HER-ids the register does not
    /// know are left out, as the API leaves them out; none at all makes no call.
    ///
    /// This is how NHN recommends filling a local copy of the register: the export's
    /// HER-ids, looked up in bulk, then the events from the export's
    /// `lastSequenceNumber + 1`.
    ///
    /// # Errors
    /// The first call that fails, as [`post_communication_party`](Client::post_communication_party)
    /// reports it; the parties of the calls before it are dropped.
    pub async fn communication_parties(
        &self,
        her_ids: &[i32],
    ) -> Result<Vec<CommunicationParty>, Error> {
        let mut parties = Vec::with_capacity(her_ids.len());
        for chunk in her_ids.chunks(MAX_HER_IDS) {
            let body = HerIdInputCollection {
                her_ids: Some(chunk.to_vec()),
            };
            parties.extend(self.post_communication_party(&body).await?.into_inner());
        }
        Ok(parties)
    }
}
