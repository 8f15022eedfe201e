//! The events as a stream: page after page, from a sequence number on.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, TryStreamExt, stream};

use super::types::{Event, EventsResponse};
use super::{Client, Error};

/// What reading the events can fail with: the client's [`Error`] (an API error with its
/// status and body, a failure of the stack, or a page that makes no sense).
pub type FeedError = Error;

/// The events, read page by page.
type Pages = Pin<Box<dyn Stream<Item = Result<Event, FeedError>> + Send>>;

/// The most events the API returns in one page, and what a stream asks for by default.
const MAX_EVENTS: NonZeroU32 = NonZeroU32::new(1000).expect("1000 is not zero");

/// Every event from a sequence number on, oldest first, page after page, until a page
/// comes back empty. Made by [`Client::events_from`].
///
/// Each page asks for up to [`max_events`](Self::max_events) events from
/// `fromSequenceNumber`, and the next page starts after the page's last event
/// (`fromSequenceNumber` = its `sequenceNumber` + 1). Only an empty page ends the
/// stream (and a `results` of `null`): a page shorter than asked for is not taken as the
/// end, since a server may return fewer events than asked. The stream fails (once, then
/// ends) when a call fails, when an event has no sequence number, or when a page's
/// sequence numbers do not move forward (an event numbered below `fromSequenceNumber`,
/// or not above the event before it): reading on could loop forever.
///
/// To poll, keep [`next_sequence_number`](Self::next_sequence_number) when you are done
/// (it moves with every event the stream yields, so it is right after an error too),
/// and start from it next time.
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    client: Client,
    max_events: NonZeroU32,
    next: i64,
    pages: Pages,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("next_sequence_number", &self.next)
            .field("max_events", &self.max_events)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Every event from `sequence_number` on (`1` for all of them; an export's
    /// `lastSequenceNumber + 1` after an export), in pages of up to 1000 events.
    ///
    /// A `sequence_number` below 1 fails the stream at its first item.
    pub fn events_from(&self, sequence_number: i64) -> EventStream {
        EventStream {
            client: self.clone(),
            max_events: MAX_EVENTS,
            next: sequence_number,
            pages: pages(self.clone(), sequence_number, MAX_EVENTS),
        }
    }
}

impl EventStream {
    /// Asks for up to `max_events` events per page; the API allows 1 to 1000, and other
    /// values are brought into that range. Default: 1000. The stream goes on from
    /// [`next_sequence_number`](Self::next_sequence_number).
    pub fn max_events(self, max_events: u32) -> Self {
        let max_events =
            NonZeroU32::new(max_events.min(MAX_EVENTS.get())).unwrap_or(NonZeroU32::MIN);
        EventStream {
            pages: pages(self.client.clone(), self.next, max_events),
            max_events,
            ..self
        }
    }

    /// The sequence number to read on from: the one after the last event the stream
    /// yielded, or the one it started from while it has yielded none.
    pub fn next_sequence_number(&self) -> i64 {
        self.next
    }
}

impl Stream for EventStream {
    type Item = Result<Event, FeedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.pages.as_mut().poll_next(cx));
        if let Some(Ok(Event {
            sequence_number: Some(number),
            ..
        })) = &item
        {
            // The pages checked that this does not overflow.
            self.next = number.saturating_add(1);
        }
        Poll::Ready(item)
    }
}

/// The events from `from` on, `max_events` per page.
fn pages(client: Client, from: i64, max_events: NonZeroU32) -> Pages {
    let pages =
        stream::try_unfold(Some(from), move |from| {
            let client = client.clone();
            async move {
                let Some(from) = from else {
                    return Ok::<_, FeedError>(None);
                };
                let from_sequence_number = u64::try_from(from)
                .ok()
                .and_then(NonZeroU64::new)
                .ok_or_else(|| {
                    Error::answer(super::URLS.api, "events_from", format!(
                        "fromSequenceNumber {from} is not a sequence number: they start at 1"
                    ))
                })?;
                let page = client
                    .get_event(Some(from_sequence_number), Some(max_events))
                    .await?
                    .into_inner();
                let next = next_from(from, &page)?;
                Ok(next.map(|next| (page.results.unwrap_or_default(), Some(next))))
            }
        });
    // `try_unfold` ends after its error, so the stream fails once and ends.
    Box::pin(
        pages
            .map_ok(|events| stream::iter(events.into_iter().map(Ok)))
            .try_flatten(),
    )
}

/// Where the page after `page`, read from `from`, starts; `None` when `page` is empty.
// The stream's items carry progenitor's (large) error anyway.
#[allow(clippy::result_large_err)]
fn next_from(from: i64, page: &EventsResponse) -> Result<Option<i64>, FeedError> {
    let mut floor = from;
    let events = page.results.as_deref().unwrap_or_default();
    for event in events {
        let Some(number) = event.sequence_number else {
            return Err(Error::answer(
                super::URLS.api,
                "events_from",
                format!(
                    "the page from sequence number {from} holds an event without a sequence number (HER-id {:?})",
                    event.her_id
                ),
            ));
        };
        if number < floor {
            return Err(Error::answer(
                super::URLS.api,
                "events_from",
                format!(
                    "the page from sequence number {from} holds event {number} where {floor} or more was due: the events do not move forward",
                ),
            ));
        }
        floor = number.checked_add(1).ok_or_else(|| {
            Error::answer(super::URLS.api, "events_from", format!(
                "the page from sequence number {from} holds event {number}: no event can follow it",
            ))
        })?;
    }
    Ok((!events.is_empty()).then_some(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpapi::types::EventType;

    fn page(numbers: &[i64]) -> EventsResponse {
        EventsResponse {
            count: i32::try_from(numbers.len()).ok(),
            results: Some(
                numbers
                    .iter()
                    .map(|&sequence_number| Event {
                        event_timestamp: Some("2024-05-01T12:00:00.1234567".parse().unwrap()),
                        event_type: Some(EventType::CommunicationPartyUpdated),
                        her_id: Some(1),
                        sequence_number: Some(sequence_number),
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_next_page_starts_after_the_last_event() {
        assert_eq!(next_from(1, &page(&[1, 2, 3])).unwrap(), Some(4));
        // Gaps are fine: numbers need only grow.
        assert_eq!(next_from(10, &page(&[12, 20, 21])).unwrap(), Some(22));
    }

    #[test]
    fn an_empty_page_is_the_end() {
        assert_eq!(next_from(7, &page(&[])).unwrap(), None);
        let null = EventsResponse {
            count: None,
            results: None,
        };
        assert_eq!(next_from(7, &null).unwrap(), None);
    }

    #[test]
    fn an_event_without_a_sequence_number_is_an_error() {
        let mut events = page(&[7]);
        if let Some(event) = events.results.as_mut().and_then(|r| r.first_mut()) {
            event.sequence_number = None;
        }
        let e = next_from(7, &events).unwrap_err();
        assert!(e.to_string().contains("without a sequence number"), "{e}");
    }

    #[test]
    fn a_page_that_does_not_move_forward_is_an_error() {
        for (from, numbers) in [(5, &[4][..]), (5, &[5, 5]), (5, &[6, 5]), (1, &[1, 3, 2])] {
            let e = next_from(from, &page(numbers)).unwrap_err();
            assert!(e.to_string().contains("do not move forward"), "{e}");
        }
        let e = next_from(1, &page(&[i64::MAX])).unwrap_err();
        assert!(e.to_string().contains("no event can follow it"), "{e}");
    }
}
