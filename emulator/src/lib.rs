//! A local HelseID emulator, with NHN's CommunicationParty Events API (CPE),
//! CommunicationParty API v2 and Meldingstjener (MSH) v2 behind it, for tests and for
//! running without a registration at NHN.
//!
//! In a service's tests, two lines give a running emulator and a ready client
//! configuration (a [`helseid::config::ClientConfig`] whose authority is the emulator):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = helseid_emulator::Emulator::builder().test_client("my-service",
//! ["nhn:cp-api/access"]).start().await?;
//! let config = emulator.client_config("my-service")?;
//! # assert_eq!(config.authority().issuer(), emulator.issuer());
//! # Ok(()) }
//! ```
//!
//! [`EmulatorBuilder::test_client`] generates the client's key and registers it,
//! [`Emulator::client_config`] hands out the configuration with the private key. The
//! package's `README.md` goes on from there (the dev-dependency, a token through
//! helseid's `TokenEndpoint`, a CPE call through `HelseIdLayer`);
//! [`Emulator::write_client_config`] writes the configuration as the file a service
//! reads at startup.
//!
//! [`Emulator`] is a small OAuth 2.0 authorization server on `127.0.0.1` that speaks
//! HelseID's token protocol. It is meant to be **at least as strict as HelseID**: a
//! client that gets a token from the emulator should get one from HelseID too.
//!
//! # The rooms
//! The emulator is three rooms with one-way doors (`tests/rooms.rs` holds them: the IdP
//! imports nothing from the APIs, and no import loop holds more than two files). Each
//! rule is written in the documentation of the module that enforces it
//! (`cargo doc -p helseid-emulator --document-private-items`).
//!
//! - `src/idp/`: HelseID itself. Discovery and JWKS (`/.well-known/openid-configuration`),
//!   the token endpoint (`POST /connect/token`: client credentials, token exchange,
//!   refresh tokens, authorization codes) with `private_key_jwt` client authentication
//!   and DPoP (RFC 9449), user token sets for tests (`POST /test-token`), logins
//!   (`/connect/par`, `/connect/authorize`, `/connect/endsession`,
//!   `/connect/revocation`) with the [`TEST_PEOPLE`], and Selvbetjening's
//!   `/v1/client-secret` for key rotation.
//! - `src/apis/`: the NHN APIs behind it, each in a folder of its own: CPE
//!   (`/CommunicationPartyEvents`, `/CommunicationPartyExport`,
//!   `/CommunicationParties/{herId}`, `/openapi.json`; [`Emulator::cpe_base_url`]) and the
//!   CommunicationParty API v2 (`/api/v1/...`, `/cpapi/openapi.json`, DPoP-bound tokens
//!   with [`CPAPI_SCOPE`]; [`Emulator::cpapi_base_url`]), the Meldingstjener (MSH) v2
//!   (`/Messages...`, `/msh/openapi.json`, DPoP-bound tokens with [`MSH_SCOPE`]: health
//!   messages between the register's HER-ids; [`Emulator::msh_base_url`]), and
//!   `register/`, the parties
//!   and the event feed both serve (the same 300 parties and 487 events on every run;
//!   [`Emulator::publish_cpe_update`] and friends change it). They verify the IdP's
//!   tokens as any API would, with `helseid::verify` (`server/verify.rs`): its issuer,
//!   its published keys, DPoP.
//! - `src/server/`: what both share: the state the router composes from each room's,
//!   the listener, answers and problem bodies, errors, forms, fault injection
//!   ([`Emulator::faults`]) and the Swagger UI ([`SWAGGER_PATH`]).
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

pub use self::apis::msh::{MshMessage, MshReceiver};

/// The scope a token needs for the Meldingstjener (MSH) v2 the emulator serves
/// (`nhn:msh/api`); its tokens have the audience [`MSH_AUDIENCE`] and must be DPoP-bound.
pub const MSH_SCOPE: &str = apis::msh::auth::SCOPE;

/// The audience of the Meldingstjener's tokens (`nhn:msh`).
pub const MSH_AUDIENCE: &str = apis::msh::auth::AUDIENCE;

/// The OpenAPI document of the Meldingstjener (MSH) v2 the emulator serves, as `GET
/// /msh/openapi.json` serves it but without `servers`: OpenAPI 3.1, JSON.
pub fn msh_openapi() -> serde_json::Value {
    apis::msh::document_json()
}

/// The README's examples are compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The scope a token needs for the CommunicationParty API v2 the emulator serves
/// (`nhn:cp-api/access-v2-dpop`); tokens with it must be DPoP-bound to be of use.
pub const CPAPI_SCOPE: &str = cpapi::CPAPI_SCOPE;

/// The audience of SFM (Sentral forskrivningsmodul), `e-helse:sfm.api`: tokens for it
/// (asked for with a scope `e-helse:sfm.api/...`) carry the client's SFM claims,
/// `e-helse:sfm.api/client/claims/sfm-id` and, for a multi-tenant client,
/// `nhn:sfm:journal-id` ([`ClientRegistration::sfm_id`],
/// [`ClientRegistration::sfm_journal_id`]).
pub const SFM_AUDIENCE: &str = idp::issue::SFM_AUDIENCE;

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
use self::idp::clients::{ClientKey, ClientProfile, Keys, RegisteredClient};
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
    profile: ClientProfile,
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
            profile: ClientProfile::default(),
        }
    }

    /// The client's name, as registered in Selvbetjening, which tokens carry as
    /// `helseid://claims/client/client_name`. Default: the client id.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.profile.name = Some(name.into());
        self
    }

    /// The organisation number (nine digits) of the vendor that owns the client system,
    /// which tokens carry as `helseid://claims/client/claims/orgnr_supplier`. Default:
    /// none, and tokens carry no such claim. [`EmulatorBuilder::start`] refuses one
    /// that is not nine digits.
    pub fn supplier_orgnr(mut self, orgnr: impl Into<String>) -> Self {
        self.profile.supplier_orgnr = Some(orgnr.into());
        self
    }

    /// The client's SFM instance id, which its tokens for SFM (audience
    /// [`SFM_AUDIENCE`], scope `e-helse:sfm.api/...`) carry as
    /// `e-helse:sfm.api/client/claims/sfm-id`. Default: an id in UUID form derived from
    /// the client id (the same on every run).
    pub fn sfm_id(mut self, id: impl Into<String>) -> Self {
        self.profile.sfm_id = Some(id.into());
        self
    }

    /// The journal id a multi-tenant client's tokens for SFM carry as
    /// `nhn:sfm:journal-id` (single-tenant clients' tokens have none), unless the client
    /// assertion names one (an `assertion_details` item of type `nhn:sfm:journal-id`),
    /// which then wins. Default: an id in UUID form derived from the client id (the same
    /// on every run).
    pub fn sfm_journal_id(mut self, id: impl Into<String>) -> Self {
        self.profile.journal_id = Some(id.into());
        self
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

        let idp = Arc::new(IdpState::new(issuer, clients, lifetime)?);
        let cpe = Cpe::new(self.cpe_page_size);
        let apis = Arc::new(ApisState::new(Arc::clone(&idp), cpe));
        let state = State {
            msh: Arc::new(apis::msh::Msh::new(Arc::clone(&apis))?),
            apis,
            idp,
            faults: Arc::new(Faults::default()),
        };

        // Before the router exists, so that no request sees the defaults.
        state
            .idp
            .refresh_tokens
            .set_lifetime(refresh_token_lifetime);
        let verifiers = verifiers(&state, self.cpapi_require_nonce)?;
        if let Some(parties) = self.register_size {
            *state.apis.cpe.register() = seed::register_of(parties);
        }
        *server::lock(&state.idp.key_settings) = KeySettings {
            lifetime: self.key_lifetime,
            propagation: self.key_propagation_delay,
        };
        let (stop, mut stopped) = watch::channel(false);
        let app = listener::router(state.clone(), &verifiers)
            .merge(apis::msh::router(Arc::clone(&state.msh)));
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
            verifiers,
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
    /// The APIs' token verifiers.
    verifiers: listener::Verifiers,
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
    /// emulator's current key, its `kid` and `x5t`), exactly as given: nothing is added
    /// or checked. For tests that need tokens the token endpoint would never issue, such
    /// as an expired subject token for a token exchange. Not counted in
    /// [`tokens_issued`](Self::tokens_issued).
    ///
    /// # Errors
    /// [`Error::Key`] if the claims cannot be serialised or signed.
    pub fn sign_access_token(&self, claims: &serde_json::Value) -> Result<String> {
        self.state
            .idp
            .signing_keys
            .sign("at+jwt", claims)
            .ok_or_else(|| Error::key("sign an access token", None))
    }

    /// Rotates the emulator's signing key, as HelseID rolls its key over: a new key
    /// (with a new `kid`) is published in the JWKS and signs every token from now on;
    /// the key it replaces stays published, and its tokens keep verifying (at the
    /// emulator's APIs too), until [`retire_old_signing_keys`](Self::retire_old_signing_keys).
    /// An API that has cached the JWKS sees the new `kid` as unknown and fetches the
    /// keys again. Returns the new `kid`.
    ///
    /// # Errors
    /// [`Error::Key`] when a new key cannot be generated (the old one keeps signing).
    pub fn rotate_signing_key(&self) -> Result<String> {
        let kid = self
            .state
            .idp
            .signing_keys
            .rotate()
            .ok_or_else(|| Error::key("generate a new signing key", None))?;
        tracing::debug!(kid = %kid, "helseid emulator rotated its signing key");
        Ok(kid)
    }

    /// Withdraws the signing keys that [`rotate_signing_key`](Self::rotate_signing_key)
    /// replaced: they leave the JWKS, and the emulator's APIs refuse their tokens from
    /// now on, even tokens they verified and cached before (their verifiers are rebuilt
    /// before this returns). Returns how many keys were withdrawn.
    pub fn retire_old_signing_keys(&self) -> usize {
        let retired = self.state.idp.signing_keys.retire();
        // New layers read the keys again and keep no token verified with a retired key.
        self.verifiers.rebuild();
        self.state.msh.verifier.rebuild();
        tracing::debug!(retired, "helseid emulator retired its old signing keys");
        retired
    }

    /// The `kid`s of the emulator's published signing keys, the one that signs first.
    pub fn signing_kids(&self) -> Vec<String> {
        self.state.idp.signing_keys.kids()
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

    /// Checks an access token issued by this emulator: the signature (with one of its
    /// published keys: the current one, or one rotated out and not yet retired),
    /// `typ: at+jwt`, `iss`, and `exp` (with 5 seconds of leeway). Returns its claims.
    /// (Its APIs check more, with `helseid::verify`: the audience, the scope, DPoP.)
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
        // The API's nonces are its verifier's, stateless under a secret of its own.
        self.verifiers.cpapi.rebuild();
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

/// The verifiers of CPE (Bearer tokens with [`cpe::CPE_SCOPE`]) and the
/// CommunicationParty API v2 (DPoP-bound tokens with [`CPAPI_SCOPE`], its own nonce when
/// `cpapi_nonce`), both for the audience `nhn:cp-api`, each counting its requests, and
/// Selvbetjening's (DPoP-bound tokens with [`SELVBETJENING_SCOPE`]).
fn verifiers(state: &State, cpapi_nonce: bool) -> Result<listener::Verifiers> {
    use helseid::verify::Dpop;
    use server::verify::{Api, Verifier};
    let apis = Arc::clone(&state.apis);
    let cpe = Verifier::new(
        Arc::clone(&state.idp),
        Api {
            audience: cpe::CPE_AUDIENCE,
            scope: cpe::CPE_SCOPE,
            dpop: Dpop::Disabled,
        },
        false,
        move || apis.cpe.count(),
    )?;
    let apis = Arc::clone(&state.apis);
    let cpapi = Verifier::new(
        Arc::clone(&state.idp),
        Api {
            audience: cpe::CPE_AUDIENCE,
            scope: CPAPI_SCOPE,
            dpop: Dpop::Required,
        },
        cpapi_nonce,
        move || apis.cpapi.count(),
    )?;
    let selvbetjening = Verifier::new(
        Arc::clone(&state.idp),
        Api {
            audience: selvbetjening::AUDIENCE,
            scope: SELVBETJENING_SCOPE,
            dpop: Dpop::Required,
        },
        false,
        || {},
    )?;
    Ok(listener::Verifiers {
        cpe,
        cpapi,
        selvbetjening,
    })
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
        profile,
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
    if let Some(orgnr) = &profile.supplier_orgnr
        && !tenancy::is_orgnr(orgnr)
    {
        return Err(Error::setting(
            "supplier_orgnr",
            format!("client `{client_id}`: `{orgnr}` is not nine digits"),
        ));
    }
    for (name, value) in [
        ("client_name", &profile.name),
        ("sfm_id", &profile.sfm_id),
        ("sfm_journal_id", &profile.journal_id),
    ] {
        if let Some(value) = value
            && (value.is_empty() || value.chars().any(char::is_control))
        {
            return Err(Error::setting(
                name,
                format!("client `{client_id}`: must be non-empty text without control characters"),
            ));
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
        profile,
    })
}
