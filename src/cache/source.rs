//! Where tokens come from: [`FetchToken`], its future, and closures made sources.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::endpoint::{TokenEndpoint, TokenRequest};
use crate::error::Result;
use crate::token::AccessToken;

/// The future of one token fetch ([`FetchToken::fetch`]): a boxed future in a named
/// type.
#[must_use = "futures do nothing unless polled"]
pub struct FetchFuture {
    inner: Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + 'static>>,
}

impl FetchFuture {
    /// Boxes `future`.
    pub fn new(future: impl Future<Output = Result<AccessToken>> + Send + 'static) -> Self {
        FetchFuture {
            inner: Box::pin(future),
        }
    }
}

impl Future for FetchFuture {
    type Output = Result<AccessToken>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for FetchFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchFuture").finish_non_exhaustive()
    }
}

/// Something that gets tokens: a [`TokenEndpoint`], or a closure made one with
/// [`fetch_fn`] (tests, custom sources).
pub trait FetchToken: Send + Sync + 'static {
    /// Fetches a new token for `request`.
    fn fetch(&self, request: TokenRequest) -> FetchFuture;

    /// The client id the tokens are for; part of the cache key, so that two sources
    /// for different clients never share a token in one cache.
    fn client_id(&self) -> &str;

    /// The scopes a [`HelseIdLayer`](crate::HelseIdLayer) asks for when its builder is
    /// given none. Default: none (HelseID then grants the client's scopes); a
    /// [`TokenEndpoint`]'s are its configuration's.
    fn default_scopes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Tells apart sources of one client whose tokens are not interchangeable, such as
    /// two users' refresh sessions; part of the cache key. Default: 0.
    fn partition(&self) -> u64 {
        0
    }

    /// Told that a service refused `token` (`401 invalid_token`), which this source
    /// gave for `request`, once the cache has forgotten it: a source that shares its
    /// tokens with other processes stops handing this one out. Called on the slow
    /// path; it must not block (I/O goes to a task of its own). Default: nothing.
    fn refused(&self, request: &TokenRequest, token: &AccessToken) {
        let _ = (request, token);
    }
}

impl FetchToken for TokenEndpoint {
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        let endpoint = self.clone();
        FetchFuture::new(async move { endpoint.request(&request).await })
    }

    fn client_id(&self) -> &str {
        self.config().client_id()
    }

    fn default_scopes(&self) -> Vec<String> {
        self.config().scopes().to_vec()
    }
}

/// A [`FetchToken`] made of a closure `Fn(TokenRequest) -> impl Future<Output =
/// Result<AccessToken>>`, for the client `client_id`: see [`fetch_fn`].
#[derive(Clone)]
pub struct FetchFn<F> {
    client_id: Arc<str>,
    fetch: F,
}

impl<F> fmt::Debug for FetchFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchFn")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Makes a closure a [`FetchToken`] for the client `client_id` (which keys its tokens
/// in a cache: two sources with one client id share tokens).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use helseid::cache::fetch_fn;
/// use helseid::endpoint::TokenRequest;
/// use helseid::token::{AccessToken, TokenType};
///
/// let source = fetch_fn("my-client", |_request: TokenRequest| async {
///     AccessToken::new("token", TokenType::Bearer, Duration::from_secs(3600))
/// });
/// # drop(source);
/// ```
pub fn fetch_fn<F, Fut>(client_id: impl Into<Arc<str>>, fetch: F) -> FetchFn<F>
where
    F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken>> + Send + 'static,
{
    FetchFn {
        client_id: client_id.into(),
        fetch,
    }
}

impl<F, Fut> FetchToken for FetchFn<F>
where
    F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken>> + Send + 'static,
{
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        FetchFuture::new((self.fetch)(request))
    }

    fn client_id(&self) -> &str {
        &self.client_id
    }
}
