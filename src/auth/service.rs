use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tower::ServiceExt;
use tower_service::Service;

use super::ResponseFuture;
use super::future::{Inner, Owner, Retry, Verdict, refused_without_copy};
use super::layer::{HelseIdLayer, Shared};
use super::local::Local;
use crate::assertion::Tenant;
use crate::cache::{Entry, refused};
use crate::dpop::{self, DPOP, DpopKey, Target};
use crate::endpoint::TokenEndpoint;
use crate::error::BoxError;
use crate::exchange::SubjectToken;

/// Sets a HelseID token on every request, then calls the inner service.
///
/// Its error type is [`BoxError`]: a token failure is a boxed [`crate::Error`] (downcast
/// to match it), and the inner service's own error passes through boxed.
pub struct HelseId<S> {
    inner: S,
    layer: HelseIdLayer,
    /// This clone's own context (see `local`).
    local: Local<S>,
}

impl<S: Clone> Clone for HelseId<S> {
    fn clone(&self) -> Self {
        HelseId {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            local: self.local.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HelseId<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelseId")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S> HelseId<S> {
    /// Wraps `inner`, with client-credentials tokens from `endpoint` (see
    /// [`HelseIdLayer::new`]).
    pub fn new(inner: S, endpoint: TokenEndpoint) -> Self {
        Self::from_layer(inner, HelseIdLayer::new(endpoint))
    }

    /// Wraps `inner` with the settings of `layer`.
    pub fn from_layer(inner: S, layer: HelseIdLayer) -> Self {
        HelseId {
            inner,
            layer,
            local: Local::default(),
        }
    }

    /// A layer for `endpoint` (see [`HelseIdLayer::new`]).
    pub fn layer(endpoint: TokenEndpoint) -> HelseIdLayer {
        HelseIdLayer::new(endpoint)
    }

    /// The layer's token cache, for its counters.
    pub fn cache(&self) -> &crate::cache::TokenCache {
        self.layer.cache()
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

fn set_authorization<B>(request: &mut Request<B>, value: HeaderValue) {
    request.headers_mut().insert(header::AUTHORIZATION, value);
}

impl<S, B, ResBody> Service<Request<B>> for HelseId<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let shared = self.layer.shared();
        // The hot path: a warm Bearer token, own or a tenant's. The future is the inner
        // service's and the token's id; a request keeps a copy for a retry while its
        // token is not yet accepted (or always, when the layer says so).
        if shared.fronted {
            let tenant = request.extensions().get::<Tenant>().copied();
            let sent = match tenant {
                None => self
                    .local
                    .own_token(shared, &self.inner, request.headers_mut()),
                Some(tenant) => shared.attach_tenant(&tenant, request.headers_mut()),
            };
            if let Some(sent) = sent {
                shared.cache.count_hit();
                // The copy leaves out the Authorization value just set (a retry sets
                // another).
                if shared.copies[usize::from(sent.accepted)]
                    && let Some(retry) = self.keep(&request, tenant)
                {
                    let future = self.inner.call(request);
                    return ResponseFuture::kept(future, sent.id, sent.accepted, retry);
                }
                return ResponseFuture::fast(self.inner.call(request), sent.id);
            }
        }
        self.slow(request)
    }
}

impl<S> HelseId<S> {
    /// The slow path: the token from the cache (maybe fetched), DPoP, token exchange.
    #[inline(never)]
    fn slow<B, ResBody>(&mut self, mut request: Request<B>) -> ResponseFuture<S, B>
    where
        S: Inner<B, ResBody>,
        B: Send + 'static,
        ResBody: Send + 'static,
    {
        let shared = self.layer.shared();
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let shared: Arc<Shared> = shared.clone();
        let tenant = request.extensions().get::<Tenant>().copied();
        let subject = if shared.exchanges {
            request.extensions().get::<SubjectToken>().cloned()
        } else {
            None
        };
        ResponseFuture::slow(Box::pin(async move {
            let mut entry = shared
                .entry(tenant, subject.as_ref())
                .await
                .map_err(BoxError::from)?;
            let id = entry.token.id();
            // A token a service refused on a request that kept no copy: taken out now.
            if refused::is_refused(id) && shared.evict(tenant, subject.as_ref(), id).await {
                entry = shared
                    .entry(tenant, subject.as_ref())
                    .await
                    .map_err(BoxError::from)?;
            }
            let sent = entry.token.id();
            let proofs = Proofs::new(&shared, request.uri(), &entry)?;
            let header = entry.token.authorization().clone();
            let kept = if shared.retry_on_invalid_token || proofs.is_some() {
                shared.replay.copy(&request, tenant)
            } else {
                None
            };
            set_authorization(&mut request, header.clone());
            let response = send(&mut inner, request, proofs.as_ref()).await?;
            let verdict = Verdict::of(&response);
            if verdict == Verdict::Accepted && subject.is_none() {
                shared.accept(tenant.as_ref(), sent);
            }
            let invalid = verdict == Verdict::Refused;
            let Some(kept) = kept else {
                if invalid {
                    refused_without_copy(sent);
                }
                return Ok(response);
            };
            if let Some(proofs) = &proofs
                && dpop::is_nonce_challenge(response.status(), response.headers())
                && proofs
                    .key
                    .remember_nonce(&proofs.target, response.headers())
            {
                tracing::debug!("the service asked for a DPoP nonce: retrying once with it");
                crate::metrics::retry("dpop_nonce");
                let mut replay = kept.into_request(tenant);
                set_authorization(&mut replay, header);
                inner.ready().await.map_err(Into::into)?;
                return send(&mut inner, replay, Some(proofs)).await;
            }
            if !invalid {
                return Ok(response);
            }
            if !shared.retry_on_invalid_token {
                refused_without_copy(sent);
                return Ok(response);
            }
            let retry = Retry {
                owner: Owner::Layer(shared, inner),
                kept,
                tenant,
            };
            retry_invalid_token(retry, sent, subject.as_ref(), response).await
        }))
    }
}

impl<S: Clone> HelseId<S> {
    /// What a retry of `request` needs, when its body can be copied: a copy, with this
    /// clone's context (for a tenant's request, made at the clone's second such request
    /// if its own token's requests have not made it already); without one, the layer
    /// and a clone of the service.
    #[inline(never)]
    fn keep<B: 'static>(
        &mut self,
        request: &Request<B>,
        tenant: Option<Tenant>,
    ) -> Option<Retry<S, B>> {
        let shared = self.layer.shared();
        let kept = shared.replay.copy(request, tenant)?;
        if tenant.is_some() {
            // The own token's requests make the context themselves, at the second.
            self.local.settle(shared, &self.inner);
        }
        let owner = match self.local.ctx() {
            Some(ctx) => Owner::Ctx(ctx.clone()),
            None => Owner::Layer(shared.clone(), self.inner.clone()),
        };
        Some(Retry {
            owner,
            kept,
            tenant,
        })
    }
}

/// The retry after `401 invalid_token` (from the fast path, which has no subject token).
pub(super) async fn retry_fast<S, B, ResBody>(
    retry: Retry<S, B>,
    sent: u64,
    refused: Response<ResBody>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    retry_invalid_token(retry, sent, None, refused).await
}

/// Evicts the token the service refused, and sends the copy once more with a new one;
/// returns the service's answer `refused` as it is when the cache's storm guard holds
/// the key back (a new token was refused a moment ago as well).
async fn retry_invalid_token<S, B, ResBody>(
    retry: Retry<S, B>,
    sent: u64,
    subject: Option<&SubjectToken>,
    refused: Response<ResBody>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    let Retry {
        owner,
        kept,
        tenant,
    } = retry;
    let (shared, mut inner) = owner.into_parts();
    let shared = &shared;
    if !shared.evict(tenant, subject, sent).await {
        return Ok(refused);
    }
    tracing::debug!("the service answered 401 invalid_token: retrying once with a new token");
    crate::metrics::retry("invalid_token");
    let entry = shared
        .entry(tenant, subject)
        .await
        .map_err(BoxError::from)?;
    let mut replay = kept.into_request(tenant);
    let proofs = Proofs::new(shared, replay.uri(), &entry)?;
    set_authorization(&mut replay, entry.token.authorization().clone());
    inner.ready().await.map_err(Into::into)?;
    send(&mut inner, replay, proofs.as_ref()).await
}

/// The DPoP side of one call: the key, where the proofs are for, and the token.
struct Proofs {
    key: DpopKey,
    target: Target,
    entry: Arc<Entry>,
}

impl Proofs {
    /// The proofs for a request to `uri` with `entry`'s token, when the layer does DPoP.
    fn new(shared: &Shared, uri: &http::Uri, entry: &Arc<Entry>) -> Result<Option<Self>, BoxError> {
        let Some(key) = &shared.dpop else {
            return Ok(None);
        };
        Ok(Some(Proofs {
            key: key.clone(),
            target: Target::new(uri)?,
            entry: entry.clone(),
        }))
    }

    /// Sets a new proof (with the server's last nonce) on `request`.
    fn attach<B>(&self, request: &mut Request<B>) -> Result<(), BoxError> {
        let proof = self
            .key
            .sign(request.method(), &self.target, Some(self.entry.token.ath()))?;
        request
            .headers_mut()
            .insert(DPOP, proof.into_header_value());
        Ok(())
    }
}

/// Calls `inner` with `request`, with a new proof when the layer does DPoP, and
/// remembers the nonce of the answer.
async fn send<S, B, ResBody>(
    inner: &mut S,
    mut request: Request<B>,
    proofs: Option<&Proofs>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    if let Some(proofs) = proofs {
        proofs.attach(&mut request)?;
    }
    let response = inner.call(request).await.map_err(Into::into)?;
    if let Some(proofs) = proofs {
        proofs
            .key
            .remember_nonce(&proofs.target, response.headers());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::FetchFuture;
    use crate::endpoint::TokenRequest;
    use crate::token::{AccessToken, TokenType};
    use http::StatusCode;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::ServiceBuilder;

    #[derive(Clone, Default)]
    struct Source {
        calls: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl crate::cache::FetchToken for Source {
        fn fetch(&self, _request: TokenRequest) -> FetchFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = self.delay;
            FetchFuture::new(async move {
                tokio::time::sleep(delay).await;
                AccessToken::new(
                    format!("t{n}"),
                    TokenType::Bearer,
                    Duration::from_secs(3600),
                )
            })
        }

        fn client_id(&self) -> &str {
            "client"
        }
    }

    async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
        let auth = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        Ok(Response::new(auth))
    }

    #[tokio::test(start_paused = true)]
    async fn sets_a_sensitive_bearer_header() {
        let source = Source::default();
        let layer = HelseIdLayer::builder(source.clone()).build();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
            move |request: Request<String>| {
                let value = request.headers().get(header::AUTHORIZATION).cloned();
                record.lock().expect("lock").push(value);
                echo(request)
            },
        );
        for _ in 0..3 {
            let response = service
                .clone()
                .oneshot(Request::new(String::new()))
                .await
                .expect("response");
            assert_eq!(response.body(), "Bearer t1");
        }
        let seen = seen.lock().expect("lock");
        assert!(
            seen.iter()
                .all(|v| v.as_ref().is_some_and(HeaderValue::is_sensitive))
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        assert_eq!(layer.cache().stats().hits, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_failure_downcasts_to_the_crate_error() {
        let failing = crate::cache::fetch_fn("client", |_r: TokenRequest| async {
            Err(crate::Error::OAuth {
                status: StatusCode::BAD_REQUEST,
                error: crate::OAuthError::new("invalid_client", "unknown client"),
                retry_after: None,
            })
        });
        let service = ServiceBuilder::new()
            .layer(HelseIdLayer::builder(failing).build())
            .service_fn(echo);
        let err = service
            .oneshot(Request::new(String::new()))
            .await
            .expect_err("no token");
        let err = err.downcast::<crate::Error>().expect("a helseid::Error");
        assert_eq!(
            err.oauth_error().map(|e| &e.error),
            Some(&crate::OAuthErrorCode::InvalidClient)
        );
    }

    /// Sends one request for `tenant` through `service` itself, answering the
    /// `Authorization` it carried.
    async fn send_for<S>(service: &mut S, tenant: Tenant) -> String
    where
        S: Service<Request<String>, Response = Response<String>>,
        S::Error: fmt::Debug,
    {
        let mut request = Request::new(String::new());
        request.extensions_mut().insert(tenant);
        send_request(service, request).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_clone_makes_its_context_only_at_a_second_call_that_uses_it() {
        let tenant: Tenant = "911111111:922222222".parse().expect("tenant");
        let source = Source::default();
        // Warm, accepted tenant tokens: the requests keep no copy, and read nothing of
        // the clone's.
        let layer = HelseIdLayer::builder(source.clone()).build();
        let mut service = HelseId::from_layer(tower::service_fn(echo), layer);
        for _ in 0..4 {
            assert_eq!(send_for(&mut service, tenant).await, "Bearer t1");
        }
        assert!(service.local.ctx().is_none(), "no context for warm tenants");

        // Every request keeps a copy: the second that does makes the context, which the
        // later ones share.
        let layer = HelseIdLayer::builder(source.clone())
            .retry_after_acceptance(true)
            .build();
        let mut service = HelseId::from_layer(tower::service_fn(echo), layer);
        // The first request fetches the token (the slow path), the second is the first
        // that keeps a copy on the fast path.
        send_for(&mut service, tenant).await;
        send_for(&mut service, tenant).await;
        assert!(service.local.ctx().is_none(), "the first copy only counts");
        send_for(&mut service, tenant).await;
        let ctx = Arc::clone(service.local.ctx().expect("a context"));
        send_for(&mut service, tenant).await;
        assert!(
            Arc::ptr_eq(&ctx, service.local.ctx().expect("a context")),
            "made once"
        );

        // A clone called once for the layer's own token, warm and keeping a copy, makes
        // none: it would cost more than it saves.
        assert_eq!(send(&mut service).await, "Bearer t3");
        let mut once = service.clone();
        assert_eq!(send(&mut once).await, "Bearer t3");
        assert!(
            once.local.ctx().is_none(),
            "no context at a clone's first call"
        );
        send(&mut once).await;
        assert!(once.local.ctx().is_some(), "made at its second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_clone_used_once_sends_this_threads_copy_of_the_token() {
        let source = Source::default();
        let layer = HelseIdLayer::builder(source.clone()).build();
        // Where each request's Authorization value lives, and what it says.
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, usize)>::new()));
        let record = seen.clone();
        let service = HelseId::from_layer(
            tower::service_fn(move |request: Request<String>| {
                let value = request.headers()[header::AUTHORIZATION].clone();
                let text = value.to_str().unwrap_or_default().to_owned();
                record
                    .lock()
                    .expect("lock")
                    .push((text, value.as_bytes().as_ptr() as usize));
                echo(request)
            }),
            layer.clone(),
        );
        let once = |service: &HelseId<_>| service.clone().oneshot(Request::new(String::new()));
        once(&service).await.expect("the first fetches");
        once(&service).await.expect("warm");
        once(&service).await.expect("warm");
        let front = |layer: &HelseIdLayer| {
            let (header, _, _) = layer.shared().front_token().expect("in front");
            header.as_bytes().as_ptr() as usize
        };
        let in_front = front(&layer);
        {
            let seen = seen.lock().expect("lock");
            assert_eq!(seen[1].0, "Bearer t1");
            assert_eq!(seen[1], seen[2], "one copy serves this thread's clones");
            assert_ne!(seen[1].1, in_front, "not the front's bytes");
        }
        // Another thread makes a copy of its own.
        let other = service.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(other.oneshot(Request::new(String::new())))
        })
        .join()
        .expect("thread")
        .expect("warm");
        {
            let seen = seen.lock().expect("lock");
            assert_eq!(seen[3].0, "Bearer t1");
            assert_ne!(seen[3].1, seen[1].1, "the other thread's own copy");
            assert_ne!(seen[3].1, in_front);
        }
        // A new token in front (the old one is due for a refresh): the clones send it.
        tokio::time::advance(Duration::from_secs(3600)).await;
        // The front's timer task ends the old token's Live when it runs.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        once(&service).await.expect("fetches t2");
        once(&service).await.expect("warm");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen[5].0, "Bearer t2", "{seen:?}");
        assert_ne!(seen[5].1, front(&layer));
    }

    /// Sends one request through `service` itself (not a clone), answering the
    /// `Authorization` it carried.
    async fn send<S>(service: &mut S) -> String
    where
        S: Service<Request<String>, Response = Response<String>>,
        S::Error: fmt::Debug,
    {
        send_request(service, Request::new(String::new())).await
    }

    /// Sends `request` through `service` itself, answering the `Authorization` it
    /// carried.
    async fn send_request<S>(service: &mut S, request: Request<String>) -> String
    where
        S: Service<Request<String>, Response = Response<String>>,
        S::Error: fmt::Debug,
    {
        let response = service.ready().await.expect("ready").call(request).await;
        response.expect("response").into_body()
    }

    #[tokio::test(start_paused = true)]
    async fn during_the_refresh_window_requests_do_not_wait() {
        let source = Source {
            delay: Duration::from_secs(5),
            ..Source::default()
        };
        let layer = HelseIdLayer::builder(source.clone()).build();
        let service = ServiceBuilder::new().layer(layer.clone()).service_fn(echo);
        // A clone per request, and one long-lived clone with its own copy of the token.
        let mut long_lived = service.clone();
        for _ in 0..3 {
            assert_eq!(send(&mut long_lived).await, "Bearer t1");
        }
        tokio::time::advance(Duration::from_secs(3531)).await;
        // One turn of the runtime: the front's timer, due at 3530 s, retires it (and
        // the long-lived clone's copy with it).
        tokio::time::sleep(Duration::from_millis(1)).await;
        let before = tokio::time::Instant::now();
        for _ in 0..5 {
            let response = service
                .clone()
                .oneshot(Request::new(String::new()))
                .await
                .expect("warm");
            assert_eq!(response.body(), "Bearer t1");
            assert_eq!(send(&mut long_lived).await, "Bearer t1", "still usable");
        }
        assert_eq!(
            tokio::time::Instant::now(),
            before,
            "no request waited on the slow endpoint"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        let response = service
            .oneshot(Request::new(String::new()))
            .await
            .expect("refreshed");
        assert_eq!(response.body(), "Bearer t2");
        for _ in 0..3 {
            assert_eq!(send(&mut long_lived).await, "Bearer t2");
        }
        assert_eq!(layer.cache().stats().refreshes, 1);
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    fn claims(proof: &HeaderValue) -> serde_json::Value {
        let jwt = proof.to_str().expect("ascii");
        let part = jwt.split('.').nth(1).expect("claims");
        serde_json::from_slice(&crate::jose::b64_decode(part).expect("base64")).expect("json")
    }

    /// A source of DPoP tokens that checks it was asked for them.
    fn dpop_source(calls: Arc<AtomicUsize>) -> impl crate::cache::FetchToken {
        crate::cache::fetch_fn("client", move |request: TokenRequest| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                assert!(
                    request.dpop().is_some(),
                    "the token request carries the key"
                );
                AccessToken::new(format!("t{n}"), TokenType::DPoP, Duration::from_secs(3600))
            }
        })
    }

    type Seen = Arc<std::sync::Mutex<Vec<(Option<HeaderValue>, Option<HeaderValue>)>>>;

    /// An API that records `Authorization` and `DPoP`, and challenges every proof
    /// without nonce `n1` when `challenge` is set.
    fn api(
        seen: Seen,
        challenge: bool,
    ) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        tower::service_fn(move |request: Request<String>| {
            let auth = request.headers().get(header::AUTHORIZATION).cloned();
            let proof = request.headers().get(DPOP).cloned();
            let nonce_ok = proof.as_ref().is_some_and(|p| claims(p)["nonce"] == "n1");
            seen.lock().expect("lock").push((auth, proof));
            let mut response = Response::new(String::new());
            if challenge && !nonce_ok {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
                );
            }
            response
                .headers_mut()
                .insert(dpop::DPOP_NONCE, HeaderValue::from_static("n1"));
            async move { Ok::<_, Infallible>(response) }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn dpop_sends_a_fresh_proof_with_every_request() {
        let calls = Arc::new(AtomicUsize::new(0));
        let key = DpopKey::generate().expect("key");
        let layer = HelseIdLayer::builder(dpop_source(calls.clone()))
            .dpop(key.clone())
            .build();
        let seen = Seen::default();
        let service = ServiceBuilder::new()
            .layer(layer)
            .service(api(seen.clone(), false));
        for path in ["/a?x=1", "/b#f", "/a?x=1"] {
            let request = Request::post(format!("http://api.test:8080{path}"))
                .body(String::new())
                .expect("request");
            let response = service.clone().oneshot(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one token for all");
        let seen = seen.lock().expect("lock");
        let mut jtis = std::collections::HashSet::new();
        for (i, (auth, proof)) in seen.iter().enumerate() {
            let auth = auth.as_ref().expect("authorization");
            assert_eq!(auth.to_str().expect("ascii"), "DPoP t1");
            let proof = proof.as_ref().expect("a proof");
            assert!(proof.is_sensitive());
            let claims = claims(proof);
            assert_eq!(claims["htm"], "POST");
            let path = if i == 1 { "/b" } else { "/a" };
            assert_eq!(claims["htu"], format!("http://api.test:8080{path}"));
            assert_eq!(claims["ath"], dpop::ath("t1"));
            assert!(jtis.insert(claims["jti"].as_str().expect("jti").to_owned()));
            // The first request knew no nonce; the API's answer gave one.
            assert_eq!(claims.get("nonce").is_some(), i > 0, "{claims}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_nonce_challenge_is_answered_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let service = ServiceBuilder::new()
            .layer(
                HelseIdLayer::builder(dpop_source(calls.clone()))
                    .dpop(DpopKey::generate().expect("key"))
                    .build(),
            )
            .service(api(seen.clone(), true));
        let request = || {
            Request::get("http://api.test/events")
                .body(String::new())
                .expect("request")
        };
        let response = service.clone().oneshot(request()).await.expect("response");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the retry carried the nonce"
        );
        assert_eq!(
            seen.lock().expect("lock").len(),
            2,
            "challenged, then answered"
        );
        let response = service.clone().oneshot(request()).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            seen.lock().expect("lock").len(),
            3,
            "the nonce was remembered"
        );
        let seen = seen.lock().expect("lock");
        let jtis: std::collections::HashSet<_> = seen
            .iter()
            .map(|(_, p)| claims(p.as_ref().expect("proof"))["jti"].to_string())
            .collect();
        assert_eq!(jtis.len(), 3, "a new proof each time");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the token was kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_nonce_challenge_is_not_answered_twice() {
        let seen = Seen::default();
        // The API wants a nonce it never hands out: challenge, retry, challenge, stop.
        let stubborn = {
            let seen = seen.clone();
            tower::service_fn(move |request: Request<String>| {
                seen.lock()
                    .expect("lock")
                    .push((None, request.headers().get(DPOP).cloned()));
                let mut response = Response::new(String::new());
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
                );
                let nonce = format!("n{}", seen.lock().expect("lock").len());
                response.headers_mut().insert(
                    dpop::DPOP_NONCE,
                    HeaderValue::try_from(nonce).expect("nonce"),
                );
                async move { Ok::<_, Infallible>(response) }
            })
        };
        let service = ServiceBuilder::new()
            .layer(
                HelseIdLayer::builder(dpop_source(Arc::default()))
                    .dpop(DpopKey::generate().expect("key"))
                    .build(),
            )
            .service(stubborn);
        let request = Request::get("http://api.test/x")
            .body(String::new())
            .expect("request");
        let response = service.oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "one retry, no more");
        assert_eq!(claims(seen[1].1.as_ref().expect("proof"))["nonce"], "n1");
    }

    #[tokio::test(start_paused = true)]
    async fn dpop_needs_an_absolute_url() {
        let service = ServiceBuilder::new()
            .layer(
                HelseIdLayer::builder(dpop_source(Arc::default()))
                    .dpop(DpopKey::generate().expect("key"))
                    .build(),
            )
            .service(api(Seen::default(), false));
        let err = service
            .oneshot(Request::new(String::new()))
            .await
            .expect_err("no URL to prove");
        let err = err.downcast::<crate::Error>().expect("a helseid::Error");
        assert!(matches!(*err, crate::Error::Dpop { .. }), "{err}");
        assert!(err.to_string().contains("not absolute"), "{err}");
    }
}
