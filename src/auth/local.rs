//! What one clone of [`HelseId`](super::HelseId) keeps for itself, so that a warm
//! request writes no cache line that another clone, on another core, writes too.
//!
//! A clone makes its own [`Ctx`] at its second request for the layer's own token, or
//! at its second request that keeps a copy of itself for a retry (a tenant's request
//! whose token no service has yet accepted, say; a tenant's warm request reads nothing
//! of the clone's). The context holds the clone's own reference to the layer (the
//! retry's futures count their references there, not on the layer's), a clone of the
//! inner service for the retries (so that no request clones it), and its own copy of
//! the layer's token in front (another `Bytes` whose reference count is its own), valid
//! while that token's [`Live`] flag, which no request writes, says it is still in
//! front. A clone used once (`service.clone().oneshot(request)`) makes no context (it
//! would cost more than it saves) and refers to the layer, keeping a clone of the
//! service for its retry; it sends its thread's copy of the token in front (see
//! [`thread_copy`]), so that clones made per request on two cores write no reference
//! count in common.

use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, HeaderValue};

use super::layer::Shared;
use crate::cache::{Hit, Live, Seen, Sent, refused};

/// One clone's context (see the module docs).
pub(crate) struct Ctx<S> {
    pub(super) shared: Arc<Shared>,
    /// This clone's copy of the layer's own token, while it is in front.
    own: Option<Own>,
    /// A clone of the inner service, for the rare retry: a request does not clone the
    /// service to keep one (cloning a client writes reference counts all its clones
    /// share).
    inner: Mutex<S>,
}

struct Own {
    header: HeaderValue,
    id: u64,
    live: Arc<Live>,
}

impl Own {
    /// This copy of the token, with what `seen` says of its acceptance.
    #[inline]
    fn hit(&self, seen: Seen) -> Hit {
        Hit {
            header: self.header.clone(),
            id: self.id,
            accepted: seen.is_accepted(),
        }
    }
}

impl<S: Clone> Ctx<S> {
    fn new(shared: &Arc<Shared>, own: Option<Own>, inner: &S) -> Arc<Self> {
        Arc::new(Ctx {
            shared: shared.clone(),
            own,
            inner: Mutex::new(inner.clone()),
        })
    }

    /// A clone of the inner service, for a retry.
    pub(super) fn inner(&self) -> S {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The per-clone state of a service. A clone of a service starts without a context:
/// a context is one clone's alone.
pub(super) struct Local<S> {
    /// This clone's context, from its second call on.
    ctx: Option<Arc<Ctx<S>>>,
    /// Whether this clone has been called.
    called: bool,
}

impl<S> Default for Local<S> {
    fn default() -> Self {
        Local {
            ctx: None,
            called: false,
        }
    }
}

impl<S> Clone for Local<S> {
    fn clone(&self) -> Self {
        Local::default()
    }
}

impl<S: Clone> Local<S> {
    /// Makes this clone's own context at its second call that keeps a copy for a retry
    /// (the first only counts), when the own token's requests have not made it: for the
    /// requests that do not ask for the own token (a tenant's).
    #[inline]
    pub(super) fn settle(&mut self, shared: &Arc<Shared>, inner: &S) {
        if self.ctx.is_none() {
            self.make(shared, inner);
        }
    }

    #[cold]
    #[inline(never)]
    fn make(&mut self, shared: &Arc<Shared>, inner: &S) {
        if self.first_call() {
            return;
        }
        self.ctx = Some(Ctx::new(shared, own(shared), inner));
    }

    /// Whether this is the clone's first call, which makes no context (and notes that
    /// it has been called).
    fn first_call(&mut self) -> bool {
        let first = self.ctx.is_none() && !self.called;
        self.called = true;
        first
    }

    /// This clone's own context, once [`settle`](Self::settle) has made it.
    #[inline]
    pub(super) fn ctx(&self) -> Option<&Arc<Ctx<S>>> {
        self.ctx.as_ref()
    }

    /// Sets the layer's own token on `headers`: this clone's copy, while the token is in
    /// front and no service has refused it (one read of flags no request writes once
    /// the token is accepted, one of a line only a refusal writes, and a clone of a
    /// header no other clone holds); otherwise the token in front, if there is one (see
    /// [`renew`]).
    ///
    /// [`renew`]: Self::renew
    #[inline]
    pub(super) fn own_token(
        &mut self,
        shared: &Arc<Shared>,
        inner: &S,
        headers: &mut HeaderMap,
    ) -> Option<Sent> {
        if let Some(ctx) = &self.ctx
            && let Some(own) = &ctx.own
        {
            let seen = own.live.seen();
            if seen.is_live() && !refused::is_refused(own.id) {
                return Some(own.hit(seen).attach(headers));
            }
        }
        Some(self.renew(shared, inner)?.attach(headers))
    }

    /// The token in front, if there is one: at this clone's first call, read from the
    /// front; later, in a new context with a copy of it (the old context stays while
    /// there is none).
    #[cold]
    #[inline(never)]
    fn renew(&mut self, shared: &Arc<Shared>, inner: &S) -> Option<Hit> {
        if self.first_call() {
            return thread_copy(shared);
        }
        let own = own(shared)?;
        let hit = own.hit(own.live.seen());
        self.ctx = Some(Ctx::new(shared, Some(own), inner));
        Some(hit)
    }
}

/// A copy of the layer's token in front, in bytes of its own (the caller serves Bearer
/// tokens from the front: no token exchange, no DPoP).
fn own(shared: &Shared) -> Option<Own> {
    let (header, id, live) = shared.front_token()?;
    Some(Own {
        header: crate::token::sensitive_header(header.as_bytes().to_vec())?,
        id,
        live,
    })
}

/// How many tokens' copies a thread keeps (see [`thread_copy`]): a thread serves few
/// layers, and a copy of a token no longer in front is dropped at the next new copy.
const THREAD_COPIES: usize = 8;

thread_local! {
    /// This thread's copies of the tokens in front, by token id (ids are unique in the
    /// process, whatever the layer).
    static COPIES: std::cell::RefCell<Vec<Own>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The layer's token in front for a clone at its first call (a clone used once, as
/// `service.clone().oneshot(request)` makes one per request): this thread's copy of it,
/// in bytes whose reference count only this thread's requests write, rather than the
/// front's, which every core's requests would write. A copy is made the first time a
/// thread meets a token; when the thread's copies cannot be reached (the thread is
/// ending), the front's own header.
fn thread_copy(shared: &Shared) -> Option<Hit> {
    let (id, seen) = shared.front_id()?;
    COPIES
        .try_with(|copies| {
            let mut copies = copies.try_borrow_mut().ok()?;
            if let Some(own) = copies.iter().find(|own| own.id == id) {
                return Some(own.hit(seen));
            }
            new_thread_copy(shared, &mut copies)
        })
        .ok()
        .flatten()
        .or_else(|| shared.own_header())
}

#[cold]
#[inline(never)]
fn new_thread_copy(shared: &Shared, copies: &mut Vec<Own>) -> Option<Hit> {
    copies.retain(|own| own.live.is_live());
    if copies.len() >= THREAD_COPIES {
        copies.remove(0);
    }
    let own = own(shared)?;
    let hit = own.hit(own.live.seen());
    copies.push(own);
    Some(hit)
}
