//! The Meldingstjener's error answers: the document's `ErrorMessage` with a status, and
//! the GUIDs it hands out (message ids, request ids).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::apis::msh::model::ErrorMessage;

/// `errorCode` of a validation error.
pub(crate) const VALIDATION: i32 = 1000;

/// A new random GUID (version 4), lowercase with dashes.
pub(crate) fn new_guid() -> String {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    // aws-lc-rs's system random source does not fail on the platforms it builds for.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An error answer: the status and the document's `ErrorMessage`.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    error: String,
    pub(crate) code: i32,
    pub(crate) validation: Option<Vec<String>>,
}

impl Failure {
    /// 400, a malformed request: each problem in `validationErrors`.
    pub(crate) fn validation(problems: Vec<String>) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            error: "The request is not valid; see validationErrors".to_owned(),
            code: VALIDATION,
            validation: Some(problems),
        }
    }

    /// 403 for HER-ids the client may not act for.
    pub(crate) fn forbidden(her_ids: &[String]) -> Self {
        Failure {
            status: StatusCode::FORBIDDEN,
            error: format!("Not authorized for HerId(s): {}", her_ids.join(", ")),
            code: 0,
            validation: None,
        }
    }

    pub(crate) fn other(status: StatusCode, error: String) -> Self {
        Failure {
            status,
            error,
            code: 0,
            validation: None,
        }
    }

    /// 404 for a message id the emulator does not hold.
    pub(crate) fn not_found(id: &str) -> Self {
        Failure::other(StatusCode::NOT_FOUND, format!("No message has id {id}"))
    }

    /// 403 for a client that is neither the message's sender nor a receiver.
    pub(crate) fn not_yours(id: &str) -> Self {
        Failure::other(
            StatusCode::FORBIDDEN,
            format!(
                "Not authorized for message {id}: the client acts for neither its sender \
                 nor a receiver"
            ),
        )
    }

    /// The error in one line.
    pub(crate) fn describe(&self) -> String {
        match &self.validation {
            Some(problems) => problems.join("; "),
            None => self.error.clone(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::debug!(
            status = self.status.as_u16(),
            error = %self.describe(),
            "helseid emulator refused an MSH request"
        );
        let body = ErrorMessage {
            error: Some(self.error),
            error_code: self.code,
            validation_errors: self.validation,
            stack_trace: None,
            request_id: new_guid(),
        };
        (self.status, Json(body)).into_response()
    }
}
