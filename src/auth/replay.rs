use std::any::{Any, TypeId};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full, Limited};

use crate::error::BoxError;

/// How [`HelseId`](super::HelseId) copies a request to send it a second time: once after
/// `401 invalid_token` (with a new token), once after a DPoP nonce challenge (with a new
/// proof).
///
/// The layer takes any request body; only the retry depends on replay. A policy is a set
/// of copy functions, one per body type, tried by the body's type:
///
/// - bodies that are cheap to clone are cloned: `Full<Bytes>`, `Empty<Bytes>`,
///   `Limited<Full<Bytes>>`, `String`, `Vec<u8>`, `Bytes`, `()`;
/// - the boxed bodies of `http-body-util` (`BoxBody` and `UnsyncBoxBody` of `Bytes`,
///   with a [`BoxError`] or `Infallible` error) are rebuilt empty when their
///   `size_hint().exact()` is `Some(0)`, and not replayed otherwise;
/// - a body type of your own: [`body`](Replay::body) gives the copy function,
///   [`clone_body`](Replay::clone_body) clones it, [`empty_body`](Replay::empty_body)
///   rebuilds it with `Default` when it is known to be empty.
///
/// A request whose body has no copy function, or whose function answers `None` (a
/// stream), is sent once and its `401` returned as it is. [`Replay::never`] switches
/// the retries off: a retry sends the request twice, which repeats any side effect the
/// first one had before the server refused it.
///
/// # Example
/// ```
/// use helseid::auth::Replay;
///
/// # struct MyBody(Option<bytes::Bytes>);
/// // A body type that can be replayed while it holds its bytes in memory.
/// let replay = Replay::new().body(|body: &MyBody| body.0.clone().map(|b| MyBody(Some(b))));
/// # drop(replay);
/// ```
#[derive(Clone)]
pub struct Replay {
    /// One copier per body type: a few entries, found by a scan of `TypeId`s.
    copiers: Arc<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
    enabled: bool,
}

/// A copy function of bodies of type `B`.
type CopyFn<B> = dyn Fn(&B) -> Option<B> + Send + Sync;

/// The copy function of one body type `B`, behind `dyn Any`.
struct Copier<B>(Box<CopyFn<B>>);

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("enabled", &self.enabled)
            .field("body_types", &self.copiers.len())
            .finish()
    }
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// The default policy: the body types listed on [`Replay`].
    pub fn new() -> Self {
        Replay {
            copiers: Arc::new(Vec::new()),
            enabled: true,
        }
        .clone_body::<Full<Bytes>>()
        .clone_body::<Empty<Bytes>>()
        .clone_body::<Limited<Full<Bytes>>>()
        .clone_body::<String>()
        .clone_body::<Vec<u8>>()
        .clone_body::<Bytes>()
        .clone_body::<()>()
        .empty_body::<UnsyncBoxBody<Bytes, BoxError>>()
        .empty_body::<BoxBody<Bytes, BoxError>>()
        .empty_body::<UnsyncBoxBody<Bytes, Infallible>>()
        .empty_body::<BoxBody<Bytes, Infallible>>()
    }

    /// No retries at all: every request is sent once.
    pub fn never() -> Self {
        Replay {
            copiers: Arc::new(Vec::new()),
            enabled: false,
        }
    }

    /// Copies bodies of type `B` with `copy`; `None` means this body cannot be replayed.
    /// Replaces the function for `B` if there was one.
    pub fn body<B, F>(mut self, copy: F) -> Self
    where
        B: Send + 'static,
        F: Fn(&B) -> Option<B> + Send + Sync + 'static,
    {
        let copier: Arc<dyn Any + Send + Sync> = Arc::new(Copier::<B>(Box::new(copy)));
        let copiers = Arc::make_mut(&mut self.copiers);
        copiers.retain(|(id, _)| *id != TypeId::of::<B>());
        copiers.push((TypeId::of::<B>(), copier));
        self
    }

    /// Replays bodies of type `B` by cloning them.
    pub fn clone_body<B: Clone + Send + Sync + 'static>(self) -> Self {
        self.body(|body: &B| Some(body.clone()))
    }

    /// Rebuilds bodies of type `B` with `B::default()` when their
    /// `size_hint().exact()` is `Some(0)`; others of the type are not replayed.
    pub fn empty_body<B: Body + Default + Send + 'static>(self) -> Self {
        self.body(|body: &B| (body.size_hint().exact() == Some(0)).then(B::default))
    }

    /// Whether this policy retries at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// A copy of `body`, when its type has a copy function that can copy it.
    #[inline]
    pub(crate) fn copy_body<B: 'static>(&self, body: &B) -> Option<B> {
        if !self.enabled {
            return None;
        }
        let (_, copier) = self
            .copiers
            .iter()
            .find(|(id, _)| *id == TypeId::of::<B>())?;
        let copier = copier.downcast_ref::<Copier<B>>()?;
        (copier.0)(body)
    }

    /// A copy of `request` (method, URI, version, headers, extensions and body), when its
    /// body can be copied.
    #[inline]
    pub(crate) fn copy<B: 'static>(&self, request: &Request<B>) -> Option<Request<B>> {
        let body = self.copy_body(request.body())?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        // Empty maps (the common case before the layer sets its header) are not cloned.
        if !request.headers().is_empty() {
            *copy.headers_mut() = request.headers().clone();
        }
        if !request.extensions().is_empty() {
            *copy.extensions_mut() = request.extensions().clone();
        }
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn cheap_bodies_are_cloned() {
        let replay = Replay::new();
        let full = Full::new(Bytes::from_static(b"abc"));
        assert!(replay.copy_body(&full).is_some());
        assert_eq!(replay.copy_body(&String::from("x")).as_deref(), Some("x"));
        let limited = Limited::new(Full::new(Bytes::from_static(b"abc")), 10);
        assert!(replay.copy_body(&limited).is_some());
    }

    #[test]
    fn boxed_bodies_are_rebuilt_only_when_empty() {
        let replay = Replay::new();
        let empty: UnsyncBoxBody<Bytes, BoxError> =
            Empty::new().map_err(BoxError::from).boxed_unsync();
        let copy = replay.copy_body(&empty).expect("empty: rebuilt");
        assert_eq!(copy.size_hint().exact(), Some(0));
        let full: UnsyncBoxBody<Bytes, BoxError> = Full::new(Bytes::from_static(b"abc"))
            .map_err(BoxError::from)
            .boxed_unsync();
        assert!(
            replay.copy_body(&full).is_none(),
            "a body with bytes is not"
        );
    }

    #[test]
    fn unknown_bodies_are_not_replayed_and_custom_functions_are_used() {
        #[derive(Debug, PartialEq)]
        struct Mine(u8);
        assert!(Replay::new().copy_body(&Mine(1)).is_none());
        let replay = Replay::new().body(|m: &Mine| Some(Mine(m.0 + 1)));
        assert_eq!(replay.copy_body(&Mine(1)), Some(Mine(2)));
        // A later function for the same type replaces the earlier one.
        let replay = replay.body(|_: &Mine| None);
        assert_eq!(replay.copy_body(&Mine(1)), None);
    }

    #[test]
    fn never_copies_nothing() {
        let replay = Replay::never().clone_body::<String>();
        assert!(!replay.is_enabled());
        assert!(replay.copy_body(&String::from("x")).is_none());
    }
}
