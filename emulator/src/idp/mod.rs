//! HelseID itself: discovery, keys, the token endpoint and its grants, client
//! authentication, DPoP, logins, Selvbetjening, test tokens. Nothing here imports from
//! [`crate::apis`]; the APIs read what the IdP publishes (its discovery document and
//! JWKS, through `helseid::verify` as any API: `crate::server::verify`).
//!
//! It serves:
//!
//! - `GET /.well-known/openid-configuration`: the discovery document ([`discovery`]);
//! - `GET /.well-known/openid-configuration/jwks`: the emulator's own signing key;
//! - `POST /connect/token` ([`token`]): the `client_credentials`, token exchange
//!   (`urn:ietf:params:oauth:grant-type:token-exchange`, [`exchange`]), `refresh_token`
//!   ([`refresh`]) and `authorization_code` ([`login`]) grants, with `private_key_jwt`
//!   client authentication only ([`client_auth`]) and DPoP proofs ([`dpop`]);
//! - `POST /test-token`: user token sets for tests, emulator only ([`test_token`]);
//! - `POST /connect/par`, `GET /connect/authorize`, `GET /connect/endsession`, `POST
//!   /connect/revocation`: logins ([`login`]);
//! - `GET` and `POST /v1/client-secret`: Selvbetjening's key rotation ([`selvbetjening`]).

pub(crate) mod client_auth;
pub(crate) mod clients;
pub(crate) mod discovery;
pub(crate) mod dpop;
pub(crate) mod exchange;
pub(crate) mod issue;
pub(crate) mod keys;
pub(crate) mod login;
pub(crate) mod people;
pub(crate) mod refresh;
pub(crate) mod selvbetjening;
pub(crate) mod state;
pub(crate) mod tenancy;
pub(crate) mod test_token;
pub(crate) mod token;
