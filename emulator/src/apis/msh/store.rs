//! The messages the Meldingstjener holds: each with its sender, its receivers and how
//! far it has come to each (delivery state, read, application receipt), in the order
//! they arrived.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::apis::msh::model::{AppRecError, AppRecStatus, DeliveryState, OrderBy};

/// A message held for its receivers.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    /// Its id (a lowercase GUID).
    pub(crate) id: String,
    pub(crate) sender: i32,
    /// One per receiver, in the document's order.
    pub(crate) deliveries: Vec<Delivery>,
    /// The business document, base64 as sent.
    pub(crate) business_document: String,
    pub(crate) content_type: String,
    /// The business document's MsgId and type.
    pub(crate) msg_id: String,
    pub(crate) msg_type: String,
    pub(crate) gen_date: DateTime<Utc>,
    pub(crate) is_apprec: bool,
    /// For an application receipt: the id of the message it answers.
    pub(crate) apprec_of: Option<String>,
}

/// How far a message has come to one receiver.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    pub(crate) her_id: i32,
    pub(crate) state: DeliveryState,
    /// Marked read: out of the receiver's inbox for good.
    pub(crate) read: bool,
    /// The application receipt the receiver sent, and its id.
    pub(crate) apprec: Option<(AppRecStatus, Vec<AppRecError>, String)>,
}

impl Delivery {
    pub(crate) fn new(her_id: i32) -> Self {
        Delivery {
            her_id,
            state: DeliveryState::Unconfirmed,
            read: false,
            apprec: None,
        }
    }
}

/// What `GET /Messages` asks for.
#[derive(Debug)]
pub(crate) struct Query {
    pub(crate) receivers: Vec<i32>,
    pub(crate) sender: Option<i32>,
    pub(crate) business_document_id: Option<String>,
    pub(crate) max: usize,
    pub(crate) order: OrderBy,
}

/// The messages, in the order they arrived.
#[derive(Debug, Default)]
pub(crate) struct Store {
    messages: Vec<Stored>,
    by_id: HashMap<String, usize>,
}

impl Store {
    /// Adds a message.
    pub(crate) fn add(&mut self, message: Stored) {
        self.by_id.insert(message.id.clone(), self.messages.len());
        self.messages.push(message);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Stored> {
        self.by_id.get(id).and_then(|&i| self.messages.get(i))
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Stored> {
        self.by_id.get(id).and_then(|&i| self.messages.get_mut(i))
    }

    /// Every message, oldest arrival first.
    pub(crate) fn all(&self) -> &[Stored] {
        &self.messages
    }

    /// The unread messages of the query's receivers: one entry per message and
    /// receiver, ordered by GenDate (arrival breaks ties, in the same direction), at
    /// most `max`.
    pub(crate) fn unread(&self, query: &Query) -> Vec<(&Stored, i32)> {
        let mut found: Vec<(usize, &Stored, i32)> = Vec::new();
        for (arrival, message) in self.messages.iter().enumerate() {
            if query.sender.is_some_and(|s| s != message.sender) {
                continue;
            }
            if query
                .business_document_id
                .as_deref()
                .is_some_and(|id| id != message.msg_id)
            {
                continue;
            }
            for delivery in &message.deliveries {
                if !delivery.read && query.receivers.contains(&delivery.her_id) {
                    found.push((arrival, message, delivery.her_id));
                }
            }
        }
        found.sort_by(|a, b| {
            let order = (a.1.gen_date, a.0).cmp(&(b.1.gen_date, b.0));
            match query.order {
                OrderBy::Ascending => order,
                OrderBy::Descending => order.reverse(),
            }
        });
        found
            .into_iter()
            .take(query.max)
            .map(|(_, message, her_id)| (message, her_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, sender: i32, receivers: &[i32], seconds: i64) -> Stored {
        Stored {
            id: id.to_owned(),
            sender,
            deliveries: receivers.iter().map(|r| Delivery::new(*r)).collect(),
            business_document: String::new(),
            content_type: "application/xml".to_owned(),
            msg_id: format!("msg-{id}"),
            msg_type: "DIALOG_HELSEFAGLIG".to_owned(),
            gen_date: DateTime::from_timestamp(seconds, 0).expect("a time"),
            is_apprec: false,
            apprec_of: None,
        }
    }

    #[test]
    fn unread_is_by_gen_date_then_arrival_and_leaves_out_what_was_read() {
        let mut store = Store::default();
        store.add(message("b", 1, &[10, 20], 200));
        store.add(message("a", 1, &[10], 100));
        store.add(message("c", 2, &[10], 200));
        let query = |receivers: Vec<i32>, max| Query {
            receivers,
            sender: None,
            business_document_id: None,
            max,
            order: OrderBy::Ascending,
        };
        let ids = |found: Vec<(&Stored, i32)>| -> Vec<String> {
            found.iter().map(|(m, r)| format!("{}@{r}", m.id)).collect()
        };
        assert_eq!(
            ids(store.unread(&query(vec![10, 20], 10))),
            ["a@10", "b@10", "b@20", "c@10"]
        );
        assert_eq!(ids(store.unread(&query(vec![10], 2))), ["a@10", "b@10"]);
        let descending = Query {
            order: OrderBy::Descending,
            ..query(vec![10], 10)
        };
        assert_eq!(ids(store.unread(&descending)), ["c@10", "b@10", "a@10"]);
        store.get_mut("b").expect("b").deliveries[0].read = true;
        assert_eq!(
            ids(store.unread(&query(vec![10, 20], 10))),
            ["a@10", "b@20", "c@10"]
        );
        let from_two = Query {
            sender: Some(2),
            ..query(vec![10], 10)
        };
        assert_eq!(ids(store.unread(&from_two)), ["c@10"]);
        let by_document = Query {
            business_document_id: Some("msg-a".to_owned()),
            ..query(vec![10], 10)
        };
        assert_eq!(ids(store.unread(&by_document)), ["a@10"]);
    }
}
