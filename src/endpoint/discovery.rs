//! HelseID's discovery document: fetched by each [`TokenEndpoint`], kept for a day, and
//! fetched again.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde::Deserialize;

use super::TokenEndpoint;
use super::response::{describe, invalid};
use crate::config::check_url;
use crate::error::{Error, Result};
use crate::jose::{Want, json_object};

const DISCOVERY: &str = "discovery document";

/// The members of [`Discovery`], for an error that names the one that is wrong.
const MEMBERS: &[(&str, Want, bool)] = &[
    ("issuer", Want::String, true),
    ("token_endpoint", Want::String, true),
    ("jwks_uri", Want::String, false),
    ("grant_types_supported", Want::Strings, false),
    ("dpop_signing_alg_values_supported", Want::Strings, false),
    ("pushed_authorization_request_endpoint", Want::String, false),
    ("authorization_endpoint", Want::String, false),
    ("end_session_endpoint", Want::String, false),
    ("revocation_endpoint", Want::String, false),
];

/// The parts of HelseID's discovery document (OpenID Connect Discovery 1.0) this crate
/// uses.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Discovery {
    /// The issuer; must equal the configured authority.
    pub issuer: String,
    /// Where token requests go.
    pub token_endpoint: String,
    /// Where the issuer's signing keys are.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The grant types the issuer supports.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// The DPoP proof algorithms the issuer supports.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// Where pushed authorization requests (RFC 9126) go.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// Where the browser is sent to log the user in.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where a user's session is ended (OpenID Connect RP-Initiated Logout).
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// Where tokens are revoked (RFC 7009).
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// How long a discovery document is kept before it is fetched again: 24 hours, as NHN
/// recommends (FK2).
pub const DEFAULT_DISCOVERY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The first wait after a failed refetch, doubled after each further failure.
const RETRY_BASE: Duration = Duration::from_secs(1);

/// The longest wait between refetches that fail.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// A discovery document and when it was fetched.
struct Copy {
    doc: Arc<Discovery>,
    fetched_at: Instant,
}

/// The refetch of a stale copy: whether one runs, and when the next may start after
/// failures.
#[derive(Default)]
struct Refetch {
    running: bool,
    failures: u32,
    not_before: Option<Instant>,
}

/// The discovery document of one endpoint: fetched on first use (one fetch for all the
/// callers that wait for it), kept for its lifetime, then fetched again in the
/// background while callers keep the copy they have; a failed refetch keeps the old
/// copy and is retried with back-off.
pub(super) struct DiscoveryCache {
    current: ArcSwapOption<Copy>,
    first: tokio::sync::Mutex<()>,
    refetch: std::sync::Mutex<Refetch>,
    lifetime: Duration,
}

impl DiscoveryCache {
    pub(super) fn new(lifetime: Duration) -> Self {
        DiscoveryCache {
            current: ArcSwapOption::empty(),
            first: tokio::sync::Mutex::new(()),
            refetch: std::sync::Mutex::new(Refetch::default()),
            lifetime,
        }
    }

    /// The copy at hand, fresh or not.
    pub(super) fn get(&self) -> Option<Arc<Discovery>> {
        self.current.load().as_ref().map(|copy| copy.doc.clone())
    }

    fn store(&self, doc: Arc<Discovery>) {
        self.current.store(Some(Arc::new(Copy {
            doc,
            fetched_at: Instant::now(),
        })));
    }

    fn refetch(&self) -> std::sync::MutexGuard<'_, Refetch> {
        self.refetch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TokenEndpoint {
    /// The discovery document: fetched on first use, kept for its lifetime
    /// ([`TokenEndpointBuilder::discovery_lifetime`](super::TokenEndpointBuilder::discovery_lifetime),
    /// 24 hours), then fetched again in the background while callers go on with the copy
    /// they have. A failed refetch keeps that copy and is tried again after a back-off
    /// (1 s doubling to 5 minutes). A failed first fetch is not kept: the next call tries
    /// again.
    ///
    /// # Errors
    /// When there is no copy yet: [`Error::Transport`], [`Error::Timeout`], or
    /// [`Error::InvalidResponse`] for a document that is not a JSON object, lacks
    /// `issuer` or `token_endpoint`, has a member of the wrong type (the reason names
    /// the member, never its value), names another issuer, or names a token endpoint
    /// that is not `https`.
    pub async fn discovery(&self) -> Result<Arc<Discovery>> {
        let cache = &self.inner.discovery;
        if let Some(copy) = cache.current.load_full() {
            if copy.fetched_at.elapsed() >= cache.lifetime {
                self.refetch_in_background();
            }
            return Ok(copy.doc.clone());
        }
        let _first = cache.first.lock().await;
        if let Some(doc) = cache.get() {
            return Ok(doc);
        }
        let doc = Arc::new(self.fetch_discovery().await?);
        cache.store(doc.clone());
        Ok(doc)
    }

    /// Starts one refetch of a stale copy, unless one runs or the back-off holds it.
    fn refetch_in_background(&self) {
        let cache = &self.inner.discovery;
        {
            let mut refetch = cache.refetch();
            if refetch.running
                || refetch.not_before.is_some_and(|at| Instant::now() < at)
                || tokio::runtime::Handle::try_current().is_err()
            {
                return;
            }
            refetch.running = true;
        }
        let endpoint = self.clone();
        tokio::spawn(async move {
            let result = endpoint.fetch_discovery().await;
            let cache = &endpoint.inner.discovery;
            let mut refetch = cache.refetch();
            refetch.running = false;
            match result {
                Ok(doc) => {
                    cache.store(Arc::new(doc));
                    refetch.failures = 0;
                    refetch.not_before = None;
                    tracing::debug!("the discovery document was fetched again");
                }
                Err(error) => {
                    refetch.failures += 1;
                    let wait = RETRY_BASE
                        .saturating_mul(1 << (refetch.failures - 1).min(16))
                        .min(RETRY_MAX);
                    refetch.not_before = Some(Instant::now() + wait);
                    tracing::warn!(
                        error = %error,
                        failures = refetch.failures,
                        retry_in = ?wait,
                        "cannot fetch the discovery document again: keeping the copy at hand"
                    );
                }
            }
        });
    }

    /// Fetches and checks the discovery document.
    async fn fetch_discovery(&self) -> Result<Discovery> {
        let issuer = self.inner.config.authority().issuer();
        let request = Request::get(self.inner.config.authority().discovery_url())
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::config("authority", e.to_string()))?;
        let answer = self.send(DISCOVERY, request).await?;
        let (status, content_type, body) = (answer.status, answer.content_type(), &answer.body);
        if !status.is_success() {
            return Err(invalid(DISCOVERY, status, "expected HTTP 200"));
        }
        let doc: Discovery = json_object(body, MEMBERS).map_err(|reason| {
            invalid(
                DISCOVERY,
                status,
                format!("{reason} ({})", describe(content_type)),
            )
        })?;
        if doc.issuer.trim_end_matches('/') != issuer {
            return Err(invalid(
                DISCOVERY,
                status,
                format!("it names issuer `{}`, expected `{issuer}`", doc.issuer),
            ));
        }
        check_url("token_endpoint", &doc.token_endpoint)
            .map_err(|e| invalid(DISCOVERY, status, e.to_string()))?;
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISSUER: &str = "https://helseid.example";

    /// An in-memory issuer: counts discovery requests and answers with the document
    /// naming `token` as its token endpoint, or 500 while `token` is `None`.
    #[derive(Clone, Default)]
    struct Issuer {
        requests: Arc<AtomicUsize>,
        token: Arc<Mutex<Option<&'static str>>>,
    }

    impl Issuer {
        fn answer(&self, token: Option<&'static str>) {
            *self.token.lock().expect("lock") = token;
        }

        fn endpoint(&self) -> TokenEndpoint {
            let config = crate::config::test_config("c", ISSUER);
            let issuer = self.clone();
            let service = tower::service_fn(move |_request: Request<Full<Bytes>>| {
                issuer.requests.fetch_add(1, Ordering::SeqCst);
                let token = *issuer.token.lock().expect("lock");
                async move {
                    let response = match token {
                        Some(token) => Response::new(Full::new(Bytes::from(
                            serde_json::json!({"issuer": ISSUER, "token_endpoint": token})
                                .to_string(),
                        ))),
                        None => {
                            let mut response = Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            response
                        }
                    };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            TokenEndpoint::builder(config)
                .http_service(service)
                .build()
                .expect("endpoint")
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// Lets a background refetch run to its end.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn token_endpoint(endpoint: &TokenEndpoint) -> String {
        endpoint
            .discovery()
            .await
            .expect("a document")
            .token_endpoint
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn kept_for_a_day_then_fetched_again_without_anyone_waiting() {
        let issuer = Issuer::default();
        issuer.answer(Some("https://helseid.example/connect/token"));
        let endpoint = issuer.endpoint();
        assert!(endpoint.discovery().await.is_ok());
        assert!(endpoint.discovery().await.is_ok());
        assert_eq!(issuer.requests(), 1, "kept");

        // A day later the copy at hand is answered at once, and a refetch runs.
        issuer.answer(Some("https://helseid.example/connect/token2"));
        tokio::time::advance(DEFAULT_DISCOVERY_LIFETIME).await;
        assert_eq!(
            token_endpoint(&endpoint).await,
            "https://helseid.example/connect/token",
            "the stale copy, with no wait"
        );
        settle().await;
        assert_eq!(issuer.requests(), 2);
        assert_eq!(
            token_endpoint(&endpoint).await,
            "https://helseid.example/connect/token2"
        );
        assert_eq!(
            &*endpoint.token_endpoint().await.expect("url"),
            "https://helseid.example/connect/token2",
            "the token endpoint follows the refetched document"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refetch_keeps_the_copy_and_backs_off() {
        let issuer = Issuer::default();
        issuer.answer(Some("https://helseid.example/connect/token"));
        let endpoint = issuer.endpoint();
        assert!(endpoint.discovery().await.is_ok());

        issuer.answer(None);
        tokio::time::advance(DEFAULT_DISCOVERY_LIFETIME).await;
        for _ in 0..5 {
            assert_eq!(
                token_endpoint(&endpoint).await,
                "https://helseid.example/connect/token",
                "the old copy stays in use"
            );
            settle().await;
        }
        assert_eq!(issuer.requests(), 2, "one refetch, then the back-off holds");
        tokio::time::advance(RETRY_BASE).await;
        token_endpoint(&endpoint).await;
        settle().await;
        assert_eq!(issuer.requests(), 3, "retried after a second");
        tokio::time::advance(RETRY_BASE).await;
        token_endpoint(&endpoint).await;
        settle().await;
        assert_eq!(issuer.requests(), 3, "the wait doubled");

        issuer.answer(Some("https://helseid.example/connect/token3"));
        tokio::time::advance(RETRY_BASE).await;
        token_endpoint(&endpoint).await;
        settle().await;
        assert_eq!(issuer.requests(), 4);
        assert_eq!(
            token_endpoint(&endpoint).await,
            "https://helseid.example/connect/token3",
            "recovered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_first_fetch_is_not_kept() {
        let issuer = Issuer::default();
        let endpoint = issuer.endpoint();
        assert!(endpoint.discovery().await.is_err());
        issuer.answer(Some("https://helseid.example/connect/token"));
        assert!(endpoint.discovery().await.is_ok());
        assert_eq!(issuer.requests(), 2);
    }
}
