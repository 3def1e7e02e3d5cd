//! What `sesame device` shows and reads from files: the `info` view (JSON and human), the
//! certificate summary, host keys, CA certificates, hex arguments, signature encodings.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sesame_host::{HostKeySlot, I2cParameters, KeySlotRecord, LifeCycle, ProductInfo, ZoneRecord};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;

/// A hex command-line argument (an optional `0x` prefix is allowed).
pub fn hex_arg(name: &str, s: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    hex::decode(t).map_err(|e| anyhow!("{name} is not valid hex: {e}"))
}

/// Host keys for the chip with `serial`: a JSON object {"mac", "cipher"} (`chip new`), or JSON
/// lines {"serial", "mac", "cipher"} (the factory's `host-keys.jsonl`).
pub fn load_host_keys(path: &Path, serial: &str) -> Result<([u8; 16], [u8; 16])> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        serial: Option<String>,
        mac: String,
        cipher: String,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read host keys {}", path.display()))?;
    let entries: Vec<Entry> = match serde_json::from_str::<Entry>(&text) {
        Ok(e) => vec![e],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| {
                format!(
                    "{} is not a host key file (JSON {{\"mac\", \"cipher\"}} or JSON lines with \"serial\")",
                    path.display()
                )
            })?,
    };
    let single = entries.len() == 1;
    let entry = entries
        .iter()
        .find(|e| {
            e.serial
                .as_deref()
                .map_or(single, |s| s.eq_ignore_ascii_case(serial))
        })
        .ok_or_else(|| anyhow!("{} has no host keys for chip {serial}", path.display()))?;
    let key = |name: &str, h: &str| -> Result<[u8; 16]> {
        hex::decode(h)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| anyhow!("{}: {name} must be 16 bytes of hex", path.display()))
    };
    Ok((key("mac", &entry.mac)?, key("cipher", &entry.cipher)?))
}

/// A CA certificate from a DER or PEM file; of several PEM certificates, the first.
pub fn load_ca(path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read CA {}", path.display()))?;
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not PEM", path.display()))?;
        let certs = sesame_pki::certs_from_pem(&text)
            .with_context(|| format!("{}: no certificate", path.display()))?;
        certs
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{}: no certificate", path.display()))
    } else {
        Ok(bytes)
    }
}

/// The subject of a DER certificate.
pub fn subject(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate.subject.to_string())
}

/// `R || S` as a DER `ECDSA-Sig-Value`.
pub fn signature_der(rs: &[u8]) -> Result<Vec<u8>> {
    Ok(match rs.len() {
        64 => p256::ecdsa::Signature::from_slice(rs)?
            .to_der()
            .as_bytes()
            .to_vec(),
        96 => p384::ecdsa::Signature::from_slice(rs)?
            .to_der()
            .as_bytes()
            .to_vec(),
        n => bail!("unexpected signature length {n}"),
    })
}

/// Subject, issuer, validity, SHA-256 and public key of a DER certificate.
pub fn certificate_summary(der: &[u8]) -> Result<Value> {
    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| anyhow!("the certificate in zone 0 does not parse: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let spki = &tbs.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .map(|oid| match oid {
            o if o == P256 => "P256".to_string(),
            o if o == P384 => "P384".to_string(),
            o => o.to_string(),
        });
    Ok(json!({
        "subject": tbs.subject.to_string(),
        "issuer": tbs.issuer.to_string(),
        "serial_number": hex::encode(tbs.serial_number.as_bytes()),
        "not_before": tbs.validity.not_before.to_string(),
        "not_after": tbs.validity.not_after.to_string(),
        "bytes": der.len(),
        "sha256": sesame_pki::fingerprint(der),
        "curve": curve,
        "public_key": spki.subject_public_key.as_bytes().map(hex::encode),
    }))
}

use crate::vocab::{ac_name, usages};

/// Everything `device info` reports.
pub struct Info<'a> {
    pub address: u8,
    pub serial: String,
    pub product: &'a ProductInfo,
    pub life_cycle: LifeCycle,
    pub i2c: I2cParameters,
    pub zones: &'a [ZoneRecord],
    pub key_usage_limit: u16,
    pub slots: &'a [KeySlotRecord],
    pub host: HostKeySlot,
    /// The certificate summary, or why there is none.
    pub certificate: &'a Result<Value, String>,
}

impl Info<'_> {
    pub fn json(&self) -> Value {
        let p = self.product;
        let zones: Vec<Value> = self
            .zones
            .iter()
            .map(|z| {
                crate::vocab::zone(
                    usize::from(z.index),
                    z.counter,
                    usize::from(z.data_len),
                    ((z.ac >> 4) & 7, z.ac & 0x80 != 0),
                    (z.ac & 7, z.ac & 0x08 != 0),
                )
            })
            .collect();
        let keys: Vec<Value> = self
            .slots
            .iter()
            .map(|k| {
                let curve = k.curve.filter(|_| k.present).map(|c| format!("{c:?}"));
                crate::vocab::key_slot(k.slot, curve, k.mode, None, None)
            })
            .collect();
        json!({
            "address": self.address,
            "serial": self.serial,
            "product": {
                "mask_id": hex::encode(p.mask_id),
                "model": p.model.map(|m| format!("{m:?}")),
                "serial": p.st_number.map(hex::encode_upper),
                "io_buffer_size": p.io_buffer_size,
                "atomicity_buffer_size": p.atomicity_buffer_size,
                "nvm_size": p.nvm_size,
            },
            "life_cycle": self.life_cycle.to_string(),
            "i2c": {
                "address": self.i2c.address,
                "locked": self.i2c.locked,
                "low_power": self.i2c.low_power,
            },
            "zones": zones,
            "private_keys": keys,
            "key_usage_limit": (self.key_usage_limit != sesame_chip::UNLIMITED)
                .then_some(self.key_usage_limit),
            "host_keys": { "present": self.host.present, "counter": self.host.counter },
            "certificate": self.certificate.as_ref().ok(),
            "certificate_error": self.certificate.as_ref().err(),
        })
    }

    pub fn human(&self) -> String {
        let p = self.product;
        let mut s = String::new();
        let model = p.model.map_or("unknown model".into(), |m| format!("{m:?}"));
        let _ = writeln!(
            s,
            "chip {} at 0x{:02X}  (mask {}, {model})",
            self.serial,
            self.address,
            hex::encode(p.mask_id)
        );
        let _ = writeln!(s, "  life cycle   {}", self.life_cycle);
        let _ = writeln!(
            s,
            "  I2C          address 0x{:02X}{}, low power {}",
            self.i2c.address,
            if self.i2c.locked { " (locked)" } else { "" },
            self.i2c.low_power
        );
        let _ = writeln!(s, "  zones");
        for z in self.zones {
            let (read, update) = ((z.ac >> 4) & 7, z.ac & 7);
            let fixed = |bit: u8| if z.ac & bit != 0 { "" } else { " (fixed)" };
            let counter = z.counter.map(|c| format!(", counter {c}"));
            let _ = writeln!(
                s,
                "    {:>2} {:<7} {:>5} bytes  read {}{}  update {}{}{}",
                z.index,
                if z.counter.is_some() {
                    "counter"
                } else {
                    "plain"
                },
                z.data_len,
                ac_name(read),
                fixed(0x80),
                ac_name(update),
                fixed(0x08),
                counter.unwrap_or_default()
            );
        }
        let _ = writeln!(s, "  private keys");
        for k in self.slots {
            match k.curve.filter(|_| k.present) {
                Some(c) => {
                    let _ = writeln!(
                        s,
                        "    slot {}: {c:?}, mode {:04X} ({})",
                        k.slot,
                        k.mode,
                        usages(k.mode).join(", ")
                    );
                }
                None => {
                    let _ = writeln!(s, "    slot {}: empty", k.slot);
                }
            }
        }
        let _ = writeln!(
            s,
            "  host keys    {} (C-MAC counter {})",
            if self.host.present {
                "provisioned"
            } else {
                "none"
            },
            self.host.counter
        );
        match self.certificate {
            Ok(c) => {
                let f = |k: &str| c[k].as_str().unwrap_or("?").to_string();
                let _ = writeln!(s, "  certificate  subject {}", f("subject"));
                let _ = writeln!(s, "               issuer  {}", f("issuer"));
                let _ = writeln!(
                    s,
                    "               valid   {} .. {}",
                    crate::vocab::local_of(&c["not_before"]),
                    crate::vocab::local_of(&c["not_after"])
                );
                let _ = write!(
                    s,
                    "               SHA-256 {} ({} bytes)",
                    f("sha256"),
                    c["bytes"]
                );
            }
            Err(e) => {
                let _ = write!(s, "  certificate  none: {e}");
            }
        }
        s
    }
}
