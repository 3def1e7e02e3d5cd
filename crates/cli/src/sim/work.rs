//! The worker loop of a simulated fleet: each worker owns a slice of the devices and goes
//! round-robin over them, logging in and sending telemetry, counting successes, latencies and
//! errors by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sesame_agent::AgentError;

use super::Device;

/// A short, stable name for an error, to count errors by kind.
pub fn error_kind(e: &AgentError) -> String {
    let short = |s: &str| -> String {
        // ureq's messages start with the URL; the kind is what follows.
        let s = if s.starts_with("http") {
            s.split_once(": ").map_or(s, |x| x.1)
        } else {
            s
        };
        s.chars().take(70).collect()
    };
    match e {
        AgentError::Refused { status, code, .. } => format!("refused {status} {code}"),
        AgentError::Transport(m) => format!("transport: {}", short(m)),
        AgentError::Chip(m) => format!("chip: {}", short(m)),
        AgentError::Protocol(m) => format!("protocol: {}", short(m)),
        other => short(&other.to_string()),
    }
}

/// Live counters, read by a progress display while workers run.
#[derive(Default)]
pub struct Counters {
    pub auths: AtomicU64,
    pub messages: AtomicU64,
    pub errors: AtomicU64,
    pub stop: AtomicBool,
}

/// What one cloud instance did for the devices assigned to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerCloud {
    /// Devices talking to it.
    pub devices: u64,
    /// Successful logins.
    pub auths: u64,
    /// Telemetry messages accepted.
    pub messages: u64,
    /// Failed requests.
    pub errors: u64,
}

/// What one worker measured.
#[derive(Default)]
pub struct Outcome {
    /// By cloud base URL.
    pub clouds: BTreeMap<String, PerCloud>,
    /// Login latencies, µs.
    pub login_us: Vec<u32>,
    /// Telemetry post latencies, µs.
    pub post_us: Vec<u32>,
    pub errors: BTreeMap<String, u64>,
    /// Devices with a live session at the end.
    pub logged_in: usize,
    /// How long until every device had logged in once (`None`: not all did).
    pub all_in: Option<Duration>,
    /// Some worker did not log all its devices in.
    pub some_not_in: bool,
}

impl Outcome {
    pub fn merge(mut self, o: Outcome) -> Self {
        self.login_us.extend(o.login_us);
        self.post_us.extend(o.post_us);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.clouds {
            let c = self.clouds.entry(k).or_default();
            c.devices += v.devices;
            c.auths += v.auths;
            c.messages += v.messages;
            c.errors += v.errors;
        }
        self.logged_in += o.logged_in;
        self.some_not_in |= o.some_not_in || o.all_in.is_none();
        self.all_in = self.all_in.max(o.all_in);
        self
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The `p` percentile (0..=100) of `us` (sorted in place), in milliseconds.
pub fn percentile_ms(us: &mut [u32], p: f64) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    us.sort_unstable();
    let i = ((p / 100.0) * (us.len() - 1) as f64).round() as usize;
    f64::from(us[i.min(us.len() - 1)]) / 1000.0
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn micros(t: Instant) -> u32 {
    t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// One worker: owns `devices` and goes round-robin over them until `deadline` (or `stop`).
/// With `telemetry`, a device logs in once (again if its session expires or is refused) and
/// then sends small JSON readings; without, every turn is a fresh login.
pub fn work(
    mut devices: Vec<Device>,
    deadline: Instant,
    telemetry: bool,
    c: &Counters,
    tls: &Arc<rustls::ClientConfig>,
) -> Outcome {
    let mut out = Outcome::default();
    if devices.is_empty() {
        return out;
    }
    // One connection pool per worker: the worker is sequential, so one socket serves all its
    // devices (thousands of idle sockets would exhaust file descriptors on both sides).
    let http = crate::client::agent_with(tls.clone(), Duration::from_secs(30));
    // Each device's cloud, as an index into the worker's few instances.
    let mut urls: Vec<String> = Vec::new();
    let mut tally: Vec<PerCloud> = Vec::new();
    let mut cloud_of = Vec::with_capacity(devices.len());
    for d in &mut devices {
        d.set_http(http.clone());
        let url = d.http().1;
        let k = match urls.iter().position(|u| u == url) {
            Some(k) => k,
            None => {
                urls.push(url.to_string());
                tally.push(PerCloud::default());
                urls.len() - 1
            }
        };
        tally[k].devices += 1;
        cloud_of.push(k);
    }
    let mut live = vec![false; devices.len()];
    let (t0, mut ever) = (Instant::now(), vec![false; devices.len()]);
    let mut ever_n = 0;
    let fail = |out: &mut Outcome, tally: &mut PerCloud, e: &AgentError| {
        tally.errors += 1;
        c.errors.fetch_add(1, Ordering::Relaxed);
        *out.errors.entry(error_kind(e)).or_default() += 1;
    };
    // A device whose last attempt failed waits a second before its next one, so a refusing
    // cloud is not hammered in a tight loop.
    let mut hold: Vec<Option<Instant>> = vec![None; devices.len()];
    let (mut n, mut skipped): (u64, usize) = (0, 0);
    while Instant::now() < deadline && !c.stop.load(Ordering::Relaxed) {
        let i = (n % devices.len() as u64) as usize;
        n += 1;
        if hold[i].is_some_and(|h| h > Instant::now()) {
            skipped += 1;
            if skipped >= devices.len() {
                std::thread::sleep(Duration::from_millis(10));
                skipped = 0;
            }
            continue;
        }
        skipped = 0;
        let d = &mut devices[i];
        let expired = d.session().is_none_or(|s| s.expires_at <= unix_now() + 5);
        if !telemetry || !live[i] || expired {
            let t = Instant::now();
            match d.login() {
                Ok(_) => {
                    tally[cloud_of[i]].auths += 1;
                    out.login_us.push(micros(t));
                    c.auths.fetch_add(1, Ordering::Relaxed);
                    live[i] = true;
                    if !ever[i] {
                        ever[i] = true;
                        ever_n += 1;
                        if ever_n == devices.len() {
                            out.all_in = Some(t0.elapsed());
                        }
                    }
                }
                Err(e) => {
                    live[i] = false;
                    hold[i] = Some(Instant::now() + Duration::from_secs(1));
                    fail(&mut out, &mut tally[cloud_of[i]], &e);
                }
            }
            continue;
        }
        let payload = format!(
            "{{\"temp_c\":{:.1},\"n\":{n}}}",
            18.0 + (n % 80) as f64 / 10.0
        );
        let t = Instant::now();
        match d.send_telemetry(payload.as_bytes()) {
            Ok(_) => {
                tally[cloud_of[i]].messages += 1;
                out.post_us.push(micros(t));
                c.messages.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if matches!(e, AgentError::Refused { status: 401, .. }) {
                    live[i] = false;
                }
                hold[i] = Some(Instant::now() + Duration::from_secs(1));
                fail(&mut out, &mut tally[cloud_of[i]], &e);
            }
        }
    }
    out.clouds = urls.into_iter().zip(tally).collect();
    out.logged_in = live.iter().filter(|l| **l).count();
    out
}

/// Splits `devices` over `workers` threads, runs [`work`] for `duration`, and returns the merged
/// outcome and the seconds the run took. `tick` is called about every 200 ms while it runs.
pub fn run_workers(
    devices: Vec<Device>,
    workers: usize,
    duration: Duration,
    telemetry: bool,
    counters: &Counters,
    tls: &Arc<rustls::ClientConfig>,
    tick: &mut dyn FnMut(f64),
) -> (Outcome, f64) {
    let workers = workers.clamp(1, devices.len().max(1));
    let mut groups: Vec<Vec<Device>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, d) in devices.into_iter().enumerate() {
        groups[i % workers].push(d);
    }
    let started = Instant::now();
    let deadline = started + duration;
    // The outcome so far, and when the last worker finished.
    let merged = Mutex::new((Outcome::default(), Duration::ZERO));
    let remaining = AtomicU64::new(workers as u64);
    std::thread::scope(|s| {
        for g in groups {
            let (merged, remaining) = (&merged, &remaining);
            s.spawn(move || {
                let o = work(g, deadline, telemetry, counters, tls);
                let end = started.elapsed();
                if let Ok(mut m) = merged.lock() {
                    m.0 = std::mem::take(&mut m.0).merge(o);
                    m.1 = m.1.max(end);
                }
                remaining.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while remaining.load(Ordering::SeqCst) > 0 {
            tick(started.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (mut outcome, end) = merged.into_inner().unwrap_or_default();
    if outcome.some_not_in {
        outcome.all_in = None;
    }
    (outcome, end.as_secs_f64())
}
