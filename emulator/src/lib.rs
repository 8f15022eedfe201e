//! A local HelseID emulator, with NHN's CommunicationParty Events API (CPE) and
//! CommunicationParty API v2 behind it, for tests and for running without a registration
//! at NHN.
//!
//! In a service's tests, two lines give a running emulator and a ready client
//! configuration (a [`helseid::config::ClientConfig`] whose authority is the emulator):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = helseid_emulator::Emulator::builder().test_client("my-service", ["nhn:cp-api/access"]).start().await?;
//! let config = emulator.client_config("my-service")?;
//! # assert_eq!(config.authority().issuer(), emulator.issuer());
//! # Ok(()) }
//! ```
//!
//! [`EmulatorBuilder::test_client`] generates the client's key and registers it,
//! [`Emulator::client_config`] hands out the configuration with the private key. The
//! package's `README.md` goes on from there (the dev-dependency, a token through
//! helseid's `TokenEndpoint`, a CPE call through `HelseIdLayer`), and what follows here
//! are the full rules.
//!
//! [`Emulator`] is a small OAuth 2.0 authorization server on `127.0.0.1` that speaks
//! HelseID's token protocol. It is meant to be **at least as strict as HelseID**: a
//! client that gets a token from the emulator should get one from HelseID too. It
//! serves
//!
//! - `GET /.well-known/openid-configuration`: the discovery document;
//! - `GET /.well-known/openid-configuration/jwks`: the emulator's own signing key;
//! - `POST /connect/token`: the `client_credentials`, token exchange
//!   (`urn:ietf:params:oauth:grant-type:token-exchange`) and `refresh_token` grants,
//!   with `private_key_jwt` client authentication only;
//! - `POST /test-token`: user token sets for tests (emulator only, see below);
//! - `POST /connect/par`, `GET /connect/authorize`, `GET /connect/endsession`, `POST
//!   /connect/revocation`: logins (see **Logins** below);
//! - `GET /swagger/`: a Swagger UI ([`SWAGGER_PATH`]) for CPE and CP API v2, whose
//!   Authorize button takes a token of this emulator.
//!
//! The token endpoint takes DPoP proofs (RFC 9449), and the CommunicationParty API v2
//! on the same listener takes only DPoP-bound tokens: see **DPoP** and
//! **CommunicationParty API v2** below.
//!
//! On the same listener, with the issuer as its base URL ([`Emulator::cpe_base_url`]),
//! it serves the CPE API as `openapi/cpe.json` describes it:
//!
//! - `GET /CommunicationPartyEvents?EventId=..&fromDatetime=..`: the event feed, oldest
//!   first, one page at a time ([`EmulatorBuilder::cpe_page_size`], default 100).
//!   Without `EventId` the feed starts at its beginning, with it at the event after
//!   that one; `fromDatetime` keeps the events created at or after that time (with an
//!   offset, or without one for UTC; up to seven fractional digits).
//!   `Links.Next.Href` is `/CommunicationPartyEvents?EventId=<last event on the page>`
//!   while more events follow, and absent (`"Links": {}`) on the last page;
//! - `GET /CommunicationPartyExport`: every party, with `LastEventId` and
//!   `LastDateTimeOffset` of the feed's last event;
//! - `GET /CommunicationParties/{herId}`: one party;
//! - `GET /openapi.json`: the CPE API's OpenAPI 3.1 document (no token needed).
//!
//! Each CPE call needs `Authorization: Bearer <token>` with an unexpired access token
//! this emulator issued (its signature checked with the key in the JWKS, `typ: at+jwt`,
//! `iss`, `exp`) that carries the scope `nhn:cp-api/access`. Anything else gets 401 with
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` saying what
//! is wrong, never quoting the token. Parameters are read strictly, more strictly than
//! ASP.NET: names are case-sensitive, each may appear once, unknown parameters are
//! refused; an unknown or malformed `EventId`, a malformed `fromDatetime` (a `+` that was
//! not URL-encoded as `%2B` is named as such) or a `herId` that is not a 32-bit integer
//! gets 400, an unknown `herId` 404, each with a ProblemDetails body whose `detail` names
//! the parameter.
//!
//! The register is the same on every run: 300 parties (organisations such as
//! `Oslo universitetssykehus HF` or `Legekontoret Storgata`, their services, persons
//! with a role such as `Fastlege Kari Dahl`) with HER-ids, organisation numbers with
//! valid check digits and municipality numbers, some deactivated (`Valid.To` in the
//! past), and 487 events from January to June 2025 with opaque 16-hex-digit ids.
//! Date-times are written as .NET writes them (`2025-05-01T12:00:00.1234567+02:00`, up
//! to seven fractional digits, trailing zeros trimmed), some without an offset
//! (`2025-05-01T10:00:00.1234567`, UTC). [`Emulator::publish_cpe_update`] appends an
//! event, to test polling for changes.
//!
//! A client assertion is rejected (`invalid_client`) unless its header has
//! `typ: client-authentication+jwt` and an asymmetric `alg` that fits the registered key,
//! its signature verifies with that key, `iss` and `sub` are the client id, `aud` is
//! exactly the issuer (not the token endpoint), `iat`, `nbf` and `exp` are numbers with
//! `exp - iat` at most 60 seconds and the assertion is currently valid (5 seconds of
//! clock skew allowed), and its `jti` has not been seen before. Scopes the client was not
//! granted give `invalid_scope`; a malformed `assertion_details` (or
//! `authorization_details`) claim gives `invalid_request` with a `HID-10xx` code in the
//! description. Error descriptions say precisely what is wrong, and never quote the
//! assertion.
//!
//! Issued access tokens are RS256 JWTs with `typ: at+jwt`, signed with a key the
//! emulator generates when it starts; [`Emulator::verify_access_token`] checks them.
//!
//! **Token exchange** (RFC 8693, as SFM uses it): an API registered with
//! [`ClientRegistration::audience`] (the actor) authenticates with its own client
//! assertion and sends `subject_token` (an access token it received),
//! `subject_token_type=urn:ietf:params:oauth:token-type:access_token` and `scope` (the
//! downstream API's scopes, which must be granted to the actor). The subject token must
//! be an unexpired access token of this emulator whose `aud` holds one of the actor's
//! audiences; otherwise the answer is `invalid_grant`. Another `subject_token_type`,
//! an `actor_token` or a missing parameter is `invalid_request`. The new access token is
//! for the downstream scopes but keeps the identity of the subject token: `client_id`,
//! `client_amr`, `sub`, `amr`, `auth_time`, `idp` and every `helseid://claims/...` claim
//! (organisations, pid, security level), adds `act: {"client_id": <actor>}` (nesting
//! the subject token's own `act`), and expires no later than the subject token. The
//! response adds `issued_token_type`. [`Emulator::token_exchanges`] counts them.
//!
//! **Refresh tokens** rotate, as HelseID's do: `grant_type=refresh_token` with
//! `refresh_token`, authenticated by the client the refresh token was issued to, answers
//! with a new access token (the same user claims), a new `refresh_token` and
//! `rt_expires_in`, and the old refresh token is spent. An unknown, expired, spent or
//! foreign refresh token is `invalid_grant`; a spent one coming back also revokes the
//! session's newest refresh token (reuse detection), so the session ends. Every refresh
//! token of a session expires when its first one does
//! ([`EmulatorBuilder::refresh_token_lifetime`], default 8 hours). `scope` may narrow
//! the session's scopes, not widen them (`invalid_scope`). [`Emulator::refreshes`]
//! counts refreshes, [`Emulator::invalid_grants`] every `invalid_grant` answer.
//!
//! **DPoP** (RFC 9449). A token request may carry a `DPoP` header with a proof; a client
//! registered with [`ClientRegistration::require_dpop`] must (`invalid_request`
//! otherwise). The client assertion is checked first, so it is spent whatever happens to
//! the proof; then the proof, before the grant (a challenge spends no refresh token). A
//! proof without the token endpoint's nonce, or with a nonce the emulator did not issue
//! or no longer accepts, gets HTTP 400 `{"error":"use_dpop_nonce"}` with the nonce in a
//! `DPoP-Nonce` header; the client retries with a new proof carrying it AND a new client
//! assertion. Nonces are opaque random strings, replaced every five minutes (the one
//! replaced is accepted five minutes more), or at once by [`Emulator::rotate_dpop_nonce`].
//! A proof is refused (`invalid_dpop_proof`, the description naming the check) unless:
//! it is one JWS in compact form; its header has `typ: dpop+jwt`, an `alg` among RS256,
//! RS384, RS512, PS256, PS384, PS512, ES256, ES384 and ES512 (the discovery document's
//! `dpop_signing_alg_values_supported`) that fits the key, no `crit`, and a `jwk` that is
//! an RSA (at least 2048 bits) or EC public key without private members (`d`, ...); the
//! signature verifies with that key; `jti` is a non-empty string not seen before with
//! that key (remembered in memory while the proof could still be accepted); `htm` is the
//! request's method; `htu` is exactly the URL the request was sent to, as the emulator
//! knows its own base URL (the issuer, then the path), and has no query (`?`) or fragment
//! (`#`); `iat` is a number at most 60 seconds old and at most 5 seconds ahead. An
//! accepted proof makes the access token DPoP-bound, for every grant: it carries
//! `cnf: {"jkt": <the RFC 7638 thumbprint of the proof's key>}` and the response says
//! `token_type: "DPoP"` (with a `DPoP-Nonce` header when the proof carried the previous
//! nonce). A token exchange with a proof binds the new token to the actor's key. A refresh
//! with a proof binds the session to that key: its later refreshes need a proof by the same
//! key (`invalid_grant` otherwise), and their tokens are bound too.
//! [`Emulator::dpop_nonce_challenges`] counts the `use_dpop_nonce` answers (token endpoint
//! and API), [`Emulator::assertion_jtis`] lists the client assertions' `jti`s.
//!
//! **CommunicationParty API v2** ([`CPAPI_SCOPE`], `nhn:cp-api/access-v2-dpop`), with the
//! issuer as its base URL ([`Emulator::cpapi_base_url`]), serves the same register as CPE
//! with NHN's 11 operations and NHN's model (the schemas of `openapi/cpapi.json`, which
//! are NHN's; camelCase JSON, `null` for what a party lacks where NHN allows `null`,
//! date-times always with their offset):
//!
//! - `GET /api/v1/event?fromSequenceNumber=..&maxEvents=..`: `{"results": [Event],
//!   "count": n}`, the events whose `sequenceNumber` is at least `fromSequenceNumber`
//!   (1 to 2147483647, default 1), ascending, at most `maxEvents` (1 to 1000, default
//!   1000); past the end `results` is empty. An `Event` is `{"sequenceNumber", "herId",
//!   "eventType", "eventTimestamp"}` with `eventType` `CommunicationPartyCreated` or
//!   `CommunicationPartyUpdated`. The feed is CPE's: the 487 seeded events have sequence
//!   numbers 1 to 487 in feed order, and each [`Emulator::publish_cpe_update`] appends the
//!   next ([`Emulator::cpapi_events`]);
//! - `GET /api/v1/event/latest`: the event with the highest sequence number (404 when
//!   there is none);
//! - `GET /api/v1/communicationparty/{herId}`: the party in NHN's full model: `type`
//!   (Organization, Person or Service) and its details (`organizationDetails` with the
//!   organisation number, business type, persons and services; `personDetails` with the
//!   HPR number and the organisation; `serviceDetails` with the service type and the
//!   organisation), contact details, `postalAddress`, `amqpTransportStatus` and
//!   `amqpAddress`, the current signing and encryption certificates (organisations and
//!   services), `validFrom` and `validTo` (left out for no end);
//! - `POST /api/v1/communicationparty` with `{"herIds": [..]}` (at most 100): the parties
//!   found, unknown HER-ids left out;
//! - `GET /api/v1/communicationparty/{herId}/legacy`: the party in the older model;
//! - `POST /api/v1/communicationparty/search?Page=..&Size=..` with `SearchParameters`:
//!   the matches by HER-id, `Page` from 1, `Size` 1 to 100 (default 10);
//! - `GET /api/v1/organization/{organizationNumber}`: the organisation with these nine
//!   digits;
//! - `GET /api/v1/certificate/{herId}[?includeHistoric=true]`, `/signing`,
//!   `/encryption`: real X.509 certificates (DER, base64 in `certificateValue`) issued
//!   by the emulator's own authority, the same on every run; up to two earlier pairs
//!   with `includeHistoric`; persons have none;
//! - `GET /api/v1/communicationparty/export?includeDeactivated=..`:
//!   `{"lastSequenceNumber", "count", "communicationParties": [herId]}`, the active
//!   parties (no `validTo`, or one in the future), or all with `includeDeactivated=true`;
//! - `GET /cpapi/openapi.json`: the API's OpenAPI 3.1 document (no token needed; also
//!   [`cpapi_openapi`]), with a security scheme `DPoP`.
//!
//! Each call needs `Authorization: DPoP <token>` with an unexpired access token this
//! emulator issued that carries the scope and a `cnf.jkt`, and a `DPoP` proof checked as
//! above for the request's method at the URL called (without the query), with `ath` =
//! base64url(SHA-256(token)) and a key whose thumbprint is the token's `cnf.jkt`.
//! Otherwise the answer is 401 with `WWW-Authenticate: DPoP error="invalid_token"` (a
//! missing, Bearer, foreign, expired or unbound token) or `error="invalid_dpop_proof"`,
//! an `error_description` saying what is wrong (never quoting the token or the proof)
//! and `algs="RS256 ... ES512"`. With [`EmulatorBuilder::cpapi_require_nonce`], a proof
//! must also carry the API's own nonce, or the answer is 401 `error="use_dpop_nonce"`
//! with the nonce in `DPoP-Nonce`. A good token and proof without the scope get 403 with
//! `error="insufficient_scope"`.
//! Parameters and bodies are read as strictly as CPE's, and a bad one gets 400 (an
//! unknown `herId` 404) with a ProblemDetails body as `application/problem+json` whose
//! `detail` names the parameter.
//! [`Emulator::cpapi_requests`] counts the calls.
//!
//! **Keys and Selvbetjening.** A client's key expires ([`EmulatorBuilder::key_lifetime`],
//! default a year; [`ClientRegistration::key_expires_in`]); an expired key is
//! `invalid_client`. `GET /v1/client-secret` answers `{"expiration": "<RFC 3339>"}` for
//! the client whose DPoP-bound token (scope [`SELVBETJENING_SCOPE`], with a matching
//! proof) it gets, and `POST /v1/client-secret` with a public JWK registers that client's
//! new key; from then on (after [`EmulatorBuilder::key_propagation_delay`]) the old key
//! is refused. Errors are `application/problem+json`; a 401 carries a `DPoP` challenge.
//! [`Emulator::set_selvbetjening_open`] makes it refuse new keys (503).
//!
//! **Test tokens** come from `POST /test-token`, which exists only in the emulator and
//! needs no client authentication: its JSON body ([`TestTokenRequest`]) names a
//! registered client and its scopes, and optionally a `pid`, a `securityLevel` and the
//! organisations; it answers like a token response with an access token carrying the
//! client's claims and a test person's (`sub`, `amr`, `helseid://claims/identity/pid`,
//! `helseid://claims/identity/security_level`, ...) and the first refresh token of a
//! session. An unknown client, a scope not granted or a malformed body gets 400 with an
//! OAuth error body. [`Emulator::mint_user_tokens`] does the same from Rust.
//!
//! **Logins** (authorization code with PKCE, PAR and DPoP, as HelseID wants them of
//! clients that log people in): `POST /connect/par` takes a pushed authorization request
//! authenticated with a client assertion (`response_type=code`, a loopback `http`
//! `redirect_uri` with a port, `scope` with `openid` and otherwise the identity scopes
//! or the client's own, `state`, `nonce`, `code_challenge` with
//! `code_challenge_method=S256`, optionally `dpop_jkt`) and answers 201 with a
//! `request_uri` valid for [`PAR_LIFETIME`] seconds
//! ([`Emulator::expire_par_request`] ends it early). `GET /connect/authorize` takes only
//! `client_id` and such a `request_uri`, once: it shows a login page (plain HTML, a form)
//! listing the [`TEST_PEOPLE`] (national identity number, HPR number, name, security
//! level 4); a used or expired `request_uri` redirects with
//! `error=invalid_request_uri`, anything else gets a 400 page. Picking a person
//! redirects (303) with `code`, `state` and `iss`; cancelling with
//! `error=access_denied`. The `authorization_code` grant checks the code (once, within
//! [`CODE_LIFETIME`] seconds; a used one also revokes the refresh token of its first
//! redemption), the `redirect_uri`, the PKCE `code_verifier`, and a DPoP proof by the key
//! `dpop_jkt` named; it answers with an access token carrying the person's claims
//! (bound to the proof's key), an RS256 `id_token` (`aud` the client, the `nonce`,
//! `sid`, `name`, `given_name`, `family_name`, [`HPR_NUMBER_CLAIM`], the pid and
//! security level) and, with `offline_access`, a refresh token whose session is bound to
//! the same key. [`Emulator::set_id_token_fault`] spoils ID tokens for tests.
//! `GET /connect/endsession?id_token_hint=..` ends the session
//! ([`Emulator::ended_sessions`]); `POST /connect/revocation` (client assertion) revokes a
//! refresh token's session ([`Emulator::revocations`]). The discovery document names
//! these endpoints.
//!
//! **Fault injection**, for tests of how a client copes with a failing HelseID or API:
//! [`Emulator::faults`] sets a [`Fault`] per [`FaultTarget`] (the token endpoint, the
//! discovery document, CPE, the CommunicationParty API v2) at run time, until it is
//! replaced or cleared: a status with an optional `Retry-After`, a hang, an answer after
//! a delay, a garbage, truncated or huge body, a connection closed without an answer, a
//! token response with the other `token_type`, an API that refuses every token.
//! [`Faults::injected`] counts the requests that got one.
//!
//! # Example: a client with a key of its own
//! ```
//! use helseid_emulator::{ClientRegistration, Emulator, Tenancy};
//! use helseid::key::{Algorithm, PrivateJwk, SigningKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256)?)?;
//! let emulator = Emulator::builder()
//!     .client(
//!         ClientRegistration::new("my-client", key.public_jwk().clone())
//!             .scopes(["nhn:cp-api/access"])
//!             .tenancy(Tenancy::Multi),
//!     )
//!     .start()
//!     .await?;
//! // Point the client at `emulator.issuer()`; it posts to the token endpoint.
//! assert_eq!(emulator.token_endpoint(), format!("{}/connect/token", emulator.issuer()));
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

mod apis;
mod idp;
mod publish;
mod server;

use self::apis::register::seed;
use self::apis::{cpapi, cpe};
use self::idp::{login, people, refresh, selvbetjening, tenancy, test_token};
use self::server::{faults, swagger};

pub use self::login::{CODE_LIFETIME, IdTokenFault, PAR_LIFETIME};
pub use self::people::{HPR_NUMBER_CLAIM, TEST_PEOPLE, TestPerson};
pub use self::swagger::SWAGGER_PATH;

pub use self::faults::{Fault, FaultTarget, Faults};
pub use self::selvbetjening::SCOPE as SELVBETJENING_SCOPE;
pub use self::test_token::TestTokenRequest;

/// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The scope a token needs for the CommunicationParty API v2 the emulator serves
/// (`nhn:cp-api/access-v2-dpop`); tokens with it must be DPoP-bound to be of use.
pub const CPAPI_SCOPE: &str = cpapi::CPAPI_SCOPE;

/// The OpenAPI document of the CommunicationParty API v2 the emulator serves, as
/// `GET /cpapi/openapi.json` serves it but without `servers` (which names the running
/// emulator): OpenAPI 3.1, JSON.
pub fn cpapi_openapi() -> serde_json::Value {
    serde_json::to_value(cpapi::document()).unwrap_or_default()
}

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::server::error::{Error, ErrorBody, Result};
use helseid::config::ClientConfig;
use helseid::key::{Algorithm, PrivateJwk, PublicJwk, SigningKey};

use self::apis::state::{Cpe, State as ApisState};
pub use self::idp::clients::Tenancy;
use self::idp::clients::{ClientKey, Keys, RegisteredClient};
use self::idp::state::{KeySettings, State as IdpState};
use self::server::listener;
use self::server::state::State;

/// The default lifetime of issued access tokens.
const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long [`Emulator::shutdown`] waits for requests in flight before it aborts the
/// server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A client registered at the emulator, as a client is registered in HelseID's
/// self-service portal.
#[derive(Clone, Debug)]
pub struct ClientRegistration {
    client_id: String,
    jwk: PublicJwk,
    scopes: Vec<String>,
    tenancy: Tenancy,
    audiences: Vec<String>,
    require_dpop: bool,
    rejected_scopes: Vec<String>,
    key_expires_in: Option<Duration>,
}

impl ClientRegistration {
    /// A client with this id, authenticating with the private key whose public half is
    /// `jwk`. It has no scopes until [`scopes`](Self::scopes) grants some, and is
    /// multi-tenant until [`tenancy`](Self::tenancy) says otherwise.
    pub fn new(client_id: impl Into<String>, jwk: PublicJwk) -> Self {
        ClientRegistration {
            client_id: client_id.into(),
            jwk,
            scopes: Vec::new(),
            tenancy: Tenancy::Multi,
            audiences: Vec::new(),
            require_dpop: false,
            rejected_scopes: Vec::new(),
            key_expires_in: None,
        }
    }

    /// How long from the start the registered key is valid; past it, the token endpoint
    /// refuses the client's assertions (`invalid_client`) until a new key is registered
    /// at `POST /v1/client-secret`. Zero: the key has expired already. Default: the
    /// builder's [`key_lifetime`](EmulatorBuilder::key_lifetime).
    pub fn key_expires_in(mut self, lifetime: Duration) -> Self {
        self.key_expires_in = Some(lifetime);
        self
    }

    /// Scopes HelseID leaves out of this client's tokens, as it does when a
    /// multi-tenant organisation has not accepted an API's terms: asked for (or granted
    /// by default), they are dropped from the token and named in the token response's
    /// `rejected_scope`. When every scope asked for is rejected the answer is
    /// `invalid_scope`. Default: none.
    pub fn rejected_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.rejected_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Requires DPoP (RFC 9449) of this client, as HelseID's security profile does:
    /// every token request must carry a `DPoP` header with a proof, or it is refused
    /// (`invalid_request`), and every token it gets is DPoP-bound. Default: a client
    /// may send a proof (and then gets DPoP-bound tokens) but need not.
    pub fn require_dpop(mut self) -> Self {
        self.require_dpop = true;
        self
    }

    /// Registers the client as an API that exchanges the tokens it receives (RFC 8693),
    /// as SFM does: `audience` is the `aud` of tokens meant for it (for example
    /// `e-helse:sfm.api`, the `aud` of tokens with scope `e-helse:sfm.api/access`). A
    /// token exchange by this client is refused (`invalid_grant`) unless the subject
    /// token's `aud` holds one of its audiences. Call again to add another audience.
    /// Default: none, so the client can exchange no token.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The scopes this client may request (for example `nhn:cp-api/access`). A token
    /// request without `scope` gets all of them. Default: none.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The client's tenancy. Default: [`Tenancy::Multi`].
    pub fn tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }
}

/// Configures and starts an [`Emulator`]; made by [`Emulator::builder`].
#[derive(Debug)]
pub struct EmulatorBuilder {
    clients: Vec<ClientRegistration>,
    /// The clients whose keys the emulator generates: id and scopes.
    test_clients: Vec<(String, Vec<String>)>,
    access_token_lifetime: Duration,
    refresh_token_lifetime: Duration,
    bind: SocketAddr,
    cpe_page_size: usize,
    cpapi_require_nonce: bool,
    key_lifetime: Duration,
    key_propagation_delay: Duration,
    register_size: Option<usize>,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            clients: Vec::new(),
            test_clients: Vec::new(),
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            refresh_token_lifetime: refresh::DEFAULT_LIFETIME,
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            cpe_page_size: cpe::DEFAULT_PAGE_SIZE,
            cpapi_require_nonce: false,
            key_lifetime: idp::clients::DEFAULT_KEY_LIFETIME,
            key_propagation_delay: Duration::ZERO,
            register_size: None,
        }
    }
}

impl EmulatorBuilder {
    /// Registers a client. Call once per client.
    pub fn client(mut self, client: ClientRegistration) -> Self {
        self.clients.push(client);
        self
    }

    /// Registers a client for a service's tests, with a key the emulator makes: when it
    /// starts, the emulator generates an EC P-256 key (ES256) for `client_id`, registers
    /// its public half with `scopes` (multi-tenant, as [`ClientRegistration::new`]), and
    /// keeps the private half, so that [`Emulator::client_config`] can hand out a ready
    /// [`ClientConfig`]. Call once per client; [`client`](Self::client) registers one
    /// with a key of the test's own, or with more settings (tenancy, DPoP, audiences).
    ///
    /// # Errors
    /// None here: [`start`](Self::start) refuses an empty or repeated client id
    /// ([`Error::Setting`] `client_id`) or a scope with white space (`scopes`), and
    /// gives [`Error::Key`] when the key cannot be generated.
    ///
    /// # Example
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = helseid_emulator::Emulator::builder()
    ///     .test_client("my-service", ["nhn:cp-api/access"])
    ///     .start()
    ///     .await?;
    /// let config = emulator.client_config("my-service")?;
    /// assert_eq!(config.scopes(), ["nhn:cp-api/access"]);
    /// # Ok(()) }
    /// ```
    pub fn test_client(
        mut self,
        client_id: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let scopes = scopes.into_iter().map(Into::into).collect();
        self.test_clients.push((client_id.into(), scopes));
        self
    }

    /// The lifetime of issued access tokens (their `exp - iat`, and `expires_in` in the
    /// token response), in whole seconds. Default: 3600 seconds.
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// The lifetime of a session's refresh tokens, in whole seconds: how long after the
    /// first one is issued (by `POST /test-token` or [`Emulator::mint_test_token`]) it
    /// and every refresh token that replaces it expire; `rt_expires_in` in token
    /// responses counts down to it. Default: 8 hours. Under one second is refused by
    /// [`start`](Self::start).
    pub fn refresh_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a free port on the loopback
    /// interface).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// How long a client's key is valid: a registered one from the start (unless its
    /// [`ClientRegistration::key_expires_in`] says otherwise), a new one from its
    /// registration at `POST /v1/client-secret`. Default: 365 days.
    pub fn key_lifetime(mut self, lifetime: Duration) -> Self {
        self.key_lifetime = lifetime;
        self
    }

    /// How long a key registered at `POST /v1/client-secret` takes to be in effect, as
    /// HelseID takes a while to pick up a change: until then the old key keeps working
    /// and the new one is refused. Default: zero (the old key is refused at once).
    pub fn key_propagation_delay(mut self, delay: Duration) -> Self {
        self.key_propagation_delay = delay;
        self
    }

    /// How many events a page of `GET /CommunicationPartyEvents` holds. Default: 100.
    /// Zero is refused by [`start`](Self::start).
    pub fn cpe_page_size(mut self, size: usize) -> Self {
        self.cpe_page_size = size;
        self
    }

    /// Whether the CommunicationParty API v2 requires a DPoP nonce of its own: a proof
    /// without the API's current (or previous) nonce gets 401 with
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` and the nonce in `DPoP-Nonce`.
    /// [`Emulator::rotate_dpop_nonce`] replaces it. Default: `false` (the token
    /// endpoint always requires its nonce).
    pub fn cpapi_require_nonce(mut self, require: bool) -> Self {
        self.cpapi_require_nonce = require;
        self
    }

    /// How many communication parties the register holds: a register made the way the
    /// seed is, with as many updates per party, for tests and benchmarks of a large
    /// register (30,000 parties take about a second to make). Default: the seed, 300
    /// parties and 487 events. Zero is taken as one.
    pub fn register_size(mut self, parties: usize) -> Self {
        self.register_size = Some(parties);
        self
    }

    /// Binds the listener, generates the emulator's signing key, and serves on the
    /// current tokio runtime until the [`Emulator`] is shut down or dropped.
    ///
    /// # Errors
    /// [`Error::Setting`] when the refresh token lifetime is under one second, when a
    /// client's audience is empty or holds spaces, when a registration is wrong otherwise
    /// (an empty or repeated client id, a
    /// public key the emulator cannot use, a parent organisation number that is not nine
    /// digits), when the access token lifetime is under one second, when the CPE page
    /// size is zero, or when the address cannot be bound. [`Error::Key`] if the signing
    /// key or a [test client](Self::test_client)'s key cannot be generated.
    pub async fn start(self) -> Result<Emulator> {
        server::install_crypto_provider();
        let lifetime = self.access_token_lifetime;
        if lifetime.as_secs() == 0 {
            return Err(Error::setting(
                "access_token_lifetime",
                "must be at least one second",
            ));
        }
        if self.cpe_page_size == 0 {
            return Err(Error::setting(
                "cpe_page_size",
                "must be at least one event per page",
            ));
        }
        let mut registrations = self.clients;
        let mut test_keys = HashMap::with_capacity(self.test_clients.len());
        for (client_id, scopes) in self.test_clients {
            let jwk = PrivateJwk::generate_ec(Algorithm::ES256)
                .map_err(|e| Error::key("generate a test client's key", e))?;
            let key = generate_key("generate a test client's key", Ok(jwk.clone()))?;
            registrations.push(
                ClientRegistration::new(client_id.clone(), key.public_jwk().clone()).scopes(scopes),
            );
            test_keys.insert(
                client_id,
                TestKey {
                    signing: Arc::new(key),
                    jwk,
                },
            );
        }
        let mut clients = HashMap::with_capacity(registrations.len());
        for registration in registrations {
            let client = register(registration, self.key_lifetime)?;
            if clients.contains_key(&client.id) {
                return Err(Error::setting(
                    "client_id",
                    format!("client `{}` is registered twice", client.id),
                ));
            }
            clients.insert(client.id.clone(), client);
        }
        let refresh_token_lifetime = self.refresh_token_lifetime;
        if refresh_token_lifetime.as_secs() == 0 {
            return Err(Error::setting(
                "refresh_token_lifetime",
                "must be at least one second",
            ));
        }

        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(|source| Error::Bind {
                address: self.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            address: self.bind,
            source,
        })?;
        let issuer = format!("http://{}", listener::reachable(local_addr));

        let signing_key = generate_key(
            "generate the emulator's signing key",
            PrivateJwk::generate_rsa(2048, Algorithm::RS256),
        )?;
        let idp = Arc::new(IdpState::new(issuer, clients, signing_key, lifetime)?);
        let cpe = Cpe::new(self.cpe_page_size);
        let state = State {
            apis: Arc::new(ApisState::new(Arc::clone(&idp), cpe)),
            idp,
            faults: Arc::new(Faults::default()),
        };

        // Before the router exists, so that no request sees the defaults.
        state
            .idp
            .refresh_tokens
            .set_lifetime(refresh_token_lifetime);
        state.apis.cpapi.set_require_nonce(self.cpapi_require_nonce);
        if let Some(parties) = self.register_size {
            *state.apis.cpe.register() = seed::register_of(parties);
        }
        *server::lock(&state.idp.key_settings) = KeySettings {
            lifetime: self.key_lifetime,
            propagation: self.key_propagation_delay,
        };
        let (stop, mut stopped) = watch::channel(false);
        let app = listener::router(state.clone());
        let task = tokio::spawn(async move {
            // Either an explicit `true` or the sender being dropped stops the server.
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(error = %e, "helseid emulator stopped with an error");
            }
        });
        tracing::debug!(issuer = %state.idp.issuer, "helseid emulator started");
        Ok(Emulator {
            state,
            test_keys,
            local_addr,
            stop,
            task,
        })
    }
}

/// A test client's key: the signing key its configurations carry, and the private JWK
/// a configuration file holds.
struct TestKey {
    signing: Arc<SigningKey>,
    jwk: PrivateJwk,
}

/// A running HelseID emulator.
///
/// The server runs on a tokio task until [`shutdown`](Self::shutdown) is called or the
/// value is dropped (dropping signals a graceful shutdown and returns at once).
pub struct Emulator {
    state: State,
    /// The private keys of the [test clients](EmulatorBuilder::test_client), by client id.
    test_keys: HashMap<String, TestKey>,
    local_addr: SocketAddr,
    /// Dropping this sender also stops the server.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("issuer", &self.state.idp.issuer)
            .field("local_addr", &self.local_addr)
            .field("clients", &self.state.idp.clients.len())
            .field("test_clients", &self.test_keys.len())
            .field("token_requests", &self.token_requests())
            .field("tokens_issued", &self.tokens_issued())
            .field("cpe_requests", &self.cpe_requests())
            .field("cpapi_requests", &self.cpapi_requests())
            .field("dpop_nonce_challenges", &self.dpop_nonce_challenges())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// A builder with no clients, tokens that live 3600 seconds, listening on
    /// `127.0.0.1:0`.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The issuer, for example `http://127.0.0.1:38421` (no trailing slash). Client
    /// assertions must carry exactly this as `aud`.
    pub fn issuer(&self) -> &str {
        &self.state.idp.issuer
    }

    /// The configuration of the [test client](EmulatorBuilder::test_client) `client_id`,
    /// ready for [`helseid::endpoint::TokenEndpoint::new`]: its id, this emulator as the
    /// authority ([`issuer`](Self::issuer)), the scopes it was registered with (the
    /// scopes a token request asks for by default; [`ClientConfig::with_scopes`] changes
    /// them) and its private key. Each call returns a new configuration around the same
    /// key.
    ///
    /// # Errors
    /// [`Error::NoClientKey`], naming the client, when no client has this id or it was
    /// registered with [`EmulatorBuilder::client`] (the emulator holds only the public
    /// half of its key). [`Error::Key`] if the configuration cannot be built.
    ///
    /// # Example
    /// ```
    /// use helseid_emulator::{Emulator, Error};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = Emulator::builder()
    ///     .test_client("my-service", ["nhn:cp-api/access"])
    ///     .start()
    ///     .await?;
    /// let config = emulator.client_config("my-service")?;
    /// assert_eq!(config.client_id(), "my-service");
    /// assert_eq!(config.authority().issuer(), emulator.issuer());
    /// assert!(matches!(
    ///     emulator.client_config("someone-else"),
    ///     Err(Error::NoClientKey { .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub fn client_config(&self, client_id: &str) -> Result<ClientConfig> {
        let (key, client) = self.test_client(client_id)?;
        ClientConfig::builder()
            .client_id(client_id)
            .authority_url(self.issuer())
            .scopes(client.scopes.iter().cloned())
            .signing_key(Arc::clone(&key.signing))
            .build()
            .map_err(|e| Error::key("build a test client's configuration", e))
    }

    /// Writes the configuration of the [test client](EmulatorBuilder::test_client)
    /// `client_id` to `path` as the JSON file HelseID's self-service portal
    /// (Selvbetjening) gives for download, which
    /// [`ClientConfig::from_file`] reads: `clientName`, `authority` (this emulator),
    /// `clientId`, `grantTypes`, `scopes` (every scope the client was registered with),
    /// `secretType` and `privateJwk` (the private key as a JSON string inside the JSON,
    /// as the portal writes it). For tests of a service that reads its configuration
    /// from a file.
    ///
    /// The file holds a private key, so it is written as the library writes secrets
    /// ([`helseid::private_file::write`]): created owner-only (mode 0600) and
    /// exclusively beside `path`, then renamed over it.
    ///
    /// # Errors
    /// [`Error::NoClientKey`] as [`client_config`](Self::client_config) (no file is
    /// written); [`Error::WriteFile`] with the I/O error when the file cannot be written.
    ///
    /// # Example
    /// ```
    /// use helseid::config::ClientConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = helseid_emulator::Emulator::builder()
    ///     .test_client("my-service", ["nhn:cp-api/access"])
    ///     .start()
    ///     .await?;
    /// let dir = std::env::temp_dir().join(format!("helseid-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("my-service.json");
    /// emulator.write_client_config("my-service", &path)?;
    ///
    /// // What the service does at startup:
    /// let config = ClientConfig::from_file(&path)?;
    /// assert_eq!(config.client_id(), "my-service");
    /// assert_eq!(config.authority().issuer(), emulator.issuer());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn write_client_config(&self, client_id: &str, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (key, client) = self.test_client(client_id)?;
        let file = serde_json::json!({
            "clientName": client_id,
            "authority": self.issuer(),
            "clientId": client_id,
            "grantTypes": ["client_credentials"],
            "scopes": client.scopes,
            "secretType": "private_key_jwt:JwkPrivateKeyJwtSecret",
            "privateJwk": key.jwk.to_json().as_str(),
        });
        let text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        helseid::private_file::write(path, &text).map_err(|source| Error::WriteFile {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The key and registration of the test client `client_id`.
    fn test_client(&self, client_id: &str) -> Result<(&TestKey, &RegisteredClient)> {
        let (Some(key), Some(client)) = (
            self.test_keys.get(client_id),
            self.state.idp.clients.get(client_id),
        ) else {
            let reason = if self.state.idp.clients.contains_key(client_id) {
                "it was registered with a key of its own (`EmulatorBuilder::client`), whose \
                 private half the emulator does not have; register it with \
                 `EmulatorBuilder::test_client`"
            } else {
                "no client with this id is registered; register it with \
                 `EmulatorBuilder::test_client`"
            };
            return Err(Error::NoClientKey {
                client_id: client_id.to_owned(),
                reason,
            });
        };
        Ok((key, client))
    }

    /// The token endpoint: the issuer followed by `/connect/token`.
    pub fn token_endpoint(&self) -> String {
        self.state.idp.token_endpoint.clone()
    }

    /// The address the emulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The emulator's public signing keys as a JWKS: `{"keys": [...]}`, the document
    /// served at the `jwks_uri`.
    pub fn signing_jwks(&self) -> serde_json::Value {
        self.state.idp.signing_jwks()
    }

    /// How many `POST /connect/token` requests arrived, whatever their outcome, those
    /// answered with a [`Fault`] included.
    pub fn token_requests(&self) -> u64 {
        self.state.idp.token_requests.load(Ordering::Relaxed)
    }

    /// How many access tokens the emulator issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state.idp.tokens_issued.load(Ordering::Relaxed)
    }

    /// How many token exchanges (RFC 8693) succeeded.
    pub fn token_exchanges(&self) -> u64 {
        self.state.idp.token_exchanges.load(Ordering::Relaxed)
    }

    /// How many refreshes (`grant_type=refresh_token`) succeeded.
    pub fn refreshes(&self) -> u64 {
        self.state.idp.refreshes.load(Ordering::Relaxed)
    }

    /// The base URL of Selvbetjening's client-secret API (`GET` and `POST
    /// /v1/client-secret`): the issuer, whose listener serves it.
    pub fn selvbetjening_base_url(&self) -> &str {
        &self.state.idp.issuer
    }

    /// When the key in effect for `client_id` expires (`None` for an unknown client).
    pub fn client_key_expiration(&self, client_id: &str) -> Option<std::time::SystemTime> {
        let (_, expires_at) = self.state.idp.clients.get(client_id)?.keys.current();
        let secs = u64::try_from(expires_at).unwrap_or(0);
        Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Whether Selvbetjening takes new keys: `false` makes `POST /v1/client-secret`
    /// answer 503 (problem+json), as when it is down. Default: `true`.
    pub fn set_selvbetjening_open(&self, open: bool) {
        self.state
            .idp
            .selvbetjening_open
            .store(open, Ordering::Relaxed);
    }

    /// How many times the token endpoint answered `invalid_grant`, whatever the grant:
    /// an invalid, expired or foreign subject token, an unknown, used, revoked, expired
    /// or foreign refresh token.
    pub fn invalid_grants(&self) -> u64 {
        self.state.idp.invalid_grants.load(Ordering::Relaxed)
    }

    /// Mints a user token set for the registered client `client_id`, as `POST
    /// /test-token` does: for the default test person (pid `13116900216`) at security
    /// level 4, with these scopes (all of the client's scopes when empty). Returns the
    /// token response body: `access_token`, `token_type`, `expires_in`,
    /// `refresh_token`, `rt_expires_in`, `scope`.
    ///
    /// # Errors
    /// The OAuth error `POST /test-token` would answer with: `invalid_client` for an
    /// unknown client, `invalid_scope` for a scope not granted to it.
    pub fn mint_user_tokens(
        &self,
        client_id: &str,
        scopes: &[&str],
    ) -> std::result::Result<serde_json::Value, ErrorBody> {
        self.mint_test_token(&TestTokenRequest::new(client_id, scopes.iter().copied()))
    }

    /// Mints a user token set as `POST /test-token` does; see [`TestTokenRequest`].
    ///
    /// # Errors
    /// The OAuth error `POST /test-token` would answer with (`invalid_client`,
    /// `invalid_scope`, `invalid_request`), with a description of what is wrong.
    pub fn mint_test_token(
        &self,
        request: &TestTokenRequest,
    ) -> std::result::Result<serde_json::Value, ErrorBody> {
        test_token::mint(&self.state.idp, request).map_err(|e| e.into_oauth())
    }

    /// Signs any claims as an access token of this emulator (RS256, `typ: at+jwt`, the
    /// emulator's key and `kid`), exactly as given: nothing is added or checked. For
    /// tests that need tokens the token endpoint would never issue, such as an expired
    /// subject token for a token exchange. Not counted in
    /// [`tokens_issued`](Self::tokens_issued).
    ///
    /// # Errors
    /// [`Error::Key`] if the claims cannot be serialised or signed.
    pub fn sign_access_token(&self, claims: &serde_json::Value) -> Result<String> {
        self.state
            .idp
            .signing_key
            .sign_jwt("at+jwt", claims)
            .map_err(|e| Error::key("sign an access token", e))
    }

    /// Makes a refresh token this emulator issued expire now, as if its session's
    /// lifetime had passed, so that tests need not wait. Returns `false` when the
    /// emulator does not know the refresh token.
    pub fn expire_refresh_token(&self, refresh_token: &str) -> bool {
        self.state.idp.refresh_tokens.expire(refresh_token)
    }

    /// Makes the token endpoint answer only after `delay` (a `tokio::time::sleep` after
    /// the request has been checked), to test caching and concurrent callers. Zero turns
    /// the delay off.
    pub fn set_token_delay(&self, delay: Duration) {
        self.state.idp.set_token_delay(delay);
    }

    /// The faults injected into this emulator's answers, switched at run time: a status
    /// (with `Retry-After`), a hang, a delay, a garbage, truncated or huge body, a closed
    /// connection, a wrong `token_type`, an API that refuses every token. See [`Fault`].
    ///
    /// # Example
    /// ```
    /// use helseid_emulator::{Emulator, Fault};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = Emulator::builder().start().await?;
    /// emulator.faults().token_endpoint(Fault::Hang)?;
    /// // ... a token request now gets no answer ...
    /// emulator.faults().clear();
    /// # Ok(()) }
    /// ```
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Checks an access token issued by this emulator: the signature (the emulator's own
    /// key), `typ: at+jwt`, `iss`, and `exp` (with 5 seconds of leeway). Returns its
    /// claims.
    ///
    /// # Errors
    /// A description of what is wrong; it never contains the token.
    pub fn verify_access_token(&self, token: &str) -> Result<serde_json::Value, String> {
        self.state.idp.verify_access_token(token)
    }

    /// The base URL of the CPE API: the issuer (the CPE endpoints share its listener),
    /// for example `http://127.0.0.1:38421`, without a trailing slash.
    pub fn cpe_base_url(&self) -> &str {
        &self.state.idp.issuer
    }

    /// How many requests reached the CPE endpoints (`/CommunicationPartyEvents`,
    /// `/CommunicationPartyExport`, `/CommunicationParties/{herId}`), whatever their
    /// outcome, refused ones included. `/openapi.json` is not counted.
    pub fn cpe_requests(&self) -> u64 {
        self.state.apis.cpe.requests()
    }

    /// How many events the CPE feed holds: 487 when the emulator starts, one more for each
    /// [`publish_cpe_update`](Self::publish_cpe_update).
    pub fn cpe_events(&self) -> usize {
        self.state.apis.cpe.events()
    }

    /// How many communication parties the CPE register holds (300).
    pub fn cpe_parties(&self) -> usize {
        self.state.apis.cpe.parties()
    }

    /// Appends a `CommunicationPartyUpdated` event for the party with this HER-id, created
    /// now (and after every earlier event), and returns its `EventId`; `None` when no party
    /// has this HER-id. The event shows up after the previous last event of the feed, and
    /// the export's `LastEventId` becomes its id.
    pub fn publish_cpe_update(&self, her_id: i32) -> Option<String> {
        self.state.apis.cpe.publish_update(her_id)
    }

    /// The base URL of the CommunicationParty API v2: the issuer (its endpoints share the
    /// listener), for example `http://127.0.0.1:38421`, without a trailing slash. A
    /// proof's `htu` is this followed by the path, for example
    /// `http://127.0.0.1:38421/api/v1/event`.
    pub fn cpapi_base_url(&self) -> &str {
        &self.state.idp.issuer
    }

    /// How many requests reached the CommunicationParty API v2's endpoints (`/api/v1/...`),
    /// whatever their outcome, refused ones included. `/cpapi/openapi.json` is not
    /// counted.
    pub fn cpapi_requests(&self) -> u64 {
        self.state.apis.cpapi.requests()
    }

    /// How many events the CommunicationParty API v2's feed holds: the CPE feed's events
    /// (487 when the emulator starts, one more for each
    /// [`publish_cpe_update`](Self::publish_cpe_update)), with sequence numbers from 1.
    pub fn cpapi_events(&self) -> usize {
        self.state.apis.cpe.events()
    }

    /// How many times a DPoP proof was answered with `use_dpop_nonce`, by the token
    /// endpoint (HTTP 400) or by the CommunicationParty API v2 (HTTP 401).
    pub fn dpop_nonce_challenges(&self) -> u64 {
        self.state.idp.dpop.nonce_challenges()
    }

    /// Replaces the DPoP nonces of the token endpoint and of the CommunicationParty API
    /// v2 with fresh ones and forgets the earlier ones, as if their lifetime had passed
    /// twice: the next proof that carries an earlier nonce is challenged
    /// (`use_dpop_nonce`). Without this, a nonce is replaced after five minutes and
    /// accepted for five more.
    pub fn rotate_dpop_nonce(&self) {
        self.state.idp.dpop.token_nonces.rotate();
        self.state.idp.dpop.api_nonces.rotate();
    }

    /// The `jti`s of the client assertions whose signature verified (the ones that
    /// reached the replay check, replays included), oldest first; the last 1024 are
    /// kept. To test that a client signs a new assertion for every request, retries
    /// included.
    pub fn assertion_jtis(&self) -> Vec<String> {
        self.state.idp.assertion_jtis()
    }

    /// Makes a pushed authorization request's `request_uri` expire now, as if
    /// [`PAR_LIFETIME`] had passed, so that tests need not wait. Returns `false` when the
    /// emulator does not know it.
    pub fn expire_par_request(&self, request_uri: &str) -> bool {
        self.state.idp.login.expire_par_request(request_uri)
    }

    /// Makes every authorization code issued so far expire now, as if
    /// [`CODE_LIFETIME`] had passed.
    pub fn expire_codes(&self) {
        self.state.idp.login.expire_codes()
    }

    /// Spoils the ID tokens the emulator issues from now on with `fault` (`None`: sound
    /// ID tokens again).
    pub fn set_id_token_fault(&self, fault: Option<IdTokenFault>) {
        self.state.idp.login.set_id_token_fault(fault)
    }

    /// How many logins succeeded on the login page (a test person picked).
    pub fn logins(&self) -> u64 {
        self.state.idp.login.logins()
    }

    /// How many revocation requests (`POST /connect/revocation`) were accepted.
    pub fn revocations(&self) -> u64 {
        self.state.idp.login.revocations()
    }

    /// How many sessions `GET /connect/endsession` ended.
    pub fn ended_sessions(&self) -> u64 {
        self.state.idp.login.ended_sessions()
    }
    /// Stops the server: no new connections are accepted, requests in flight get up to
    /// five seconds to finish, then the server task is aborted.
    pub async fn shutdown(self) {
        // Requests a `Fault::Hang` holds would hold up the graceful shutdown.
        self.state.faults.clear();
        let Emulator { stop, mut task, .. } = self;
        let _ = stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
        tracing::debug!("helseid emulator stopped");
    }
}

/// Makes a signing key of the emulator's (its own, or a test client's) from a freshly
/// generated private JWK; `what` names the key in the error.
fn generate_key(what: &'static str, jwk: helseid::Result<PrivateJwk>) -> Result<SigningKey> {
    jwk.and_then(|jwk| SigningKey::from_jwk(&jwk))
        .map_err(|e| Error::key(what, e))
}

/// Checks a registration and prepares its verification key.
fn register(registration: ClientRegistration, key_lifetime: Duration) -> Result<RegisteredClient> {
    let ClientRegistration {
        client_id,
        jwk,
        scopes,
        tenancy,
        audiences,
        require_dpop,
        rejected_scopes,
        key_expires_in,
    } = registration;
    if client_id.is_empty() {
        return Err(Error::setting("client_id", "must not be empty"));
    }
    if let Tenancy::Single { parent_orgnr } = &tenancy
        && !tenancy::is_orgnr(parent_orgnr)
    {
        return Err(Error::setting(
            "parent_orgnr",
            format!("client `{client_id}`: `{parent_orgnr}` is not nine digits"),
        ));
    }
    let key = ClientKey::from_jwk(&jwk)
        .map_err(|reason| Error::setting("jwk", format!("client `{client_id}`: {reason}")))?;
    let mut granted = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            return Err(Error::setting(
                "scopes",
                format!("client `{client_id}`: `{scope}` is not a valid scope"),
            ));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    for audience in &audiences {
        if audience.is_empty() || audience.contains(char::is_whitespace) {
            return Err(Error::setting(
                "audience",
                format!("client `{client_id}`: `{audience}` is not a valid audience"),
            ));
        }
    }
    Ok(RegisteredClient {
        id: client_id,
        scopes: granted,
        tenancy,
        keys: Keys::new(
            key,
            server::unix_now().saturating_add(
                i64::try_from(key_expires_in.unwrap_or(key_lifetime).as_secs()).unwrap_or(i64::MAX),
            ),
        ),
        audiences,
        require_dpop,
        rejected_scopes,
    })
}
