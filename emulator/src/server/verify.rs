//! The emulator's APIs verify their tokens as any API would: with `helseid::verify`'s
//! [`VerifyLayer`], one per API, in front of the API's routes. The handlers never see a
//! refused request, and read the verified claims (`Arc<HelseIdClaims>`) from the
//! request's extensions.
//!
//! **Keys**: the layer fetches the IdP's discovery document and JWKS as usual, through an
//! in-process HTTP service ([`IdpDocuments`]) that answers from the IdP's state, so no
//! request leaves the process (and a fault injected into the discovery document does not
//! reach the APIs). An unknown `kid` (after
//! [`Emulator::rotate_signing_key`](crate::Emulator::rotate_signing_key)) is fetched
//! again at once (no cooldown in-process).
//!
//! **Rebuilt**: [`Verifier::rebuild`] replaces an API's layer with a new one (keys read
//! again, no verified token kept; the DPoP replay store is kept): when the IdP retires
//! signing keys, so that tokens the old layer had verified and cached are refused, and
//! when the DPoP nonces are rotated (the layer's nonces are stateless, under a secret of
//! its own). A service outside the emulator that hears of a rotation calls
//! `VerifyLayer::reload_keys` instead, which fetches the keys again at once.
//!
//! [`Gate`] wraps an API's routes: it counts each request for the API, verifies it with
//! the API's current layer, and counts the API's `use_dpop_nonce` answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use helseid::verify::{Dpop, MemoryReplayStore, ReplayStore, Verify, VerifyLayer};
use tower::ServiceExt;

use crate::idp::state::State as Idp;
use crate::server::error::{Error, Result};

/// Answers a GET of the IdP's discovery document or JWKS from the IdP's state, for the
/// APIs' layers; anything else is 404.
#[derive(Clone)]
pub(crate) struct IdpDocuments {
    idp: Arc<Idp>,
}

impl<B> tower::Service<http::Request<B>> for IdpDocuments {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<std::result::Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let document = match path {
            "/.well-known/openid-configuration" => Some(crate::idp::discovery::document(&self.idp)),
            "/.well-known/openid-configuration/jwks" => Some(self.idp.signing_jwks()),
            _ => None,
        };
        let mut response = match document {
            Some(document) => http::Response::new(Body::from(document.to_string())),
            None => {
                let mut response = http::Response::new(Body::empty());
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        };
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        std::future::ready(Ok(response))
    }
}

/// What an API takes: its audience, the scope it needs, and DPoP or Bearer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Api {
    /// The `aud` its tokens carry.
    pub(crate) audience: &'static str,
    /// The scope its tokens must carry.
    pub(crate) scope: &'static str,
    /// [`Dpop::Required`] or [`Dpop::Disabled`] (Bearer).
    pub(crate) dpop: Dpop,
}

/// One API's verifier: the layer in use, and how to build another.
pub(crate) struct Verifier {
    api: Api,
    idp: Arc<Idp>,
    /// Whether proofs must carry the API's nonce.
    nonce: bool,
    /// Kept across rebuilds: a proof accepted once is never accepted again.
    replay: Arc<MemoryReplayStore>,
    layer: RwLock<VerifyLayer>,
    /// Counts a request that reached the API.
    on_request: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("api", &self.api)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `api`, taking `idp`'s tokens; `on_request` counts each request.
    ///
    /// # Errors
    /// [`Error::Key`] when the layer cannot be built.
    pub(crate) fn new(
        idp: Arc<Idp>,
        api: Api,
        nonce: bool,
        on_request: impl Fn() + Send + Sync + 'static,
    ) -> Result<Arc<Self>> {
        let replay = Arc::new(MemoryReplayStore::with_capacity(100_000));
        let layer = build(&idp, api, nonce, &replay)?;
        Ok(Arc::new(Verifier {
            api,
            idp,
            nonce,
            replay,
            layer: RwLock::new(layer),
            on_request: Box::new(on_request),
        }))
    }

    /// The layer in use.
    fn current(&self) -> VerifyLayer {
        self.layer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the layer with a new one: the keys read again, no verified token kept,
    /// new DPoP nonces. A layer that cannot be built leaves the old one in place.
    pub(crate) fn rebuild(&self) {
        match build(&self.idp, self.api, self.nonce, &self.replay) {
            Ok(layer) => {
                *self
                    .layer
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = layer;
            }
            Err(e) => tracing::warn!(error = %e, "helseid emulator cannot rebuild a verifier"),
        }
    }

    /// The layer that puts this verifier in front of an API's routes.
    pub(crate) fn gate(self: &Arc<Self>) -> Gate {
        Gate {
            verifier: Arc::clone(self),
            problem_instance: None,
        }
    }

    /// [`gate`](Self::gate) for an API whose errors are `application/problem+json`
    /// (Selvbetjening's): a refusal keeps the verifier's status and challenges, and gets
    /// a ProblemDetails body whose `detail` is the challenge's `error_description` and
    /// whose `instance` is `instance`.
    pub(crate) fn problem_gate(self: &Arc<Self>, instance: &'static str) -> Gate {
        Gate {
            verifier: Arc::clone(self),
            problem_instance: Some(instance),
        }
    }
}

/// A layer for `api`, with the IdP's keys at hand and its documents in-process.
fn build(
    idp: &Arc<Idp>,
    api: Api,
    nonce: bool,
    replay: &Arc<MemoryReplayStore>,
) -> Result<VerifyLayer> {
    let store = Arc::clone(replay);
    let shared_replay = move |key: [u8; 32], ttl: Duration| {
        let store = Arc::clone(&store);
        async move { store.first_use(key, ttl).await }
    };
    let mut builder = VerifyLayer::builder(idp.issuer.clone())
        .audience(api.audience)
        .scopes_any_of([api.scope])
        .dpop(api.dpop)
        .http_service(IdpDocuments {
            idp: Arc::clone(idp),
        })
        .jwks(idp.issuer.clone(), idp.signing_jwks())
        .refetch_cooldown(Duration::ZERO)
        .replay_store(shared_replay)
        .dpop_nonce(nonce);
    if api.dpop != Dpop::Disabled {
        builder = builder.public_base_url(idp.issuer.clone());
    }
    builder
        .build()
        .map_err(|e| Error::key("build an API's token verifier", e))
}

/// Puts a [`Verifier`] in front of an API's routes ([`axum::Router::route_layer`]).
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    verifier: Arc<Verifier>,
    /// For an API that answers errors with problem+json: the `instance` of refusals.
    problem_instance: Option<&'static str>,
}

impl<S> tower::Layer<S> for Gate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            verifier: Arc::clone(&self.verifier),
            problem_instance: self.problem_instance,
        }
    }
}

/// An API's routes behind its [`Verifier`].
#[derive(Clone, Debug)]
pub(crate) struct Gated<S> {
    inner: S,
    verifier: Arc<Verifier>,
    problem_instance: Option<&'static str>,
}

impl<S> tower::Service<Request> for Gated<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        // The inner service is polled ready by the layer's service, which owns a clone.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        let verifier = Arc::clone(&self.verifier);
        let problem_instance = self.problem_instance;
        Box::pin(async move {
            (verifier.on_request)();
            let layer = verifier.current();
            let response = Verify::new(inner, &layer).oneshot(request).await?;
            if is_nonce_challenge(&response) {
                verifier.idp.dpop.count_challenge();
            }
            Ok(match problem_instance {
                Some(instance) if is_refusal(&response) => with_problem(response, instance),
                _ => response,
            })
        })
    }
}

/// Whether an answer is the verifier's refusal: an error status with an empty body
/// (every answer of the API's own has a body).
fn is_refusal(response: &Response) -> bool {
    use http_body::Body as _;
    (response.status().is_client_error() || response.status() == StatusCode::SERVICE_UNAVAILABLE)
        && response.body().size_hint().exact() == Some(0)
}

/// The refusal with a ProblemDetails body (`application/problem+json`): the
/// challenge's `error_description` as `detail`, or what the request lacks.
fn with_problem(response: Response, instance: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    let described = parts
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (_, rest) = v.split_once("error_description=\"")?;
            rest.split_once('"')
                .map(|(description, _)| description.to_owned())
        });
    let detail = described.unwrap_or_else(|| match parts.status {
        StatusCode::SERVICE_UNAVAILABLE => "the issuer's keys cannot be reached".to_owned(),
        _ => "no access token: send a DPoP-bound access token with a DPoP proof".to_owned(),
    });
    let problem = crate::server::response::ProblemDetails {
        kind: Some("https://tools.ietf.org/html/rfc9110#section-15.5".to_owned()),
        title: parts.status.canonical_reason().map(str::to_owned),
        status: Some(i32::from(parts.status.as_u16())),
        detail: Some(detail),
        instance: Some(instance.to_owned()),
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(
        parts,
        Body::from(serde_json::to_vec(&problem).unwrap_or_default()),
    )
}

/// Whether an answer is a `use_dpop_nonce` challenge.
fn is_nonce_challenge(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")))
}
