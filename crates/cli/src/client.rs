//! HTTP(S) to a sesame cloud, for every client in the binary (operator commands, `device
//! login/update`, `fleet run`): base-URL checks, TLS trust (the system store plus `--cacert` /
//! `$SESAME_CACERT`), and errors that say what to do.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

/// Which certificate authorities a client trusts for the cloud's TLS certificate.
#[derive(Args, Debug, Clone, Default)]
pub struct Trust {
    /// CA certificate(s), PEM, to trust for the cloud's TLS certificate besides the system
    /// store (which honours $SSL_CERT_FILE); e.g. the factory's root.pem. Default: $SESAME_CACERT.
    #[arg(long, env = "SESAME_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

impl Trust {
    /// An HTTP agent that trusts the system store and `--cacert`.
    pub fn agent(&self, timeout: Duration) -> Result<ureq::Agent> {
        agent(self.cacert.as_deref(), timeout)
    }

    /// The TLS settings that trust the system store and `--cacert`.
    pub fn tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        tls_config(self.cacert.as_deref())
    }
}

/// The CA certificates of a PEM file (at least one).
pub fn load_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the CA file {}", path.display()))?;
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Err(anyhow!(
            "{} is not a PEM CA certificate (give the CA's .pem file, e.g. the factory's root.pem)",
            path.display()
        ));
    }
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// An HTTP agent trusting the system store plus the CAs of `cacert`.
pub fn agent(cacert: Option<&Path>, timeout: Duration) -> Result<ureq::Agent> {
    Ok(agent_with(tls_config(cacert)?, timeout))
}

/// An HTTP agent (its own connection pool) with a TLS configuration made by [`tls_config`].
pub fn agent_with(tls: Arc<rustls::ClientConfig>, timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .tls_config(tls)
        .build()
}

/// TLS client settings trusting the system store plus the CAs of `cacert`.
pub fn tls_config(cacert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    // An unreadable system store is not fatal: --cacert may be all that is needed.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = cacert {
        for c in load_cas(path)? {
            roots
                .add(c)
                .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// A cloud base URL given by `flag`: absolute http(s), no query; returned without trailing `/`.
pub fn base_url(s: &str, flag: &str) -> Result<String> {
    let u = url::Url::parse(s).map_err(|e| {
        crate::out::usage(format!(
            "{flag} '{s}' is not a full URL ({e}): give one like https://cloud.example:8443"
        ))
    })?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(crate::out::usage(format!(
            "{flag} '{s}' must be an http:// or https:// URL with a host, like https://cloud.example:8443"
        )));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(crate::out::usage(format!(
            "{flag} '{s}' must be a base URL, without ?query or #fragment"
        )));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Why a call to the cloud failed.
#[derive(Debug)]
pub enum CallError {
    /// The cloud answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// The cloud's error code.
        code: String,
        /// The cloud's message.
        message: String,
    },
    /// No answer: connection, TLS or timeout.
    Unreachable {
        /// The URL called.
        url: String,
        /// What the transport said, with a hint when one helps.
        cause: String,
    },
}

impl CallError {
    /// The `error` name under `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused",
            Self::Unreachable { .. } => "unreachable",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                status,
                code,
                message,
            } => write!(f, "cloud refused ({status} {code}): {message}"),
            Self::Unreachable { url, cause } => write!(f, "cannot reach {url}: {cause}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A transport error's message, with the fix when it is a trust problem.
pub fn transport_hint(e: &str) -> String {
    if e.contains("UnknownIssuer") || e.contains("invalid peer certificate") {
        format!(
            "{e}; the cloud's TLS certificate is not issued by a CA this machine trusts: pass --cacert CA.pem (or set SESAME_CACERT) with the CA that issued it"
        )
    } else if e.contains("NotValidForName") {
        format!("{e}; the cloud's TLS certificate does not name the host in the URL")
    } else {
        e.to_string()
    }
}

/// One JSON call with an optional bearer token.
pub fn call(
    http: &ureq::Agent,
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let url = format!("{base}{path}");
    let mut req = http.request(method, &url);
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(rsp) => rsp
            .into_json()
            .map_err(|e| anyhow!("{url}: the answer is not JSON ({e}); is this a sesame cloud?")),
        Err(ureq::Error::Status(status, rsp)) => {
            let v: Value = rsp.into_json().unwrap_or_default();
            Err(CallError::Refused {
                status,
                code: v["error"].as_str().unwrap_or("unknown").to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            }
            .into())
        }
        Err(e) => Err(CallError::Unreachable {
            url: base.to_string(),
            cause: transport_hint(&e.to_string()),
        }
        .into()),
    }
}
