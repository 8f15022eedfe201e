//! The verifier's metrics (feature `metrics`), in the crate's OpenTelemetry conventions
//! (see [`crate::metrics`]), for all the process's layers together:
//!
//! | name | kind | unit | attributes |
//! |---|---|---|---|
//! | `helseid.verify.requests` | observable counter | `{request}` | `outcome` (`passed`, `refused`, `anonymous`), `error.type` (the [`Reason`] code) when refused |
//! | `helseid.verify.cache.hits` | observable counter | `{lookup}` | (verified tokens found in the cache, still valid) |
//! | `helseid.verify.cache.misses` | observable counter | `{lookup}` | (tokens verified in full) |
//! | `helseid.verify.key_fetches` | counter | `{fetch}` | `helseid.issuer`, `outcome` (`success`, `empty`, `failure`) |
//!
//! A request that passes, and a cache hit, bump a counter of the current thread's own
//! (no locked instruction, no cache line two cores write); the observable counters add
//! them up when the SDK collects. Without the feature, every function here is empty.

#[cfg(feature = "metrics")]
mod otel {
    use std::cell::Cell;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use opentelemetry::metrics::Counter;
    use opentelemetry::{InstrumentationScope, KeyValue};

    use super::super::answer::Reason;

    /// How many threads get a counter slot of their own; later threads share one more.
    const SLOTS: usize = 16;

    /// A counter in one cache line per thread slot: a thread bumps its own slot with a
    /// plain load and store; the threads beyond [`SLOTS`] share the last, atomically.
    pub(super) struct PerCore([Padded; SLOTS + 1]);

    #[repr(align(128))]
    struct Padded(AtomicU64);

    impl PerCore {
        const fn new() -> Self {
            PerCore([const { Padded(AtomicU64::new(0)) }; SLOTS + 1])
        }

        #[inline]
        pub(super) fn bump(&self) {
            let own = slot();
            if own < SLOTS {
                let slot = &self.0[own].0;
                slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            } else {
                self.0[SLOTS].0.fetch_add(1, Ordering::Relaxed);
            }
        }

        fn sum(&self) -> u64 {
            self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
        }
    }

    const UNNUMBERED: usize = usize::MAX;

    /// The current thread's slot: threads are numbered in the order they first count.
    #[inline]
    fn slot() -> usize {
        thread_local! {
            static NUMBER: Cell<usize> = const { Cell::new(UNNUMBERED) };
        }
        let number = NUMBER.get();
        if number != UNNUMBERED {
            return number;
        }
        number_this_thread(&NUMBER)
    }

    #[cold]
    #[inline(never)]
    fn number_this_thread(key: &'static std::thread::LocalKey<Cell<usize>>) -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, Ordering::Relaxed).min(UNNUMBERED - 1);
        key.set(number);
        number
    }

    pub(super) struct Counts {
        pub(super) passed: PerCore,
        pub(super) anonymous: AtomicU64,
        pub(super) refused: [AtomicU64; Reason::ALL.len()],
        pub(super) hits: PerCore,
        pub(super) misses: AtomicU64,
    }

    pub(super) static COUNTS: Counts = Counts {
        passed: PerCore::new(),
        anonymous: AtomicU64::new(0),
        refused: [const { AtomicU64::new(0) }; Reason::ALL.len()],
        hits: PerCore::new(),
        misses: AtomicU64::new(0),
    };

    pub(super) struct Instruments {
        pub(super) key_fetches: Counter<u64>,
    }

    /// The instruments, made (and the observable ones registered) at the first call,
    /// from the meter provider in place then.
    pub(super) fn instruments() -> &'static Instruments {
        static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
        INSTRUMENTS.get_or_init(|| {
            let meter = opentelemetry::global::meter_with_scope(
                InstrumentationScope::builder("helseid")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            );
            let _ = meter
                .u64_observable_counter("helseid.verify.requests")
                .with_description("Requests checked by helseid::verify, by outcome")
                .with_unit("{request}")
                .with_callback(|observer| {
                    let c = &COUNTS;
                    observer.observe(c.passed.sum(), &[KeyValue::new("outcome", "passed")]);
                    observer.observe(
                        c.anonymous.load(Ordering::Relaxed),
                        &[KeyValue::new("outcome", "anonymous")],
                    );
                    for (reason, count) in Reason::ALL.iter().zip(&c.refused) {
                        let count = count.load(Ordering::Relaxed);
                        if count > 0 {
                            observer.observe(
                                count,
                                &[
                                    KeyValue::new("outcome", "refused"),
                                    KeyValue::new("error.type", reason.as_str()),
                                ],
                            );
                        }
                    }
                })
                .build();
            let _ = meter
                .u64_observable_counter("helseid.verify.cache.hits")
                .with_description("Verified tokens found in helseid::verify's cache")
                .with_unit("{lookup}")
                .with_callback(|observer| observer.observe(COUNTS.hits.sum(), &[]))
                .build();
            let _ = meter
                .u64_observable_counter("helseid.verify.cache.misses")
                .with_description("Tokens helseid::verify verified in full")
                .with_unit("{lookup}")
                .with_callback(|observer| {
                    observer.observe(COUNTS.misses.load(Ordering::Relaxed), &[]);
                })
                .build();
            Instruments {
                key_fetches: meter
                    .u64_counter("helseid.verify.key_fetches")
                    .with_description("Fetches of an issuer's JWKS by helseid::verify")
                    .with_unit("{fetch}")
                    .build(),
            }
        })
    }
}

use super::answer::Reason;

/// Makes the instruments (at a layer's build), so that they are registered with the
/// provider in place then.
pub(crate) fn register() {
    #[cfg(feature = "metrics")]
    let _ = otel::instruments();
}

/// Counts a request that passed.
#[inline]
pub(crate) fn passed() {
    #[cfg(feature = "metrics")]
    otel::COUNTS.passed.bump();
}

/// Counts a request without credentials let through (optional authentication).
pub(crate) fn anonymous() {
    #[cfg(feature = "metrics")]
    otel::COUNTS
        .anonymous
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a refused request.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn refused(reason: Reason) {
    #[cfg(feature = "metrics")]
    if let Some(count) = otel::COUNTS.refused.get(reason as usize) {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts a verified token found in the cache.
#[inline]
pub(crate) fn cache_hit() {
    #[cfg(feature = "metrics")]
    otel::COUNTS.hits.bump();
}

/// Counts a token verified in full.
pub(crate) fn cache_miss() {
    #[cfg(feature = "metrics")]
    otel::COUNTS
        .misses
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a JWKS fetch of `issuer` that ended with `outcome` (`success`, `empty`,
/// `failure`).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn key_fetch(issuer: &str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    otel::instruments().key_fetches.add(
        1,
        &[
            opentelemetry::KeyValue::new("helseid.issuer", issuer.to_owned()),
            opentelemetry::KeyValue::new("outcome", outcome),
        ],
    );
}
