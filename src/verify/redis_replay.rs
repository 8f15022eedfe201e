//! [`RedisReplayStore`]: the `jti`s of DPoP proofs in Redis, shared by replicas
//! (features `verify` and `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::dpop::{ReplayFuture, ReplayStore};
use crate::error::{BoxError, Error, Result};

/// A [`ReplayStore`] on Redis, for replicas behind one name: a proof accepted by one is
/// refused by every other for as long as proofs are accepted.
///
/// Each proof is one `SET <prefix>:dpop:jti:<hash> 1 NX PX <window>`: the key is the
/// SHA-256 of the proof's `jti` (base64url), never the `jti` itself, and Redis forgets
/// it when the proof would be too old anyway.
///
/// **It fails closed.** When Redis does not answer within the
/// [command timeout](Self::command_timeout) or answers with an error, the request is
/// refused with 503 (the layer's [`Reason::Unavailable`](super::Reason::Unavailable),
/// logged at `warn`): a replay store that is down must not let replayed proofs through.
/// Bearer requests and every check before the proof's are unaffected. A service that
/// prefers to serve DPoP requests while Redis is down, accepting replays for that time,
/// can wrap this store in a closure that maps an error to `Ok(true)`.
///
/// Cheap to clone: clones share one multiplexed connection, made at the first proof and
/// made again after it breaks.
///
/// # Example
/// ```no_run
/// use helseid::verify::{RedisReplayStore, VerifyLayer};
///
/// # fn run() -> Result<(), helseid::Error> {
/// let replay = RedisReplayStore::new("redis://127.0.0.1:6379/")?.prefix("msh-api");
/// let layer = VerifyLayer::builder("https://helseid-sts.nhn.no")
///     .audience("nhn:msh")
///     .public_base_url("https://msh.example.no")
///     .replay_store(replay)
///     .build()?;
/// # drop(layer); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    inner: Arc<Inner>,
    prefix: Arc<str>,
    timeout: Duration,
}

struct Inner {
    client: redis::Client,
    /// Where Redis is, escaped, for log lines (never the URL: it may hold a password).
    server: String,
    connection: ArcSwapOption<MultiplexedConnection>,
    /// Held while a connection is made, so that callers make one, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("server", &self.inner.server)
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store on the Redis at `url` (`redis://host:port/db`, or `rediss://` with TLS
    /// when the `redis` crate is built with it). Nothing is connected yet.
    ///
    /// # Errors
    /// [`Error::Config`] when `url` is not a Redis URL (the message never quotes it: it
    /// may hold a password).
    pub fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|_| {
            Error::config(
                "replay store URL",
                "is not a Redis URL (redis://host:port/db)",
            )
        })?;
        let server = crate::text::untrusted(&client.get_connection_info().addr().to_string(), &[]);
        Ok(RedisReplayStore {
            inner: Arc::new(Inner {
                client,
                server,
                connection: ArcSwapOption::empty(),
                connecting: tokio::sync::Mutex::new(()),
            }),
            prefix: Arc::from("helseid"),
            timeout: Duration::from_millis(250),
        })
    }

    /// The first part of every key. Default: `helseid`. Under one prefix, a `jti` seen
    /// by one API is refused by every other API too (clients make a random `jti` for
    /// each proof, so only a replay meets this); give APIs that share one Redis
    /// prefixes of their own to keep them apart.
    pub fn prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.prefix = Arc::from(prefix.as_ref());
        self
    }

    /// The longest one proof's command may take (connecting included) before the
    /// request is refused with 503. Default: 250 ms.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The Redis key of a `jti`'s hash.
    fn key(&self, hash: &[u8; 32]) -> String {
        format!("{}:dpop:jti:{}", self.prefix, crate::jose::b64(hash))
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(connection) = &*self.inner.connection.load() {
            return Ok(MultiplexedConnection::clone(connection));
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(connection) = &*self.inner.connection.load() {
            return Ok(MultiplexedConnection::clone(connection));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.inner
            .connection
            .store(Some(Arc::new(connection.clone())));
        Ok(connection)
    }

    /// `SET key 1 NX PX ttl`: whether the key was set (the `jti` is new).
    async fn set_new(&self, key: &str, ttl_ms: u64) -> redis::RedisResult<bool> {
        let set = |mut connection: MultiplexedConnection| async move {
            let answer: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(answer.is_some())
        };
        match set(self.connection().await?).await {
            // A connection that broke (Redis restarted, say) is made again, and the
            // command sent once more: a SET NX that did not arrive set nothing.
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                self.inner.connection.store(None);
                set(self.connection().await?).await
            }
            other => other,
        }
    }

    async fn first_use_now(&self, hash: [u8; 32], ttl: Duration) -> Result<bool, BoxError> {
        let key = self.key(&hash);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let outcome = tokio::time::timeout(self.timeout, self.set_new(&key, ttl_ms)).await;
        match outcome {
            Ok(Ok(fresh)) => Ok(fresh),
            Ok(Err(e)) => {
                self.inner.connection.store(None);
                Err(format!(
                    "the DPoP replay store (Redis at {}) failed: {}",
                    self.inner.server,
                    crate::text::untrusted(&e.to_string(), &[])
                )
                .into())
            }
            Err(_) => {
                self.inner.connection.store(None);
                Err(format!(
                    "the DPoP replay store (Redis at {}) did not answer within {:?}",
                    self.inner.server, self.timeout
                )
                .into())
            }
        }
    }
}

impl ReplayStore for RedisReplayStore {
    fn first_use(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_> {
        Box::pin(self.first_use_now(key, ttl))
    }
}
