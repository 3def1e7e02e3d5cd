//! The one output vocabulary of the binary. JSON: snake_case keys, bytes as lowercase hex,
//! times as RFC 3339 UTC strings. Human output: local times and tables with headers.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

/// Keys that hold Unix seconds in the cloud's answers.
fn is_time_key(k: &str) -> bool {
    k == "at" || k == "last_auth" || k.ends_with("_at")
}

/// Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

/// Unix seconds in the local time zone, for people (`2026-01-31 13:00:00 CET`).
pub fn local(unix: i64) -> String {
    Timestamp::from_second(unix).map_or_else(
        |_| unix.to_string(),
        |t| {
            t.to_zoned(TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        },
    )
}

/// A time value of a JSON answer shown locally: Unix seconds or an RFC 3339 string; `-` when
/// absent.
pub fn local_of(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), local),
        // RFC 5280's "no well-defined expiration" is past what a time zone can show.
        Value::String(s) if s.starts_with("9999-12-31") => "no expiry".into(),
        Value::String(s) => s
            .parse::<Timestamp>()
            .map_or_else(|_| s.clone(), |t| local(t.as_second())),
        _ => "-".into(),
    }
}

/// Rewrites Unix-second times (keys `at`, `last_auth`, `*_at`) as RFC 3339, recursively.
pub fn times_to_rfc3339(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if is_time_key(k) {
                    if let Some(n) = x.as_i64() {
                        *x = Value::String(rfc3339(n));
                        continue;
                    }
                }
                times_to_rfc3339(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(times_to_rfc3339),
        _ => {}
    }
}

/// `--since`: RFC 3339, or Unix seconds.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    s.parse::<Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| format!("'{s}' is neither RFC 3339 (2026-01-31T12:00:00Z) nor Unix seconds"))
}

/// A table: a header line, then the rows, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.zip(&width).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{c:<w$}");
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    s.pop();
    s
}

/// A 3-bit zone access condition's name (protocol.md §4).
pub fn ac_name(ac: u8) -> &'static str {
    match ac {
        0 => "always",
        1 => "host",
        2 => "admin-auth",
        3 => "admin-mac",
        _ => "never",
    }
}

/// The usages a key's mode of operation allows (protocol.md §5).
pub fn usages(mode: u16) -> Vec<&'static str> {
    [
        (0x0004, "sign-digest"),
        (0x0008, "sign-internal"),
        (0x0001, "key-establishment"),
        (0x8000, "regenerable"),
    ]
    .into_iter()
    .filter(|(bit, _)| mode & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// A data zone, as `chip inspect --json` and `device info --json` both show it. Access
/// conditions are (value, may change).
pub fn zone(
    index: usize,
    counter: Option<u32>,
    size: usize,
    read: (u8, bool),
    update: (u8, bool),
) -> Value {
    serde_json::json!({
        "index": index,
        "kind": if counter.is_some() { "counter" } else { "plain" },
        "size": size,
        "read_ac": read.0,
        "read_ac_name": ac_name(read.0),
        "read_ac_changeable": read.1,
        "update_ac": update.0,
        "update_ac_name": ac_name(update.0),
        "update_ac_changeable": update.1,
        "counter": counter,
    })
}

/// A private key slot, as both commands show it; `public_key` is the uncompressed SEC1
/// point, when known (the host driver does not read it).
pub fn key_slot(
    slot: u8,
    curve: Option<String>,
    mode: u16,
    public_key: Option<&[u8]>,
    uses_left: Option<u16>,
) -> Value {
    serde_json::json!({
        "slot": slot,
        "present": curve.is_some(),
        "curve": curve,
        "mode": mode,
        "usage": usages(mode),
        "public_key": public_key.map(hex::encode),
        "uses_left": uses_left,
    })
}

/// `chip inspect --json`: the image's state in the vocabulary of `device info --json`
/// (`address`, zones, key slots, `key_usage_limit`, `host_keys`, the certificate summary),
/// plus what only the image shows (public keys, uses left, envelope keys, password, command
/// table).
pub fn chip_inspection(i: &sesame_chip::Inspection, certificate: Option<Value>) -> Value {
    let zones: Vec<Value> = i
        .zones
        .iter()
        .map(|z| zone(z.index, z.counter, z.size, z.read_ac, z.update_ac))
        .collect();
    let keys: Vec<Value> = i
        .private_keys
        .iter()
        .map(|k| {
            let pk = k.public_key.as_ref();
            key_slot(
                k.slot,
                pk.map(|p| format!("{:?}", p.curve)),
                k.mode,
                pk.map(|p| p.to_sec1()).as_deref(),
                k.uses_left,
            )
        })
        .collect();
    let policy: Vec<Value> = i
        .command_policy
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
        .collect();
    serde_json::json!({
        "address": i.i2c_address,
        "serial": i.serial,
        "mask_id": i.mask_id,
        "life_cycle": i.life_cycle,
        "zones": zones,
        "private_keys": keys,
        "key_usage_limit": i.global_uses_left,
        "host_keys": { "present": i.host_keys, "counter": i.host_counter },
        "envelope_keys": i.envelope_keys,
        "password_tries": i.password_tries,
        "command_policy": policy,
        "certificate": certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_become_rfc3339_everywhere() {
        let mut v = serde_json::json!({"at": 0, "x": [{"last_auth": 86400, "expires_at": 1}], "n": 5, "last_auth2": 3});
        times_to_rfc3339(&mut v);
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["x"][0]["last_auth"], "1970-01-02T00:00:00Z");
        assert_eq!(v["x"][0]["expires_at"], "1970-01-01T00:00:01Z");
        assert_eq!(v["n"], 5);
        assert_eq!(v["last_auth2"], 3);
    }

    #[test]
    fn since_takes_both_forms_and_names_them_when_wrong() {
        assert_eq!(parse_since("60"), Ok(60));
        assert_eq!(parse_since("1970-01-01T00:01:00Z"), Ok(60));
        assert!(parse_since("yesterday").is_err_and(|e| e.contains("RFC 3339")));
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let t = table(
            &["SERIAL", "STATE"],
            &[
                vec!["0211".into(), "ok".into()],
                vec!["02".into(), "revoked".into()],
            ],
        );
        assert_eq!(t, "SERIAL  STATE\n0211    ok\n02      revoked");
    }
}
