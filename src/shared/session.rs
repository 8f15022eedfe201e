//! Refresh sessions shared by replicas: see [`RefreshSession::shared`].
//!
//! The session's token set lives sealed in Redis under a name keyed by the service's
//! key, the client id, the issuer and the session's id, with a version that grows with
//! every write. A replica that must refresh:
//! 1. reads the set in Redis; if it is newer than its own (a greater version), takes
//!    that set, and its access token when it is still good;
//! 2. otherwise takes the session's lease (a fencing value, `lock_ttl` long) and,
//!    holding it, reads once more, refreshes with the set's refresh token, and swaps
//!    the new set in only if Redis still holds the set it started from (one script),
//!    trying the swap again until it lands or the lease ends;
//! 3. or, when another replica holds the lease, waits for the set to change and takes
//!    the new one.
//!
//! While Redis does not answer, a replica does not refresh: another replica may hold
//! the lease, and HelseID rotates refresh tokens, so two replicas refreshing one
//! session at once would leave all but one with `invalid_grant` (and HelseID may end
//! the whole session on a reused refresh token). It waits for Redis instead, up to
//! `lock_wait`.
//!
//! [`RefreshSession::shared`]: crate::refresh::RefreshSession::shared

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{SharedCache, Unavailable, fence, unix_ms_now};
use crate::refresh::TokenSet;

/// How many spent refresh tokens of a session its sealed set remembers (by digest), to
/// tell an earlier rotation of the session from a new login.
const SPENT: usize = 16;

/// A session's place in Redis, and what this replica knows of it.
#[derive(Clone)]
pub(crate) struct SharedSession {
    shared: SharedCache,
    /// The Redis key of the sealed set.
    name: String,
    /// The Redis key of the refresh lease.
    lease: String,
    known: Arc<Mutex<Known>>,
}

impl std::fmt::Debug for SharedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.known();
        f.debug_struct("SharedSession")
            .field("version", &known.version)
            .field("pending", &known.pending.kind())
            .finish_non_exhaustive()
    }
}

/// What this replica knows of the session in Redis.
#[derive(Default)]
pub(crate) struct Known {
    /// The version of the set this replica holds, as Redis knew it (0: none yet).
    pub(crate) version: u64,
    /// The spent refresh tokens of the set this replica holds (digests, newest last).
    pub(crate) spent: Vec<String>,
    /// What this replica still has to write.
    pub(crate) pending: Pending,
}

/// What a replica still has to write to Redis.
#[derive(Default)]
pub(crate) enum Pending {
    /// Nothing: Redis holds this replica's set (or a newer one).
    #[default]
    Nothing,
    /// A new login, which replaces whatever Redis holds unless it is the same session.
    Login,
    /// A refresh of the set Redis held as these sealed bytes, whose swap did not land:
    /// written when Redis still holds them.
    Rotation {
        from: Option<Vec<u8>>,
        version: u64,
        spent: Vec<String>,
    },
}

impl Pending {
    fn kind(&self) -> &'static str {
        match self {
            Pending::Nothing => "nothing",
            Pending::Login => "login",
            Pending::Rotation { .. } => "rotation",
        }
    }
}

/// A set as it is sealed into Redis.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// Grows with every write: a set is newer than another exactly when its version is
    /// greater.
    version: u64,
    /// SHA-256 of the refresh tokens the session's earlier sets held (newest last).
    #[serde(default)]
    spent: Vec<String>,
    set: TokenSet,
}

/// What Redis holds for a session: the sealed bytes as read (the value a swap compares
/// against), and the set in them with its version and spent refresh tokens.
pub(crate) struct Held {
    pub(crate) raw: Option<Vec<u8>>,
    pub(crate) set: Option<TokenSet>,
    pub(crate) version: u64,
    pub(crate) spent: Vec<String>,
}

impl Held {
    /// Whether `set` belongs to the session Redis holds: it holds `set`'s refresh
    /// token, or spent it in an earlier rotation.
    pub(crate) fn is_same_session(&self, set: &TokenSet) -> bool {
        let Some(held) = &self.set else {
            return false;
        };
        let digest = refresh_digest(set);
        refresh_digest(held) == digest || self.spent.contains(&digest)
    }
}

/// The spent refresh tokens of a session after a refresh of `set`, whose session had
/// spent `spent` before.
pub(crate) fn spent_after(spent: &[String], set: &TokenSet) -> Vec<String> {
    let mut spent = spent.to_vec();
    spent.push(refresh_digest(set));
    let extra = spent.len().saturating_sub(SPENT);
    spent.drain(..extra);
    spent
}

/// The SHA-256 of a set's refresh token, in hex.
fn refresh_digest(set: &TokenSet) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        set.refresh_token().secret().as_bytes(),
    );
    crate::text::hex(digest.as_ref())
}

/// The lease on a session's refresh, held until `until` at the latest.
pub(crate) struct Lease {
    fence: String,
    /// When the lease ends at the latest, on this replica's clock (counted from before
    /// the lease was asked for, so never later than Redis ends it).
    pub(crate) until: Instant,
}

/// Swaps the set in only if the key still holds the expected bytes (`ARGV[1]`, empty
/// for none) or holds the new bytes already (an earlier try whose answer was lost),
/// then lets go of the lease if this replica (`ARGV[4]`) holds it.
const SWAP: &str = r"
local current = redis.call('GET', KEYS[1])
local swapped = 0
if current == ARGV[2] then
  swapped = 1
elseif (ARGV[1] == '' and not current) or current == ARGV[1] then
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
    /// The session `id` of the client `client_id` at the HelseID `issuer`.
    pub(crate) fn new(shared: &SharedCache, client_id: &str, issuer: &str, id: &str) -> Self {
        // The id may be anything the service uses for the user's session: it is keyed
        // and hashed, so that it is neither shown in Redis nor able to shape the key,
        // and two clients (or two HelseIDs) never share a session by its id.
        let name = shared.seal_key().name(|add| {
            for (tag, part) in [(1u8, client_id), (2, issuer), (3, id)] {
                add(&[tag]);
                add(&(part.len() as u64).to_be_bytes());
                add(part.as_bytes());
            }
        });
        let name = shared.redis_key("session", &name);
        SharedSession {
            shared: shared.clone(),
            lease: format!("{name}:lease"),
            name,
            known: Arc::default(),
        }
    }

    pub(crate) fn shared(&self) -> &SharedCache {
        &self.shared
    }

    /// What this replica knows of the session (held only briefly, never across an
    /// await).
    pub(crate) fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What Redis holds now. An entry that does not open, or is not a set of this
    /// format, is refused (counted, logged) and treated as none; the next swap
    /// replaces it.
    pub(crate) async fn read(&self) -> Result<Held, Unavailable> {
        let (raw, _) = self.shared.get_with_lock(&self.name, &self.lease).await?;
        let sealed = raw.as_deref().and_then(|raw| {
            let opened = self.shared.open(&self.name, raw)?;
            let sealed: Option<Sealed> = serde_json::from_slice(&opened).ok();
            if sealed.is_none() {
                self.shared.count_refused();
                tracing::warn!("refused a shared session entry that is not a token set");
            }
            sealed.filter(|sealed| !sealed.set.refresh_token().secret().is_empty())
        });
        Ok(match sealed {
            Some(sealed) => Held {
                raw,
                set: Some(sealed.set),
                version: sealed.version,
                spent: sealed.spent,
            },
            None => Held {
                raw,
                set: None,
                version: 0,
                spent: Vec::new(),
            },
        })
    }

    /// Takes the refresh lease. `Ok(None)` when another replica holds it.
    pub(crate) async fn take_lease(&self, fence: &str) -> Result<Option<Lease>, Unavailable> {
        let until = Instant::now() + self.shared.settings().lock_ttl;
        Ok(self.shared.lock(&self.lease, fence).await?.then(|| Lease {
            fence: fence.to_owned(),
            until,
        }))
    }

    /// A new fencing value for a lease; `None` when the random generator failed.
    pub(crate) fn new_fence() -> Option<String> {
        fence()
    }

    /// The Redis key of the refresh lease.
    pub(crate) fn lease_name(&self) -> &str {
        &self.lease
    }

    /// Lets go of the lease, if this replica still holds it.
    pub(crate) async fn release(&self, lease: &Lease) {
        self.shared.unlock(&self.lease, &lease.fence).await;
    }

    /// Puts `set` (version `version`, spent refresh tokens `spent`) in place of
    /// `expected` (the bytes read; `None`: nothing was there), and lets go of `lease`.
    /// `Ok(false)` when Redis held something else. Trying again after a lost answer is
    /// safe: a swap that landed answers `true` again.
    pub(crate) async fn swap(
        &self,
        expected: Option<&[u8]>,
        set: &TokenSet,
        version: u64,
        spent: &[String],
        lease: Option<&Lease>,
    ) -> Result<bool, Unavailable> {
        let sealed = self.seal(set, version, spent).ok_or(Unavailable)?;
        let keep_ms = set
            .refresh_token_expires_at()
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |at| {
                u64::try_from(at.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_sub(unix_ms_now())
                    .max(1)
            });
        let fence = lease.map(|lease| lease.fence.clone()).unwrap_or_default();
        let (name, lease) = (self.name.clone(), self.lease.clone());
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

    /// The sealed bytes of `set` at `version`; `None` when the random generator failed.
    fn seal(&self, set: &TokenSet, version: u64, spent: &[String]) -> Option<Vec<u8>> {
        let sealed = Sealed {
            version,
            spent: spent.to_vec(),
            set: set.clone(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&sealed).ok()?);
        self.shared.seal_key().seal(&self.name, &plain)
    }

    /// Waits until the held bytes differ from `raw` or the lease is gone; a failing
    /// Redis is asked again (a paused or restarting Redis is waited for), until
    /// `deadline`. `false` when the deadline passed.
    pub(crate) async fn wait_for_change(&self, raw: Option<&[u8]>, deadline: Instant) -> bool {
        let mut pause = Duration::from_millis(2);
        loop {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            if let Ok((now, leased)) = self.shared.get_with_lock(&self.name, &self.lease).await
                && (now.as_deref() != raw || !leased)
            {
                return true;
            }
        }
    }
}

/// A pause between tries of a failing Redis command: 2 ms, doubled up to 50 ms.
pub(crate) struct Retry {
    pause: Duration,
}

impl Retry {
    pub(crate) fn new() -> Self {
        Retry {
            pause: Duration::from_millis(2),
        }
    }

    /// Pauses before the next try; `false` (at once) when `deadline` has passed.
    pub(crate) async fn pause(&mut self, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(self.pause.min(deadline - Instant::now())).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        true
    }
}
