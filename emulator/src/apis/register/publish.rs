//! Changes to the register that publish events, as NHN's register does when a party
//! is added, renamed or deactivated: the party changes, and the feed gets a
//! `CommunicationPartyCreated` or `CommunicationPartyUpdated` event for it (and for the
//! parties whose view of it changed).

use chrono::{DateTime, Utc};

use super::{EventKind, Register, mix64};
use crate::apis::cpe::model::{CommunicationParty, Period};
use crate::apis::register::dotnet::{to_ticks, write_dotnet};
use crate::apis::register::seed::mod11_check_digit;

impl Register {
    /// Gives the party `her_id` the name `name`, and publishes an update for it and for
    /// every party under it (their `displayName` and parent organisation show the
    /// name). Returns the sequence numbers of the events; `None` for an unknown HER-id.
    pub(crate) fn rename(
        &mut self,
        her_id: i32,
        name: &str,
        now: DateTime<Utc>,
    ) -> Option<Vec<i64>> {
        let index = *self.by_her_id.get(&her_id)?;
        let party = self.parties.get_mut(index)?;
        party.name = name.to_owned();
        let children: Vec<i32> = self
            .parties
            .iter_mut()
            .filter(|p| p.parent_her_id == Some(her_id))
            .map(|p| {
                p.parent_name = Some(name.to_owned());
                p.her_id
            })
            .collect();
        let mut published = Vec::with_capacity(1 + children.len());
        for changed in std::iter::once(her_id).chain(children) {
            self.publish_update(changed, now)?;
            published.push(self.last_sequence_number());
        }
        Some(published)
    }

    /// Ends the party's validity now (it leaves the export, which lists active parties
    /// by default) and publishes an update. Returns the event's sequence number; `None`
    /// for an unknown HER-id.
    pub(crate) fn deactivate(&mut self, her_id: i32, now: DateTime<Utc>) -> Option<i64> {
        let index = *self.by_her_id.get(&her_id)?;
        self.parties.get_mut(index)?.valid.to = Some(write_dotnet(now, true));
        self.publish_update(her_id, now)?;
        Some(self.last_sequence_number())
    }

    /// Adds an organisation named `name` in the municipality `municipality` (four
    /// digits), with a new HER-id (above every other) and a new organisation number,
    /// valid from now, and publishes its creation. Returns its HER-id and the event's
    /// sequence number.
    pub(crate) fn add_organization(
        &mut self,
        name: &str,
        municipality: &str,
        now: DateTime<Utc>,
    ) -> (i32, i64) {
        let her_id = self
            .parties
            .iter()
            .map(|p| p.her_id)
            .max()
            .unwrap_or(100_000)
            .saturating_add(1);
        let taken = |number: i32| {
            self.parties
                .iter()
                .any(|p| p.organization_number == Some(number))
        };
        let mut salt = u64::from(her_id.unsigned_abs());
        let number = loop {
            salt = mix64(salt);
            let body = 90_000_000 + usize::try_from(salt % 10_000_000).unwrap_or_default();
            if let Some(number) = mod11_check_digit(body)
                .and_then(|check| i32::try_from(body * 10 + check).ok())
                .filter(|n| !taken(*n))
            {
                break number;
            }
        };
        let at = match self.events.last() {
            Some(last) if to_ticks(last.at) >= to_ticks(now) => to_ticks(last.at).saturating_add(1),
            _ => to_ticks(now),
        };
        let index = self.parties.len();
        self.parties.push(CommunicationParty {
            her_id,
            name: name.to_owned(),
            kind: Some("Organization"),
            parent_her_id: None,
            parent_name: None,
            organization_number: Some(number),
            municipality: Some(municipality.to_owned()),
            valid: Period {
                from: write_dotnet(now, true),
                to: None,
            },
        });
        self.org_nrs.push(Some(number));
        self.by_her_id.insert(her_id, index);
        self.push_event(index, EventKind::Created, at);
        (her_id, self.last_sequence_number())
    }
}
