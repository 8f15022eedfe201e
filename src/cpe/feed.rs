//! The event feed as a stream: page after page, following `Links.Next.Href`.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::{TryStreamExt, stream};

use super::types::{EventResponse, EventValue};
use super::{Client, DateTimeOffset, Error};

/// What reading the feed can fail with: the client's [`Error`] (an API error with its
/// status and problem details, a failure of the stack, or a next link that makes no
/// sense).
pub type FeedError = Error;

/// Every event of the CPE feed after a given event, oldest first, page after page,
/// until the feed is exhausted. Made by [`Client::events_after`] and
/// [`Client::events_from`].
///
/// Each page's `Links.Next.Href` says where the next page starts (its `EventId` and
/// `fromDatetime`); only its query is used, so the token goes nowhere but the client's
/// base URL. A link without an `EventId` continues after the page's last event. The
/// stream ends when a page has no next link or no events, and fails (once, then ends)
/// when a call fails or a next link would not move forward.
///
/// To poll, keep the `EventId` of the last event you processed and start from it next
/// time (NHN suggests once an hour).
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<EventValue, FeedError>> + Send>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<EventValue, FeedError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Where the next page starts.
#[derive(Clone, Debug, PartialEq)]
struct Cursor {
    event_id: Option<String>,
    from_datetime: Option<DateTimeOffset>,
}

impl Client {
    /// The events after the event `event_id` (the `LastEventId` of an export, or the
    /// last event you processed); `None` reads the feed from its beginning.
    pub fn events_after(&self, event_id: Option<&str>) -> EventStream {
        self.events(Cursor {
            event_id: event_id.map(str::to_owned),
            from_datetime: None,
        })
    }

    /// The events created at or after `from`.
    pub fn events_from(&self, from: DateTimeOffset) -> EventStream {
        self.events(Cursor {
            event_id: None,
            from_datetime: Some(from),
        })
    }

    fn events(&self, start: Cursor) -> EventStream {
        let client = self.clone();
        let pages = stream::try_unfold(Some(start), move |cursor| {
            let client = client.clone();
            async move {
                let Some(cursor) = cursor else {
                    return Ok::<_, FeedError>(None);
                };
                let page = client
                    .get_communication_party_events(
                        cursor.event_id.as_deref(),
                        cursor.from_datetime.as_ref(),
                    )
                    .await?
                    .into_inner();
                let next = next_cursor(&client.baseurl, &cursor, &page)?;
                Ok(Some((page.communication_parties, next)))
            }
        });
        let events = pages
            .map_ok(|events| stream::iter(events.into_iter().map(Ok)))
            // `try_unfold` ends after its error, so the stream fails once and ends.
            .try_flatten();
        EventStream {
            inner: Box::pin(events),
        }
    }
}

/// The cursor of the page after `page`, or `None` when the feed is exhausted.
// The stream's items carry progenitor's (large) error anyway.
#[allow(clippy::result_large_err)]
fn next_cursor(
    base_url: &str,
    current: &Cursor,
    page: &EventResponse,
) -> Result<Option<Cursor>, FeedError> {
    let Some(last) = page.communication_parties.last() else {
        return Ok(None);
    };
    let Some(href) = page
        .links
        .as_ref()
        .and_then(|links| links.next.as_ref())
        .map(|next| next.href.as_str())
    else {
        return Ok(None);
    };
    // The link is the server's text: it reaches errors escaped and cut, as all such text.
    let shown = crate::text::untrusted(href, &[]);
    let url = url::Url::parse(base_url)
        .and_then(|base| base.join(href))
        .map_err(|e| {
            Error::answer(
                super::URLS.api,
                "events_after",
                format!("the next page link `{shown}` is not a URL: {e}"),
            )
        })?;
    let mut next = Cursor {
        event_id: None,
        from_datetime: current.from_datetime,
    };
    for (name, value) in url.query_pairs() {
        match &*name {
            "EventId" => next.event_id = Some(value.into_owned()),
            "fromDatetime" => {
                next.from_datetime = Some(value.parse().map_err(|e| {
                    Error::answer(
                        super::URLS.api,
                        "events_after",
                        format!("the next page link `{shown}`: fromDatetime: {e}"),
                    )
                })?);
            }
            _ => {}
        }
    }
    if next.event_id.is_none() {
        next.event_id = Some(last.event_id.clone());
    }
    if next == *current {
        return Err(Error::answer(
            super::URLS.api,
            "events_after",
            format!(
                "the next page link `{shown}` points at the page just read: the feed does not move forward"
            ),
        ));
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpe::types::{Link, Links};

    fn event(id: &str) -> EventValue {
        EventValue {
            communication_party: None,
            event_id: id.to_owned(),
            event_type: "CommunicationPartyUpdated".to_owned(),
            from_datetime: "2024-05-01T12:00:00.1234567".parse().unwrap(),
            her_id: 1,
            org_nr: None,
        }
    }

    fn page(ids: &[&str], next: Option<&str>) -> EventResponse {
        EventResponse {
            communication_parties: ids.iter().map(|id| event(id)).collect(),
            links: Some(Links {
                next: next.map(|href| Link {
                    href: href.to_owned(),
                }),
            }),
        }
    }

    const BASE: &str = "https://cpe.test.grunndata.nhn.no";

    fn start() -> Cursor {
        Cursor {
            event_id: None,
            from_datetime: None,
        }
    }

    #[test]
    fn follows_the_next_link_query() {
        let next = next_cursor(
            BASE,
            &start(),
            &page(&["a", "b"], Some("/CommunicationPartyEvents?EventId=b%2B1")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.event_id.as_deref(), Some("b+1"));
        // An absolute link elsewhere lends only its query.
        let next = next_cursor(
            BASE,
            &start(),
            &page(
                &["a"],
                Some("https://elsewhere.example/x?EventId=z&fromDatetime=2024-05-01T12:00:00%2B02:00"),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.event_id.as_deref(), Some("z"));
        assert!(next.from_datetime.unwrap().has_offset());
    }

    #[test]
    fn a_link_without_event_id_continues_after_the_last_event() {
        let next = next_cursor(BASE, &start(), &page(&["a", "b"], Some("?page=2")))
            .unwrap()
            .unwrap();
        assert_eq!(next.event_id.as_deref(), Some("b"));
    }

    #[test]
    fn ends_without_a_link_or_without_events() {
        assert_eq!(
            next_cursor(BASE, &start(), &page(&["a"], None)).unwrap(),
            None
        );
        let empty = page(&[], Some("/CommunicationPartyEvents?EventId=a"));
        assert_eq!(next_cursor(BASE, &start(), &empty).unwrap(), None);
        let no_links = EventResponse {
            communication_parties: vec![event("a")],
            links: None,
        };
        assert_eq!(next_cursor(BASE, &start(), &no_links).unwrap(), None);
    }

    #[test]
    fn a_link_that_does_not_move_is_an_error() {
        let current = Cursor {
            event_id: Some("a".to_owned()),
            from_datetime: None,
        };
        let e = next_cursor(
            BASE,
            &current,
            &page(&["b"], Some("/CommunicationPartyEvents?EventId=a")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not move forward"), "{e}");
        let e = next_cursor(
            BASE,
            &start(),
            &page(&["b"], Some("/x?EventId=b&fromDatetime=never")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`never` is not a date-time"), "{e}");
    }

    #[test]
    fn a_next_link_reaches_errors_escaped() {
        // Control characters and a bidirectional override in the server's link: a parse
        // error and a link that does not move both show them escaped.
        let forged = "http://[x\n\u{1b}[31mFORGED\u{202e}";
        let e = next_cursor(BASE, &start(), &page(&["a"], Some(forged))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\\n\\u{1b}[31mFORGED\\u{202e}"), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text}"
        );
        let current = Cursor {
            event_id: Some("a".to_owned()),
            from_datetime: None,
        };
        let still = "/x?EventId=a&\u{7}=\r\n";
        let e = next_cursor(BASE, &current, &page(&["b"], Some(still))).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("does not move forward"), "{text}");
        assert!(!text.chars().any(char::is_control), "{text}");
    }
}
