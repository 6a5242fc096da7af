//! The cluster's state in Redis, and the only code that writes it. Keys (under
//! `cluster.key_prefix`, default `camhub`):
//!
//! - `camhub:node:<node>`: this node is alive: `<instance> <advertise>`, with a TTL
//!   of `lease_ttl` that its owner renews (compare-and-renew).
//! - `camhub:nodes`: the set of node names that have joined (a name whose node
//!   key is gone is a dead node, and is pruned).
//! - `camhub:lease:<camera>`: the camera's owner: `<node> <fence>`, with a TTL of
//!   `lease_ttl`. Taken only when absent (`SET NX` semantics in a script that also
//!   draws the fencing token), renewed and released only by the holder (compare
//!   and renew, compare and delete).
//! - `camhub:fence`: the counter fencing tokens are drawn from: every lease ever
//!   granted has a larger token than the ones before it (a claimer also lifts it
//!   past every token it has seen, should Redis lose it).
//! - `camhub:cameras`: the cameras added or changed through any node's API (name
//!   to options as JSON, the API's body), or `removed` for a camera of the file
//!   removed through the API: merged over the file by every node.
//! - `camhub:epoch`: a random value set once; a new one means Redis restarted
//!   without its data (so a missing lease may still be running somewhere).
//!
//! TTLs are Redis's own clock (`PX`): node clocks never matter.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Takes the node key for this instance, or returns who holds it.
const JOIN: &str = r"
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return false";

/// Renews a key held with this value (1), or says it is not (0).
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// Deletes a key held with this value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Takes a free lease with a new fencing token (the token), or nothing (nil).
/// The token is above every token the claimer has seen (ARGV[3]), so tokens
/// keep rising even after Redis lost its data.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('INCR', KEYS[2])
if t <= tonumber(ARGV[3]) then
  t = tonumber(ARGV[3]) + 1
  redis.call('SET', KEYS[2], t)
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. t, 'PX', ARGV[2])
return t";

/// Adds a camera to the shared fleet unless its name is taken (in the shared
/// fleet, or in the file and not removed through the API): 1, or 0 if taken.
const ADD: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and v ~= 'removed' then return 0 end
if (not v) and ARGV[3] == '1' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// The store's epoch: set once (a new random one when Redis has lost its data).
const EPOCH: &str = r"
local e = redis.call('GET', KEYS[1])
if e then return e end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]";

/// One node's view of Redis: its connection and key names.
pub struct Store {
    conn: MultiplexedConnection,
    prefix: String,
    ttl_ms: u64,
}

/// A live node: its instance id and HTTP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub instance: String,
    pub advertise: String,
}

impl Node {
    fn value(&self) -> String {
        format!("{} {}", self.instance, self.advertise)
    }
    fn parse(v: &str) -> Option<Node> {
        let (instance, advertise) = v.split_once(' ')?;
        Some(Node { instance: instance.to_owned(), advertise: advertise.to_owned() })
    }
}

/// A camera's lease as stored: its owner and fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub fence: u64,
}

impl Lease {
    pub fn value(&self) -> String {
        format!("{} {}", self.node, self.fence)
    }
    fn parse(v: &str) -> Option<Lease> {
        let (node, fence) = v.rsplit_once(' ')?;
        Some(Lease { node: node.to_owned(), fence: fence.parse().ok()? })
    }
}

fn script(body: &str) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(body);
    c
}

pub type RResult<T> = Result<T, redis::RedisError>;

impl Store {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration, timeout: Duration) -> RResult<Store> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "timed out connecting")))??;
        Ok(Store { conn, prefix: prefix.to_owned(), ttl_ms: ttl.as_millis() as u64 })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }
    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn fence_key(&self) -> String {
        format!("{}:fence", self.prefix)
    }

    /// Takes this node's name: `Ok(None)`, or `Ok(Some(holder))` while another
    /// instance holds it.
    pub async fn join(&mut self, name: &str, me: &Node) -> RResult<Option<Node>> {
        let held: Option<String> = script(JOIN)
            .arg(2)
            .arg(self.key("node", name))
            .arg(self.nodes_key())
            .arg(me.value())
            .arg(self.ttl_ms)
            .arg(name)
            .query_async(&mut self.conn)
            .await?;
        Ok(held.and_then(|v| Node::parse(&v)))
    }

    /// Renews this node's key: false if it was lost (expired, or taken).
    pub async fn renew_node(&mut self, name: &str, me: &Node) -> RResult<bool> {
        let n: i64 = script(RENEW)
            .arg(1)
            .arg(self.key("node", name))
            .arg(me.value())
            .arg(self.ttl_ms)
            .query_async(&mut self.conn)
            .await?;
        Ok(n == 1)
    }

    /// Leaves: the node key and the name in the set, if they are this instance's.
    pub async fn leave(&mut self, name: &str, me: &Node) -> RResult<()> {
        let _: i64 =
            script(RELEASE).arg(1).arg(self.key("node", name)).arg(me.value()).query_async(&mut self.conn).await?;
        let _: i64 = redis::cmd("SREM").arg(self.nodes_key()).arg(name).query_async(&mut self.conn).await?;
        Ok(())
    }

    /// The live nodes; names whose key is gone are pruned from the set.
    pub async fn nodes(&mut self) -> RResult<BTreeMap<String, Node>> {
        let names: Vec<String> = redis::cmd("SMEMBERS").arg(self.nodes_key()).query_async(&mut self.conn).await?;
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.key("node", n)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.conn).await?;
        let mut live = BTreeMap::new();
        let mut dead = Vec::new();
        for (name, v) in names.into_iter().zip(values) {
            match v.as_deref().and_then(Node::parse) {
                Some(node) => {
                    live.insert(name, node);
                }
                None => dead.push(name),
            }
        }
        if !dead.is_empty() {
            let _: i64 = redis::cmd("SREM").arg(self.nodes_key()).arg(&dead).query_async(&mut self.conn).await?;
        }
        Ok(live)
    }

    /// The lease of each of `cameras` that has one.
    pub async fn leases(&mut self, cameras: &[&str]) -> RResult<BTreeMap<String, Lease>> {
        if cameras.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys: Vec<String> = cameras.iter().map(|c| self.key("lease", c)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.conn).await?;
        Ok(cameras
            .iter()
            .zip(values)
            .filter_map(|(c, v)| Some(((*c).to_owned(), Lease::parse(v.as_deref()?)?)))
            .collect())
    }

    /// Takes a free lease for `node`: its fencing token (above `seen`), or `None` (held).
    pub async fn claim(&mut self, camera: &str, node: &str, seen: u64) -> RResult<Option<u64>> {
        script(CLAIM)
            .arg(2)
            .arg(self.key("lease", camera))
            .arg(self.fence_key())
            .arg(node)
            .arg(self.ttl_ms)
            .arg(seen)
            .query_async(&mut self.conn)
            .await
    }

    /// The API's changes to the fleet: camera name to its options as JSON, or
    /// `removed` (a camera of the file removed through the API).
    pub async fn shared(&mut self) -> RResult<BTreeMap<String, String>> {
        redis::cmd("HGETALL").arg(format!("{}:cameras", self.prefix)).query_async(&mut self.conn).await
    }

    /// Adds a camera through the API (`in_file`: the file names it): false if taken.
    pub async fn add_shared(&mut self, name: &str, options: &str, in_file: bool) -> RResult<bool> {
        let n: i64 = script(ADD)
            .arg(1)
            .arg(format!("{}:cameras", self.prefix))
            .arg(name)
            .arg(options)
            .arg(if in_file { "1" } else { "0" })
            .query_async(&mut self.conn)
            .await?;
        Ok(n == 1)
    }

    /// Sets a camera's options (or `removed`) in the shared fleet.
    pub async fn set_shared(&mut self, name: &str, value: &str) -> RResult<()> {
        redis::cmd("HSET")
            .arg(format!("{}:cameras", self.prefix))
            .arg(name)
            .arg(value)
            .query_async(&mut self.conn)
            .await
    }

    /// The store's epoch: it changes when Redis restarts without its data.
    pub async fn epoch(&mut self) -> RResult<String> {
        let fresh = format!("{:016x}", fastrand::u64(..));
        script(EPOCH).arg(1).arg(format!("{}:epoch", self.prefix)).arg(fresh).query_async(&mut self.conn).await
    }

    /// Renews held leases in one round trip: which are still held.
    pub async fn renew(&mut self, leases: &[(&str, &Lease)]) -> RResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (camera, lease) in leases {
            pipe.add_command(
                script(RENEW).arg(1).arg(self.key("lease", camera)).arg(lease.value()).arg(self.ttl_ms).clone(),
            );
        }
        let held: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        Ok(held.into_iter().map(|n| n == 1).collect())
    }

    /// Gives leases up (a clean stop, a handover), if still held.
    pub async fn release(&mut self, leases: &[(&str, &Lease)]) -> RResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (camera, lease) in leases {
            pipe.add_command(script(RELEASE).arg(1).arg(self.key("lease", camera)).arg(lease.value()).clone());
        }
        let _: Vec<i64> = pipe.query_async(&mut self.conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back() {
        let n = Node { instance: "ab12".into(), advertise: "http://10.0.0.2:8080".into() };
        assert_eq!(Node::parse(&n.value()), Some(n));
        let l = Lease { node: "node-1".into(), fence: 42 };
        assert_eq!(Lease::parse(&l.value()), Some(l));
        assert_eq!(Lease::parse("garbage"), None);
    }
}
