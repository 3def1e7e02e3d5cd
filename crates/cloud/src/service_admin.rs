//! The operator's operations: trusting roots, enrolling families and devices, revocation,
//! listings and the audit log. Each takes the [`Admin`] proof, so only an authenticated
//! operator's request can reach it, whatever the transport.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sesame_proto::admin::{
    AuditEvent, AuditLog, AuditQuery, Device, DeviceDetail, DeviceEnrolled, DeviceList, Enrolled,
    Family, FamilyCode, FamilyList, FamilyRequest, Revocation, RevokeRequest, Root, RootList,
    Target, Untrusted,
};

use crate::access::Admin;
use crate::error::{Failure, Kind};
use crate::service::Service;
use crate::store::DeviceRow;
use crate::trust::{cert_target, key_target, serial_target, Standing};

type R<T> = Result<T, Failure>;

/// A certificate given as PEM text or base64 DER.
pub(crate) fn der_of(text: &str) -> R<Vec<u8>> {
    if text.contains("-----BEGIN") {
        sesame_pki::cert_from_pem(text)
            .map_err(|e| Failure::invalid("malformed_request", e.to_string()))
    } else {
        B64.decode(text.trim())
            .map_err(|_| Failure::invalid("malformed_request", "certificate is not valid base64"))
    }
}

/// A serial from a path or query, canonical; refused if it could not be a serial.
pub(crate) fn serial_arg(serial: &str) -> R<String> {
    sesame_pki::profile::canonical_serial(serial).ok_or_else(|| {
        Failure::invalid(
            "bad_serial",
            "a serial is 1 to 64 characters of A-Z 0-9 - . _",
        )
    })
}

fn parse_certificate(der: &[u8]) -> R<x509_cert::Certificate> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der)
        .map_err(|e| Failure::invalid("malformed_certificate", e.to_string()))
}

fn device(d: DeviceRow) -> Device {
    Device {
        serial: d.serial,
        owner: d.owner,
        cert_id: d.cert_id,
        key_id: d.key_id,
        fingerprint: d.fingerprint,
        enrolled: d.enrolled,
        revoked: d.revoked,
        last_auth: d.last_auth,
    }
}

fn family(f: crate::store::FamilyRow) -> Family {
    Family {
        fingerprint: f.fingerprint,
        name: f.name,
        root: f.root,
        revoked: f.revoked,
    }
}

/// What a revocation request names: targets with their description, or a family.
enum Named {
    Targets(Vec<(String, Target)>),
    Family(String),
}

impl Service {
    /// Trusts a self-signed root CA. Returns whether it is new, and what was trusted.
    pub async fn trust_root(&self, _: &Admin, certificate: &str) -> R<(bool, Enrolled)> {
        let der = der_of(certificate)?;
        let cert = parse_certificate(&der)?;
        // A root is a self-signed CA: a leaf or a family CA here would trust too much or nothing.
        sesame_pki::verify_ca_issued_by(&der, &der).map_err(|e| {
            Failure::invalid(
                "not_a_root",
                format!("a trusted root must be a self-signed CA certificate ({e})"),
            )
        })?;
        let fp = sesame_pki::fingerprint(&der);
        let subject = cert.tbs_certificate.subject.to_string();
        let new = self
            .timed(
                "add_root",
                self.store
                    .add_root(&fp, &B64.encode(&der), &subject, self.now()),
            )
            .await?;
        self.audit("", "trust_root", "", &fp).await?;
        self.trust().await?;
        Ok((
            new,
            Enrolled {
                fingerprint: fp,
                subject: Some(subject),
                name: None,
            },
        ))
    }

    /// The trusted roots.
    pub async fn list_roots(&self, _: &Admin) -> R<RootList> {
        let rows = self.timed("roots", self.store.roots()).await?;
        Ok(RootList {
            roots: rows
                .into_iter()
                .map(|r| Root {
                    fingerprint: r.fingerprint,
                    subject: r.subject,
                })
                .collect(),
        })
    }

    /// Stops trusting a root: every family under it, and so every device, is refused from the
    /// next request on (until the root is trusted again).
    pub async fn untrust_root(&self, _: &Admin, fingerprint: &str) -> R<Untrusted> {
        let fp = sesame_pki::profile::canonical_hash(fingerprint).ok_or_else(|| {
            Failure::invalid(
                "malformed_request",
                "a root fingerprint is 64 hex digits (colons allowed)",
            )
        })?;
        if !self
            .timed("untrust_root", self.store.untrust_root(&fp))
            .await?
        {
            return Err(Failure::not_found(format!("no trusted root {fp}")));
        }
        self.audit("", "untrust_root", "", &fp).await?;
        self.trust().await?;
        Ok(Untrusted { untrusted: fp })
    }

    /// A single-use code, valid ten minutes, for a family's proof of possession.
    pub async fn family_code(&self, _: &Admin) -> R<FamilyCode> {
        let code = hex::encode(self.random(16));
        if code.len() != 32 {
            return Err(crate::store::StoreError::Random.into());
        }
        let expires_at = self.now() + 600;
        self.timed("new_code", self.store.new_code(&code, expires_at))
            .await?;
        Ok(FamilyCode { code, expires_at })
    }

    /// Enrolls a family CA issued by a trusted root, on proof that its key signed a fresh code.
    pub async fn enroll_family(&self, _: &Admin, req: &FamilyRequest) -> R<(bool, Enrolled)> {
        let der = der_of(&req.certificate)?;
        let cert = parse_certificate(&der)?;
        if cert.tbs_certificate.issuer == cert.tbs_certificate.subject {
            return Err(Failure::invalid(
                "is_root",
                "this is a root (self-signed); enroll the family CA it issued",
            ));
        }
        let name = sesame_pki::device_identity(&der)
            .map(|i| i.serial)
            .unwrap_or_else(|_| cert.tbs_certificate.subject.to_string());
        let roots = self.timed("roots", self.store.roots()).await?;
        let root = roots
            .iter()
            .find(|r| {
                B64.decode(&r.der)
                    .is_ok_and(|rd| sesame_pki::verify_ca_issued_by(&der, &rd).is_ok())
            })
            .ok_or_else(|| {
                Failure::invalid(
                    "untrusted_family",
                    "the family certificate is not a CA signed by a trusted root",
                )
            })?;
        if !self
            .timed("take_code", self.store.take_code(&req.code, self.now()))
            .await?
        {
            return Err(Failure::invalid(
                "bad_code",
                "unknown, used or expired verification code",
            ));
        }
        let key = sesame_pki::device_identity(&der)
            .map(|i| i.public_key)
            .unwrap_or_default();
        let alg: &dyn ring::signature::VerificationAlgorithm = if key.len() == 97 {
            &ring::signature::ECDSA_P384_SHA384_ASN1
        } else {
            &ring::signature::ECDSA_P256_SHA256_ASN1
        };
        if ring::signature::UnparsedPublicKey::new(alg, &key)
            .verify(req.code.as_bytes(), &req.signature)
            .is_err()
        {
            let _ = self
                .audit("", "enroll_family_refused", "proof_of_possession", "")
                .await;
            return Err(Failure::invalid(
                "proof_of_possession",
                "the signature of the code does not verify with the family key",
            ));
        }
        let fp = sesame_pki::fingerprint(&der);
        let row = crate::store::FamilyRow {
            fingerprint: fp.clone(),
            name: name.clone(),
            root: root.fingerprint.clone(),
            revoked: false,
            der: B64.encode(&der),
        };
        let new = self
            .timed("add_family", self.store.add_family(&row, self.now()))
            .await?;
        self.audit("", "enroll_family", "", &format!("{name} {fp}"))
            .await?;
        // This instance's TLS handshakes know the family at once (others within a second).
        self.trust().await?;
        Ok((
            new,
            Enrolled {
                fingerprint: fp,
                subject: None,
                name: Some(name),
            },
        ))
    }

    /// The enrolled families.
    pub async fn list_families(&self, _: &Admin) -> R<FamilyList> {
        let rows = self.timed("families", self.store.families()).await?;
        Ok(FamilyList {
            families: rows.into_iter().map(family).collect(),
        })
    }

    /// Enrolls one device on its own certificate (no family).
    pub async fn enroll_device(&self, _: &Admin, certificate: &str) -> R<DeviceEnrolled> {
        let der = der_of(certificate)?;
        let leaf = sesame_pki::profile::device_leaf(&der)
            .map_err(|e| Failure::invalid("bad_profile", e.to_string()))?;
        let cert_id = hex::encode(leaf.cert_id);
        let owner = format!("{}{cert_id}", crate::trust::CERT_OWNER);
        let bind = self
            .timed(
                "enroll_device",
                self.store.enroll_device(
                    &crate::store_trust::Registration {
                        serial: &leaf.serial,
                        owner: &owner,
                        cert_id: &cert_id,
                        key_id: &hex::encode(leaf.key_id),
                        der_hash: &hex::encode(leaf.der_hash),
                        der: &B64.encode(&der),
                    },
                    self.now(),
                ),
            )
            .await?;
        if bind == crate::store_trust::Bind::Conflict {
            return Err(Failure {
                kind: Kind::Conflict,
                code: "serial_conflict",
                message: format!("serial {} belongs to another device", leaf.serial),
            });
        }
        self.audit(&leaf.serial, "enroll_device", "", &cert_id)
            .await?;
        Ok(DeviceEnrolled {
            cert_id,
            fingerprint: hex::encode(leaf.der_hash),
            serial: leaf.serial,
        })
    }

    /// Marks each device revoked from the trust state (no query per device).
    async fn with_standing(&self, rows: Vec<DeviceRow>) -> R<Vec<Device>> {
        let trust = self.trust().await?;
        let t = self.now() as u64;
        Ok(rows
            .into_iter()
            .map(|mut d| {
                d.revoked =
                    trust.standing(&d.serial, &d.cert_id, &d.key_id, &d.owner, t) != Standing::Good;
                device(d)
            })
            .collect())
    }

    /// The device registry (at most `limit` rows, 1 to 100000, default 1000).
    pub async fn list_devices(&self, _: &Admin, limit: Option<i64>) -> R<DeviceList> {
        let limit = limit.unwrap_or(1000).clamp(1, 100_000);
        let rows = self.timed("devices", self.store.devices(limit)).await?;
        Ok(DeviceList {
            devices: self.with_standing(rows).await?,
        })
    }

    /// One device.
    pub async fn device_detail(&self, _: &Admin, serial: &str) -> R<DeviceDetail> {
        let serial = serial_arg(serial)?;
        let Some(d) = self.timed("device", self.store.device(&serial)).await? else {
            return Err(Failure::not_found(format!("no device {serial}")));
        };
        Ok(DeviceDetail {
            certificates: self.with_standing(vec![d]).await?,
            serial,
        })
    }

    /// What a revocation request names. Unknown names are a 404; nothing is written for them.
    async fn named(&self, r: RevokeRequest) -> R<Named> {
        let given = [
            r.serial.is_some(),
            r.fingerprint.is_some(),
            r.family.is_some(),
            r.certificate.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(Failure::invalid(
                "malformed_request",
                "give exactly one of serial, fingerprint, certificate, family",
            ));
        }
        if let Some(f) = r.family {
            return Ok(Named::Family(f.trim().to_string()));
        }
        let mut out = Vec::new();
        if let Some(serial) = r.serial {
            let serial = serial_arg(&serial)?;
            let known = self.timed("device", self.store.device(&serial)).await?;
            if known.is_none() && !r.pre_revoke {
                return Err(Failure::not_found(format!(
                    "no device {serial} has been seen; add \"pre_revoke\": true to revoke it before it is"
                )));
            }
            out.push((serial_target(&serial), Target::Serial { serial }));
        }
        if let Some(fp) = r.fingerprint {
            let h = sesame_pki::profile::canonical_hash(&fp).ok_or_else(|| {
                Failure::invalid(
                    "malformed_request",
                    "a fingerprint is 64 hex digits (colons allowed)",
                )
            })?;
            let found = self
                .timed("devices_by_hash", self.store.devices_by_hash(&h))
                .await?;
            if found.is_empty() {
                return Err(Failure::not_found(format!(
                    "no known certificate or key has the fingerprint {h}; give the certificate instead"
                )));
            }
            for d in found {
                out.extend(cert_and_key(d.serial, d.cert_id, d.key_id));
            }
        }
        if let Some(c) = r.certificate {
            let der = der_of(&c)?;
            let leaf = sesame_pki::profile::device_leaf(&der)
                .map_err(|e| Failure::invalid("bad_profile", e.to_string()))?;
            out.extend(cert_and_key(
                leaf.serial,
                hex::encode(leaf.cert_id),
                hex::encode(leaf.key_id),
            ));
        }
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(Named::Targets(out))
    }

    /// Revokes (or, with `revoke` false, restores) what the request names; effective on this
    /// instance at once and on the others by their next request.
    pub async fn change_revocation(
        &self,
        _: &Admin,
        r: RevokeRequest,
        revoke: bool,
    ) -> R<Revocation> {
        let event = if revoke { "revoke" } else { "unrevoke" };
        let changed = match self.named(r).await? {
            Named::Family(family) => {
                let rows = self
                    .timed(
                        "set_family_revoked",
                        self.store.set_family_revoked(&family, revoke),
                    )
                    .await?;
                // This instance's handshakes see the change at once.
                self.trust().await?;
                if rows.is_empty() {
                    return Err(Failure::not_found(format!("no family {family}")));
                }
                for f in &rows {
                    self.audit(
                        "",
                        &format!("{event}_family"),
                        "",
                        &format!("{} {}", f.name, f.fingerprint),
                    )
                    .await?;
                }
                rows.into_iter()
                    .map(|f| Target::Family {
                        name: f.name,
                        fingerprint: f.fingerprint,
                    })
                    .collect()
            }
            Named::Targets(targets) => {
                let names: Vec<String> = targets.iter().map(|(t, _)| t.clone()).collect();
                if revoke {
                    self.timed("revoke", self.store.revoke(&names, self.now()))
                        .await?;
                } else if self.timed("unrevoke", self.store.unrevoke(&names)).await? == 0 {
                    return Err(Failure::not_found("none of these is revoked"));
                }
                self.trust().await?;
                for (t, d) in &targets {
                    self.audit(d.serial(), &format!("{event}_device"), "", t)
                        .await?;
                }
                targets.into_iter().map(|(_, d)| d).collect()
            }
        };
        Ok(if revoke {
            Revocation {
                revoked: Some(changed),
                unrevoked: None,
            }
        } else {
            Revocation {
                revoked: None,
                unrevoked: Some(changed),
            }
        })
    }

    /// The audit log, by device and time.
    pub async fn audit_query(&self, _: &Admin, q: &AuditQuery) -> R<AuditLog> {
        // Refusals aggregated in memory are written first, so the log is current.
        self.flush_audit().await?;
        let serial = q.serial.as_deref().map(serial_arg).transpose()?;
        let rows = self
            .timed(
                "audit_log",
                self.store.audit_log(
                    serial.as_deref(),
                    q.since.unwrap_or(0),
                    q.until.unwrap_or(i64::MAX),
                    q.limit.unwrap_or(1000).clamp(1, 100_000),
                ),
            )
            .await?;
        Ok(AuditLog {
            events: rows
                .into_iter()
                .map(|e| AuditEvent {
                    at: e.at,
                    serial: e.serial,
                    event: e.event,
                    reason: e.reason,
                    detail: e.detail,
                })
                .collect(),
        })
    }

    /// Runs a store operation and records its latency under `op`.
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let r = f.await;
        self.metrics.store(op, started.elapsed());
        r
    }
}

/// A certificate and its key as revocation targets.
fn cert_and_key(serial: String, cert_id: String, key_id: String) -> [(String, Target); 2] {
    [
        (
            cert_target(&cert_id),
            Target::Certificate {
                serial: serial.clone(),
                cert_id,
            },
        ),
        (key_target(&key_id), Target::Key { serial, key_id }),
    ]
}
