//! Tollgate as Envoy's control plane. Gateways connect to the aggregated discovery service
//! (xDS v3, gRPC, state of the world) with an admin token and a node naming their environment;
//! each gets, from that environment's deployed proxy configs (staging: the latest deploy,
//! production: the latest promote):
//!
//! - **routes** (RDS `tollgate`): a virtual host per product under its public host, a route
//!   per backend usage path (longest first, 3scale's path replacement) or the `api_backend`;
//! - **clusters** (CDS): one per private endpoint, DNS for names, TLS with SNI for `https`;
//! - **the filter** (ECDS `tollgate`): the Tollgate wasm filter with the gateway's own settings
//!   and the environment's services, so a deploy reaches the filter without a restart.
//!
//! - [`node`]: what a gateway says about itself; [`snapshot`]: an environment's configs and
//!   their routing plan, kept current by a watcher; [`resources`]: a plan as Envoy resources;
//!   [`server`]: the ADS streams (ordering, ACK/NACK, the gateway registry).

pub mod node;
pub mod resources;
pub mod server;
pub mod snapshot;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use std::future::Future;
use tokio::net::TcpListener;

pub use server::Xds;
pub use snapshot::Snapshots;

/// Serves xDS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    xds: Xds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(AggregatedDiscoveryServiceServer::new(xds))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}
