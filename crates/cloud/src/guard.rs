//! What keeps strangers from aiming the cloud at a device: throttling and audit of refusals
//! keyed by what a caller cannot choose freely.
//!
//! - Refused authentication attempts are counted per client address (IPv6 by /64), in memory,
//!   never per the serial a certificate claims: nobody can get a device throttled by sending
//!   its name or its public certificate.
//! - Per-device counting starts only after the chip's signature verified.
//! - Refusals reach the audit log aggregated: one row per (reason, verified serial or none) per
//!   flush, with the count, never one row per attempt or per attacker-chosen name.
//!
//! Every map here is bounded; when one is full, stale entries go first, then all of them (a
//! throttle that forgets is safe; one that grows without bound is not).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most entries a map here holds.
const MAX_ENTRIES: usize = 100_000;
/// Most distinct refusal keys aggregated between two flushes; more fold into the anonymous key.
const MAX_AUDIT_KEYS: usize = 1_000;

/// The client-address key of a peer: IPv4 as is, IPv6 by its /64 (one host usually has a whole
/// /64, so a per-address key would be free to multiply).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Fixed-window counters in memory.
#[derive(Debug)]
struct Windows<K> {
    map: Mutex<HashMap<K, (i64, u32)>>,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    /// The count of `key` in the window containing `now` (without counting).
    fn get(&self, key: &K, now: i64, window: i64) -> u32 {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((start, n)) if now < start + window => *n,
            _ => 0,
        }
    }

    /// Counts one event; returns the count including it.
    fn bump(&self, key: K, now: i64, window: i64) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, (start, _)| now < *start + window);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        let e = map.entry(key).or_insert((now, 0));
        if now >= e.0 + window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }

    /// Takes back one count of `key` (an attempt that turned out not to count).
    fn refund(&self, key: &K) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(key) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    fn sweep(&self, now: i64, window: i64) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (start, _)| now < *start + window);
    }
}

/// One aggregated audit row waiting to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// A serial from a certificate that chained to an enrolled family, or empty.
    pub serial: String,
    /// The refusal reason code.
    pub reason: &'static str,
    /// How many refusals.
    pub count: u64,
}

/// Throttles and the audit aggregator of one instance.
#[derive(Debug, Default)]
pub struct Guard {
    refusals: Windows<IpAddr>,
    logins: Windows<String>,
    audit: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Guard {
    /// True when this client address has used up its refusals for the window.
    pub fn client_throttled(&self, ip: IpAddr, now: i64, window: i64, max: u32) -> bool {
        self.refusals.get(&client_key(ip), now, window) >= max
    }

    /// Counts one refused attempt from this client address.
    pub fn refused(&self, ip: IpAddr, now: i64, window: i64) {
        self.refusals.bump(client_key(ip), now, window);
    }

    /// Counts one verified login of `serial`; true if it is over `max` for the window.
    pub fn login_over(&self, serial: &str, now: i64, window: i64, max: u32) -> bool {
        self.logins.bump(serial.to_string(), now, window) > max
    }

    /// Takes back a login counted by [`Guard::login_over`] that opened no session (a replayed
    /// response), so a captured response replayed cannot use up the device's logins.
    pub fn login_refund(&self, serial: &str) {
        self.logins.refund(&serial.to_string());
    }

    /// Adds a refusal to the audit aggregate. `serial` must come from a certificate that chained
    /// to an enrolled family (or be empty).
    pub fn audit_refusal(&self, serial: &str, reason: &'static str) {
        let mut map = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.len() >= MAX_AUDIT_KEYS && !map.contains_key(&(serial.into(), reason)) {
            (String::new(), reason)
        } else {
            (serial.to_string(), reason)
        };
        *map.entry(key).or_insert(0) += 1;
    }

    /// Takes the aggregated refusals (to be written to the audit log).
    pub fn take_audit(&self) -> Vec<Pending> {
        let mut map = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Pending> = map
            .drain()
            .map(|((serial, reason), count)| Pending {
                serial,
                reason,
                count,
            })
            .collect();
        out.sort_by(|a, b| (a.reason, &a.serial).cmp(&(b.reason, &b.serial)));
        out
    }

    /// Forgets windows that are over.
    pub fn sweep(&self, now: i64, window: i64) {
        self.refusals.sweep(now, window);
        self.logins.sweep(now, window);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
    }

    #[test]
    fn windows_reset_and_stay_bounded() {
        let g = Guard::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            g.refused(ip, 100, 60);
        }
        assert!(g.client_throttled(ip, 120, 60, 3));
        assert!(!g.client_throttled(ip, 161, 60, 3));
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            g.refused(IpAddr::from(i.to_be_bytes()), 100, 60);
        }
        assert!(g.refusals.map.lock().unwrap().len() <= MAX_ENTRIES);
    }

    #[test]
    fn audit_keys_are_bounded() {
        let g = Guard::default();
        for i in 0..(MAX_AUDIT_KEYS + 500) {
            g.audit_refusal(&format!("S{i}"), "bad_signature");
        }
        let rows = g.take_audit();
        assert!(rows.len() <= MAX_AUDIT_KEYS + 1);
        assert_eq!(
            rows.iter().map(|r| r.count).sum::<u64>(),
            (MAX_AUDIT_KEYS + 500) as u64
        );
        assert!(g.take_audit().is_empty());
    }
}
