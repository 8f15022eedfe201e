//! [`Verify`], the service, and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};

use super::{Settings, VerifyLayer};

/// A service that verifies the HelseID access token of each request before `S` sees it;
/// made by [`VerifyLayer`].
///
/// A refused request is answered here (RFC 6750 / RFC 9449, an empty body of `S`'s
/// body type made with `Default`); the inner service never sees it. A request that
/// passes carries `Arc<HelseIdClaims>` in its extensions.
#[derive(Clone)]
pub struct Verify<S> {
    pub(crate) inner: S,
    pub(crate) settings: Arc<Settings>,
}

impl<S: fmt::Debug> fmt::Debug for Verify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Verify<S> {
    /// Wraps `inner` with `layer`'s checks.
    pub fn new(inner: S, layer: &VerifyLayer) -> Self {
        Verify {
            inner,
            settings: layer.settings.clone(),
        }
    }

    /// The layer, for a `ServiceBuilder`: the same as [`VerifyLayer`] itself.
    pub fn layer(layer: VerifyLayer) -> VerifyLayer {
        layer
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The future of [`Verify`]: the answer of the inner service, or the refusal.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>,
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for Verify<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // A warm Bearer token passes without an await: the inner service is called now,
        // and nothing is cloned.
        if let Some(claims) = self.settings.check_now(request.headers()) {
            request.extensions_mut().insert(claims);
            return ResponseFuture {
                inner: Box::pin(self.inner.call(request)),
            };
        }
        // The clone that was polled ready goes with the future.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let checked = settings
                    .check(request.method(), request.uri(), request.headers())
                    .await;
                match checked {
                    Ok(Some(passed)) => {
                        request.extensions_mut().insert(passed.claims);
                        let mut response = inner.call(request).await?;
                        if let Some(nonce) = passed.next_nonce
                            && let Ok(value) = http::HeaderValue::from_str(&nonce)
                        {
                            response.headers_mut().insert("dpop-nonce", value);
                        }
                        Ok(response)
                    }
                    Ok(None) => inner.call(request).await,
                    Err(refusal) => Ok(refusal.into_response()),
                }
            }),
        }
    }
}
