//! Refresh sessions shared by replicas: see [`RefreshSession::shared`].
//!
//! The session's token set lives sealed in Redis under the session's id. A replica
//! that must refresh:
//! 1. reads the set in Redis; if another replica has rotated it, takes that set, and
//!    its access token when it is still good;
//! 2. otherwise takes the session's lease (`SET NX PX`, a fencing value) and, holding
//!    it, reads once more, refreshes with the set's refresh token, and swaps the new set
//!    in only if Redis still holds the set it started from (one script);
//! 3. or, when another replica holds the lease, waits for the set to change and takes
//!    the new one.
//!
//! HelseID rotates refresh tokens, so two replicas refreshing one session at once would
//! leave all but one with `invalid_grant`; this way exactly one refreshes.
//!
//! [`RefreshSession::shared`]: crate::refresh::RefreshSession::shared

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{Polled, SharedCache, Unavailable, fence, unix_ms_now};
use crate::refresh::TokenSet;

/// A session's place in Redis.
#[derive(Clone, Debug)]
pub(crate) struct SharedSession {
    shared: SharedCache,
    /// The Redis key of the sealed set.
    name: String,
    /// The Redis key of the refresh lease.
    lease: String,
}

/// What Redis holds for a session: the sealed bytes as read (the value a swap compares
/// against) and the set in them.
pub(crate) struct Held {
    pub(crate) raw: Option<Vec<u8>>,
    pub(crate) set: Option<TokenSet>,
}

/// Swaps the set in only if the key still holds the expected bytes (`ARGV[1]`, empty
/// for none), then lets go of the lease if this replica (`ARGV[4]`) holds it.
const SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
local swapped = 0
if (ARGV[1] == '' and not current) or current == ARGV[1] then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
  swapped = 1
end
if redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return swapped
";

impl SharedSession {
    pub(crate) fn new(shared: &SharedCache, id: &str) -> Self {
        // The id may be anything the service uses for the user's session: it is hashed,
        // so that it is neither shown in Redis nor able to shape the key.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
        let name = shared.redis_key("session", &crate::text::hex(digest.as_ref()));
        SharedSession {
            shared: shared.clone(),
            lease: format!("{name}:lease"),
            name,
        }
    }

    pub(crate) fn shared(&self) -> &SharedCache {
        &self.shared
    }

    /// What Redis holds now. An entry that does not open is refused (counted, logged)
    /// and treated as none; the next swap replaces it.
    pub(crate) async fn read(&self) -> Result<(Held, bool), Unavailable> {
        let (raw, leased) = self.shared.get_with_lock(&self.name, &self.lease).await?;
        let set = raw.as_deref().and_then(|raw| {
            let opened = self.shared.open(&self.name, raw)?;
            let text = Zeroizing::new(String::from_utf8(opened.to_vec()).ok()?);
            TokenSet::from_json(&text).ok()
        });
        Ok((Held { raw, set }, leased))
    }

    /// Takes the refresh lease; returns its fencing value when this replica holds it.
    pub(crate) async fn take_lease(&self) -> Result<Option<String>, Unavailable> {
        let fence = fence();
        Ok(self
            .shared
            .lock(&self.lease, &fence)
            .await?
            .then_some(fence))
    }

    /// Lets go of the lease, if this replica still holds it.
    pub(crate) async fn release(&self, fence: &str) {
        self.shared.unlock(&self.lease, fence).await;
    }

    /// Puts `set` in place of `expected` (the bytes read; `None`: nothing was there),
    /// and lets go of the lease `fence`. `Ok(false)` when Redis held something else.
    pub(crate) async fn swap(
        &self,
        expected: Option<&[u8]>,
        set: &TokenSet,
        fence: &str,
    ) -> Result<bool, Unavailable> {
        let sealed = self
            .shared
            .seal_key()
            .seal(&self.name, set.to_json().as_bytes());
        let keep_ms = set
            .refresh_token_expires_at()
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |at| {
                (at.as_millis() as u64).saturating_sub(unix_ms_now()).max(1)
            });
        let (name, lease, fence) = (self.name.clone(), self.lease.clone(), fence.to_owned());
        let expected = expected.map(<[u8]>::to_vec).unwrap_or_default();
        self.shared
            .run("swap", move |mut redis| {
                let (name, lease, fence) = (name.clone(), lease.clone(), fence.clone());
                let (expected, sealed) = (expected.clone(), sealed.clone());
                Box::pin(async move {
                    let swapped: i64 = redis::Script::new(SWAP)
                        .key(&name)
                        .key(&lease)
                        .arg(expected)
                        .arg(sealed)
                        .arg(keep_ms)
                        .arg(&fence)
                        .invoke_async(&mut redis)
                        .await?;
                    Ok(swapped == 1)
                })
            })
            .await
    }

    /// Waits until the held bytes differ from `raw` or the lease is gone.
    pub(crate) async fn wait_for_change(
        &self,
        raw: Option<&[u8]>,
        deadline: Instant,
    ) -> Polled<()> {
        self.shared
            .poll(&self.name, &self.lease, deadline, |now, leased| {
                (now.as_deref() != raw || !leased).then_some(())
            })
            .await
    }
}
