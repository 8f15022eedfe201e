//! Tokens a service refused (`401 invalid_token`) on a request that kept no copy for a
//! retry, so that the next request leaves them for a new token.
//!
//! A request sent with a token its service has already accepted keeps no copy of
//! itself and no reference to its layer (see `HelseIdLayerBuilder::retry_after_acceptance`).
//! When such a request is refused, its future notes the token's id here; the fronts
//! then no longer serve that token, and the next request, on the slow path, takes it
//! out of the cache (under the storm guard) and gets a new one.
//!
//! Token ids are unique in the process (`AccessToken::id`), so one table serves every
//! layer. It has a few slots, chosen by the id: a request's check reads one word of a
//! line that only a refusal writes. A slot another refusal overwrites loses nothing
//! for good: the token, if still served, is refused again and noted again.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in the table (one cache line of ids).
const SLOTS: usize = 8;

#[repr(align(64))]
struct Table([AtomicU64; SLOTS]);

/// Id 0 is never a token's (ids start at 1).
static REFUSED: Table = Table([const { AtomicU64::new(0) }; SLOTS]);

#[inline]
fn slot(id: u64) -> &'static AtomicU64 {
    &REFUSED.0[(id % SLOTS as u64) as usize]
}

/// Notes that a service refused the token with id `id`.
pub(crate) fn refuse(id: u64) {
    slot(id).store(id, Ordering::Release);
}

/// Whether a service refused the token with id `id` (one load).
#[inline]
pub(crate) fn is_refused(id: u64) -> bool {
    slot(id).load(Ordering::Acquire) == id
}

#[cfg(test)]
mod tests {
    use super::{SLOTS, is_refused, refuse};

    #[test]
    fn a_refused_id_is_seen_until_another_takes_its_slot() {
        // Ids far above what the tests' tokens reach, so that no test sees them.
        let base = u64::MAX - 10 * SLOTS as u64;
        let (a, b, other) = (base, base + 1, base + SLOTS as u64);
        assert!(!is_refused(a) && !is_refused(b));
        refuse(a);
        assert!(is_refused(a));
        assert!(!is_refused(b), "another slot is untouched");
        assert!(!is_refused(other), "the same slot, another id");
        refuse(other);
        assert!(is_refused(other));
        assert!(
            !is_refused(a),
            "overwritten: refused again when it is sent again"
        );
    }
}
