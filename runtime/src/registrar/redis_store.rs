//! The Redis (or Valkey) location store: the bindings of every AoR in one
//! server that several sipforge instances share, so a phone registered
//! through one instance is found by a `lookup` on another.
//!
//! - One key per AoR, `sipforge:loc:{<aor>}`: the braces are a Redis
//!   Cluster hash tag, so any key of one AoR added later lands in the same
//!   slot. The value is the AoR's bindings as a JSON array ([`Record`]).
//! - Expiry without per-field TTLs (Redis 7.4; Debian ships 7.0): each
//!   binding carries its `expires_at`, reads leave expired ones out, and
//!   the key expires (`EXAT`) with its last binding, so an AoR nobody
//!   refreshes disappears by itself. Writes drop the expired bindings.
//! - Atomic per AoR without server-side rules: read the value, [`apply`]
//!   the REGISTER in Rust (the one set of §10.3 rules, tested sans-IO),
//!   and write with a compare-and-set script that stores the result only
//!   if the value is still the one read; another instance's write in
//!   between makes the script refuse, and the update is tried again on
//!   the new value after a short random pause (up to 32 times, then a
//!   store error: 500).
//! - The connection is the redis crate's `ConnectionManager`: one
//!   multiplexed connection, reconnected by itself after a failure. Every
//!   call is bounded by a timeout; the caller (the network layer) turns a
//!   timeout into a store error, never a wait.

use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::binding::{Binding, apply};
use super::request::RegisterRequest;
use super::store::{AsyncStore, StoreError, StoreFuture};
use super::{Config, Received, Refusal};
use crate::transport::Transport;

/// The prefix of every key this store writes.
pub const KEY_PREFIX: &str = "sipforge:loc:";

/// How many times a REGISTER is applied again after another writer
/// changed its AoR in between (each time after a short random pause, so
/// that writers racing for one AoR spread out; the caller's timeout
/// bounds the whole).
const CAS_TRIES: u32 = 32;

/// A pause of up to `try_number` milliseconds, random enough that two
/// writers that collided do not collide again.
async fn back_off(try_number: u32) {
    use std::hash::{BuildHasher, RandomState};
    let spread = u64::from(try_number.clamp(1, 20)) * 1_000;
    let micros = RandomState::new().hash_one(std::time::Instant::now()) % spread;
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

/// Store `ARGV[2]` (expiring at unix second `ARGV[3]`), or delete the key
/// when `ARGV[2]` is empty, only if the key still holds `ARGV[1]` (empty:
/// the key did not exist). Returns 1 when written, 0 when the key changed.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
end
return 1
";

/// One binding as stored (the field names are the stored format: keep
/// them when the [`Binding`] changes, so instances of two versions can
/// share a server during a rollout).
#[derive(Serialize, Deserialize)]
struct Record {
    contact: String,
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<u16>,
    call_id: String,
    cseq: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reg_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    path: Vec<String>,
    /// `udp`, `tcp`, `tls`, `ws`, `wss`.
    transport: String,
    /// The source address of the REGISTER.
    received: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    registered_at: u64,
}

impl Record {
    fn of(b: &Binding) -> Record {
        Record {
            contact: b.contact.clone(),
            expires_at: b.expires_at,
            q: b.q,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            instance: b.instance.clone(),
            reg_id: b.reg_id,
            path: b.path.clone(),
            transport: b.received.transport.name().to_string(),
            received: b.received.addr,
            user_agent: b.user_agent.clone(),
            registered_at: b.registered_at,
        }
    }

    fn binding(self) -> Option<Binding> {
        Some(Binding {
            contact: self.contact,
            expires_at: self.expires_at,
            q: self.q,
            call_id: self.call_id,
            cseq: self.cseq,
            instance: self.instance,
            reg_id: self.reg_id,
            path: self.path,
            received: Received {
                transport: Transport::parse(&self.transport)?,
                addr: self.received,
            },
            user_agent: self.user_agent,
            registered_at: self.registered_at,
        })
    }
}

/// Bindings as the stored value.
pub fn encode(bindings: &[Binding]) -> String {
    let records: Vec<Record> = bindings.iter().map(Record::of).collect();
    // Plain strings and numbers: serialising cannot fail.
    serde_json::to_string(&records).unwrap_or_else(|_| "[]".into())
}

/// The stored value as bindings (expired ones included).
pub fn decode(value: &[u8]) -> Result<Vec<Binding>, StoreError> {
    let records: Vec<Record> = serde_json::from_slice(value)
        .map_err(|e| StoreError::new(format!("unreadable bindings: {e}")))?;
    records
        .into_iter()
        .map(|r| {
            let transport = r.transport.clone();
            r.binding()
                .ok_or_else(|| StoreError::new(format!("unknown transport `{transport}`")))
        })
        .collect()
}

/// The key of an AoR.
pub fn key_of(aor: &str) -> String {
    format!("{KEY_PREFIX}{{{aor}}}")
}

/// A location store in one Redis or Valkey server.
pub struct RedisStore {
    connection: ConnectionManager,
    script: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

fn store_error(e: redis::RedisError) -> StoreError {
    StoreError::new(format!("redis: {e}"))
}

impl RedisStore {
    /// A store for `url` (`redis://HOST:PORT/DB`, `rediss://` for TLS),
    /// connecting on first use and again after every failure; each
    /// operation and each connection attempt gives up after `timeout`.
    /// Must be called within a tokio runtime.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(store_error)?;
        Ok(RedisStore {
            connection,
            script: redis::Script::new(COMPARE_AND_SET),
        })
    }

    async fn get(&self, aor: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.connection.clone();
        redis::cmd("GET")
            .arg(key_of(aor))
            .query_async(&mut c)
            .await
            .map_err(store_error)
    }

    async fn register(
        &self,
        req: &RegisterRequest,
        now: u64,
        config: &Config,
    ) -> Result<Result<Vec<Binding>, Refusal>, StoreError> {
        let key = key_of(&req.aor);
        for try_number in 0..CAS_TRIES {
            if try_number > 0 {
                back_off(try_number).await;
            }
            let read = self.get(&req.aor).await?;
            let current = match &read {
                Some(value) => decode(value)?,
                None => Vec::new(),
            };
            let mut next = match apply(&current, req, now, config) {
                Ok(next) => next,
                Err(refusal) => return Ok(Err(refusal)),
            };
            next.retain(|b| b.is_live(now));
            let value = if next.is_empty() {
                String::new()
            } else {
                encode(&next)
            };
            let expires = next.iter().map(|b| b.expires_at).max().unwrap_or(now + 1);
            let mut c = self.connection.clone();
            let written: i64 = self
                .script
                .key(&key)
                .arg(read.unwrap_or_default())
                .arg(value)
                .arg(expires)
                .invoke_async(&mut c)
                .await
                .map_err(store_error)?;
            if written == 1 {
                return Ok(Ok(next));
            }
        }
        Err(StoreError::new(format!(
            "the bindings of {} kept changing while being updated",
            req.aor
        )))
    }

    async fn counts(&self) -> Result<(usize, usize), StoreError> {
        let mut c = self.connection.clone();
        let mut cursor: u64 = 0;
        let (mut aors, mut contacts) = (0, 0);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(store_error)?;
            if !keys.is_empty() {
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .map_err(store_error)?;
                for value in values.into_iter().flatten() {
                    aors += 1;
                    contacts += decode(&value).map_or(0, |b| b.len());
                }
            }
            if next == 0 {
                return Ok((aors, contacts));
            }
            cursor = next;
        }
    }
}

impl AsyncStore for RedisStore {
    fn lookup<'a>(&'a self, aor: &'a str, now: u64) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let Some(value) = self.get(aor).await? else {
                return Ok(Vec::new());
            };
            let mut bindings = decode(&value)?;
            bindings.retain(|b| b.is_live(now));
            Ok(bindings)
        })
    }

    fn save<'a>(
        &'a self,
        req: &'a RegisterRequest,
        now: u64,
        config: &'a Config,
    ) -> StoreFuture<'a, Result<Vec<Binding>, Refusal>> {
        Box::pin(self.register(req, now, config))
    }

    /// Nothing to do: a key expires with its last binding, and expired
    /// bindings of a live key are dropped by its next write.
    fn expire(&self, _now: u64) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    fn counts(&self) -> StoreFuture<'_, (usize, usize)> {
        Box::pin(RedisStore::counts(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(contact: &str, transport: Transport) -> Binding {
        Binding {
            contact: contact.into(),
            expires_at: 2_000,
            q: Some(500),
            call_id: "c1".into(),
            cseq: 7,
            instance: Some("<urn:uuid:1>".into()),
            reg_id: Some(1),
            path: vec!["<sip:edge.example.com;lr>".into()],
            received: Received {
                transport,
                addr: "[2001:db8::1]:5070".parse().unwrap(),
            },
            user_agent: Some("phone \"1\"".into()),
            registered_at: 1_000,
        }
    }

    #[test]
    fn bindings_survive_the_stored_form() {
        let bindings = vec![
            binding("sip:a@192.168.1.10", Transport::Udp),
            binding("sip:a@10.0.0.1;transport=tcp", Transport::Tcp),
            binding("sips:a@example.com", Transport::Tls),
            binding("sip:a@x.invalid;transport=ws", Transport::Ws),
        ];
        let value = encode(&bindings);
        assert_eq!(decode(value.as_bytes()).unwrap(), bindings);
    }

    #[test]
    fn unreadable_values_are_store_errors() {
        assert!(decode(b"not json").is_err());
        let bad =
            encode(&[binding("sip:a@h", Transport::Udp)]).replace("\"udp\"", "\"carrier-pigeon\"");
        assert!(
            decode(bad.as_bytes())
                .unwrap_err()
                .message
                .contains("carrier-pigeon")
        );
    }

    #[test]
    fn keys_share_a_cluster_slot_per_aor() {
        assert_eq!(
            key_of("sip:alice@example.com"),
            "sipforge:loc:{sip:alice@example.com}"
        );
    }
}
