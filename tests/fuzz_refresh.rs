//! Fuzzing the times of stored and received token sets (`helseid::refresh`), as
//! `tests/fuzz.rs` fuzzes the parsers: lifetimes and expiries anywhere in `u64` (the
//! ends above all: 1e19, `u64::MAX`), through every reader of a set's times, a session
//! and its layer. For every input: no panic (no unchecked `Instant`/`SystemTime`
//! arithmetic), and what is stored reads back the same.
//!
//! The long run, a million inputs:
//!
//! ```text
//! PROPTEST_CASES=1000000 cargo nextest run -p helseid --all-features -E 'binary(fuzz_refresh)' --release
//! ```

#[path = "support/fuzz.rs"]
mod fuzz_support;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helseid::config::ClientConfig;
use helseid::endpoint::TokenEndpoint;
use helseid::key::{Algorithm, PrivateJwk};
use helseid::refresh::{RefreshSession, TokenSet};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Seconds anywhere in `u64`, the ends and the edges of `i64` and of 100 years more
/// often than chance would give them.
fn seconds() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        Just(10_000_000_000_000_000_000),
        Just(100 * 365 * 24 * 3600),
        Just(100 * 365 * 24 * 3600 + 1),
        0u64..=4_000_000_000,
        any::<u64>(),
    ]
}

/// A token set document: the members that carry times, each absent or any number of
/// seconds, the rest as a login gives them.
fn token_set() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(seconds()),
        proptest::option::of(seconds()),
        proptest::option::of(seconds()),
        proptest::option::of(seconds()),
    )
        .prop_map(|(expires_in, rt_expires_in, expires_at, rt_expires_at)| {
            let mut set = json!({
                "access_token": "access-token-secret",
                "token_type": "Bearer",
                "refresh_token": "refresh-token-secret",
                "scope": "openid offline_access",
            });
            for (name, value) in [
                ("expires_in", expires_in),
                ("rt_expires_in", rt_expires_in),
                ("expires_at", expires_at),
                ("refresh_token_expires_at", rt_expires_at),
            ] {
                if let Some(value) = value {
                    set[name] = json!(value);
                }
            }
            set
        })
}

/// A token endpoint that is never asked (the layer only seeds its cache).
fn endpoint() -> TokenEndpoint {
    static CONFIG: OnceLock<ClientConfig> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| {
            ClientConfig::builder()
                .client_id("fuzz-client")
                .authority_url("https://helseid.test")
                .scopes(["s"])
                .private_jwk(&PrivateJwk::generate_ec(Algorithm::ES256).expect("EC"))
                .build()
                .expect("config")
        })
        .clone();
    TokenEndpoint::builder(config)
        .token_endpoint("https://helseid.test/connect/token")
        .build()
        .expect("endpoint")
}

/// Every reader of a set's times, without a panic; the times make sense.
fn read_times(set: &TokenSet) {
    if let Some(token) = set.access_token() {
        assert!(token.expires_in() > Duration::ZERO);
        let _ = token.expires_at();
    }
    let expired = set.is_refresh_token_expired();
    if let Some(at) = set.refresh_token_expires_at() {
        assert!(at >= UNIX_EPOCH);
        if !expired {
            // Not expired: its time is not in the past (to the second).
            assert!(at + Duration::from_secs(1) >= SystemTime::now());
        }
    }
}

proptest! {
    #![proptest_config(fuzz_support::config())]

    #[test]
    fn fuzz_token_set_times(document in token_set()) {
        let set = TokenSet::from_json(&document.to_string()).expect("a token set");
        read_times(&set);
        // Stored (as a FileStore or the shared cache writes it) and read back: the
        // same times, read without a panic.
        let stored = set.to_json();
        let again = TokenSet::from_json(&stored).expect("reads back");
        read_times(&again);
        prop_assert_eq!(again.refresh_token_expires_at(), set.refresh_token_expires_at());
        prop_assert_eq!(
            again.access_token().is_some(),
            set.access_token().is_some()
        );
        let shown = format!("{set:?}");
        prop_assert!(!shown.contains("secret"), "{}", shown);
    }

    #[test]
    fn fuzz_session_from_stored_times(document in token_set()) {
        let set = TokenSet::from_json(&document.to_string()).expect("a token set");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // A session and its layer from the set: the current access token is put in
            // the layer's cache with its expiry, whatever it is.
            let session = RefreshSession::new(endpoint(), set);
            let _layer = session.layer().await;
            let held = session.token_set().await.expect("the set");
            read_times(&held);
        });
    }
}
