//! Prometheus metrics (OpenMetrics text at `/metrics`): HTTP requests by route template and
//! status, login outcomes, store latency, telemetry, commands, firmware, build information.
//!
//! Every label value comes from a closed set the code chooses (route templates, status codes,
//! reason codes, operation names), never from what a client sent: a stranger cannot make the
//! series grow.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::Reason;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, seconds: 0.5 ms to 2.5 s.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Http {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Why {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct What {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
    commit: &'static str,
}

/// The counters and histograms of one cloud instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    auth_success: Counter,
    auth_failure: Family<Why, Counter>,
    auth_latency: Histogram,
    http_requests: Family<Http, Counter>,
    http_latency: Family<Route, Histogram, fn() -> Histogram>,
    store_latency: Family<Op, Histogram, fn() -> Histogram>,
    telemetry_accepted: Counter,
    telemetry_refused: Family<Why, Counter>,
    commands_issued: Counter,
    receipts: Family<Outcome, Counter>,
    firmware_published: Counter,
    firmware_fetched: Family<What, Counter>,
}

/// Methods as labelled; anything else is `other` (a client chooses the method).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *m {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        _ => "other",
    }
}

/// The commit the binary was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("SESAME_COMMIT");

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sesame");
        let m = Self {
            auth_success: Counter::default(),
            auth_failure: Family::default(),
            auth_latency: latency(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            store_latency: Family::new_with_constructor(latency),
            telemetry_accepted: Counter::default(),
            telemetry_refused: Family::default(),
            commands_issued: Counter::default(),
            receipts: Family::default(),
            firmware_published: Counter::default(),
            firmware_fetched: Family::default(),
            registry: Registry::default(),
        };
        // Every reason shows from the start, so a rate over a fresh instance has a series.
        for r in Reason::ALL {
            let _ = m.auth_failure.get_or_create(&Why { reason: r.code() });
        }
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
                commit: COMMIT,
            })
            .set(1);
        let r = &mut registry;
        r.register("build_info", "Version and commit of this build", build);
        r.register(
            "auth_success",
            "Successful device logins",
            m.auth_success.clone(),
        );
        r.register(
            "auth_failure",
            "Refused device logins by reason",
            m.auth_failure.clone(),
        );
        r.register(
            "auth_request_seconds",
            "Latency of challenge and response requests",
            m.auth_latency.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_seconds",
            "HTTP request latency by method and route template",
            m.http_latency.clone(),
        );
        r.register(
            "store_seconds",
            "Database operation latency by operation",
            m.store_latency.clone(),
        );
        r.register(
            "telemetry_accepted",
            "Telemetry messages accepted",
            m.telemetry_accepted.clone(),
        );
        r.register(
            "telemetry_refused",
            "Telemetry messages refused by reason",
            m.telemetry_refused.clone(),
        );
        r.register(
            "commands_issued",
            "Commands signed and queued",
            m.commands_issued.clone(),
        );
        r.register(
            "command_receipts",
            "Command receipts recorded by outcome",
            m.receipts.clone(),
        );
        r.register(
            "firmware_published",
            "Firmware releases published",
            m.firmware_published.clone(),
        );
        r.register(
            "firmware_fetched",
            "Firmware manifests and images served to devices",
            m.firmware_fetched.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// One successful authentication.
    pub fn success(&self) {
        self.auth_success.inc();
    }

    /// One refused authentication.
    pub fn failure(&self, r: Reason) {
        self.auth_failure
            .get_or_create(&Why { reason: r.code() })
            .inc();
    }

    /// One authentication request's latency.
    pub fn latency(&self, d: Duration) {
        self.auth_latency.observe(d.as_secs_f64());
    }

    /// Successful authentications so far.
    pub fn successes(&self) -> u64 {
        self.auth_success.get()
    }

    /// One HTTP request: `route` is the matched route template (`None` when no route matched).
    pub fn http(&self, method: &axum::http::Method, route: Option<&str>, status: u16, d: Duration) {
        let method = method_label(method);
        let route = route.unwrap_or("unmatched").to_string();
        self.http_latency
            .get_or_create(&Route {
                method,
                route: route.clone(),
            })
            .observe(d.as_secs_f64());
        self.http_requests
            .get_or_create(&Http {
                method,
                route,
                status,
            })
            .inc();
    }

    /// One database operation's latency.
    pub fn store(&self, op: &'static str, d: Duration) {
        self.store_latency
            .get_or_create(&Op { op })
            .observe(d.as_secs_f64());
    }

    /// A telemetry message accepted.
    pub fn telemetry_accepted(&self) {
        self.telemetry_accepted.inc();
    }

    /// A telemetry message refused (`reason` is the error code).
    pub fn telemetry_refused(&self, reason: &'static str) {
        self.telemetry_refused.get_or_create(&Why { reason }).inc();
    }

    /// A command signed and queued.
    pub fn command_issued(&self) {
        self.commands_issued.inc();
    }

    /// A receipt recorded (`outcome`: executed, refused or failed).
    pub fn receipt(&self, outcome: &'static str) {
        self.receipts.get_or_create(&Outcome { outcome }).inc();
    }

    /// A firmware release published.
    pub fn firmware_published(&self) {
        self.firmware_published.inc();
    }

    /// A firmware manifest (`what` = `manifest`) or image (`image`) served.
    pub fn firmware_fetched(&self, what: &'static str) {
        self.firmware_fetched.get_or_create(&What { what }).inc();
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
