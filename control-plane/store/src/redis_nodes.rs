//! Where Redis is: one node (`redis://host:6379`), or a Redis Cluster named by several of its
//! nodes separated by commas (`redis://h1:7000,redis://h2:7001,…`). One [`Connection`] serves
//! both, so the counter store runs the same script either way; with a cluster, the redis
//! crate's cluster client routes each call by its keys' hash slot and follows MOVED/ASK and
//! failovers (it refreshes the slot map when a node stops answering).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};
use std::sync::Arc;
use std::time::Duration;

/// The node URLs a `TOLLGATE_REDIS_URL` names (blank parts dropped).
pub fn nodes(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// A connection to one node, or to a cluster: cheap to clone, reconnects by itself. A cluster
/// keeps the first node's connection settings (password, TLS), to reach its other nodes one by
/// one with the same ([`Connection::node`]).
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection, Arc<ConnectionInfo>),
}

/// Bounded everywhere: a Redis that is down fails a start in seconds, and a call within its
/// timeout, not after minutes of retries.
const CONNECT: Duration = Duration::from_secs(1);
const RESPONSE: Duration = Duration::from_secs(1);

impl Connection {
    /// Connects to what `url` names and checks that it answers.
    pub async fn open(url: &str) -> RedisResult<Self> {
        let nodes = nodes(url);
        let mut conn = if nodes.len() > 1 {
            let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(CONNECT)
                .response_timeout(RESPONSE)
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .build()?;
            let info = nodes[0].into_connection_info()?;
            Connection::Cluster(client.get_async_connection().await?, Arc::new(info))
        } else {
            let client = redis::Client::open(nodes.first().copied().unwrap_or(url))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT)
                .set_response_timeout(RESPONSE)
                .set_number_of_retries(2)
                .set_max_delay(500);
            Connection::Single(ConnectionManager::new_with_config(client, config).await?)
        };
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(conn)
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(..))
    }

    /// One node of this cluster (or this one node), at `host:port` as the cluster names it,
    /// with the settings the configured URL gave.
    pub async fn node(&self, host: &str, port: u16) -> RedisResult<Connection> {
        let Connection::Cluster(_, info) = self else {
            return Ok(self.clone());
        };
        let mut info = ConnectionInfo::clone(info);
        info.addr = match info.addr {
            ConnectionAddr::TcpTls {
                insecure, tls_params, ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        let client = redis::Client::open(info)?;
        Ok(Connection::Single(client.get_connection_manager().await?))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c, _) => c.get_db(),
        }
    }
}

/// One client per node, for pub/sub: in a cluster a message published on any node reaches the
/// subscribers of every node, so a subscriber needs one node that answers and moves on to the
/// next when it fails.
pub fn clients(url: &str) -> RedisResult<Vec<redis::Client>> {
    match nodes(url).as_slice() {
        [] => Ok(vec![redis::Client::open(url)?]),
        nodes => nodes.iter().map(|n| redis::Client::open(*n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_node_and_a_list_is_a_cluster() {
        assert_eq!(nodes("redis://a:6379"), vec!["redis://a:6379"]);
        assert_eq!(
            nodes("redis://a:7000, redis://b:7001,,redis://c:7002 "),
            vec!["redis://a:7000", "redis://b:7001", "redis://c:7002"]
        );
        assert_eq!(
            nodes("redis://a:7000,"),
            vec!["redis://a:7000"],
            "one node: not a cluster"
        );
    }
}
