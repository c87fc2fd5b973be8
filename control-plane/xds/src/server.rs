//! The aggregated discovery service (state of the world, v3): one stream per gateway carries
//! its clusters, routes and filter configuration, pushed again whenever its environment's
//! snapshot moves.
//!
//! Order keeps traffic flowing through a change ("make before break"): clusters first — the
//! new ones added, the ones the gateway's current routes use kept —, then the filter, then
//! the routes; once the gateway acknowledges the new routes, the clusters no route uses any
//! more are dropped. A NACK is logged with Envoy's message and kept for
//! `GET /admin/api/gateways.json`; the same snapshot is not offered again (it would fail the
//! same way), the next one is.

use crate::node::GatewayNode;
use crate::resources::{self, cluster_type, filter_type, routes_type};
use crate::snapshot::{Snapshot, Snapshots};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tollgate_domain::access::{Access, Scope};
use tollgate_store::gateway_registry::{GatewayError, GatewayRegistry, GatewayStatus};
use tollgate_store::Db;
use tonic::{Request, Response, Status, Streaming};

/// The xDS service: checks the gateway's token, then runs its stream.
#[derive(Clone)]
pub struct Xds {
    pub db: Db,
    pub snapshots: Snapshots,
    pub registry: Arc<GatewayRegistry>,
    /// Turns true when the control plane stops: every stream ends (Envoy reconnects to
    /// another replica, or to this one once it is back).
    pub stopping: watch::Receiver<bool>,
}

/// A resource type this server serves, by its name in `gateways.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Clusters,
    Filter,
    Routes,
}

impl Kind {
    /// In the order a change is pushed.
    const ALL: [Kind; 3] = [Kind::Clusters, Kind::Filter, Kind::Routes];

    fn of(type_url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == type_url)
    }
    fn type_url(self) -> String {
        match self {
            Kind::Clusters => cluster_type(),
            Kind::Filter => filter_type(),
            Kind::Routes => routes_type(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Clusters => "clusters",
            Kind::Filter => "filter",
            Kind::Routes => "routes",
        }
    }
}

#[derive(Default)]
struct Sent {
    subscribed: bool,
    nonce: String,
    /// The snapshot version last sent (the version Envoy sees may carry a `+kept` suffix).
    version: Option<String>,
    /// What was sent under that nonce.
    wire_version: String,
    /// Clusters: what was sent, by name.
    clusters: BTreeMap<String, Cluster>,
}

/// One gateway's stream.
struct Session {
    node: GatewayNode,
    key: u64,
    registry: Arc<GatewayRegistry>,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    sent: HashMap<Kind, Sent>,
    nonces: u64,
    /// The clusters the gateway's acknowledged routes use.
    routed_clusters: BTreeSet<String>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Xds {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.authenticate(&request).await?;
        let address = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut inbound = request.into_inner();
        // The node comes with the first request.
        let first = match inbound.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(e),
            None => return Err(Status::cancelled("the stream ended before its first request")),
        };
        let node = GatewayNode::parse(first.node.as_ref()).map_err(|e| {
            tracing::warn!(address, error = %e, "xds: gateway refused");
            Status::invalid_argument(e)
        })?;
        let snapshots = self.snapshots.of(node.environment);
        let (out, rx) = mpsc::channel(16);
        let registry = self.registry.clone();
        let key = registry.connect(GatewayStatus {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            environment: node.environment_name().into(),
            address: address.clone(),
            connected_at: tollgate_store::time::now(),
            offered_version: snapshots.borrow().version.clone(),
            version: None,
            versions: Default::default(),
            last_error: None,
        });
        tracing::info!(gateway = %node.id, environment = node.environment_name(), address, "xds: gateway connected");
        let session = Session {
            node,
            key,
            registry,
            out,
            sent: HashMap::new(),
            nonces: 0,
            routed_clusters: BTreeSet::new(),
        };
        tokio::spawn(session.run(first, inbound, snapshots, self.stopping.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "Tollgate serves state-of-the-world ADS (api_type: GRPC), not delta xDS",
        ))
    }
}

impl Xds {
    /// Gateways present an admin access token (`authorization: Bearer …` in the gRPC
    /// metadata): the resources carry service tokens.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("send an admin access token: authorization: Bearer <token>"))?;
        let principal = tollgate_store::auth::principal(&self.db, token.trim())
            .await
            .map_err(|_| Status::unauthenticated("unknown access token"))?;
        if principal.member.is_some() || !principal.token_allows(Scope::AccountManagement, Access::Read) {
            return Err(Status::permission_denied(
                "gateways need an admin's token with the account_management scope",
            ));
        }
        Ok(())
    }
}

impl Session {
    async fn run(
        mut self,
        first: DiscoveryRequest,
        mut inbound: Streaming<DiscoveryRequest>,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut next = Some(first);
        loop {
            if let Some(request) = next.take() {
                let snapshot = snapshots.borrow_and_update().clone();
                if self.request(request, &snapshot).await.is_err() {
                    break;
                }
            }
            tokio::select! {
                _ = async { stopping.wait_for(|s| *s).await.is_ok() } => break,
                message = inbound.next() => match message {
                    Some(Ok(r)) => next = Some(r),
                    Some(Err(e)) => {
                        tracing::info!(gateway = %self.node.id, error = %e, "xds: stream error");
                        break;
                    }
                    None => break,
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.registry.offered(self.key, &snapshot.version);
                    if self.push(&snapshot).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!(gateway = %self.node.id, "xds: gateway disconnected");
        self.registry.disconnect(self.key);
    }

    /// Handles a request: an ACK, a NACK or a (new) subscription.
    async fn request(&mut self, r: DiscoveryRequest, snapshot: &Snapshot) -> Result<(), Closed> {
        let Some(kind) = Kind::of(&r.type_url) else {
            tracing::debug!(type_url = r.type_url, "xds: resource type not served");
            return Ok(());
        };
        let sent = self.sent.entry(kind).or_default();
        if !r.response_nonce.is_empty() && r.response_nonce != sent.nonce {
            return Ok(()); // an answer to an older response: superseded
        }
        sent.subscribed = true;
        if !r.response_nonce.is_empty() {
            if let Some(error) = &r.error_detail {
                let version = sent.wire_version.clone();
                tracing::warn!(
                    gateway = %self.node.id, resource = kind.name(), version, error = error.message,
                    "xds: gateway refused the configuration (NACK)"
                );
                self.registry.refused(
                    self.key,
                    GatewayError {
                        resource: kind.name().into(),
                        version,
                        message: error.message.clone(),
                        at: tollgate_store::time::now(),
                    },
                );
                return Ok(());
            }
            self.registry.acknowledged(self.key, kind.name(), &r.version_info);
            if kind == Kind::Routes && sent.version.as_deref() == Some(snapshot.version.as_str()) {
                self.routed_clusters = used_clusters(snapshot);
                // The routes that needed the old clusters are gone: drop those.
                if self
                    .sent
                    .get(&Kind::Clusters)
                    .is_some_and(|c| !c.clusters.keys().eq(self.routed_clusters.iter()))
                {
                    return self.send(Kind::Clusters, snapshot).await;
                }
            }
            return Ok(());
        }
        // A first request, or a reconnecting Envoy naming what it has: send what is current.
        self.send(kind, snapshot).await
    }

    /// Offers a new snapshot on every subscribed type, in order.
    async fn push(&mut self, snapshot: &Snapshot) -> Result<(), Closed> {
        for kind in Kind::ALL {
            let due = self
                .sent
                .get(&kind)
                .is_some_and(|s| s.subscribed && s.version.as_deref() != Some(snapshot.version.as_str()));
            if due {
                self.send(kind, snapshot).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, kind: Kind, snapshot: &Snapshot) -> Result<(), Closed> {
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let mut sent_clusters = BTreeMap::new();
        let mut wire_version = snapshot.version.clone();
        let resources: Vec<Any> = match kind {
            Kind::Clusters => {
                let wanted = used_clusters(snapshot);
                sent_clusters = resources::clusters(&snapshot.plan, &self.node)
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect();
                // Keep what the gateway's current routes still send to until they change.
                if let Some(previous) = self.sent.get(&Kind::Clusters) {
                    let kept: Vec<(String, Cluster)> = self
                        .routed_clusters
                        .difference(&wanted)
                        .filter_map(|name| previous.clusters.get(name).map(|c| (name.clone(), c.clone())))
                        .collect();
                    if !kept.is_empty() {
                        wire_version.push_str("+kept");
                        sent_clusters.extend(kept);
                    }
                }
                sent_clusters.values().cloned().map(pack_any).collect()
            }
            Kind::Routes => vec![pack_any(resources::route_configuration(&snapshot.plan))],
            Kind::Filter => vec![pack_any(resources::filter(
                &self.node,
                self.node.filter_configuration(&snapshot.proxy_configs),
            ))],
        };
        let response = DiscoveryResponse {
            version_info: wire_version.clone(),
            resources,
            type_url: kind.type_url(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        let sent = self.sent.entry(kind).or_default();
        sent.nonce = nonce;
        sent.version = Some(snapshot.version.clone());
        sent.wire_version = wire_version;
        if kind == Kind::Clusters {
            sent.clusters = sent_clusters;
        }
        self.out.send(Ok(response)).await.map_err(|_| Closed)
    }
}

/// The stream's receiver is gone.
struct Closed;

fn used_clusters(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot.plan.upstreams.iter().map(|u| u.cluster_name()).collect()
}
