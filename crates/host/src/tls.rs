//! The chip's key for rustls (feature `rustls`): [`ChipTlsKey`] is a `rustls::sign::SigningKey`
//! whose handshake signatures are made in the chip, and [`certified_key`] pairs it with the
//! zone-0 certificate for a TLS client (or server) configuration.
//!
//! ECDSA in TLS 1.3 ties the hash to the curve: a P-256 key signs `ecdsa_secp256r1_sha256`
//! only, a P-384 key `ecdsa_secp384r1_sha384` only, which is also all this key offers under
//! TLS 1.2.

use core::fmt;
use std::boxed::Box;
use std::string::ToString;
use std::sync::Arc;
use std::vec::Vec;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

use crate::signer::{ChipKey, KeyError, SharedStsafe};

/// A chip key as a rustls signing key. Send + Sync when the bus and delay are Send.
pub struct ChipTlsKey<I2C, D> {
    key: ChipKey<I2C, D>,
}

impl<I2C, D> Clone for ChipTlsKey<I2C, D> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
        }
    }
}

impl<I2C, D> fmt::Debug for ChipTlsKey<I2C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChipTlsKey")
            .field("key", &self.key)
            .finish()
    }
}

impl<I2C, D> ChipTlsKey<I2C, D> {
    /// Wraps a chip key.
    pub fn new(key: ChipKey<I2C, D>) -> Self {
        Self { key }
    }

    fn scheme(&self) -> SignatureScheme {
        match self.key {
            ChipKey::P256(_) => SignatureScheme::ECDSA_NISTP256_SHA256,
            ChipKey::P384(_) => SignatureScheme::ECDSA_NISTP384_SHA384,
        }
    }
}

impl<I2C, D> SigningKey for ChipTlsKey<I2C, D>
where
    I2C: I2c + Send + 'static,
    D: DelayNs + Send + 'static,
{
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = self.scheme();
        offered.contains(&scheme).then(|| {
            Box::new(ChipTlsSigner {
                key: self.key.clone(),
                scheme,
            }) as Box<dyn Signer>
        })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct ChipTlsSigner<I2C, D> {
    key: ChipKey<I2C, D>,
    scheme: SignatureScheme,
}

impl<I2C, D> fmt::Debug for ChipTlsSigner<I2C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChipTlsSigner")
            .field("key", &self.key)
            .field("scheme", &self.scheme)
            .finish()
    }
}

impl<I2C, D> Signer for ChipTlsSigner<I2C, D>
where
    I2C: I2c + Send + 'static,
    D: DelayNs + Send + 'static,
{
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let failed = |e: KeyError| rustls::Error::General(e.to_string());
        let rs = self.key.sign_message_raw(message).map_err(failed)?;
        // TLS carries ECDSA signatures as DER `Ecdsa-Sig-Value`.
        let der = match self.key {
            ChipKey::P256(_) => {
                p256::ecdsa::Signature::from_slice(&rs).map(|s| s.to_der().as_bytes().to_vec())
            }
            ChipKey::P384(_) => {
                p384::ecdsa::Signature::from_slice(&rs).map(|s| s.to_der().as_bytes().to_vec())
            }
        };
        der.map_err(|_| rustls::Error::General("the chip returned a malformed signature".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The certificate in `zone` (and `chain`, the issuers to send after it) with the key in
/// `slot`, ready for `ClientConfig::with_client_cert_resolver` / a server's cert resolver.
pub fn certified_key<I2C, D>(
    chip: &SharedStsafe<I2C, D>,
    zone: u8,
    slot: u8,
    chain: &[CertificateDer<'static>],
) -> Result<CertifiedKey, KeyError>
where
    I2C: I2c + Send + 'static,
    D: DelayNs + Send + 'static,
{
    let der = chip.certificate(zone)?;
    let public = crate::auth::certificate_public_key(&der).map_err(KeyError::Certificate)?;
    let key = ChipKey::new(chip.clone(), slot, &public)?;
    let mut certs = Vec::with_capacity(1 + chain.len());
    certs.push(CertificateDer::from(der));
    certs.extend(chain.iter().cloned());
    Ok(CertifiedKey::new(certs, Arc::new(ChipTlsKey::new(key))))
}
