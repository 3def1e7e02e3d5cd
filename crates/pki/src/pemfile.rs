//! PEM helpers.

use crate::Error;

/// PEM tag of a certificate.
pub const PEM_CERT: &str = "CERTIFICATE";

/// DER to PEM with `tag`.
pub fn to_pem(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// Every certificate in a PEM text, in order.
pub fn certs_from_pem(text: &str) -> Result<Vec<Vec<u8>>, Error> {
    let blocks = pem::parse_many(text).map_err(|e| Error::Parse(format!("PEM: {e}")))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|p| p.tag() == PEM_CERT)
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(Error::Parse("no CERTIFICATE in PEM".into()));
    }
    Ok(certs)
}

/// The first certificate in a PEM text.
pub fn cert_from_pem(text: &str) -> Result<Vec<u8>, Error> {
    certs_from_pem(text)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Parse("no certificate".into()))
}
