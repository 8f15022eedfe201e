//! The token request form (`application/x-www-form-urlencoded`).

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

use crate::server::response::{TokenError, quote};

/// The only content type the token endpoint accepts.
const FORM: &str = "application/x-www-form-urlencoded";

/// The parameters of a token request.
#[derive(Debug)]
pub(crate) struct TokenForm {
    fields: HashMap<String, String>,
    resources: Vec<String>,
}

impl TokenForm {
    /// Checks the content type and parses the body. A parameter given twice is an
    /// error (RFC 6749 section 3.2), except `resource` (RFC 8707), which is collected.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, TokenError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case(FORM) {
            let got = if content_type.is_empty() {
                "none".to_owned()
            } else {
                quote(content_type)
            };
            return Err(TokenError::invalid_request(format!(
                "the token request must be a POST with Content-Type {FORM} (got {got})"
            )));
        }
        let mut fields = HashMap::new();
        let mut resources = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if name == "resource" {
                resources.push(value.into_owned());
                continue;
            }
            if fields.contains_key(name.as_ref()) {
                return Err(TokenError::invalid_request(format!(
                    "parameter {} is given more than once",
                    quote(&name)
                )));
            }
            fields.insert(name.into_owned(), value.into_owned());
        }
        Ok(TokenForm { fields, resources })
    }

    /// A parameter's value; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The `resource` parameters, in order.
    pub(crate) fn resources(&self) -> &[String] {
        &self.resources
    }
}
