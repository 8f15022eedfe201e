use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::Shared;
use super::local::Ctx;
use super::replay::Kept;
use crate::assertion::Tenant;
use crate::cache::refused;
use crate::error::BoxError;

/// The slow path: a token fetched first, DPoP proofs, token exchange, a retry.
pub(super) type BoxResponse<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`HelseId`](super::HelseId).
    ///
    /// With a warm token the service has accepted, it is the inner service's future and
    /// the token's id (no allocation, no reference counted); a request that keeps a copy
    /// for a retry keeps it in a box, and one that waits for a token, carries a DPoP
    /// proof, or is sent again after a `401` goes through a boxed future.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        /// The token was in front: the inner service's future and the id of the token
        /// sent.
        Fast {
            #[pin]
            future: S::Future,
            sent: u64,
        },
        /// The same, for a request that keeps a copy of itself: what a retry after
        /// `401 invalid_token` needs (taken at the answer).
        Kept {
            #[pin]
            future: S::Future,
            sent: u64,
            retry: Option<Box<Retry<S, B>>>,
        },
        Slow {
            future: BoxResponse<S::Response>,
        },
    }
}

/// What the layer needs of the service it wraps: a service of `Request<B>` that it can
/// clone (for a retry) and send to another task, whose future is `Send`, and whose error
/// it can box.
pub(super) trait Inner<B, ResBody>:
    Service<Request<B>, Response = Response<ResBody>, Future: Send + 'static, Error: Into<BoxError>>
    + Clone
    + Send
    + 'static
{
}

impl<S, B, ResBody> Inner<B, ResBody> for S where
    S: Service<
            Request<B>,
            Response = Response<ResBody>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// What the retry of a request needs.
pub(super) struct Retry<S, B> {
    pub(super) owner: Owner<S>,
    pub(super) kept: Kept<B>,
    pub(super) tenant: Option<Tenant>,
}

/// The retry's layer and service: the calling clone's own context (a count no other
/// clone writes, and the service clone it keeps), or the layer and a clone of the
/// service (a clone's first request, or the slow path).
pub(super) enum Owner<S> {
    Ctx(Arc<Ctx<S>>),
    Layer(Arc<Shared>, S),
}

impl<S: Clone> Owner<S> {
    /// The layer.
    pub(super) fn shared(&self) -> &Arc<Shared> {
        match self {
            Owner::Ctx(ctx) => &ctx.shared,
            Owner::Layer(shared, _) => shared,
        }
    }

    /// The layer, and a service to send the retry with.
    pub(super) fn into_parts(self) -> (Arc<Shared>, S) {
        match self {
            Owner::Ctx(ctx) => (ctx.shared.clone(), ctx.inner()),
            Owner::Layer(shared, inner) => (shared, inner),
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// The future of a request that keeps no copy of itself.
    #[inline]
    pub(super) fn fast(future: S::Future, sent: u64) -> Self {
        ResponseFuture {
            state: State::Fast { future, sent },
        }
    }

    /// The future of a request that keeps a copy of itself for a retry.
    pub(super) fn kept(future: S::Future, sent: u64, retry: Box<Retry<S, B>>) -> Self {
        ResponseFuture {
            state: State::Kept {
                future,
                sent,
                retry: Some(retry),
            },
        }
    }

    pub(super) fn slow(future: BoxResponse<S::Response>) -> Self {
        ResponseFuture {
            state: State::Slow { future },
        }
    }
}

/// Whether a `401` says that the token is no good (RFC 6750 `invalid_token`).
#[inline]
pub(super) fn says_invalid_token<T>(response: &Response<T>) -> bool {
    response.status() == http::StatusCode::UNAUTHORIZED && names_invalid_token(response)
}

#[inline(never)]
fn names_invalid_token<T>(response: &Response<T>) -> bool {
    response
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}

/// What follows `response` to a request sent with the token with id `sent`, when the
/// request kept a copy in `retry` or the answer is a `401`: the response to return (a
/// success accepts the token; a refusal with no copy takes it out of use), or the
/// retry's state.
#[inline(never)]
fn answered<S, B, ResBody>(
    response: Response<ResBody>,
    sent: u64,
    retry: &mut Option<Box<Retry<S, B>>>,
) -> Result<Response<ResBody>, State<S, B>>
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    let status = response.status();
    if status != http::StatusCode::UNAUTHORIZED {
        if status.is_success()
            && let Some(retry) = retry.take()
        {
            // The token's first success: its later requests keep no copy.
            retry.owner.shared().accept(retry.tenant.as_ref(), sent);
        }
        return Ok(response);
    }
    if !names_invalid_token(&response) {
        return Ok(response);
    }
    let Some(retry) = retry.take() else {
        // No copy to send again: the token leaves all the same.
        tracing::debug!(
            "the service answered 401 invalid_token to a request that kept no copy: \
             answered as it is; the next request gets a new token"
        );
        refused::refuse(sent);
        return Ok(response);
    };
    Err(State::Slow {
        future: Box::pin(super::service::retry_fast(*retry, sent, response)),
    })
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Slow { future } => return future.as_mut().poll(cx),
                StateProj::Fast { future, sent } => {
                    let output = ready!(future.poll(cx));
                    // The warm path: answered without 401.
                    if output
                        .as_ref()
                        .is_ok_and(|response| response.status() != http::StatusCode::UNAUTHORIZED)
                    {
                        return Poll::Ready(output.map_err(Into::into));
                    }
                    match answered(output.map_err(Into::into)?, *sent, &mut None) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(retrying) => retrying,
                    }
                }
                StateProj::Kept {
                    future,
                    sent,
                    retry,
                } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    match answered(response, *sent, retry) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(retrying) => retrying,
                    }
                }
            };
            state.set(next);
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Fast { .. } => "fast",
            State::Kept { .. } => "kept",
            State::Slow { .. } => "slow",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
