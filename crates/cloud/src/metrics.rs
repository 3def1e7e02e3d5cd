//! Prometheus metrics: authentication outcomes by reason and a latency histogram, rendered in the
//! text exposition format.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::Reason;

const BUCKETS_MS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];

/// Counters shared by all requests.
#[derive(Debug, Default)]
pub struct Metrics {
    success: AtomicU64,
    failures: [AtomicU64; Reason::ALL.len()],
    buckets: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Metrics {
    /// One successful authentication.
    pub fn success(&self) {
        self.success.fetch_add(1, Ordering::Relaxed);
    }

    /// One refused authentication.
    pub fn failure(&self, r: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|x| *x == r) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One authentication request's latency.
    pub fn latency(&self, d: std::time::Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Successful authentications so far.
    pub fn successes(&self) -> u64 {
        self.success.load(Ordering::Relaxed)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP sesame_auth_success_total Successful device authentications.\n# TYPE sesame_auth_success_total counter\n");
        s.push_str(&format!(
            "sesame_auth_success_total {}\n",
            self.success.load(Ordering::Relaxed)
        ));
        s.push_str("# HELP sesame_auth_failure_total Refused device authentications by reason.\n# TYPE sesame_auth_failure_total counter\n");
        for (i, r) in Reason::ALL.iter().enumerate() {
            s.push_str(&format!(
                "sesame_auth_failure_total{{reason=\"{}\"}} {}\n",
                r.code(),
                self.failures[i].load(Ordering::Relaxed)
            ));
        }
        s.push_str("# HELP sesame_auth_request_seconds Latency of authentication requests.\n# TYPE sesame_auth_request_seconds histogram\n");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            s.push_str(&format!(
                "sesame_auth_request_seconds_bucket{{le=\"{}\"}} {}\n",
                b / 1000.0,
                self.buckets[i].load(Ordering::Relaxed)
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        s.push_str(&format!(
            "sesame_auth_request_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        s.push_str(&format!(
            "sesame_auth_request_seconds_sum {}\n",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        s.push_str(&format!("sesame_auth_request_seconds_count {count}\n"));
        s
    }
}
