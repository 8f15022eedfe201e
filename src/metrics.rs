//! Metrics in OpenTelemetry's conventions (feature `metrics`).
//!
//! The crate records through the `opentelemetry` API only: every instrument is a
//! no-op until the service installs an SDK's meter provider
//! (`opentelemetry::global::set_meter_provider`). Install it before the first token
//! request: the instruments are made then, from the provider in place at that moment.
//! The meter is named `helseid`, with the crate's version.
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `helseid.token.requests` | counter | `{request}` | `oauth.grant_type`, `outcome` (`success`, `failure`), `error.type` on failure |
//! | `helseid.token.request.duration` | histogram | `s` | `oauth.grant_type`, `outcome` |
//! | `helseid.cache.hits` | observable counter | `{lookup}` | `helseid.cache.level` (`local`, `shared`) |
//! | `helseid.cache.misses` | observable counter | `{lookup}` | `helseid.cache.level` |
//! | `helseid.cache.refreshes_ahead` | counter | `{refresh}` | |
//! | `helseid.cache.backoffs` | counter | `{request}` | (requests refused at once while the cache backs off) |
//! | `helseid.http.retries` | counter | `{retry}` | `helseid.retry.reason` (`invalid_token`, `dpop_nonce`) |
//! | `helseid.shared.lock_waits` | counter | `{wait}` | (waits for another replica's fetch or refresh) |
//! | `helseid.shared.available` | gauge | `1` | (1 while Redis answers, 0 after a failure) |
//! | `helseid.key.expiry` | gauge | `d` | `oauth.client_id` (days until the client's key expires) |
//!
//! Warm lookups are counted by the caches' own per-core counters and read by the
//! observable counters when the SDK collects: a cached token costs nothing more with
//! metrics on.

#[cfg(feature = "metrics")]
mod otel {
    use std::sync::OnceLock;
    use std::time::Duration;

    use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
    use opentelemetry::{InstrumentationScope, KeyValue};

    pub(super) struct Instruments {
        pub(super) requests: Counter<u64>,
        pub(super) duration: Histogram<f64>,
        pub(super) refreshes_ahead: Counter<u64>,
        pub(super) backoffs: Counter<u64>,
        pub(super) retries: Counter<u64>,
        #[cfg(feature = "redis")]
        pub(super) lock_waits: Counter<u64>,
        #[cfg(feature = "redis")]
        pub(super) available: Gauge<u64>,
        pub(super) key_expiry: Gauge<f64>,
    }

    pub(super) fn meter() -> Meter {
        opentelemetry::global::meter_with_scope(
            InstrumentationScope::builder("helseid")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
    }

    pub(super) fn instruments() -> &'static Instruments {
        static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
        INSTRUMENTS.get_or_init(|| {
            let meter = meter();
            Instruments {
                requests: meter
                    .u64_counter("helseid.token.requests")
                    .with_description("Token requests made to HelseID")
                    .with_unit("{request}")
                    .build(),
                duration: meter
                    .f64_histogram("helseid.token.request.duration")
                    .with_description("Duration of token requests to HelseID")
                    .with_unit("s")
                    // In seconds: the SDK's default buckets (0, 5, 10, ... 10000) are for
                    // milliseconds and would put every token request in the first one.
                    .with_boundaries(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ])
                    .build(),
                refreshes_ahead: meter
                    .u64_counter("helseid.cache.refreshes_ahead")
                    .with_description("Background refreshes started before a token expired")
                    .with_unit("{refresh}")
                    .build(),
                backoffs: meter
                    .u64_counter("helseid.cache.backoffs")
                    .with_description("Requests refused at once while the cache backs off")
                    .with_unit("{request}")
                    .build(),
                retries: meter
                    .u64_counter("helseid.http.retries")
                    .with_description("Requests sent again with a new token or DPoP nonce")
                    .with_unit("{retry}")
                    .build(),
                #[cfg(feature = "redis")]
                lock_waits: meter
                    .u64_counter("helseid.shared.lock_waits")
                    .with_description("Waits for another replica's token fetch or refresh")
                    .with_unit("{wait}")
                    .build(),
                #[cfg(feature = "redis")]
                available: meter
                    .u64_gauge("helseid.shared.available")
                    .with_description("1 while the shared cache (Redis) answers, 0 after a failure")
                    .with_unit("1")
                    .build(),
                key_expiry: meter
                    .f64_gauge("helseid.key.expiry")
                    .with_description("Days until the client's key expires")
                    .with_unit("d")
                    .build(),
            }
        })
    }

    pub(super) fn token_request(grant: &'static str, error: Option<&'static str>, took: Duration) {
        let i = instruments();
        let mut attributes = vec![
            KeyValue::new("oauth.grant_type", grant),
            KeyValue::new(
                "outcome",
                if error.is_some() {
                    "failure"
                } else {
                    "success"
                },
            ),
        ];
        i.duration.record(took.as_secs_f64(), &attributes);
        if let Some(error) = error {
            attributes.push(KeyValue::new("error.type", error));
        }
        i.requests.add(1, &attributes);
    }

    pub(super) fn attributes(level: &'static str) -> [KeyValue; 1] {
        [KeyValue::new("helseid.cache.level", level)]
    }
}

/// Counts one token request and its duration.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn token_request(
    grant: &'static str,
    outcome: &crate::error::Result<impl Sized>,
    took: std::time::Duration,
) {
    #[cfg(feature = "metrics")]
    otel::token_request(grant, outcome.as_ref().err().map(error_type), took);
}

/// The `error.type` of a failed token request.
#[cfg(feature = "metrics")]
fn error_type(error: &crate::Error) -> &'static str {
    use crate::Error;
    match error {
        Error::OAuth { .. } => "oauth_error",
        Error::InvalidResponse { .. } => "invalid_response",
        Error::Timeout { .. } => "timeout",
        Error::Transport { .. } => "transport",
        Error::Dpop { .. } => "dpop",
        Error::Sign { .. } => "sign",
        Error::Config { .. } | Error::ConfigFile { .. } => "config",
        Error::SubjectToken { .. } => "subject_token",
        _ => "other",
    }
}

/// Registers the observable hit and miss counters of one cache level, read from
/// `read` (hits, misses) while it returns `Some`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn observe_lookups(
    level: &'static str,
    read: impl Fn() -> Option<(u64, u64)> + Send + Sync + Clone + 'static,
) {
    #[cfg(feature = "metrics")]
    {
        let meter = otel::meter();
        let hits = read.clone();
        let _ = meter
            .u64_observable_counter("helseid.cache.hits")
            .with_description("Token lookups answered by a cache level")
            .with_unit("{lookup}")
            .with_callback(move |observer| {
                if let Some((hits, _)) = hits() {
                    observer.observe(hits, &otel::attributes(level));
                }
            })
            .build();
        let _ = meter
            .u64_observable_counter("helseid.cache.misses")
            .with_description("Token lookups a cache level could not answer")
            .with_unit("{lookup}")
            .with_callback(move |observer| {
                if let Some((_, misses)) = read() {
                    observer.observe(misses, &otel::attributes(level));
                }
            })
            .build();
    }
}

/// Counts a background refresh started ahead of expiry.
pub(crate) fn refresh_ahead() {
    #[cfg(feature = "metrics")]
    otel::instruments().refreshes_ahead.add(1, &[]);
}

/// Counts a request refused at once while the cache backs off.
pub(crate) fn backoff() {
    #[cfg(feature = "metrics")]
    otel::instruments().backoffs.add(1, &[]);
}

/// Counts a request sent again, for `reason` (`invalid_token`, `dpop_nonce`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn retry(reason: &'static str) {
    #[cfg(feature = "metrics")]
    otel::instruments().retries.add(
        1,
        &[opentelemetry::KeyValue::new("helseid.retry.reason", reason)],
    );
}

/// Counts a wait for another replica.
#[cfg(feature = "redis")]
pub(crate) fn lock_wait() {
    #[cfg(feature = "metrics")]
    otel::instruments().lock_waits.add(1, &[]);
}

/// Records whether the shared cache answers.
#[cfg(feature = "redis")]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn shared_available(available: bool) {
    #[cfg(feature = "metrics")]
    otel::instruments()
        .available
        .record(u64::from(available), &[]);
}

/// Records the days until `client_id`'s key expires (negative once it has).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn key_expiry(client_id: &str, days: f64) {
    #[cfg(feature = "metrics")]
    otel::instruments().key_expiry.record(
        days,
        &[opentelemetry::KeyValue::new(
            "oauth.client_id",
            client_id.to_owned(),
        )],
    );
}
