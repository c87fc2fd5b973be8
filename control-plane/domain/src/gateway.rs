//! What a gateway does with a product's traffic, as plain data: the endpoint URLs checked
//! once, at the API (so a gateway never refuses what the control plane accepted), and an
//! environment's routing plan — one virtual host per product under its public host, one route
//! per backend usage (longest path first) or the product's `api_backend`, and one upstream per
//! private endpoint. The xDS server turns a plan into Envoy resources; nothing here knows Envoy.
//!
//! Paths follow 3scale's routing policy (porta's `BackendApiLogic::RoutingPolicy`): a backend
//! used at `/a` takes `/a` and `/a/…` (not `/ab`), the usage path is removed from the request
//! path (`remove_first`) and the private endpoint's own path is put in front of what is left.

use std::collections::BTreeSet;
use std::fmt;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute `http(s)` URL as gateways use it: host, port and a base path (`""` or
/// `/x/y`, never ending in `/`); no user info, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Lower-case DNS name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Endpoint {
    /// Parses and checks a URL; the message says what is wrong with it.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some((s, _)) => return Err(format!("must be an http or https URL, not `{s}://`")),
            None => return Err("must be an absolute URL such as http://api.example.com:8080".into()),
        };
        if rest.contains(['?', '#']) {
            return Err("must not have a query or a fragment".into());
        }
        if rest.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err("must not contain spaces".into());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("must not carry user info".into());
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(p) => p,
            None => scheme.default_port(),
        };
        Ok(Endpoint {
            scheme,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host` or `host:port` (the port only when it is not the scheme's), as a `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether the host is an IP literal (no DNS needed).
    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }

    /// The name of the upstream cluster serving this endpoint: one per scheme, host and port.
    pub fn cluster_name(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.authority(), self.path)
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("has an unclosed `[` in its host")?;
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`[{h}]` is not an IPv6 address"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    if !host.contains(':') {
        check_dns_name(&host)?;
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{p}` is not a port (1-65535)")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn check_dns_name(host: &str) -> Result<(), String> {
    let ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("`{host}` is not a host name"))
    }
}

/// A backend usage's path as 3scale keeps it: `/` followed by the path without its outer
/// slashes (`v2/` → `/v2`, `` → `/`). Refuses what cannot be a path prefix.
pub fn usage_path(path: &str) -> Result<String, String> {
    if path.contains(['?', '#', '*', '{', '}', '$']) || path.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("must be a plain path such as /v2 (no query, pattern or spaces)".into());
    }
    Ok(format!("/{}", path.trim_matches('/')))
}

/// How the path changes on the way to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Sent as it came.
    Keep,
    /// The matched prefix is replaced by this.
    Prefix(String),
    /// The regular expression (RE2) is replaced by the substitution.
    Regex { pattern: String, substitution: String },
}

/// One route of a product's virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/` (everything) or a path taking itself and what lies below it.
    pub prefix: String,
    pub cluster: String,
    /// The upstream's `Host`.
    pub host: String,
    pub rewrite: Rewrite,
}

impl Route {
    fn to(prefix: &str, upstream: &Endpoint) -> Route {
        let base = upstream.path.as_str();
        let rewrite = match (prefix == "/", base.is_empty()) {
            (true, true) => Rewrite::Keep,
            (true, false) => Rewrite::Prefix(format!("{base}/")),
            (false, false) => Rewrite::Prefix(base.to_string()),
            // `/a/x` → `/x`, `/a` → `/`.
            (false, true) => Rewrite::Regex {
                pattern: format!("^{}/?", regex_escape(prefix)),
                substitution: "/".into(),
            },
        };
        Route {
            prefix: prefix.to_string(),
            cluster: upstream.cluster_name(),
            host: upstream.authority(),
            rewrite,
        }
    }

    /// The path the upstream receives for `path` (what Envoy's rewrite does; for tests and docs).
    pub fn upstream_path(&self, path: &str) -> Option<String> {
        if !self.matches(path) {
            return None;
        }
        Some(match &self.rewrite {
            Rewrite::Keep => path.to_string(),
            Rewrite::Prefix(p) => format!("{p}{}", &path[self.prefix.len()..]),
            Rewrite::Regex { .. } => {
                let rest = &path[self.prefix.len()..];
                format!("/{}", rest.strip_prefix('/').unwrap_or(rest))
            }
        })
    }

    /// Whether the route takes `path` (Envoy's `path_separated_prefix`, or `/`).
    pub fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A product as one environment's gateways serve it (from its deployed proxy config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub service_id: i64,
    pub system_name: String,
    /// The public endpoint of this environment; a product without one is not served.
    pub public: Option<Endpoint>,
    pub api_backend: Option<Endpoint>,
    /// Backend usages: path and the backend's private endpoint (`None`: the backend has none).
    pub backends: Vec<(String, Option<Endpoint>)>,
}

/// A product's virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualHost {
    pub service_id: i64,
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// An environment's routing: virtual hosts, the upstreams they use, and what was left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub virtual_hosts: Vec<VirtualHost>,
    pub upstreams: Vec<Endpoint>,
    /// Why a product or route is not served (a host another product holds, no endpoint).
    pub skipped: Vec<String>,
}

impl Product {
    /// The routes, most specific first: backend usages by path length (porta's
    /// `sorted_for_proxy_config`), then `api_backend` at `/` unless a backend holds `/`.
    pub fn routes(&self) -> Vec<Route> {
        let mut usages: Vec<(&str, &Endpoint)> = self
            .backends
            .iter()
            .filter_map(|(path, ep)| ep.as_ref().map(|ep| (path.as_str(), ep)))
            .collect();
        usages.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        usages.dedup_by(|a, b| a.0 == b.0);
        let mut routes: Vec<Route> = usages.iter().map(|(path, ep)| Route::to(path, ep)).collect();
        if let Some(api) = &self.api_backend {
            if !routes.iter().any(|r| r.prefix == "/") {
                routes.push(Route::to("/", api));
            }
        }
        routes
    }
}

/// The plan for one environment's products (in service-id order: an older product keeps a
/// host a newer one also claims).
pub fn plan(products: &[Product]) -> Plan {
    let mut plan = Plan::default();
    let mut hosts = BTreeSet::new();
    let mut upstreams = BTreeSet::new();
    let mut products: Vec<&Product> = products.iter().collect();
    products.sort_by_key(|p| p.service_id);
    for p in products {
        let Some(public) = &p.public else {
            plan.skipped
                .push(format!("service {}: no public endpoint", p.service_id));
            continue;
        };
        if !hosts.insert(public.host.clone()) {
            plan.skipped.push(format!(
                "service {}: host {} is served by an older service",
                p.service_id, public.host
            ));
            continue;
        }
        let routes = p.routes();
        if routes.is_empty() {
            plan.skipped
                .push(format!("service {}: no backend and no api_backend", p.service_id));
            continue;
        }
        for (_, ep) in &p.backends {
            if let Some(ep) = ep {
                upstreams.insert(ep.clone());
            }
        }
        if let Some(api) = &p.api_backend {
            upstreams.insert(api.clone());
        }
        plan.virtual_hosts.push(VirtualHost {
            service_id: p.service_id,
            name: format!("{}-{}", p.service_id, p.system_name),
            domains: vec![public.host.clone()],
            routes,
        });
    }
    // Only upstreams a route uses.
    let used: BTreeSet<&str> = plan
        .virtual_hosts
        .iter()
        .flat_map(|v| v.routes.iter().map(|r| r.cluster.as_str()))
        .collect();
    plan.upstreams = upstreams
        .into_iter()
        .filter(|u| used.contains(u.cluster_name().as_str()))
        .collect();
    plan
}

/// Where gateways serve a product unless its settings say otherwise: 3scale's
/// `{system_name}-staging.{domain}` and `{system_name}.{domain}`, on each environment's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDefaults {
    pub domain: String,
    pub staging_port: u16,
    pub production_port: u16,
}

impl Default for GatewayDefaults {
    fn default() -> Self {
        Self {
            domain: "localhost".into(),
            staging_port: 8081,
            production_port: 8080,
        }
    }
}

impl GatewayDefaults {
    fn url(&self, host: String, port: u16) -> String {
        if port == 80 {
            format!("http://{host}")
        } else {
            format!("http://{host}:{port}")
        }
    }
    pub fn sandbox_endpoint(&self, system_name: &str) -> String {
        self.url(
            format!("{}-staging.{}", host_label(system_name), self.domain),
            self.staging_port,
        )
    }
    pub fn endpoint(&self, system_name: &str) -> String {
        self.url(
            format!("{}.{}", host_label(system_name), self.domain),
            self.production_port,
        )
    }
}

/// A system name as a DNS label: `my_api` → `my-api`.
fn host_label(system_name: &str) -> String {
    let label: String = system_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "api".into()
    } else {
        label.chars().take(55).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ep(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[test]
    fn endpoints_parse_with_ports_paths_and_ipv6() {
        let e = ep("HTTPS://API.example.com/v1/");
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port, e.path.as_str()),
            (Scheme::Https, "api.example.com", 443, "/v1")
        );
        assert_eq!(e.authority(), "api.example.com");
        assert_eq!(e.cluster_name(), "https://api.example.com:443");
        let e = ep("http://127.0.0.1:8000");
        assert!(e.is_ip());
        assert_eq!(e.authority(), "127.0.0.1:8000");
        assert_eq!(e.path, "");
        let e = ep("http://[::1]:9000/x");
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.authority(), "[::1]:9000");
        assert_eq!(e.to_string(), "http://[::1]:9000/x");
    }

    #[test]
    fn bad_endpoints_say_why() {
        for (url, says) in [
            ("ftp://x", "http or https"),
            ("api.example.com", "absolute URL"),
            ("http://", "host"),
            ("http://a b", "spaces"),
            ("http://x:0", "port"),
            ("http://x:99999", "port"),
            ("http://x:8o", "port"),
            ("http://x/?q=1", "query"),
            ("http://u:p@x", "user info"),
            ("http://exa$mple.com", "host name"),
            ("http://-x.com", "host name"),
            ("http://[zz]:1", "IPv6"),
        ] {
            let e = Endpoint::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn usage_paths_are_normalized_like_porta() {
        assert_eq!(usage_path("").unwrap(), "/");
        assert_eq!(usage_path("/").unwrap(), "/");
        assert_eq!(usage_path("v2/").unwrap(), "/v2");
        assert_eq!(usage_path("/a/b/").unwrap(), "/a/b");
        assert!(usage_path("/a?x").is_err());
        assert!(usage_path("/{id}").is_err());
    }

    #[test]
    fn routes_replace_the_usage_path_by_the_private_path() {
        let r = Route::to("/a", &ep("http://h:1/base"));
        assert_eq!(r.upstream_path("/a/x").as_deref(), Some("/base/x"));
        assert_eq!(r.upstream_path("/a").as_deref(), Some("/base"));
        assert_eq!(r.upstream_path("/ab"), None);
        let r = Route::to("/a", &ep("http://h:1"));
        assert_eq!(r.upstream_path("/a/x").as_deref(), Some("/x"));
        assert_eq!(r.upstream_path("/a").as_deref(), Some("/"));
        let r = Route::to("/", &ep("http://h:1/base"));
        assert_eq!(r.upstream_path("/x").as_deref(), Some("/base/x"));
        let r = Route::to("/", &ep("http://h:1"));
        assert_eq!(r.rewrite, Rewrite::Keep);
        assert_eq!(r.host, "h:1");
        let r = Route::to("/v1.0", &ep("http://h:1"));
        assert_eq!(
            r.rewrite,
            Rewrite::Regex {
                pattern: "^/v1\\.0/?".into(),
                substitution: "/".into()
            }
        );
    }

    fn product(id: i64, host: &str, backends: &[(&str, &str)], api: Option<&str>) -> Product {
        Product {
            service_id: id,
            system_name: format!("p{id}"),
            public: Some(ep(host)),
            api_backend: api.map(ep),
            backends: backends.iter().map(|(p, u)| (p.to_string(), Some(ep(u)))).collect(),
        }
    }

    #[test]
    fn longest_path_first_then_api_backend() {
        let p = product(
            1,
            "http://shop.localhost:8080",
            &[("/a", "http://127.0.0.1:1"), ("/a/b", "http://127.0.0.1:2/x")],
            Some("http://127.0.0.1:3"),
        );
        let prefixes: Vec<_> = p.routes().iter().map(|r| r.prefix.clone()).collect();
        assert_eq!(prefixes, ["/a/b", "/a", "/"]);
        // A backend at `/` replaces api_backend.
        let p = product(
            1,
            "http://s",
            &[("/", "http://127.0.0.1:1")],
            Some("http://127.0.0.1:3"),
        );
        assert_eq!(p.routes().len(), 1);
        assert_eq!(p.routes()[0].cluster, "http://127.0.0.1:1");
    }

    #[test]
    fn a_plan_dedupes_hosts_and_upstreams() {
        let a = product(1, "http://a.localhost", &[("/x", "http://127.0.0.1:1")], None);
        let b = product(2, "http://b.localhost", &[("/y", "http://127.0.0.1:1")], None);
        let clash = product(3, "http://a.localhost:9", &[], Some("http://127.0.0.1:2"));
        let empty = product(4, "http://d.localhost", &[], None);
        let plan = plan(&[clash, b, a, empty]);
        assert_eq!(
            plan.virtual_hosts.iter().map(|v| v.service_id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(plan.upstreams.len(), 1);
        assert_eq!(plan.skipped.len(), 2, "{:?}", plan.skipped);
    }

    #[test]
    fn defaults_name_hosts_after_the_system_name() {
        let d = GatewayDefaults::default();
        assert_eq!(d.sandbox_endpoint("my_api"), "http://my-api-staging.localhost:8081");
        assert_eq!(d.endpoint("my_api"), "http://my-api.localhost:8080");
        assert!(Endpoint::parse(&d.endpoint("___")).is_ok());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in ".{0,40}") {
            if let Ok(e) = Endpoint::parse(&s) {
                prop_assert_eq!(Endpoint::parse(&e.to_string()), Ok(e));
            }
        }

        #[test]
        fn rewritten_paths_are_private_path_then_the_rest(
            usage in "(/[a-z0-9]{1,4}){0,3}",
            base in "(/[a-z0-9]{1,4}){0,2}",
            rest in "(/[a-z0-9]{0,4}){0,3}",
        ) {
            let prefix = usage_path(&usage).unwrap();
            let r = Route::to(&prefix, &ep(&format!("http://h{base}")));
            let path = if prefix == "/" { format!("/{}", rest.trim_start_matches('/')) } else { format!("{prefix}{rest}") };
            let got = r.upstream_path(&path).unwrap();
            // 3scale: remove_first(usage path), then the private path in front; never empty.
            let removed = if prefix == "/" { path.clone() } else { path[prefix.len()..].to_string() };
            let mut want = format!("{base}{removed}");
            if prefix == "/" && !base.is_empty() { want = format!("{base}/{}", removed.trim_start_matches('/')); }
            if want.is_empty() { want = "/".into(); }
            if base.is_empty() && !removed.starts_with('/') { want = format!("/{removed}"); }
            prop_assert_eq!(got, want);
        }
    }
}
