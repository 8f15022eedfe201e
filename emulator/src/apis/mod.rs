//! The NHN APIs the emulator serves, behind the IdP: CPE, the CommunicationParty API v2,
//! and the register both read.

pub(crate) mod cpapi;
pub(crate) mod cpe;
pub(crate) mod msh;
pub(crate) mod register;
pub(crate) mod state;
