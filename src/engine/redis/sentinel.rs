//! Redis Sentinel (`--redis-sentinel`): which server is the primary now, and
//! a command connection that follows it through a failover.
//!
//! The sentinels are asked in turn for the primary's address
//! (`SENTINEL get-master-addr-by-name`), and the server named must call
//! itself a master (`ROLE`) before herald writes to it: during a failover a
//! sentinel may still name the server that died, or one just demoted. The
//! connection to the primary is kept until a call on it fails in a way that
//! says the primary may have changed (the socket broke, no answer in time,
//! or `READONLY` from a demoted server); the next call then asks the
//! sentinels again. Calls in flight when the primary dies fail with the
//! error, and the publish is answered `503`: herald never guesses whether
//! a write that got no answer was applied.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use super::store::{unavailable, CALL_TIMEOUT};
use crate::engine::EngineError;

/// How long connecting to a sentinel or a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The sentinels watching one primary, by the name they know it by.
pub struct Sentinels {
    clients: Vec<redis::Client>,
    master: String,
    /// The sentinel to ask first: the one that answered last.
    next: AtomicUsize,
}

impl Sentinels {
    /// `addrs` are `HOST:PORT` of the sentinels; `master` the monitored name.
    pub fn new(addrs: &[String], master: &str) -> Result<Self, EngineError> {
        let clients = addrs
            .iter()
            .map(|addr| {
                let url = if addr.contains("://") {
                    addr.clone()
                } else {
                    format!("redis://{addr}/")
                };
                redis::Client::open(url.as_str())
                    .map_err(|e| unavailable(format!("sentinel {addr}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(unavailable("no sentinel given"));
        }
        Ok(Self {
            clients,
            master: master.to_owned(),
            next: AtomicUsize::new(0),
        })
    }

    /// A client for the current primary, once a sentinel named it and it
    /// confirmed it is a master.
    pub async fn primary(&self) -> Result<redis::Client, EngineError> {
        let mut last_error = unavailable("no sentinel answered");
        let start = self.next.load(Ordering::Relaxed);
        for i in 0..self.clients.len() {
            let index = (start + i) % self.clients.len();
            match self.ask(&self.clients[index]).await {
                Ok(client) => {
                    self.next.store(index, Ordering::Relaxed);
                    return Ok(client);
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    async fn ask(&self, sentinel: &redis::Client) -> Result<redis::Client, EngineError> {
        let mut connection = connect(sentinel).await?;
        let named: Option<(String, u16)> = bounded(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master)
                .query_async(&mut connection),
        )
        .await?;
        let (host, port) = named
            .ok_or_else(|| unavailable(format!("no sentinel knows master {:?}", self.master)))?;
        let url = format!("redis://{}/", join_host_port(&host, port));
        let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
        let mut primary = connect(&client).await?;
        let role: Vec<Value> = bounded(redis::cmd("ROLE").query_async(&mut primary)).await?;
        match role.first() {
            Some(Value::BulkString(role)) if role == b"master" => Ok(client),
            _ => Err(unavailable(format!(
                "{host}:{port}, named primary by a sentinel, is not a master (yet)"
            ))),
        }
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect(client: &redis::Client) -> Result<MultiplexedConnection, EngineError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT));
    bounded(client.get_multiplexed_async_connection_with_config(&config)).await
}

async fn bounded<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(unavailable("no answer in time")),
    }
}

/// Whether `error` means the server may no longer be the primary.
fn primary_lost(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

struct Current {
    /// Counts connections made, so a failed call drops only its own.
    generation: u64,
    connection: MultiplexedConnection,
}

struct Inner {
    sentinels: Sentinels,
    current: Mutex<Option<Current>>,
    /// One discovery at a time; the others wait for its connection.
    discovering: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

/// A command connection to whichever server the sentinels name primary.
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

impl Failover {
    pub fn new(sentinels: Sentinels) -> Self {
        Self {
            inner: Arc::new(Inner {
                sentinels,
                current: Mutex::new(None),
                discovering: tokio::sync::Mutex::new(()),
                generations: AtomicU64::new(0),
            }),
        }
    }

    fn cached(&self) -> Option<(u64, MultiplexedConnection)> {
        self.inner
            .current
            .lock()
            .as_ref()
            .map(|c| (c.generation, c.connection.clone()))
    }

    async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        let _discovering = self.inner.discovering.lock().await;
        if let Some(found) = self.cached() {
            return Ok(found);
        }
        let found = async {
            let client = self.inner.sentinels.primary().await?;
            connect(&client).await
        }
        .await
        .map_err(|e| RedisError::from((ErrorKind::Io, "no Redis primary", e.to_string())))?;
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.inner.current.lock() = Some(Current {
            generation,
            connection: found.clone(),
        });
        tracing::info!("connected to the Redis primary named by the sentinels");
        Ok((generation, found))
    }

    fn forget(&self, generation: u64, error: &RedisError) {
        let mut current = self.inner.current.lock();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            tracing::warn!(%error, "lost the Redis primary; asking the sentinels again");
            *current = None;
        }
    }

    /// The sentinels this connection asks.
    pub fn sentinels(&self) -> &Sentinels {
        &self.inner.sentinels
    }
}

impl ConnectionLike for Failover {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.connection().await?;
            let result = connection.req_packed_command(cmd).await;
            if let Err(error) = &result {
                if primary_lost(error) {
                    self.forget(generation, error);
                }
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.connection().await?;
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            match &result {
                Err(error) if primary_lost(error) => self.forget(generation, error),
                Ok(values) => {
                    // A pipeline reports a server error inside its values.
                    for value in values {
                        if let Value::ServerError(error) = value {
                            let error = RedisError::from(error.clone());
                            if primary_lost(&error) {
                                self.forget(generation, &error);
                            }
                        }
                    }
                }
                Err(_) => {}
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_join_their_port_as_in_a_url() {
        assert_eq!(join_host_port("10.0.0.1", 6379), "10.0.0.1:6379");
        assert_eq!(join_host_port("::1", 6379), "[::1]:6379");
    }

    #[test]
    fn a_sentinel_list_may_not_be_empty() {
        assert!(Sentinels::new(&[], "main").is_err());
        assert!(Sentinels::new(&["127.0.0.1:26379".into()], "main").is_ok());
    }
}
