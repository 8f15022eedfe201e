//! Refresh tokens (`grant_type=refresh_token`), rotated on every use as HelseID rotates
//! them.
//!
//! A refresh token is an opaque string (32 random bytes, base64url) that the emulator
//! remembers with the session it belongs to: the client, the scopes, the organisations
//! and the user's claims. Its expiry is the session's: every refresh token of a session
//! (the first one and each one that replaced it) expires when the first one does, so
//! `rt_expires_in` counts down across refreshes.
//!
//! Each successful refresh marks the refresh token used and answers with a new one.
//! Presenting a used refresh token again is taken as a sign that it leaked (or that two
//! refreshes raced): it gets `invalid_grant`, and the session's newest refresh token is
//! revoked as well, so the whole session ends (the OAuth 2.0 Security BCP's reuse
//! detection).
//!
//! **Refresh tokens** rotate, as HelseID's do: `grant_type=refresh_token` with
//! `refresh_token`, authenticated by the client the refresh token was issued to, answers
//! with a new access token (the same user claims), a new `refresh_token` and
//! `rt_expires_in`, and the old refresh token is spent. An unknown, expired, spent or
//! foreign refresh token is `invalid_grant`; a spent one coming back also revokes the
//! session's newest refresh token (reuse detection), so the session ends. Every refresh
//! token of a session expires when its first one does
//! ([`EmulatorBuilder::refresh_token_lifetime`](crate::EmulatorBuilder::refresh_token_lifetime),
//! default 8 hours). `scope` may narrow
//! the session's scopes, not widen them (`invalid_scope`).
//! [`Emulator::refreshes`](crate::Emulator::refreshes)
//! counts refreshes, [`Emulator::invalid_grants`](crate::Emulator::invalid_grants)
//! every `invalid_grant` answer.

pub(crate) mod grant;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::idp::tenancy::Organisation;
use crate::server::error::b64;
use crate::server::response::{TokenError, quote};
use crate::server::{lock, unix_now};
use axum::response::Response;
use serde_json::{Map, Value, json};

/// The default lifetime of a session's refresh tokens: 8 hours.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// How long a refresh token is remembered after it expired, to say "expired" or "used"
/// rather than "unknown" when it comes back.
const REMEMBER_EXPIRED: i64 = 3600;

/// What a refresh token grants: whose session it is and what it may ask for.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) client_id: String,
    /// The scopes granted when the session started; a refresh may ask for fewer.
    pub(crate) scopes: Vec<String>,
    pub(crate) organisation: Organisation,
    /// The user's claims (`sub`, `helseid://claims/identity/pid`, ...), copied into every
    /// access token of the session.
    pub(crate) user: Map<String, Value>,
    /// The thumbprint of the DPoP key the session is bound to: set by its first refresh
    /// with a DPoP proof, and required of every later refresh.
    pub(crate) jkt: Option<String>,
}

/// Where a refresh token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// It may be used, once.
    Active,
    /// It was used: a newer refresh token replaced it.
    Used,
    /// It was revoked because an older refresh token of its session was used again.
    Revoked,
}

/// A remembered refresh token.
#[derive(Debug)]
struct Entry {
    session: Session,
    /// Every refresh token of one session has the same family number.
    family: u64,
    /// Seconds since the epoch.
    expires_at: i64,
    status: Status,
}

/// A new refresh token.
#[derive(Debug)]
pub(crate) struct NewRefreshToken {
    pub(crate) refresh_token: String,
    /// Seconds until it expires.
    pub(crate) rt_expires_in: i64,
}

/// The refresh tokens the emulator issued, used and revoked.
#[derive(Debug, Default)]
pub(crate) struct RefreshStore {
    inner: Mutex<Inner>,
}

/// The store's mutable part.
#[derive(Debug)]
struct Inner {
    /// How long a session lasts.
    lifetime: Duration,
    tokens: HashMap<String, Entry>,
    next_family: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            lifetime: DEFAULT_LIFETIME,
            tokens: HashMap::new(),
            next_family: 0,
        }
    }
}

impl RefreshStore {
    /// Sets how long the sessions started from now on last (the emulator sets it once,
    /// before it serves requests).
    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        lock(&self.inner).lifetime = lifetime;
    }

    /// Starts a session: its first refresh token, expiring after the lifetime.
    pub(crate) fn start(&self, session: Session) -> Result<NewRefreshToken, TokenError> {
        let now = unix_now();
        let mut inner = lock(&self.inner);
        let lifetime = i64::try_from(inner.lifetime.as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(lifetime);
        inner
            .tokens
            .retain(|_, entry| entry.expires_at.saturating_add(REMEMBER_EXPIRED) > now);
        let family = inner.next_family;
        inner.next_family = family.wrapping_add(1);
        let refresh_token = insert(&mut inner, session, family, expires_at)?;
        Ok(NewRefreshToken {
            refresh_token,
            rt_expires_in: expires_at.saturating_sub(now),
        })
    }

    /// Redeems a refresh token presented by `client_id` with a DPoP proof by the key
    /// `jkt` (or none): checks it, lets `scopes` choose the access token's scopes from
    /// the session's, marks it used and returns the session (with the chosen scopes) and
    /// the refresh token that replaces it. A session bound to a DPoP key needs a proof by
    /// that key; an unbound one becomes bound to `jkt`. Nothing changes when a check
    /// fails, except that a used refresh token revokes its session.
    fn redeem(
        &self,
        refresh_token: &str,
        client_id: &str,
        jkt: Option<&str>,
        scopes: impl FnOnce(&Session) -> Result<Vec<String>, TokenError>,
    ) -> Result<(Session, NewRefreshToken), TokenError> {
        let now = unix_now();
        let mut inner = lock(&self.inner);
        let Some(entry) = inner.tokens.get(refresh_token) else {
            return Err(TokenError::invalid_grant(
                "the refresh_token is unknown: this emulator did not issue it (or forgot it long after it expired)",
            ));
        };
        if entry.session.client_id != client_id {
            return Err(TokenError::invalid_grant(format!(
                "the refresh_token was not issued to client {}: only the client it was issued to may use it",
                quote(client_id)
            )));
        }
        match entry.status {
            Status::Active => {}
            Status::Used => {
                let family = entry.family;
                for other in inner.tokens.values_mut() {
                    if other.family == family && other.status == Status::Active {
                        other.status = Status::Revoked;
                    }
                }
                return Err(TokenError::invalid_grant(
                    "the refresh_token has been used already: refresh tokens rotate, and each refresh answers with the refresh_token to use next; because an old one came back, the session's newer refresh token is revoked too",
                ));
            }
            Status::Revoked => {
                return Err(TokenError::invalid_grant(
                    "the refresh_token has been revoked: an older refresh token of the same session was used again",
                ));
            }
        }
        if entry.expires_at <= now {
            return Err(TokenError::invalid_grant(format!(
                "the refresh_token expired {} s ago",
                now.saturating_sub(entry.expires_at)
            )));
        }
        let mut session = entry.session.clone();
        match (session.jkt.as_deref(), jkt) {
            (Some(bound), Some(jkt)) if bound != jkt => {
                return Err(TokenError::invalid_grant(
                    "the refresh_token is bound to another DPoP key: refresh with a proof signed by the key the session is bound to",
                ));
            }
            (Some(_), None) => {
                return Err(TokenError::invalid_grant(
                    "the refresh_token is bound to a DPoP key: the refresh needs a DPoP proof signed by that key",
                ));
            }
            (None, Some(jkt)) => session.jkt = Some(jkt.to_owned()),
            _ => {}
        }
        let (family, expires_at) = (entry.family, entry.expires_at);
        let chosen = scopes(&session)?;
        let replacement = insert(&mut inner, session.clone(), family, expires_at)?;
        if let Some(entry) = inner.tokens.get_mut(refresh_token) {
            entry.status = Status::Used;
        }
        session.scopes = chosen;
        Ok((
            session,
            NewRefreshToken {
                refresh_token: replacement,
                rt_expires_in: expires_at.saturating_sub(now),
            },
        ))
    }

    /// Revokes a refresh token and every other refresh token of its session. Returns
    /// `false` when it is unknown.
    pub(crate) fn revoke(&self, refresh_token: &str) -> bool {
        let mut inner = lock(&self.inner);
        let Some(family) = inner.tokens.get(refresh_token).map(|entry| entry.family) else {
            return false;
        };
        for entry in inner.tokens.values_mut() {
            if entry.family == family && entry.status == Status::Active {
                entry.status = Status::Revoked;
            }
        }
        true
    }

    /// The client a refresh token was issued to, when the emulator knows it.
    pub(crate) fn issued_to(&self, refresh_token: &str) -> Option<String> {
        lock(&self.inner)
            .tokens
            .get(refresh_token)
            .map(|entry| entry.session.client_id.clone())
    }

    /// Makes a refresh token expired now. Returns `false` when it is unknown.
    pub(crate) fn expire(&self, refresh_token: &str) -> bool {
        let now = unix_now();
        match lock(&self.inner).tokens.get_mut(refresh_token) {
            Some(entry) => {
                entry.expires_at = entry.expires_at.min(now.saturating_sub(1));
                true
            }
            None => false,
        }
    }
}

/// Remembers a new random refresh token for the session.
fn insert(
    inner: &mut Inner,
    session: Session,
    family: u64,
    expires_at: i64,
) -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| TokenError::server_error("cannot generate a refresh token"))?;
    let token = b64(bytes);
    inner.tokens.insert(
        token.clone(),
        Entry {
            session,
            family,
            expires_at,
            status: Status::Active,
        },
    );
    Ok(token)
}
