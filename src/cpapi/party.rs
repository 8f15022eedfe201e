//! What a party's details say, read across its kinds.

use super::types::{CommunicationParty, ParentOrganization};

impl CommunicationParty {
    /// The organisation a person or a service belongs to (from `personDetails` or
    /// `serviceDetails`); `None` for an organisation.
    pub fn parent_organization(&self) -> Option<&ParentOrganization> {
        self.person_details
            .as_ref()
            .map(|details| &details.parent_organization)
            .or_else(|| {
                self.service_details
                    .as_ref()
                    .map(|details| &details.parent_organization)
            })
    }
}
