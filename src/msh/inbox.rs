//! A receiver's inbox as a stream: its unread messages, polled with back-off.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, stream};
use uuid::Uuid;

use super::types::{Message, OrderBy};
use super::{Client, Error};

/// The most messages one `GET /Messages` returns.
const PAGE: NonZeroU32 = NonZeroU32::new(100).expect("100 is not zero");

/// The first wait between polls that bring nothing new, by default.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The longest wait between polls, by default.
const MAX_INTERVAL: Duration = Duration::from_secs(30);

type Messages = Pin<Box<dyn Stream<Item = Result<Message, Error>> + Send>>;

/// A receiver's new messages, as the API lists them (by the business document's
/// `GenDate`, oldest first), each once per stream. Made by [`Client::inbox`].
///
/// The stream polls `GET /Messages` for the HER-id's unread messages (with their
/// metadata, up to 100 a call) and yields those it has not yielded yet. A poll that
/// brings nothing new doubles the wait before the next one, from
/// [`poll_interval`](Self::poll_interval) up to
/// [`max_poll_interval`](Self::max_poll_interval); a poll that brings something starts
/// again from the shortest. A failed call is yielded as an error and the stream polls
/// on after the wait (stop at the first error with `try_next`).
///
/// The stream does not mark what it yields read: mark each message read
/// ([`Client::mark_read`]) once it is handled. A message marked read never comes back,
/// in this stream or another; one not marked read is yielded again by the next stream
/// (after a restart), so nothing is missed. With more than 100 unread messages, the
/// stream sees the next ones as the first are marked read.
///
/// It never ends, unless [`drain`](Self::drain) asks it to end when a poll brings
/// nothing new.
#[must_use = "streams do nothing unless polled"]
pub struct Inbox {
    client: Client,
    her_id: i32,
    min: Duration,
    max: Duration,
    drain: bool,
    messages: Option<Messages>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("her_id", &self.her_id)
            .field("poll_interval", &self.min)
            .field("max_poll_interval", &self.max)
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The new messages of receiver `her_id` (one the client's tenant owns), as a
    /// [`Stream`]: see [`Inbox`].
    pub fn inbox(&self, her_id: i32) -> Inbox {
        Inbox {
            client: self.clone(),
            her_id,
            min: MIN_INTERVAL,
            max: MAX_INTERVAL,
            drain: false,
            messages: None,
        }
    }
}

impl Inbox {
    /// The wait after the first poll that brings nothing new. Default: one second. Set
    /// before the stream is first polled; later, it changes nothing.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.min = interval;
        self
    }

    /// The longest wait between polls. Default: 30 seconds (never below
    /// [`poll_interval`](Self::poll_interval)).
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.max = interval;
        self
    }

    /// Ends the stream when a poll brings nothing new (what is unread now, then the
    /// end), instead of waiting for more. Default: `false`.
    pub fn drain(mut self, drain: bool) -> Self {
        self.drain = drain;
        self
    }

    /// The receiver whose messages these are.
    pub fn her_id(&self) -> i32 {
        self.her_id
    }
}

impl Stream for Inbox {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.messages.is_none() {
            let state = State {
                client: self.client.clone(),
                her_ids: vec![self.her_id],
                seen: HashSet::new(),
                queue: VecDeque::new(),
                min: self.min,
                max: self.max.max(self.min),
                wait: None,
                drain: self.drain,
            };
            self.messages = Some(Box::pin(stream::unfold(state, State::next)));
        }
        match self.messages.as_mut() {
            Some(messages) => messages.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

/// The stream's state between items.
struct State {
    client: Client,
    her_ids: Vec<i32>,
    /// The ids yielded that were still unread at the last poll.
    seen: HashSet<Uuid>,
    /// Messages polled and not yet yielded, in the API's order.
    queue: VecDeque<Message>,
    min: Duration,
    max: Duration,
    /// The wait before the next poll; `None` before the first.
    wait: Option<Duration>,
    drain: bool,
}

impl State {
    /// The next message (or error), polling as long as it takes.
    async fn next(mut self) -> Option<(Result<Message, Error>, State)> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some((Ok(message), self));
            }
            if let Some(wait) = self.wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(wait).await;
            }
            let answer = self
                .client
                .get_messages(
                    None,
                    Some(true),
                    Some(PAGE),
                    Some(OrderBy::Ascending),
                    &self.her_ids,
                    None,
                )
                .await;
            let listed = match answer {
                Ok(listed) => listed.into_inner(),
                Err(error) => {
                    self.back_off();
                    return Some((Err(error), self));
                }
            };
            let full = listed.len() >= PAGE.get() as usize;
            if !full {
                // What left the unread list was marked read: it never comes back.
                let unread: HashSet<Uuid> = listed.iter().filter_map(|m| m.id).collect();
                self.seen.retain(|id| unread.contains(id));
            }
            let before = self.queue.len();
            for message in listed {
                match message.id {
                    Some(id) if self.seen.insert(id) => self.queue.push_back(message),
                    Some(_) => {}
                    None => tracing::warn!(
                        her_id = self.her_ids[0],
                        "the Meldingstjener listed a message without an id; skipped"
                    ),
                }
            }
            if self.queue.len() > before {
                // More may be waiting behind a full page: ask again at once.
                self.wait = Some(if full || self.drain {
                    Duration::ZERO
                } else {
                    self.min
                });
            } else if self.drain {
                return None;
            } else {
                self.back_off();
            }
        }
    }

    /// Doubles the wait, from the shortest to the longest.
    fn back_off(&mut self) {
        self.wait = Some(match self.wait {
            None => self.min,
            Some(wait) if wait < self.min => self.min,
            Some(wait) => (wait * 2).min(self.max),
        });
    }
}
