//! Logging a person in: pushed authorization requests (`POST /connect/par`), the
//! authorize endpoint (`GET /connect/authorize`, only with a `request_uri` from PAR), the
//! login page where a tester picks a test person, the `authorization_code` grant (PKCE
//! S256, DPoP binding to `dpop_jkt`), ID tokens, end session and revocation.
//!
//! Everything lives in memory: a pushed request until it is used or expires
//! ([`PAR_LIFETIME`] seconds), a pending login until its form is posted, a code until it
//! is redeemed (once) or expires ([`CODE_LIFETIME`] seconds), a session (`sid`) until it
//! is ended.
//!
//! **Logins** (authorization code with PKCE, PAR and DPoP, as HelseID wants them of
//! clients that log people in): `POST /connect/par` takes a pushed authorization request
//! authenticated with a client assertion (`response_type=code`, a loopback `http`
//! `redirect_uri` with a port, `scope` with `openid` and otherwise the identity scopes
//! or the client's own, `state`, `nonce`, `code_challenge` with
//! `code_challenge_method=S256`, optionally `dpop_jkt`) and answers 201 with a
//! `request_uri` valid for [`PAR_LIFETIME`] seconds
//! ([`Emulator::expire_par_request`](crate::Emulator::expire_par_request) ends it
//! early). `GET /connect/authorize` takes only
//! `client_id` and such a `request_uri`, once: it shows a login page (plain HTML, a form)
//! listing the [`TEST_PEOPLE`](crate::TEST_PEOPLE) (national identity number, HPR
//! number, name, security
//! level 4); a used or expired `request_uri` redirects with
//! `error=invalid_request_uri`, anything else gets a 400 page. Picking a person
//! redirects (303) with `code`, `state` and `iss`; cancelling with
//! `error=access_denied`. The `authorization_code` grant checks the code (once, within
//! [`CODE_LIFETIME`] seconds; a used one also revokes the refresh token of its first
//! redemption), the `redirect_uri`, the PKCE `code_verifier`, and a DPoP proof by the key
//! `dpop_jkt` named; it answers with an access token carrying the person's claims
//! (bound to the proof's key), an RS256 `id_token` (`aud` the client, the `nonce`,
//! `sid`, `name`, `given_name`, `family_name`,
//! [`HPR_NUMBER_CLAIM`](crate::HPR_NUMBER_CLAIM), the pid and
//! security level) and, with `offline_access`, a refresh token whose session is bound to
//! the same key. [`Emulator::set_id_token_fault`](crate::Emulator::set_id_token_fault)
//! spoils ID tokens for tests.
//! `GET /connect/endsession?id_token_hint=..` ends the session
//! ([`Emulator::ended_sessions`](crate::Emulator::ended_sessions)); `POST
//! /connect/revocation` (client assertion) revokes a
//! refresh token's session ([`Emulator::revocations`](crate::Emulator::revocations)).
//! The discovery document names
//! these endpoints.

pub(crate) mod flow;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::idp::people::TestPerson;
use crate::server::{lock, unix_now};
use axum::body::Bytes;
use axum::extract::{RawQuery, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};

/// How long a pushed authorization request's `request_uri` may be used, in seconds.
pub const PAR_LIFETIME: i64 = 60;

/// How long an authorization code may be redeemed, in seconds.
pub const CODE_LIFETIME: i64 = 60;

/// How long an ID token is valid, in seconds.
const ID_TOKEN_LIFETIME: i64 = 300;

/// What a `request_uri` starts with (RFC 9126).
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The path of the login form's target.
pub(crate) const LOGIN_FORM_PATH: &str = "/connect/authorize/login";

/// The `authorization_code` grant type.
pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";

/// Scopes about the person or the session, which every client may ask for at a login;
/// they name no API, so no access token has them as an audience.
pub(crate) const IDENTITY_SCOPES: [&str; 8] = [
    "openid",
    "profile",
    "offline_access",
    "helseid://scopes/identity/pid",
    "helseid://scopes/identity/pid_pseudonym",
    "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level",
    "helseid://scopes/hpr/hpr_number",
];

/// Whether `scope` is one of the [`IDENTITY_SCOPES`].
pub(crate) fn is_identity_scope(scope: &str) -> bool {
    IDENTITY_SCOPES.contains(&scope)
}

/// A deliberate fault in the ID tokens the emulator issues, to test a client's ID token
/// validation; set with [`Emulator::set_id_token_fault`](crate::Emulator::set_id_token_fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenFault {
    /// `nonce` is not the one the pushed request carried.
    WrongNonce,
    /// `aud` is another client's id.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` passed an hour ago.
    Expired,
    /// The signature is of other content.
    BadSignature,
}

/// What a pushed authorization request asked for.
#[derive(Clone, Debug)]
struct Authorization {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: String,
    nonce: String,
    code_challenge: String,
    dpop_jkt: Option<String>,
}

/// A pushed request and whether its `request_uri` was used.
#[derive(Debug)]
struct Pushed {
    authorization: Authorization,
    expires_at: i64,
    used: bool,
}

/// An issued authorization code.
#[derive(Debug)]
struct Code {
    authorization: Authorization,
    person: &'static TestPerson,
    sid: String,
    expires_at: i64,
    used: bool,
    /// The refresh token its redemption issued, revoked when the code comes back.
    refresh_token: Option<String>,
}

/// The logins' state.
#[derive(Debug, Default)]
struct Inner {
    pushed: HashMap<String, Pushed>,
    /// Logins whose page was shown, by the id in the page's form.
    pending: HashMap<String, Authorization>,
    codes: HashMap<String, Code>,
    /// Sessions by `sid`: whether they were ended.
    sessions: HashMap<String, bool>,
}

/// The emulator's logins.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    inner: Mutex<Inner>,
    fault: Mutex<Option<IdTokenFault>>,
    logins: AtomicU64,
    revocations: AtomicU64,
    ended_sessions: AtomicU64,
}

impl Logins {
    /// Makes a pushed authorization request's `request_uri` expire now, as if
    /// [`PAR_LIFETIME`] had passed, so that tests need not wait. Returns `false` when the
    /// emulator does not know it.
    pub(crate) fn expire_par_request(&self, request_uri: &str) -> bool {
        match lock(&self.inner).pushed.get_mut(request_uri) {
            Some(pushed) => {
                pushed.expires_at = unix_now().saturating_sub(1);
                true
            }
            None => false,
        }
    }

    /// Makes every authorization code issued so far expire now, as if
    /// [`CODE_LIFETIME`] had passed.
    pub(crate) fn expire_codes(&self) {
        let past = unix_now().saturating_sub(1);
        for code in lock(&self.inner).codes.values_mut() {
            code.expires_at = past;
        }
    }

    /// Spoils the ID tokens the emulator issues from now on with `fault` (`None`: sound
    /// ID tokens again).
    pub(crate) fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        *lock(&self.fault) = fault;
    }

    /// How many logins succeeded on the login page (a test person picked).
    pub(crate) fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// How many revocation requests (`POST /connect/revocation`) were accepted.
    pub(crate) fn revocations(&self) -> u64 {
        self.revocations.load(Ordering::Relaxed)
    }

    /// How many sessions `GET /connect/endsession` ended.
    pub(crate) fn ended_sessions(&self) -> u64 {
        self.ended_sessions.load(Ordering::Relaxed)
    }
}
