//! ECDH key derivation, random numbers and session-object destruction.

use cryptoki_sys::*;
use sesame_host::EccPublicKey;
use zeroize::Zeroizing;

use crate::objects::{self, Kind, Object, Value};
use crate::token::{rv, Module, Param, Rv};

/// The attributes a CKM_ECDH1_DERIVE template may set, and what the module does with them.
struct DeriveTemplate {
    len: Option<usize>,
    key_type: CK_KEY_TYPE,
    sensitive: bool,
    extractable: bool,
}

fn ulong_of(v: &[u8]) -> Option<CK_ULONG> {
    Some(CK_ULONG::from_ne_bytes(v.try_into().ok()?))
}

fn bool_of(v: &[u8]) -> Option<bool> {
    match v {
        [b] => Some(*b != CK_FALSE),
        _ => None,
    }
}

fn derive_template(template: &[(CK_ATTRIBUTE_TYPE, &[u8])]) -> Result<DeriveTemplate, Rv> {
    let mut t = DeriveTemplate {
        len: None,
        key_type: CKK_GENERIC_SECRET,
        sensitive: false,
        extractable: true,
    };
    for (kind, v) in template {
        let bad = CKR_ATTRIBUTE_VALUE_INVALID;
        match *kind {
            CKA_CLASS if ulong_of(v).ok_or(bad)? != CKO_SECRET_KEY => {
                return Err(CKR_TEMPLATE_INCONSISTENT)
            }
            CKA_KEY_TYPE => t.key_type = ulong_of(v).ok_or(bad)?,
            CKA_VALUE_LEN => t.len = Some(ulong_of(v).ok_or(bad)? as usize),
            CKA_SENSITIVE => t.sensitive = bool_of(v).ok_or(bad)?,
            CKA_EXTRACTABLE => t.extractable = bool_of(v).ok_or(bad)?,
            // The secret lives in the module for the session: it cannot be a token object.
            CKA_TOKEN if bool_of(v).ok_or(bad)? => return Err(CKR_TEMPLATE_INCONSISTENT),
            CKA_CLASS | CKA_TOKEN | CKA_LABEL | CKA_ID | CKA_PRIVATE | CKA_MODIFIABLE
            | CKA_ENCRYPT | CKA_DECRYPT | CKA_WRAP | CKA_UNWRAP | CKA_SIGN | CKA_VERIFY
            | CKA_DERIVE => {}
            _ => return Err(CKR_ATTRIBUTE_TYPE_INVALID),
        }
    }
    Ok(t)
}

impl Module {
    /// C_DeriveKey with CKM_ECDH1_DERIVE (CKD_NULL): the chip computes the shared X with the
    /// private key `base`; the module keeps it as a session secret-key object.
    pub fn derive(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: Param<'_>,
        base: CK_OBJECT_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, &[u8])],
    ) -> Result<CK_OBJECT_HANDLE, Rv> {
        self.with_session(h, |s| {
            if mechanism != CKM_ECDH1_DERIVE {
                return Err(CKR_MECHANISM_INVALID);
            }
            let Param::Ecdh1 {
                kdf,
                shared,
                public,
            } = param
            else {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            };
            if kdf != CKD_NULL || !shared.is_empty() {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            let (slot, curve) = Self::chip_key(s, base, CKA_DERIVE)?;
            let t = derive_template(template)?;
            let point = objects::peer_point(public, curve).ok_or(CKR_MECHANISM_PARAM_INVALID)?;
            // Off-curve points are refused here, before the chip sees them.
            let on_curve = match curve {
                sesame_host::Curve::P384 => p384::PublicKey::from_sec1_bytes(&point).is_ok(),
                _ => p256::PublicKey::from_sec1_bytes(&point).is_ok(),
            };
            let peer = EccPublicKey::from_xy(curve, &point[1..])
                .filter(|_| on_curve)
                .ok_or(CKR_MECHANISM_PARAM_INVALID)?;
            let secret = s
                .chip()?
                .lock()
                .establish_key(slot, &peer)
                .map_err(|_| CKR_DEVICE_ERROR)?;
            let full = secret.as_bytes();
            let len = t.len.unwrap_or(full.len());
            if len == 0 || len > full.len() {
                return Err(CKR_TEMPLATE_INCONSISTENT);
            }
            let value = Zeroizing::new(full[..len].to_vec());
            let handle = s.next_object;
            s.next_object += 1;
            let attrs = vec![
                (CKA_CLASS, objects::ulong(CKO_SECRET_KEY)),
                (CKA_KEY_TYPE, objects::ulong(t.key_type)),
                (CKA_TOKEN, objects::bool_(false)),
                (CKA_PRIVATE, objects::bool_(false)),
                (CKA_LOCAL, objects::bool_(false)),
                (CKA_SENSITIVE, objects::bool_(t.sensitive)),
                (CKA_EXTRACTABLE, objects::bool_(t.extractable)),
                (CKA_VALUE_LEN, objects::ulong(len as CK_ULONG)),
                (CKA_VALUE, Value::Secret(value)),
            ];
            let object = Object {
                handle,
                kind: Kind::Secret,
                attrs,
            };
            s.session_objects.insert(handle, (h, object));
            Ok(handle)
        })
    }

    /// C_DestroyObject: derived secrets only; the chip's objects cannot be destroyed.
    pub fn destroy(&self, h: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Rv {
        rv(self.with_session(h, |s| {
            if s.session_objects.remove(&object).is_some() {
                return Ok(());
            }
            match s.object(object) {
                Some(_) => Err(CKR_ACTION_PROHIBITED),
                None => Err(CKR_OBJECT_HANDLE_INVALID),
            }
        }))
    }

    /// C_GenerateRandom: from the chip's generator.
    pub fn random(&self, h: CK_SESSION_HANDLE, out: &mut [u8]) -> Rv {
        rv(self.with_session(h, |s| {
            s.chip()?
                .lock()
                .generate_random(out)
                .map_err(|_| CKR_DEVICE_ERROR)
        }))
    }
}

impl Module {
    /// C_SeedRandom: the chip's generator takes no seed.
    pub fn seed_random(&self, h: CK_SESSION_HANDLE) -> Rv {
        rv(self.with_session(h, |_| Err(CKR_RANDOM_SEED_NOT_SUPPORTED)))
    }
}
