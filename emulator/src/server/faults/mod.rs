//! Fault injection: answers a test switches on at run time, per target (the token
//! endpoint, the discovery document, CPE, the CommunicationParty API v2), to see how a
//! client copes with a failing or hostile HelseID or API.
//!
//! A middleware in front of every route looks up the fault of the request's target and,
//! when there is one, answers in its place (or lets the real answer through and then
//! spoils it). Faults that must act below an HTTP answer (a connection closed without
//! one, a body cut short) answer with a body whose stream fails: hyper then closes the
//! connection without finishing the message.
//!
//! **Fault injection**, for tests of how a client copes with a failing HelseID or API:
//! [`Emulator::faults`](crate::Emulator::faults) sets a [`Fault`] per [`FaultTarget`]
//! (the token endpoint, the
//! discovery document, CPE, the CommunicationParty API v2) at run time, until it is
//! replaced or cleared: a status with an optional `Retry-After`, a hang, an answer after
//! a delay, a garbage, truncated or huge body, a connection closed without an answer, a
//! token response with the other `token_type`, an API that refuses every token.
//! [`Faults::injected`] counts the requests that got one.

pub(crate) mod inject;

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use tokio::sync::watch;

use crate::idp::dpop::ALGS;
use crate::server::error::{Error, Result};
use crate::server::lock;

/// The longest token response body [`Fault::WrongTokenType`] reads to rewrite it.
const MAX_REWRITTEN: usize = 1024 * 1024;

/// The size of the chunks a [`Fault::Huge`] body is sent in.
const CHUNK: usize = 64 * 1024;

/// Where a [`Fault`] acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultTarget {
    /// `POST /connect/token`.
    TokenEndpoint,
    /// `GET /.well-known/openid-configuration` and its `jwks` document.
    Discovery,
    /// The CPE API: `/CommunicationPartyEvents`, `/CommunicationPartyExport`,
    /// `/CommunicationParties/{herId}` (not `/openapi.json`).
    Cpe,
    /// The CommunicationParty API v2: `/api/v1/...` (not `/cpapi/openapi.json`).
    Cpapi,
}

impl FaultTarget {
    /// The target a request path belongs to, if any.
    fn of(path: &str) -> Option<Self> {
        match path {
            "/connect/token" => Some(FaultTarget::TokenEndpoint),
            "/.well-known/openid-configuration" | "/.well-known/openid-configuration/jwks" => {
                Some(FaultTarget::Discovery)
            }
            "/CommunicationPartyEvents" | "/CommunicationPartyExport" => Some(FaultTarget::Cpe),
            p if p.starts_with("/CommunicationParties/") => Some(FaultTarget::Cpe),
            p if p.starts_with("/api/v1/") => Some(FaultTarget::Cpapi),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultTarget::TokenEndpoint => "the token endpoint",
            FaultTarget::Discovery => "the discovery document",
            FaultTarget::Cpe => "CPE",
            FaultTarget::Cpapi => "the CommunicationParty API v2",
        }
    }

    fn is_api(self) -> bool {
        matches!(self, FaultTarget::Cpe | FaultTarget::Cpapi)
    }
}

/// A fault the emulator injects into the answers of a [`FaultTarget`], set with
/// [`Faults`] ([`Emulator::faults`](crate::Emulator::faults)). It acts on every request
/// to its target until it is replaced or cleared.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answers with this status (any, a 200 included), a short `text/plain` body that
    /// is no protocol answer, and `Retry-After` with this value when given (seconds,
    /// `"30"`, or an HTTP date, sent as it is). [`Fault::status`] and
    /// [`Fault::retry_after`] make one.
    Status {
        /// The status of the answer.
        status: StatusCode,
        /// The `Retry-After` header's value, when there is one.
        retry_after: Option<String>,
    },
    /// Never answers: the request is read and the connection kept open, without an
    /// answer, until the fault is replaced or cleared or the emulator shuts down; then
    /// the connection is closed without an answer.
    Hang,
    /// Answers as usual, after this delay (a `tokio::time::sleep`, so paused time in a
    /// test skips it).
    Delay(Duration),
    /// Answers `200 OK` with `Content-Type: application/json` and a body of bytes that
    /// are neither JSON nor UTF-8 (control characters and an escape sequence among them).
    Garbage,
    /// Answers `200 OK` with `Content-Type: application/json` and a `Content-Length`
    /// larger than the body, sends the start of a JSON object, and closes the
    /// connection.
    Truncated,
    /// Closes the connection without an answer (not a byte is sent).
    Close,
    /// Answers `200 OK` with `Content-Type: application/json` and a body of this many
    /// bytes (the start of a JSON object whose string never ends), sent in chunks with
    /// its `Content-Length`.
    Huge {
        /// The size of the body in bytes.
        bytes: u64,
    },
    /// Token endpoint only: answers as usual, but a token response's `token_type` is the
    /// other one: `DPoP` for a Bearer token, `Bearer` for a DPoP-bound token. The access
    /// token itself is unchanged.
    WrongTokenType,
    /// CPE and CP API v2 only: refuses every token, as an API with a misconfigured
    /// audience would: 401 with `WWW-Authenticate: Bearer error="invalid_token"` (CPE)
    /// or `DPoP error="invalid_token"` (CP API v2).
    RejectTokens,
}

impl Fault {
    /// [`Fault::Status`] with this status and no `Retry-After`.
    ///
    /// # Panics
    /// If `status` is not between 100 and 999 (a test's own mistake).
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status: StatusCode::from_u16(status).unwrap_or_else(|_| {
                panic!("Fault::status: {status} is not an HTTP status code (100 to 999)")
            }),
            retry_after: None,
        }
    }

    /// [`Fault::Status`] with this status and `Retry-After: <retry_after>` (seconds such
    /// as `"30"`, or an HTTP date).
    ///
    /// # Panics
    /// If `status` is not between 100 and 999 (a test's own mistake).
    pub fn retry_after(status: u16, retry_after: impl Into<String>) -> Self {
        match Fault::status(status) {
            Fault::Status { status, .. } => Fault::Status {
                status,
                retry_after: Some(retry_after.into()),
            },
            other => other,
        }
    }

    /// Why this fault cannot act at `target`, if it cannot.
    fn misfit(&self, target: FaultTarget) -> Option<String> {
        match self {
            Fault::WrongTokenType if target != FaultTarget::TokenEndpoint => Some(format!(
                "WrongTokenType acts at the token endpoint only, not at {}",
                target.name()
            )),
            Fault::RejectTokens if !target.is_api() => Some(format!(
                "RejectTokens acts at CPE and the CommunicationParty API v2 only, not at {}",
                target.name()
            )),
            Fault::Status {
                retry_after: Some(value),
                ..
            } if HeaderValue::from_str(value).is_err() => Some(format!(
                "the Retry-After value {value:?} cannot be sent in a header"
            )),
            _ => None,
        }
    }
}

/// The faults of a running emulator, from [`Emulator::faults`](crate::Emulator::faults):
/// set one per [`FaultTarget`] at run time, see how many requests got one, clear them.
///
/// # Example
/// ```
/// use helseid_emulator::{Emulator, Fault, FaultTarget};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emulator = Emulator::builder().start().await?;
/// emulator.faults().token_endpoint(Fault::retry_after(503, "30"))?;
/// emulator.faults().cpe(Fault::RejectTokens)?;
/// // ... requests to the token endpoint get 503 with `Retry-After: 30`, every CPE call
/// // gets 401 invalid_token ...
/// assert_eq!(emulator.faults().injected(FaultTarget::TokenEndpoint), 0);
/// emulator.faults().clear();
/// # Ok(()) }
/// ```
pub struct Faults {
    active: Mutex<HashMap<FaultTarget, Fault>>,
    injected: [AtomicU64; 4],
    /// Bumped at every change, which releases the requests a [`Fault::Hang`] holds.
    changes: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            active: Mutex::new(HashMap::new()),
            injected: Default::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("active", &*lock(&self.active))
            .finish_non_exhaustive()
    }
}

impl Faults {
    /// Sets the fault of `target`, replacing the one it had (and releasing the requests
    /// a [`Fault::Hang`] held there).
    ///
    /// # Errors
    /// [`Error::Setting`] `fault` when the fault cannot act at this target
    /// ([`Fault::WrongTokenType`] anywhere but the token endpoint,
    /// [`Fault::RejectTokens`] anywhere but an API) or its `Retry-After` value cannot
    /// be a header value.
    pub fn set(&self, target: FaultTarget, fault: Fault) -> Result<()> {
        if let Some(reason) = fault.misfit(target) {
            return Err(Error::setting("fault", reason));
        }
        tracing::debug!(?target, ?fault, "helseid emulator injects a fault");
        lock(&self.active).insert(target, fault);
        self.changed();
        Ok(())
    }

    /// Sets the fault of the token endpoint (`POST /connect/token`).
    ///
    /// # Errors
    /// As [`set`](Self::set): [`Fault::RejectTokens`] does not act here.
    pub fn token_endpoint(&self, fault: Fault) -> Result<()> {
        self.set(FaultTarget::TokenEndpoint, fault)
    }

    /// Sets the fault of the discovery document and its JWKS.
    ///
    /// # Errors
    /// As [`set`](Self::set): [`Fault::WrongTokenType`] and [`Fault::RejectTokens`] do
    /// not act here.
    pub fn discovery(&self, fault: Fault) -> Result<()> {
        self.set(FaultTarget::Discovery, fault)
    }

    /// Sets the fault of the CPE API.
    ///
    /// # Errors
    /// As [`set`](Self::set): [`Fault::WrongTokenType`] does not act here.
    pub fn cpe(&self, fault: Fault) -> Result<()> {
        self.set(FaultTarget::Cpe, fault)
    }

    /// Sets the fault of the CommunicationParty API v2.
    ///
    /// # Errors
    /// As [`set`](Self::set): [`Fault::WrongTokenType`] does not act here.
    pub fn cpapi(&self, fault: Fault) -> Result<()> {
        self.set(FaultTarget::Cpapi, fault)
    }

    /// Removes the fault of `target`: it answers as usual again.
    pub fn remove(&self, target: FaultTarget) {
        lock(&self.active).remove(&target);
        self.changed();
    }

    /// Removes every fault: every target answers as usual again, and the requests a
    /// [`Fault::Hang`] held get their connection closed.
    pub fn clear(&self) {
        lock(&self.active).clear();
        self.changed();
    }

    /// The fault `target` has now, if any.
    pub fn get(&self, target: FaultTarget) -> Option<Fault> {
        lock(&self.active).get(&target).cloned()
    }

    /// How many requests to `target` got a fault (since the emulator started).
    pub fn injected(&self, target: FaultTarget) -> u64 {
        self.injected[Self::slot(target)].load(Ordering::Relaxed)
    }

    fn slot(target: FaultTarget) -> usize {
        match target {
            FaultTarget::TokenEndpoint => 0,
            FaultTarget::Discovery => 1,
            FaultTarget::Cpe => 2,
            FaultTarget::Cpapi => 3,
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}
