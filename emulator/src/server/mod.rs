//! What the rooms share: the state, answers and problem bodies, errors, forms, faults,
//! the Swagger UI.

pub(crate) mod error;
pub(crate) mod faults;
pub(crate) mod form;
pub(crate) mod listener;
pub(crate) mod response;
pub(crate) mod state;
pub(crate) mod swagger;
pub(crate) mod verify;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock skew allowed when checking `exp`, `nbf` and `iat`, in seconds.
pub(crate) const LEEWAY: i64 = 5;

/// The current time in seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Locks a mutex, carrying on after a panic elsewhere (the data stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installs jsonwebtoken's aws-lc-rs provider; jsonwebtoken panics at the first
/// verification otherwise. A provider installed earlier (by anyone) is kept.
pub(crate) fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
