//! HelseID for tower and hyper.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod key;

pub use error::{Error, OAuthError, Result};
