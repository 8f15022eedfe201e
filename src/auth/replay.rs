use std::any::{Any, TypeId};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use http_body::Body;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full, Limited};

use crate::assertion::Tenant;
use crate::error::BoxError;

/// How [`HelseId`](super::HelseId) copies a request to send it a second time: once after
/// `401 invalid_token` (with a new token), once after a DPoP nonce challenge (with a new
/// proof). A Bearer request keeps a copy only while its token has not yet been accepted,
/// unless the layer says otherwise
/// ([`retry_after_acceptance`](super::HelseIdLayerBuilder::retry_after_acceptance)).
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
    /// The copy functions given with [`body`](Replay::body) and the like, one per body
    /// type, found by a scan of `TypeId`s before the built-in ones ([`builtin`]).
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
            .field("own_body_types", &self.copiers.len())
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
    }

    /// No retries at all: every request is sent once.
    pub fn never() -> Self {
        Replay {
            copiers: Arc::new(Vec::new()),
            enabled: false,
        }
    }

    /// Copies bodies of type `B` with `copy`; `None` means this body cannot be replayed.
    /// Replaces the function for `B` if there was one, built-in or given.
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
        let given = self.copiers.iter().find(|(id, _)| *id == TypeId::of::<B>());
        match given {
            Some((_, copier)) => (copier.downcast_ref::<Copier<B>>()?.0)(body),
            None => builtin(body)?,
        }
    }

    /// What a retry of `request` needs (method, URI, version, headers, extensions and
    /// body), when its body can be copied. Only what cannot be rebuilt is copied: headers
    /// that hold nothing but an `Authorization` value (which the retry sets anew) are
    /// not cloned, and extensions that hold only `tenant` are rebuilt from it.
    #[inline]
    pub(crate) fn copy<B: 'static>(
        &self,
        request: &Request<B>,
        tenant: Option<Tenant>,
    ) -> Option<Kept<B>> {
        let body = self.copy_body(request.body())?;
        let extensions = request.extensions();
        let rebuilt = extensions.is_empty() || (tenant.is_some() && extensions.len() == 1);
        Some(Kept {
            method: KeptMethod::new(request.method()),
            uri: request.uri().clone(),
            version: request.version(),
            headers: match only_authorization(request.headers()) {
                true => None,
                false => Some(Box::new(request.headers().clone())),
            },
            extensions: match rebuilt {
                true => Extensions::new(),
                false => extensions.clone(),
            },
            rebuilt,
            body,
        })
    }
}

/// Whether `headers` hold nothing but an `Authorization` value, which a retry sets anew.
#[inline]
fn only_authorization(headers: &HeaderMap) -> bool {
    match headers.len() {
        0 => true,
        1 => headers.keys().next() == Some(&http::header::AUTHORIZATION),
        _ => false,
    }
}

/// The built-in copy of `body` (`Some`) when `B` is a built-in type (the ones listed
/// on [`Replay`]), `None` otherwise. Each test compares two constant `TypeId`s, so the
/// compiler keeps the one branch that applies to `B`.
#[inline(always)]
fn builtin<B: 'static>(body: &B) -> Option<Option<B>> {
    macro_rules! cloned {
        ($($t:ty),*) => {$(
            if TypeId::of::<B>() == TypeId::of::<$t>() {
                return Some(as_b(clone_as::<$t, B>(body)));
            }
        )*};
    }
    macro_rules! empty {
        ($($t:ty),*) => {$(
            if TypeId::of::<B>() == TypeId::of::<$t>() {
                let body = (body as &dyn Any).downcast_ref::<$t>();
                let empty = body.is_some_and(|body| body.size_hint().exact() == Some(0));
                return Some(as_b(empty.then(<$t>::default)));
            }
        )*};
    }
    cloned!(
        (),
        Full<Bytes>,
        Empty<Bytes>,
        Limited<Full<Bytes>>,
        String,
        Vec<u8>,
        Bytes
    );
    empty!(
        UnsyncBoxBody<Bytes, BoxError>,
        BoxBody<Bytes, BoxError>,
        UnsyncBoxBody<Bytes, Infallible>,
        BoxBody<Bytes, Infallible>
    );
    None
}

/// A clone of `body`, a `T`.
#[inline(always)]
fn clone_as<T: Clone + 'static, B: 'static>(body: &B) -> Option<T> {
    (body as &dyn Any).downcast_ref::<T>().cloned()
}

/// `value` as a `B` (it is one: `T` is `B`).
#[inline(always)]
fn as_b<T: 'static, B: 'static>(value: Option<T>) -> Option<B> {
    let mut value = Some(value?);
    (&mut value as &mut dyn Any)
        .downcast_mut::<Option<B>>()
        .and_then(Option::take)
}

/// A request's method in two words (a `Method` takes three): the standard ones by name,
/// others boxed. A smaller [`Kept`] is cheaper to make and move into its request's box
/// (about 30 instructions a copy against `Method` itself, in `benches/callgrind.rs`'s
/// `own_token_copies`).
enum KeptMethod {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Options,
    Patch,
    Other(Box<Method>),
}

impl KeptMethod {
    #[inline(always)]
    fn new(method: &Method) -> Self {
        match *method {
            Method::GET => KeptMethod::Get,
            Method::POST => KeptMethod::Post,
            Method::PUT => KeptMethod::Put,
            Method::DELETE => KeptMethod::Delete,
            Method::HEAD => KeptMethod::Head,
            Method::OPTIONS => KeptMethod::Options,
            Method::PATCH => KeptMethod::Patch,
            _ => KeptMethod::Other(Box::new(method.clone())),
        }
    }

    fn into_method(self) -> Method {
        match self {
            KeptMethod::Get => Method::GET,
            KeptMethod::Post => Method::POST,
            KeptMethod::Put => Method::PUT,
            KeptMethod::Delete => Method::DELETE,
            KeptMethod::Head => Method::HEAD,
            KeptMethod::Options => Method::OPTIONS,
            KeptMethod::Patch => Method::PATCH,
            KeptMethod::Other(method) => *method,
        }
    }
}

/// A request kept for a retry: the parts that cannot be rebuilt.
pub(crate) struct Kept<B> {
    method: KeptMethod,
    uri: Uri,
    version: Version,
    /// `None`: the request had none (before the layer set its own).
    headers: Option<Box<HeaderMap>>,
    extensions: Extensions,
    /// Whether `extensions` were left empty: none, or only the request's [`Tenant`]
    /// (put back by [`into_request`](Kept::into_request)).
    rebuilt: bool,
    body: B,
}

impl<B> Kept<B> {
    /// The request again, with `tenant` in its extensions when they were rebuilt.
    pub(crate) fn into_request(self, tenant: Option<Tenant>) -> Request<B> {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method.into_method();
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        if let Some(headers) = self.headers {
            *request.headers_mut() = *headers;
        }
        *request.extensions_mut() = self.extensions;
        if self.rebuilt
            && let Some(tenant) = tenant
        {
            request.extensions_mut().insert(tenant);
        }
        request
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
    fn built_in_types_are_copied_and_their_functions_can_be_replaced() {
        let replay = Replay::new();
        assert_eq!(replay.copy_body(&()), Some(()));
        assert_eq!(
            replay.copy_body(&Bytes::from_static(b"b")).as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(replay.copy_body(&vec![1u8]), Some(vec![1u8]));
        assert!(replay.copy_body(&Empty::<Bytes>::new()).is_some());
        let replay = replay.body(|s: &String| Some(format!("{s}!")));
        assert_eq!(replay.copy_body(&String::from("x")).as_deref(), Some("x!"));
        assert_eq!(replay.copy_body(&()), Some(()), "the others stay");
        let replay = Replay::new().body(|_: &()| None);
        assert_eq!(replay.copy_body(&()), None);
    }

    #[test]
    fn a_kept_request_is_the_request_again() {
        let tenant: Tenant = "911111111:922222222".parse().expect("tenant");
        let mut request = Request::post("https://api.test/a?b=c")
            .header("x-trace", "abc")
            .body(String::from("body"))
            .expect("request");
        request.extensions_mut().insert(tenant);
        let again = Replay::new()
            .copy(&request, Some(tenant))
            .expect("kept")
            .into_request(Some(tenant));
        assert_eq!(again.method(), request.method());
        assert_eq!(again.uri(), request.uri());
        assert_eq!(again.version(), request.version());
        assert_eq!(again.headers(), request.headers());
        assert_eq!(again.body(), request.body());
        assert_eq!(again.extensions().get::<Tenant>(), Some(&tenant));

        // Every method comes back, the standard ones and others.
        for method in [
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "PROPFIND",
        ] {
            let request = Request::builder().method(method).body(()).expect("request");
            let kept = Replay::new().copy(&request, None).expect("kept");
            assert_eq!(kept.into_request(None).method().as_str(), method);
        }

        // Other extensions are cloned with the tenant.
        #[derive(Clone, Debug, PartialEq)]
        struct Trace(u32);
        request.extensions_mut().insert(Trace(7));
        let again = Replay::new()
            .copy(&request, Some(tenant))
            .expect("kept")
            .into_request(Some(tenant));
        assert_eq!(again.extensions().get::<Trace>(), Some(&Trace(7)));
        assert_eq!(again.extensions().get::<Tenant>(), Some(&tenant));
        assert!(again.headers().contains_key("x-trace"));

        // An Authorization value alone is not kept (the retry sets another); with
        // other headers, all are kept.
        let mut request = Request::new(());
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer old"),
        );
        let kept = Replay::new().copy(&request, None).expect("kept");
        assert!(kept.into_request(None).headers().is_empty());
        request
            .headers_mut()
            .insert("x-trace", http::HeaderValue::from_static("abc"));
        let kept = Replay::new().copy(&request, None).expect("kept");
        assert_eq!(kept.into_request(None).headers(), request.headers());
    }

    #[test]
    fn never_copies_nothing() {
        let replay = Replay::never().clone_body::<String>();
        assert!(!replay.is_enabled());
        assert!(replay.copy_body(&String::from("x")).is_none());
    }
}
