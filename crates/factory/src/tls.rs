//! `factory tls`: a TLS server certificate for the cloud, issued by the factory's root CA,
//! so that devices and operators trust the cloud with the root they already hold.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

use crate::error::{io, Ctx, Error, Kind, Result};
use crate::{write_private, FactoryDir, ORG};

/// The files `factory tls` writes.
pub struct TlsFiles {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
}

/// Issues a P-256 server certificate (valid 2 years) for `names` (DNS names or IP addresses)
/// from the factory's root, written as `NAME.pem` / `NAME.key.pem` under `DIR/tls/`.
pub fn issue(dir: &Path, names: &[String]) -> Result<TlsFiles> {
    if names.is_empty() {
        return Err(Error::usage(
            "give at least one --name (host name or IP address)",
        ));
    }
    let d = FactoryDir(dir.to_path_buf());
    let root_pem = io(std::fs::read_to_string(d.root()), || {
        format!("{} is not a factory (no root.pem)", dir.display())
    })?;
    let root_der = sesame_pki::cert_from_pem(&root_pem)?;
    let root_key_path = d.root_key();
    let root_key = KeyPair::from_pem(&io(std::fs::read_to_string(&root_key_path), || {
        format!("cannot read {}", root_key_path.display())
    })?)
    .ctx(Kind::Crypto, || {
        format!("{}: not a private key", root_key_path.display())
    })?;
    let root_params = CertificateParams::from_ca_cert_der(&CertificateDer::from(root_der))
        .ctx(Kind::Crypto, || "root.pem".into())?;
    // rcgen needs the issuer as a certificate object; re-signing the parsed root reproduces its
    // name and key (the root's own DER is unchanged on disk).
    let issuer = root_params
        .self_signed(&root_key)
        .ctx(Kind::Crypto, || "root.pem".into())?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORG);
    dn.push(DnType::CommonName, names[0].as_str());
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.as_str().try_into().map(SanType::DnsName).map_err(|_| {
                Error::usage(format!(
                    "--name '{n}' is neither a host name nor an IP address"
                ))
            }),
        })
        .collect::<Result<_>>()?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(730);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .ctx(Kind::Crypto, || "generating the server key".into())?;
    let cert = p
        .signed_by(&key, &issuer, &root_key)
        .ctx(Kind::Crypto, || "signing the server certificate".into())?;
    let out = dir.join("tls");
    io(std::fs::create_dir_all(&out), || {
        format!("cannot create {}", out.display())
    })?;
    let stem = names[0].replace(
        |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
        "_",
    );
    let files = TlsFiles {
        cert: out.join(format!("{stem}.pem")),
        key: out.join(format!("{stem}.key.pem")),
    };
    if files.cert.exists() || files.key.exists() {
        return Err(Error::refused(format!(
            "{} already exists; refusing to overwrite a TLS certificate",
            files.cert.display()
        )));
    }
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    io(std::fs::write(&files.cert, cert.pem()), || {
        format!("cannot write {}", files.cert.display())
    })?;
    Ok(files)
}
