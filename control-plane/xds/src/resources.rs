//! An environment's plan as Envoy resources: the route configuration (RDS), the upstream
//! clusters (CDS) and the Tollgate filter's configuration (ECDS). Pure: the same snapshot and
//! gateway give the same bytes, so a reconnecting Envoy sees nothing change.

use crate::node::GatewayNode;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, data_source, socket_address, transport_socket, Address, AsyncDataSource, DataSource,
    SocketAddress, TransportSocket, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost as EnvoyVirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy, PluginConfig, VmConfig};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};
use envoy_types::pb::google::protobuf::{Duration, StringValue};
use envoy_types::util::pack_any;
use prost::Name;
use tollgate_domain::gateway::{Endpoint, Plan, Rewrite, Route, Scheme, VirtualHost};

/// The name of the route configuration and of the filter configuration the bootstrap asks for.
pub const ROUTES: &str = "tollgate";
pub const FILTER: &str = "tollgate";

pub fn cluster_type() -> String {
    Cluster::type_url()
}
pub fn routes_type() -> String {
    RouteConfiguration::type_url()
}
pub fn filter_type() -> String {
    TypedExtensionConfig::type_url()
}

/// The route configuration: one virtual host per product.
pub fn route_configuration(plan: &Plan) -> RouteConfiguration {
    RouteConfiguration {
        name: ROUTES.into(),
        virtual_hosts: plan.virtual_hosts.iter().map(virtual_host).collect(),
        ..Default::default()
    }
}

fn virtual_host(v: &VirtualHost) -> EnvoyVirtualHost {
    EnvoyVirtualHost {
        name: v.name.clone(),
        domains: v.domains.clone(),
        routes: v.routes.iter().map(route).collect(),
        ..Default::default()
    }
}

fn route(r: &Route) -> EnvoyRoute {
    let path_specifier = if r.prefix == "/" {
        route_match::PathSpecifier::Prefix("/".into())
    } else {
        route_match::PathSpecifier::PathSeparatedPrefix(r.prefix.clone())
    };
    let (prefix_rewrite, regex_rewrite) = match &r.rewrite {
        Rewrite::Keep => (String::new(), None),
        Rewrite::Prefix(p) => (p.clone(), None),
        Rewrite::Regex { pattern, substitution } => (
            String::new(),
            Some(RegexMatchAndSubstitute {
                pattern: Some(RegexMatcher {
                    regex: pattern.clone(),
                    ..Default::default()
                }),
                substitution: substitution.clone(),
            }),
        ),
    };
    EnvoyRoute {
        name: r.prefix.clone(),
        r#match: Some(RouteMatch {
            path_specifier: Some(path_specifier),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(r.cluster.clone())),
            host_rewrite_specifier: Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(r.host.clone())),
            prefix_rewrite,
            regex_rewrite,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// One cluster per private endpoint: DNS for names, TLS with SNI for `https`.
pub fn clusters(plan: &Plan, node: &GatewayNode) -> Vec<Cluster> {
    plan.upstreams.iter().map(|u| cluster(u, node)).collect()
}

fn cluster(u: &Endpoint, node: &GatewayNode) -> Cluster {
    let name = u.cluster_name();
    let kind = if u.is_ip() {
        DiscoveryType::Static
    } else {
        DiscoveryType::LogicalDns
    };
    let transport_socket = (u.scheme == Scheme::Https).then(|| {
        let validation = node.ca_file.as_ref().map(|file| {
            common_tls_context::ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(data_source::Specifier::Filename(file.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                UpstreamTlsContext {
                    sni: u.host.clone(),
                    common_tls_context: Some(CommonTlsContext {
                        validation_context_type: validation,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))),
        }
    });
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: u.host.clone(),
                                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(u.port))),
                                ..Default::default()
                            })),
                        }),
                        hostname: u.host.clone(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket,
        ..Default::default()
    }
}

/// The Tollgate filter as the gateway runs it: its code from the gateway's own disk, its
/// configuration the gateway's settings with this environment's services.
pub fn filter(node: &GatewayNode, configuration: String) -> TypedExtensionConfig {
    let wasm = Wasm {
        config: Some(PluginConfig {
            name: "tollgate".into(),
            root_id: "tollgate".into(),
            configuration: Some(pack_any(StringValue { value: configuration })),
            failure_policy: FailurePolicy::FailClosed as i32,
            vm: Some(plugin_config::Vm::VmConfig(VmConfig {
                vm_id: "tollgate".into(),
                runtime: "envoy.wasm.runtime.v8".into(),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(data_source::Specifier::Filename(node.wasm.clone())),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        }),
    };
    TypedExtensionConfig {
        name: FILTER.into(),
        typed_config: Some(pack_any(wasm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_domain::gateway::{plan, Product};

    fn node() -> GatewayNode {
        GatewayNode {
            id: "g1".into(),
            cluster: "staging".into(),
            environment: tollgate_domain::catalog::Environment::Sandbox,
            wasm: "/w.wasm".into(),
            ca_file: Some("/ca.pem".into()),
            filter: serde_json::json!({}),
        }
    }

    #[test]
    fn routes_and_clusters_follow_the_plan() {
        let p = plan(&[Product {
            service_id: 3,
            system_name: "shop".into(),
            public: Endpoint::parse("http://shop-staging.localhost:8081").ok(),
            api_backend: None,
            backends: vec![
                ("/a".into(), Endpoint::parse("http://127.0.0.1:9000/base").ok()),
                ("/b".into(), Endpoint::parse("https://api.example.com").ok()),
            ],
        }]);
        let rc = route_configuration(&p);
        assert_eq!(rc.virtual_hosts.len(), 1);
        assert_eq!(rc.virtual_hosts[0].domains, ["shop-staging.localhost"]);
        let Some(route::Action::Route(a)) = &rc.virtual_hosts[0].routes[0].action else {
            panic!("not a route")
        };
        assert_eq!(a.prefix_rewrite, "/base");
        let cs = clusters(&p, &node());
        assert_eq!(cs.len(), 2);
        let tls = cs.iter().find(|c| c.name == "https://api.example.com:443").unwrap();
        assert_eq!(
            tls.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::LogicalDns as i32))
        );
        assert!(tls.transport_socket.is_some());
        let ip = cs.iter().find(|c| c.name == "http://127.0.0.1:9000").unwrap();
        assert_eq!(
            ip.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
        );
        assert!(ip.transport_socket.is_none());
        let f = filter(&node(), "{}".into());
        assert_eq!(f.typed_config.unwrap().type_url, Wasm::type_url());
    }
}
