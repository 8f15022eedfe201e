//! HelseID's discovery document: fetched once per [`TokenEndpoint`], then kept.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde::Deserialize;

use super::TokenEndpoint;
use super::response::{describe, invalid};
use crate::config::check_url;
use crate::error::{Error, Result};
use crate::jose::{Want, json_object};

const DISCOVERY: &str = "discovery document";

/// The members of [`Discovery`], for an error that names the one that is wrong.
const MEMBERS: &[(&str, Want, bool)] = &[
    ("issuer", Want::String, true),
    ("token_endpoint", Want::String, true),
    ("jwks_uri", Want::String, false),
    ("grant_types_supported", Want::Strings, false),
    ("dpop_signing_alg_values_supported", Want::Strings, false),
];

/// The parts of HelseID's discovery document (OpenID Connect Discovery 1.0) this crate
/// uses.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Discovery {
    /// The issuer; must equal the configured authority.
    pub issuer: String,
    /// Where token requests go.
    pub token_endpoint: String,
    /// Where the issuer's signing keys are.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The grant types the issuer supports.
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    /// The DPoP proof algorithms the issuer supports.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
}

impl TokenEndpoint {
    /// The discovery document, fetched on first use and kept. A failed fetch is not
    /// kept: the next call tries again.
    ///
    /// # Errors
    /// [`Error::Transport`], [`Error::Timeout`], or [`Error::InvalidResponse`] for a
    /// document that is not a JSON object, lacks `issuer` or `token_endpoint`, has a
    /// member of the wrong type (the reason names the member, never its value), names
    /// another issuer, or names a token endpoint that is not `https`.
    pub async fn discovery(&self) -> Result<Arc<Discovery>> {
        self.inner
            .discovery
            .get_or_try_init(|| async {
                let issuer = self.inner.config.authority().issuer();
                let request = Request::get(self.inner.config.authority().discovery_url())
                    .header(header::ACCEPT, "application/json")
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| Error::config("authority", e.to_string()))?;
                let answer = self.send(DISCOVERY, request).await?;
                let (status, content_type, body) =
                    (answer.status, answer.content_type(), &answer.body);
                if !status.is_success() {
                    return Err(invalid(DISCOVERY, status, "expected HTTP 200"));
                }
                let doc: Discovery = json_object(body, MEMBERS).map_err(|reason| {
                    invalid(
                        DISCOVERY,
                        status,
                        format!("{reason} ({})", describe(content_type)),
                    )
                })?;
                if doc.issuer.trim_end_matches('/') != issuer {
                    return Err(invalid(
                        DISCOVERY,
                        status,
                        format!("it names issuer `{}`, expected `{issuer}`", doc.issuer),
                    ));
                }
                check_url("token_endpoint", &doc.token_endpoint)
                    .map_err(|e| invalid(DISCOVERY, status, e.to_string()))?;
                Ok(Arc::new(doc))
            })
            .await
            .cloned()
    }
}
