//! The identity model, in one place.
//!
//! - **A device is (issuing family, serial).** The serial is the certificate's subject CN in its
//!   canonical form (`A-Z 0-9 - . _`, at most 64 characters). The first certificate that logs in
//!   with a serial binds that serial to its family (the *owner*); the same serial from any other
//!   family is refused with `serial_conflict`, so one device's data never goes to another.
//! - **An individually enrolled device is its certificate**: its owner is `cert:<cert id>`.
//! - **A certificate is identified by what its issuer signed**: the SHA-256 of its
//!   TBSCertificate (`cert id`), and its key by the SHA-256 of its public point (`key id`).
//!   Neither changes when the signature is re-encoded, so a re-encoded certificate cannot escape a
//!   revocation.
//! - **Revocation** applies to a serial (the device, whatever certificate it shows), a
//!   certificate, a key (every certificate for it), or a family (every device it issued).
//!
//! Trust state (roots, families, revocations) is held in memory as a [`Trust`] snapshot and
//! reloaded when the database's trust version changes, so a change made by any instance holds
//! on every instance by its next request.

use std::collections::{HashMap, HashSet};

use sesame_pki::profile::CaCert;

use crate::store::{FamilyRow, RootRow};

/// The owner prefix of an individually enrolled device.
pub const CERT_OWNER: &str = "cert:";

/// A revocation target as stored.
pub fn serial_target(serial: &str) -> String {
    format!("serial:{serial}")
}

/// A revocation target as stored.
pub fn cert_target(cert_id: &str) -> String {
    format!("cert:{cert_id}")
}

/// A revocation target as stored.
pub fn key_target(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// An enrolled family, parsed.
#[derive(Clone, Debug)]
pub struct Family {
    /// The stored row.
    pub row: FamilyRow,
    /// The family CA certificate.
    pub ca: CaCert,
}

/// Roots, families and revocations at one trust version.
#[derive(Debug, Default)]
pub struct Trust {
    /// The database's trust version this was loaded at.
    pub version: i64,
    /// Trusted roots.
    pub roots: Vec<(RootRow, CaCert)>,
    /// Enrolled families.
    pub families: Vec<Family>,
    /// Revocation targets (`serial:…`, `cert:…`, `key:…`).
    pub revoked: HashSet<String>,
    /// Families by subject key identifier, by subject name and by fingerprint (indexes into
    /// `families`), so finding a device's family never scans.
    by_key_id: HashMap<Vec<u8>, Vec<usize>>,
    by_subject: HashMap<Vec<u8>, Vec<usize>>,
    by_fingerprint: HashMap<String, usize>,
}

/// Why a known device may not proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Nothing stands in the way.
    Good,
    /// The device, its certificate or its key is revoked.
    Revoked,
    /// Its family is revoked.
    FamilyRevoked,
    /// Its family CA or root is outside its validity period.
    Expired,
    /// Its family is no longer enrolled, or its root no longer trusted.
    Untrusted,
}

impl Standing {
    /// The refusal this standing means, if any.
    pub fn refusal(self) -> Option<crate::auth::Reason> {
        use crate::auth::Reason;
        match self {
            Self::Good => None,
            Self::Revoked => Some(Reason::Revoked),
            Self::FamilyRevoked => Some(Reason::FamilyRevoked),
            Self::Expired => Some(Reason::Expired),
            Self::Untrusted => Some(Reason::NotEnrolled),
        }
    }
}

impl Trust {
    /// Builds a snapshot from stored rows; rows whose certificates no longer parse are left out.
    pub fn new(
        version: i64,
        roots: Vec<RootRow>,
        families: Vec<FamilyRow>,
        revoked: Vec<String>,
    ) -> Self {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let parse = |der: &str| b64.decode(der).ok().and_then(|d| CaCert::parse(&d).ok());
        let families: Vec<Family> = families
            .into_iter()
            .filter_map(|f| parse(&f.der).map(|ca| Family { row: f, ca }))
            .collect();
        let (mut by_key_id, mut by_subject) = (HashMap::new(), HashMap::new());
        let mut by_fingerprint = HashMap::new();
        for (i, f) in families.iter().enumerate() {
            if let Some(k) = &f.ca.subject_key_id {
                by_key_id.entry(k.clone()).or_insert_with(Vec::new).push(i);
            }
            by_subject
                .entry(f.ca.subject.clone())
                .or_insert_with(Vec::new)
                .push(i);
            by_fingerprint.insert(f.row.fingerprint.clone(), i);
        }
        Self {
            version,
            roots: roots
                .into_iter()
                .filter_map(|r| parse(&r.der).map(|c| (r, c)))
                .collect(),
            families,
            revoked: revoked.into_iter().collect(),
            by_key_id,
            by_subject,
            by_fingerprint,
        }
    }

    /// The enrolled families that may have issued `leaf` (the candidates for a chain check):
    /// found by its authority key identifier, else by its issuer name.
    pub fn issuers(&self, leaf: &sesame_pki::profile::Leaf) -> impl Iterator<Item = &Family> + '_ {
        let by_key = leaf
            .authority_key_id
            .as_ref()
            .and_then(|k| self.by_key_id.get(k));
        by_key
            .or_else(|| self.by_subject.get(&leaf.issuer))
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|i| &self.families[*i])
    }

    /// The family with this fingerprint.
    pub fn family(&self, fingerprint: &str) -> Option<&Family> {
        self.by_fingerprint
            .get(fingerprint)
            .map(|i| &self.families[*i])
    }

    /// Whether the device (serial, certificate, key, owner) may proceed at `now`.
    pub fn standing(
        &self,
        serial: &str,
        cert_id: &str,
        key_id: &str,
        owner: &str,
        now: u64,
    ) -> Standing {
        if self.revoked.contains(&serial_target(serial))
            || self.revoked.contains(&cert_target(cert_id))
            || self.revoked.contains(&key_target(key_id))
        {
            return Standing::Revoked;
        }
        if owner.starts_with(CERT_OWNER) {
            return Standing::Good;
        }
        let Some(f) = self.family(owner) else {
            return Standing::Untrusted;
        };
        let Some(root) = self.roots.iter().find(|(r, _)| r.fingerprint == f.row.root) else {
            return Standing::Untrusted;
        };
        if f.row.revoked {
            Standing::FamilyRevoked
        } else if f.ca.valid_at(now) && root.1.valid_at(now) {
            Standing::Good
        } else {
            Standing::Expired
        }
    }
}
