//! A self-signed device certificate whose signature is made by the chip itself, through its
//! Generate Signature command: the private key never leaves the chip, even at the bench. (The
//! factory will issue family-CA-signed certificates instead.)

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use rcgen::{
    date_time_ymd, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, RemoteKeyPair, SignatureAlgorithm,
};
use sesame_chip::{CurveName, Fab, PublicKeyBytes};
use sesame_wire::{Reader, Request, ResponseFrame, Signature, Status};
use sha2::Digest;

struct ChipSigner {
    fab: Arc<Mutex<Fab>>,
    public: Vec<u8>,
    curve: CurveName,
}

/// Asks the chip in `fab` to sign `digest` with slot 0; returns `R || S`.
pub fn chip_sign(fab: &mut Fab, digest: &[u8]) -> Result<Vec<u8>> {
    let mut payload = vec![0u8; 64];
    let req = Request::GenerateSignature { slot: 0, digest };
    let n = req.encode(&mut payload)?;
    let frame = sesame_wire::CommandFrame {
        header: sesame_wire::Header::plain(req.code()),
        payload: &payload[..n],
        cmac: None,
    };
    let mut out = vec![0u8; 80];
    let n = frame.encode(&mut out)?;
    let rsp = fab.chip().transceive(&out[..n]);
    let r = ResponseFrame::decode(&rsp, false)?;
    if r.status() != Status::OK {
        return Err(anyhow!("chip refused to sign: {:?}", r.status()));
    }
    let mut rd = Reader::new(r.data);
    let sig = Signature::read(&mut rd)?;
    rd.finish()?;
    Ok([sig.r, sig.s].concat())
}

impl RemoteKeyPair for ChipSigner {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut fab = self.fab.lock().map_err(|_| rcgen::Error::RemoteKeyError)?;
        let der = match self.curve {
            CurveName::P256 => {
                let rs = chip_sign(&mut fab, &sha2::Sha256::digest(msg))
                    .map_err(|_| rcgen::Error::RemoteKeyError)?;
                p256::ecdsa::Signature::from_slice(&rs)
                    .map_err(|_| rcgen::Error::RemoteKeyError)?
                    .to_der()
                    .as_bytes()
                    .to_vec()
            }
            CurveName::P384 => {
                let rs = chip_sign(&mut fab, &sha2::Sha384::digest(msg))
                    .map_err(|_| rcgen::Error::RemoteKeyError)?;
                p384::ecdsa::Signature::from_slice(&rs)
                    .map_err(|_| rcgen::Error::RemoteKeyError)?
                    .to_der()
                    .as_bytes()
                    .to_vec()
            }
        };
        Ok(der)
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.curve {
            CurveName::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CurveName::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// Issues a self-signed certificate for slot 0's key (subject CN = serial, digitalSignature +
/// keyAgreement, clientAuth, no well-defined expiration) and returns the fab and the DER.
pub fn self_signed(fab: Fab, public: &PublicKeyBytes, serial_hex: &str) -> Result<(Fab, Vec<u8>)> {
    let fab = Arc::new(Mutex::new(fab));
    let signer = ChipSigner {
        fab: fab.clone(),
        public: public.to_sec1(),
        curve: public.curve,
    };
    let key = KeyPair::from_remote(Box::new(signer))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sesame");
    dn.push(
        DnType::OrganizationalUnitName,
        "self-signed device (no factory CA)",
    );
    dn.push(DnType::CommonName, serial_hex);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = date_time_ymd(2026, 1, 1);
    // RFC 5280 §4.1.2.5: 99991231235959Z means "no well-defined expiration date".
    params.not_after = date_time_ymd(9999, 12, 31) + time_of_day_end();
    let serial: [u8; 8] = rand_core::RngCore::next_u64(&mut rand_core::OsRng).to_be_bytes();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key)?;
    drop(key);
    let der = cert.der().to_vec();
    if der.len() < 256 || der[..2] != [0x30, 0x82] {
        return Err(anyhow!(
            "certificate must use the 30 82 length form (protocol.md §4)"
        ));
    }
    let fab = Arc::try_unwrap(fab)
        .map_err(|_| anyhow!("signer still in use"))?
        .into_inner()
        .map_err(|_| anyhow!("signer lock poisoned"))?;
    Ok((fab, der))
}

fn time_of_day_end() -> core::time::Duration {
    core::time::Duration::from_secs(23 * 3600 + 59 * 60 + 59)
}
