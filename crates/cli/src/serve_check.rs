//! What `sesame cloud serve` checks before it says it is listening: a database it can open
//! (failing fast, naming the host and the cause), a command key that is one, and a TLS key that
//! belongs to its certificate.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a PostgreSQL server may take to accept a connection at start.
pub const DB_CONNECT: Duration = Duration::from_secs(5);

/// Checks the database URL before the pool tries it (a pool retries silently for 30 s).
pub fn database(db: &str) -> Result<()> {
    if let Some(rest) = db.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return Ok(());
        }
        return sqlite_file(Path::new(path), db);
    }
    if db.starts_with("postgres:") || db.starts_with("postgresql:") {
        return postgres_reachable(db);
    }
    bail!("--db '{db}' is neither sqlite://FILE nor postgres://USER@HOST/DB")
}

fn sqlite_file(path: &Path, db: &str) -> Result<()> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    if path.is_dir() {
        bail!(
            "--db {db}: {} is a directory; give a database file, e.g. sqlite://cloud.db",
            path.display()
        );
    }
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut head = [0u8; 16];
            let n = f
                .read(&mut head)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n > 0 && (n < 16 || &head != MAGIC) {
                let looks = if head.starts_with(b"-----BEGIN") {
                    " (it is a PEM file)"
                } else {
                    ""
                };
                bail!(
                    "--db {db}: {} is not an SQLite database{looks}; give a new or existing database file, e.g. sqlite://cloud.db",
                    path.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            match parent {
                Some(p) if !p.is_dir() => bail!(
                    "--db {db}: directory {} does not exist; create it or give another path",
                    p.display()
                ),
                _ => Ok(()),
            }
        }
        Err(e) => Err(anyhow!("--db {db}: cannot open {}: {e}", path.display())),
    }
}

/// `host:port` of a PostgreSQL URL, and a TCP connection to it within [`DB_CONNECT`].
fn postgres_reachable(db: &str) -> Result<()> {
    let u = url::Url::parse(db).map_err(|e| anyhow!("--db: not a PostgreSQL URL ({e})"))?;
    let host = u.host_str().unwrap_or("localhost").to_string();
    let port = u.port().unwrap_or(5432);
    // A Unix socket directory given as ?host=/path is left to the driver.
    if host.is_empty() || u.query_pairs().any(|(k, _)| k == "host") {
        return Ok(());
    }
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("PostgreSQL host {host}: cannot resolve it: {e}"))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, DB_CONNECT) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    bail!(
        "cannot connect to PostgreSQL at {host}:{port}: {}; is the server running and reachable?",
        last.map_or_else(|| "no address".to_string(), |e| e.to_string())
    )
}

/// The command key must be a P-256 PKCS#8 private key.
pub fn command_key(path: &str) -> Result<()> {
    use p256::pkcs8::DecodePrivateKey;
    let text =
        std::fs::read(path).with_context(|| format!("cannot read the command key {path}"))?;
    let text = String::from_utf8(text).map_err(|_| {
        anyhow!("command key {path} is not a PEM file (give the factory's command.key.pem)")
    })?;
    p256::SecretKey::from_pkcs8_pem(&text).map_err(|e| {
        anyhow!("command key {path} is not a P-256 private key in PKCS#8 PEM ({e}); give the factory's command.key.pem")
    })?;
    Ok(())
}

/// The TLS key must belong to the first certificate of the chain.
pub fn tls(cert: &str, key: &str) -> Result<()> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow!("TLS certificate {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("TLS certificate {cert}: {e}"))?;
    if chain.is_empty() {
        bail!("TLS certificate {cert} holds no CERTIFICATE block");
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("TLS key {key}: not a PEM private key ({e})"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| anyhow!("TLS key {key}: {e}"))?;
    let ck = rustls::sign::CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => bail!(
            "TLS key {key} does not belong to the certificate {cert}; give the key made with that certificate"
        ),
        // A key type whose public half rustls cannot compute: the handshake will tell.
        Err(_) => Ok(()),
    }
}
