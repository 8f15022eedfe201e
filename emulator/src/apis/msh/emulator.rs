//! What a service's tests reach of the emulator's Meldingstjener (MSH) v2 through
//! [`Emulator`]: its base URL, the HER-ids a tenant may act for, the messages it holds,
//! messages given to it directly, and its request cap.

use crate::Emulator;
use crate::apis::msh::MshMessage;

impl Emulator {
    /// The base URL of the Meldingstjener (MSH) v2: the issuer (its endpoints share the
    /// listener), for example `http://127.0.0.1:38421`, without a trailing slash. A
    /// proof's `htu` is this followed by the path, for example
    /// `http://127.0.0.1:38421/Messages`. Its OpenAPI document is at
    /// `/msh/openapi.json`.
    pub fn msh_base_url(&self) -> &str {
        &self.state.idp.issuer
    }

    /// How many requests reached the Meldingstjener's operations (`/Messages...`),
    /// whatever their outcome, refused ones included. `/msh/openapi.json` is not counted.
    pub fn msh_requests(&self) -> u64 {
        self.state.msh.requests()
    }

    /// The HER-ids a token for the organisation `orgnr` (its `orgnr_parent` or
    /// `orgnr_child`) may send and receive for: the register's active parties whose
    /// organisation has this number (the organisation, its services and its people), in
    /// register order. Empty for an organisation the register does not hold.
    ///
    /// # Example
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = helseid_emulator::Emulator::builder().start().await?;
    /// let orgnr = &emulator.msh_organisations()[0];
    /// let her_ids = emulator.msh_her_ids(orgnr);
    /// assert!(!her_ids.is_empty());
    /// assert!(emulator.msh_her_ids("000000000").is_empty());
    /// # Ok(()) }
    /// ```
    pub fn msh_her_ids(&self, orgnr: &str) -> Vec<i32> {
        self.state.msh.her_ids_of(orgnr)
    }

    /// The organisation number (nine digits) a token must name (as `orgnr_parent` or
    /// `orgnr_child`) to act for `her_id`: that of the party's organisation (the party
    /// itself for an organisation). `None` for a HER-id that is not an active party of
    /// the register. For a tool that is given a HER-id and picks the tenant from it.
    ///
    /// # Example
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = helseid_emulator::Emulator::builder().start().await?;
    /// let orgnr = emulator.msh_organisations()[0].clone();
    /// for her_id in emulator.msh_her_ids(&orgnr) {
    ///     assert_eq!(emulator.msh_organisation_of(her_id), Some(orgnr.clone()));
    /// }
    /// assert_eq!(emulator.msh_organisation_of(1), None);
    /// # Ok(()) }
    /// ```
    pub fn msh_organisation_of(&self, her_id: i32) -> Option<String> {
        self.state.msh.organisation_of(her_id)
    }

    /// The organisation numbers of the register's active organisations, in register
    /// order: the tenants a multi-tenant client can name to act for their HER-ids
    /// ([`msh_her_ids`](Self::msh_her_ids)).
    pub fn msh_organisations(&self) -> Vec<String> {
        self.state.msh.organisations()
    }

    /// Every message the Meldingstjener holds, application receipts included, in the
    /// order they arrived, with how far each has come to each receiver.
    pub fn msh_messages(&self) -> Vec<MshMessage> {
        self.state.msh.messages()
    }

    /// Sends a message as `POST /Messages` would, without a token: `business_document`
    /// is the MsgHead (UTF-8 XML with its declaration), whose sender and receivers must
    /// be active parties of the register. Returns the new message's id; it waits in the
    /// receivers' unread lists as any other. For tests that need messages in an inbox
    /// without a sending client.
    ///
    /// # Errors
    /// What `POST /Messages` would name in `validationErrors`, joined with `; `.
    pub fn msh_send(&self, business_document: &[u8]) -> Result<String, String> {
        self.state.msh.seed(business_document)
    }

    /// The largest request body `POST /Messages` takes, in bytes; a larger one gets 413
    /// with an `ErrorMessage`. Default: 35 MiB (the document's "max limit of 35 MB").
    pub fn set_msh_max_request_size(&self, bytes: usize) {
        self.state.msh.set_max_request(bytes);
    }
}
