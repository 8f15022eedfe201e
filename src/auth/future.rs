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

/// The slow path: a copy kept for a retry, a token fetched first, DPoP proofs, token
/// exchange, a retry.
pub(super) type BoxResponse<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`HelseId`](super::HelseId).
    ///
    /// With a warm token the service has accepted, it is the inner service's future and
    /// the token's id (no allocation, no reference counted). A request that keeps a copy
    /// of itself for a retry (its token not yet accepted), waits for a token, carries a
    /// DPoP proof, or is sent again after a `401` goes through a boxed future.
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
        /// Anything else, boxed (see [`BoxResponse`]).
        Slow {
            future: BoxResponse<S::Response>,
        },
    }
}

pin_project! {
    /// The future of a request that keeps a copy of itself: the inner service's
    /// future, then the retry's when the token was refused.
    struct Keeping<S, B, ResBody>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        future: S::Future,
        sent: u64,
        // Whether a service had accepted the token (a success then notes nothing).
        accepted: bool,
        retry: Option<Retry<S, B>>,
        retrying: Option<BoxResponse<Response<ResBody>>>,
    }
}

impl<S, B, ResBody> Future for Keeping<S, B, ResBody>
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(retrying) = this.retrying {
            return retrying.as_mut().poll(cx);
        }
        let response = ready!(this.future.poll(cx)).map_err(Into::into)?;
        match Verdict::of(&response) {
            Verdict::Accepted => {
                if !*this.accepted
                    && let Some(retry) = this.retry.as_ref()
                {
                    // The token's first success: its later requests keep no copy.
                    retry
                        .owner
                        .shared()
                        .accept(retry.tenant.as_ref(), *this.sent);
                }
            }
            Verdict::Refused => {
                if let Some(retry) = this.retry.take() {
                    return this
                        .retrying
                        .insert(Box::pin(super::service::retry_fast(
                            retry, *this.sent, response,
                        )))
                        .as_mut()
                        .poll(cx);
                }
            }
            Verdict::Neither => {}
        }
        Poll::Ready(Ok(response))
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

    /// The future of a request that keeps a copy of itself for a retry (boxed, with the
    /// inner service's future: such requests are a token's first few).
    pub(super) fn kept<ResBody>(
        future: S::Future,
        sent: u64,
        accepted: bool,
        retry: Retry<S, B>,
    ) -> Self
    where
        S: Inner<B, ResBody>,
        B: Send + 'static,
        ResBody: Send + 'static,
    {
        ResponseFuture::slow(Box::pin(Keeping {
            future,
            sent,
            accepted,
            retry: Some(retry),
            retrying: None,
        }))
    }

    pub(super) fn slow(future: BoxResponse<S::Response>) -> Self {
        ResponseFuture {
            state: State::Slow { future },
        }
    }
}

/// What a service's answer says of the token its request carried: what the layer's
/// futures act on (the warm one only after a `401`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A success: the service accepted the token.
    Accepted,
    /// A `401` that says the token is no good (RFC 6750 `invalid_token`).
    Refused,
    /// Any other answer, which says nothing of the token.
    Neither,
}

impl Verdict {
    pub(super) fn of<T>(response: &Response<T>) -> Verdict {
        if response.status().is_success() {
            Verdict::Accepted
        } else if response.status() == http::StatusCode::UNAUTHORIZED
            && names_invalid_token(response)
        {
            Verdict::Refused
        } else {
            Verdict::Neither
        }
    }
}

#[inline(never)]
fn names_invalid_token<T>(response: &Response<T>) -> bool {
    response
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token")))
}

/// A `401` to a request that kept no copy of itself: answered as it is; when it says
/// `invalid_token`, the token sent (id `sent`) is taken out of use.
#[cold]
#[inline(never)]
fn unkept<T>(response: Response<T>, sent: u64) -> Response<T> {
    if Verdict::of(&response) == Verdict::Refused {
        refused_without_copy(sent);
    }
    response
}

/// A service refused the token with id `sent` (`401 invalid_token`) on a request that
/// cannot be sent again: its answer goes back as it is, and the token is taken out of
/// use, so that the next request gets a new one.
pub(super) fn refused_without_copy(sent: u64) {
    tracing::debug!(
        "the service answered 401 invalid_token to a request that cannot be sent again: \
         answered as it is; the next request gets a new token"
    );
    refused::refuse(sent);
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
        match self.project().state.project() {
            StateProj::Slow { future } => future.as_mut().poll(cx),
            StateProj::Fast { future, sent } => {
                let output = ready!(future.poll(cx));
                // The warm path: answered without 401.
                if output
                    .as_ref()
                    .is_ok_and(|response| response.status() != http::StatusCode::UNAUTHORIZED)
                {
                    return Poll::Ready(output.map_err(Into::into));
                }
                Poll::Ready(Ok(unkept(output.map_err(Into::into)?, *sent)))
            }
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
            State::Slow { .. } => "slow",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;
    use http::{Response, StatusCode, header};

    fn answer(status: StatusCode, challenge: Option<&'static str>) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = status;
        if let Some(challenge) = challenge {
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(challenge),
            );
        }
        response
    }

    #[test]
    fn an_answer_accepts_refuses_or_says_nothing_of_the_token() {
        let invalid = Some(r#"Bearer error="invalid_token", error_description="expired""#);
        for (status, challenge, verdict) in [
            (StatusCode::OK, None, Verdict::Accepted),
            (StatusCode::NO_CONTENT, invalid, Verdict::Accepted),
            (StatusCode::UNAUTHORIZED, invalid, Verdict::Refused),
            (
                StatusCode::UNAUTHORIZED,
                Some("DPoP algs=\"ES256\""),
                Verdict::Neither,
            ),
            (StatusCode::UNAUTHORIZED, None, Verdict::Neither),
            (
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer error="insufficient_scope""#),
                Verdict::Neither,
            ),
            (StatusCode::FORBIDDEN, invalid, Verdict::Neither),
            (StatusCode::NOT_FOUND, None, Verdict::Neither),
            (StatusCode::INTERNAL_SERVER_ERROR, None, Verdict::Neither),
        ] {
            assert_eq!(
                Verdict::of(&answer(status, challenge)),
                verdict,
                "{status} {challenge:?}"
            );
        }
        // Two challenges, the second the token's.
        let mut two = answer(StatusCode::UNAUTHORIZED, Some("DPoP algs=\"ES256\""));
        two.headers_mut().append(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        assert_eq!(Verdict::of(&two), Verdict::Refused);
    }
}
