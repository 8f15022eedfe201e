//! HelseID for tower and hyper.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod assertion;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod key;
pub mod token;
pub mod transport;

#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub mod emulator;

pub use error::{Error, OAuthError, Result};
