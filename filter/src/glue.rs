//! proxy-wasm adapter: reads what the core needs from Envoy and carries out its decisions.
//! No logic lives here.

use crate::authrep::{self, Outcome};
use crate::config::PluginConfig;
use crate::decision::{decide, Decision};
use crate::request::RequestHead;
use crate::service::Services;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

const PROXY_CONFIGS_PATH: &str = "/admin/api/account/proxy_configs/production.json";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What the root context shares with the request contexts of its VM.
#[derive(Default)]
struct Shared {
    /// Shared, not cloned, by every request of this VM.
    config: Option<Rc<PluginConfig>>,
    services: Option<Rc<Services>>,
}

#[derive(Default)]
struct Root {
    shared: Rc<RefCell<Shared>>,
    fetch_in_flight: Option<u32>,
}

impl Root {
    fn fetch_services(&mut self) {
        let Some(config) = self.shared.borrow().config.clone() else {
            return;
        };
        if self.fetch_in_flight.is_some() {
            return;
        }
        let auth = format!("Bearer {}", config.access_token);
        let headers = vec![
            (":method", "GET"),
            (":path", PROXY_CONFIGS_PATH),
            (":authority", config.control_plane.authority.as_str()),
            ("authorization", auth.as_str()),
        ];
        match self.dispatch_http_call(&config.control_plane.cluster, headers, None, vec![], config.timeout()) {
            Ok(token) => self.fetch_in_flight = Some(token),
            Err(status) => log::warn(&format!("tollgate: cannot fetch proxy configs: {status:?}")),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if self.fetch_in_flight != Some(token) {
            return;
        }
        self.fetch_in_flight = None;
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        if status.as_deref() != Some("200") {
            log::warn(&format!(
                "tollgate: proxy configs fetch answered {status:?}; keeping the last good config"
            ));
            return;
        }
        match Services::parse_proxy_configs(&body) {
            Ok(services) => {
                let mut shared = self.shared.borrow_mut();
                let changed = shared.services.as_ref().map(|s| s.version) != Some(services.version);
                if changed {
                    log::info(&format!(
                        "tollgate: loaded {} service(s), config version {}",
                        services.services.len(),
                        services.version
                    ));
                }
                shared.services = Some(Rc::new(services));
            }
            Err(e) => log::warn(&format!(
                "tollgate: bad proxy configs ({e}); keeping the last good config"
            )),
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                self.set_tick_period(config.refresh_interval());
                self.shared.borrow_mut().config = Some(Rc::new(config));
                // First fetch right away rather than after a whole interval.
                self.fetch_services();
                true
            }
            Err(e) => {
                log::error(&format!("tollgate: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.fetch_services();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            shared: self.shared.clone(),
            pending: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    shared: Rc<RefCell<Shared>>,
    /// The authrep call in flight: its token and the service it is for.
    pending: Option<(u32, Rc<Services>, u64)>,
}

impl Request {
    fn head(&self) -> RequestHead {
        RequestHead {
            method: self.get_http_request_header(":method").unwrap_or_default(),
            path: self.get_http_request_header(":path").unwrap_or_default(),
            authority: self.get_http_request_header(":authority").unwrap_or_default(),
            headers: self.get_http_request_headers(),
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Action {
        match outcome {
            Outcome::Allow => Action::Continue,
            Outcome::Deny(r) => {
                self.send_http_response(
                    r.status,
                    vec![("content-type", r.content_type.as_str())],
                    Some(r.body.as_bytes()),
                );
                Action::Pause
            }
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let (config, services) = {
            let shared = self.shared.borrow();
            (shared.config.clone(), shared.services.clone())
        };
        let Some(config) = config else { return Action::Continue };
        match decide(services.as_deref(), config.failure_mode, &self.head()) {
            Decision::Now(outcome) => self.finish(outcome),
            Decision::Authrep { service_id, path } => {
                let headers = vec![
                    (":method", "GET"),
                    (":path", path.as_str()),
                    (":authority", config.control_plane.authority.as_str()),
                ];
                match self.dispatch_http_call(&config.control_plane.cluster, headers, None, vec![], config.timeout()) {
                    Ok(token) => {
                        if let Some(services) = services {
                            self.pending = Some((token, services, service_id));
                        }
                        Action::Pause
                    }
                    Err(_) => self.finish(authrep::unavailable(config.failure_mode)),
                }
            }
        }
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some((expected, services, service_id)) = self.pending.take() else {
            return;
        };
        if expected != token {
            return;
        }
        let failure_mode = self
            .shared
            .borrow()
            .config
            .as_ref()
            .map(|c| c.failure_mode)
            .unwrap_or_default();
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse().ok());
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let outcome = match services.services.iter().find(|s| s.id == service_id) {
            Some(service) => authrep::outcome(service, failure_mode, status, &body),
            None => authrep::unavailable(failure_mode),
        };
        match outcome {
            Outcome::Allow => self.resume_http_request(),
            Outcome::Deny(r) => self.send_http_response(
                r.status,
                vec![("content-type", r.content_type.as_str())],
                Some(r.body.as_bytes()),
            ),
        }
    }
}

/// Logging through the host, ignoring the (impossible to act on) failure to log.
mod log {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    pub fn info(msg: &str) {
        let _ = hostcalls::log(LogLevel::Info, msg);
    }
    pub fn warn(msg: &str) {
        let _ = hostcalls::log(LogLevel::Warn, msg);
    }
    pub fn error(msg: &str) {
        let _ = hostcalls::log(LogLevel::Error, msg);
    }
}
