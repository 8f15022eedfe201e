//! HelseID for tower and hyper: tokens from Norsk Helsenett's identity provider for any
//! Rust service.
//!
//! [HelseID](https://utviklerportal.nhn.no) is the OAuth 2.0 / OpenID Connect provider
//! of the Norwegian health sector. A registered system authenticates with a client
//! assertion, a JWT signed with its private key (`private_key_jwt`), and gets access
//! tokens for NHN's APIs. This crate
//!
//! - reads the client configuration file from HelseID's self-service portal
//!   ([`config`]), the private JWK in it ([`key`]);
//! - signs client assertions exactly as HelseID wants them ([`assertion`]): `aud` is
//!   the issuer, each assertion is used once, tenancy goes in `assertion_details`;
//! - gets tokens from the token endpoint over any tower HTTP service ([`endpoint`]),
//!   by default hyper-util with rustls (`transport`, feature `transport`);
//! - caches them ([`cache`]: single flight, refresh ahead, back-off) and attaches them
//!   to the requests of any tower/hyper service ([`auth`]: [`HelseIdLayer`]);
//! - binds tokens to a key with DPoP (RFC 9449, [`dpop`]): one setting of the layer,
//!   and every request carries a fresh proof; HelseID's and the APIs' nonce challenges
//!   are answered;
//! - exchanges the tokens a service receives for downstream tokens ([`exchange`], RFC
//!   8693, as SFM does) and renews users' tokens with rotating refresh tokens
//!   ([`refresh`]);
//! - calls NHN's CommunicationParty Events API through typed functions that progenitor
//!   generates from `openapi/cpe.json`, sent through the same tower stack ([`cpe`],
//!   feature `cpe`), and its successor, the CommunicationParty API v2, with DPoP-bound
//!   tokens ([`cpapi`], feature `cpapi`);
//! - comes with a strict local HelseID + CPE + CP API v2 emulator, the
//!   `helseid-emulator` package, which a service's tests add as a dev-dependency, so
//!   that everything runs, and is tested, without a registration at NHN.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use helseid::HelseIdLayer;
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::TokenEndpoint;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // The file from HelseID's self-service portal: client id, authority, scopes, key.
//! let endpoint = TokenEndpoint::new(ClientConfig::from_file("helseid-client.json")?)?;
//! let client = ServiceBuilder::new()
//!     .layer(HelseIdLayer::new(endpoint))
//!     .service(helseid::transport::https_client::<Full<Bytes>>()?);
//!
//! // Every request now carries `Authorization: Bearer <token>`; acting for an
//! // organisation is one extension away.
//! let mut request = http::Request::get("https://cpe.test.grunndata.nhn.no/CommunicationPartyEvents")
//!     .body(Full::new(Bytes::new()))?;
//! request.extensions_mut().insert("999999999:888888888".parse::<helseid::assertion::Tenant>()?);
//! let response = client.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! # Features
//! | feature     | default | what it adds |
//! |-------------|---------|--------------|
//! | `transport` | yes     | `transport`: the default HTTPS client (hyper-util, rustls with aws-lc-rs, web PKI roots) |
//! | `cpe`       | no      | `cpe`: the typed CPE client (progenitor in `build.rs`) |
//! | `cpapi`     | no      | `cpapi`: the typed CommunicationParty API v2 client, with DPoP |
//! | `redis`     | no      | `shared`: a second cache level on Redis for a fleet of replicas, and shared refresh sessions |
//! | `metrics`   | no      | [`metrics`] recorded through the OpenTelemetry API |
//! | `login`     | no      | `login`: log a user in (PAR, PKCE, DPoP, a loopback redirect, ID token validation) |
//! | `mirror`    | no      | `mirror`: a local copy of the register, kept up to date from the event feed (implies `cpapi`) |
//! | `sqlite`    | no      | `mirror::SqliteStore`: the copy in a SQLite database (rusqlite, SQLite bundled) |
//!
//! A service that brings its own HTTP client: `default-features = false`, and
//! [`TokenEndpointBuilder::http_service`](endpoint::TokenEndpointBuilder::http_service).
//! The emulator and the `helseid` command line are packages of their own
//! (`helseid-emulator`, `helseid-cli`).
//!
//! # Secrets
//! Private keys, client assertions, access and refresh tokens never appear in `Debug`,
//! `Display`, logs or errors. Their accessors (`secret()`, `as_str()`) carry a warning.
//!
//! # Minimum supported Rust version
//! Rust 1.88.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assertion;
pub mod auth;
pub mod cache;
pub mod config;
#[cfg(feature = "cpapi")]
#[cfg_attr(docsrs, doc(cfg(feature = "cpapi")))]
pub mod cpapi;
#[cfg(feature = "cpe")]
#[cfg_attr(docsrs, doc(cfg(feature = "cpe")))]
pub mod cpe;
pub mod dpop;
pub mod endpoint;
pub mod error;
pub mod exchange;
mod jose;
pub mod key;
#[cfg(feature = "login")]
#[cfg_attr(docsrs, doc(cfg(feature = "login")))]
pub mod login;
pub mod metrics;
#[cfg(feature = "mirror")]
#[cfg_attr(docsrs, doc(cfg(feature = "mirror")))]
pub mod mirror;
pub mod private_file;
pub mod refresh;
mod rfc3339;
#[cfg(feature = "transport")]
#[cfg_attr(docsrs, doc(cfg(feature = "transport")))]
pub mod selvbetjening;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod shared;
pub mod text;
pub mod token;
#[cfg(feature = "transport")]
#[cfg_attr(docsrs, doc(cfg(feature = "transport")))]
pub mod transport;
#[cfg(any(feature = "cpe", feature = "cpapi"))]
mod typed;
#[cfg(feature = "verify")]
#[cfg_attr(docsrs, doc(cfg(feature = "verify")))]
pub mod verify;

pub use auth::{HelseId, HelseIdLayer};
pub use cache::TokenCache;
pub use error::{Error, IdTokenCheck, LoginError, OAuthError, OAuthErrorCode, Result};

/// The README's examples, and those of every page in `docs/`, are compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/architecture.md")]
struct ArchitectureDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/cli.md")]
struct CliDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/emulator.md")]
struct EmulatorDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/fleet.md")]
struct FleetDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/login.md")]
struct LoginDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/metrics.md")]
struct MetricsDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/mirror.md")]
struct MirrorDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/performance.md")]
struct PerformanceDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/security.md")]
struct SecurityDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/tokens.md")]
struct TokensDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/typed-clients.md")]
struct TypedClientsDocDoctests;
