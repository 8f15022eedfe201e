//! HelseID itself: discovery, keys, the token endpoint and its grants, client
//! authentication, DPoP, logins, Selvbetjening, test tokens. Nothing here imports from
//! [`crate::apis`].

pub(crate) mod client_auth;
pub(crate) mod clients;
pub(crate) mod discovery;
pub(crate) mod dpop;
pub(crate) mod exchange;
pub(crate) mod issue;
pub(crate) mod login;
pub(crate) mod people;
pub(crate) mod refresh;
pub(crate) mod selvbetjening;
pub(crate) mod state;
pub(crate) mod tenancy;
pub(crate) mod test_token;
pub(crate) mod token;
pub(crate) mod verify;
