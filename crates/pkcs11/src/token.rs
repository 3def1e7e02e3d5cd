//! The module's state and every PKCS#11 operation it supports, in safe Rust: the FFI layer
//! only turns C pointers into slices and back. Each function returns the CKR_* code the
//! standard (PKCS#11 v2.40 base specification) prescribes, and for outputs the length to
//! report (also with CKR_BUFFER_TOO_SMALL, and when the caller only asked for the size).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use cryptoki_sys::*;
use sesame_host::bus::{AnyBus, StdDelay};
use sesame_host::signer::{digest_for_curve, SharedStsafe};
use sesame_host::{Curve, Stsafe};
use sha2::Digest;

use crate::config::Config;
use crate::objects::{self, Kind, Object, Value};

/// A return value.
pub type Rv = CK_RV;

/// "Unavailable information" in a length field.
pub const UNAVAILABLE: CK_ULONG = !0;

/// The one slot's id.
pub const SLOT_ID: CK_SLOT_ID = 0;

/// Handles of session objects (derived secrets) start here; token objects are below.
const FIRST_SESSION_OBJECT: CK_OBJECT_HANDLE = 0x1000;

/// The mechanisms, what they do, and their key sizes in bits.
pub const MECHANISMS: [(CK_MECHANISM_TYPE, CK_FLAGS); 4] = [
    (CKM_ECDSA, CKF_SIGN),
    (CKM_ECDSA_SHA256, CKF_SIGN),
    (CKM_ECDSA_SHA384, CKF_SIGN),
    (CKM_ECDH1_DERIVE, CKF_DERIVE),
];

/// A mechanism's parameter, as the FFI layer read it.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    /// No parameter, or raw bytes.
    Bytes(&'a [u8]),
    /// CK_ECDH1_DERIVE_PARAMS.
    Ecdh1 {
        /// CKD_*.
        kdf: CK_EC_KDF_TYPE,
        /// Shared data for the KDF (must be empty with CKD_NULL).
        shared: &'a [u8],
        /// The peer's public point.
        public: &'a [u8],
    },
}

/// One requested attribute of C_GetAttributeValue.
#[derive(Debug)]
pub struct AttrReq<'a> {
    /// CKA_*.
    pub kind: CK_ATTRIBUTE_TYPE,
    /// The caller's buffer, `None` to ask for the size.
    pub buf: Option<&'a mut [u8]>,
    /// The length to report back.
    pub len: CK_ULONG,
}

struct SignOp {
    key: u8,
    curve: Curve,
    mechanism: CK_MECHANISM_TYPE,
    data: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Session {
    rw: bool,
    find: Option<(Vec<CK_OBJECT_HANDLE>, usize)>,
    sign: Option<SignOp>,
}

/// The connected chip and its objects.
struct Token {
    chip: SharedStsafe<AnyBus, StdDelay>,
    serial: String,
    objects: Vec<Object>,
}

pub(crate) struct State {
    config: Config,
    token: Option<Token>,
    sessions: BTreeMap<CK_SESSION_HANDLE, Session>,
    next_session: CK_SESSION_HANDLE,
    pub(crate) session_objects: BTreeMap<CK_OBJECT_HANDLE, (CK_SESSION_HANDLE, Object)>,
    pub(crate) next_object: CK_OBJECT_HANDLE,
    logged_in: bool,
}

/// The module: not initialized until [`Module::initialize`].
pub struct Module {
    state: Mutex<Option<State>>,
}

impl Default for Module {
    fn default() -> Self {
        Self::new()
    }
}

fn pad<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    let b = s.as_bytes();
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

fn version(major: u8, minor: u8) -> CK_VERSION {
    CK_VERSION { major, minor }
}

/// Writes `value` into `out` (or only reports its size): the two-call convention.
fn output(value: &[u8], out: Option<&mut [u8]>) -> (Rv, usize) {
    match out {
        None => (CKR_OK, value.len()),
        Some(buf) if buf.len() < value.len() => (CKR_BUFFER_TOO_SMALL, value.len()),
        Some(buf) => {
            buf[..value.len()].copy_from_slice(value);
            (CKR_OK, value.len())
        }
    }
}

impl Token {
    /// Opens the bus, checks the chip, reads its certificate and key table.
    fn connect(config: &Config) -> Result<Self, Rv> {
        let bus = config.bus.open().map_err(|_| CKR_DEVICE_ERROR)?;
        let mut se = Stsafe::new(bus, StdDelay, config.address);
        let info = se.init().map_err(|_| CKR_DEVICE_ERROR)?;
        let serial = info.st_number.map(hex_upper).unwrap_or_default();
        let slots: Vec<(u8, Option<Curve>)> = {
            let (_, records) = se.query_private_keys().map_err(|_| CKR_DEVICE_ERROR)?;
            records
                .filter(|r| r.present && r.slot <= 1)
                .map(|r| (r.slot, r.curve))
                .collect()
        };
        let chip = SharedStsafe::new(se);
        // A chip without a certificate still has its keys; only slot 0 has one.
        let cert = chip.certificate(0).ok().and_then(|der| {
            let f = objects::cert_fields(&der)?;
            let public = sesame_host::auth::certificate_public_key(&der).ok()?;
            Some((der, f, public))
        });
        let mut objects = Vec::new();
        for (slot, curve) in slots {
            let Some(curve) = curve else { continue };
            let cert0 = cert.as_ref().filter(|_| slot == 0);
            let subject = cert0.map(|(_, f, _)| f.subject.clone()).unwrap_or_default();
            let base = 1 + 3 * CK_OBJECT_HANDLE::from(slot);
            objects.push(objects::private_key(base, slot, curve, &subject));
            if let Some((der, f, public)) = cert0 {
                let sec1 = [&[0x04][..], public.xy()].concat();
                objects.push(objects::public_key(base + 1, slot, curve, &sec1, &subject));
                objects.push(objects::certificate(base + 2, slot, der, f));
            }
        }
        Ok(Self {
            chip,
            serial,
            objects,
        })
    }
}

fn hex_upper(b: [u8; 9]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl State {
    fn token(&mut self) -> Result<&mut Token, Rv> {
        if self.token.is_none() {
            self.token = Some(Token::connect(&self.config).map_err(|_| CKR_TOKEN_NOT_PRESENT)?);
        }
        self.token.as_mut().ok_or(CKR_TOKEN_NOT_PRESENT)
    }

    pub(crate) fn session(&mut self, h: CK_SESSION_HANDLE) -> Result<&mut Session, Rv> {
        self.sessions.get_mut(&h).ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    pub(crate) fn object(&self, h: CK_OBJECT_HANDLE) -> Option<&Object> {
        self.token
            .as_ref()
            .and_then(|t| t.objects.iter().find(|o| o.handle == h))
            .or_else(|| self.session_objects.get(&h).map(|(_, o)| o))
    }

    pub(crate) fn chip(&self) -> Result<&SharedStsafe<AnyBus, StdDelay>, Rv> {
        self.token
            .as_ref()
            .map(|t| &t.chip)
            .ok_or(CKR_DEVICE_REMOVED)
    }
}

impl Module {
    /// A module that is not initialized.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, Rv>) -> Result<T, Rv> {
        match self.lock().as_mut() {
            Some(s) => f(s),
            None => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
        }
    }

    pub(crate) fn with_session<T>(
        &self,
        h: CK_SESSION_HANDLE,
        f: impl FnOnce(&mut State) -> Result<T, Rv>,
    ) -> Result<T, Rv> {
        self.with(|s| {
            s.session(h)?;
            f(s)
        })
    }

    /// C_Initialize with settings already read. The chip is reached on first use.
    pub fn initialize(&self, config: Config) -> Rv {
        let mut g = self.lock();
        if g.is_some() {
            return CKR_CRYPTOKI_ALREADY_INITIALIZED;
        }
        *g = Some(State {
            config,
            token: None,
            sessions: BTreeMap::new(),
            next_session: 1,
            session_objects: BTreeMap::new(),
            next_object: FIRST_SESSION_OBJECT,
            logged_in: false,
        });
        CKR_OK
    }

    /// C_Finalize.
    pub fn finalize(&self) -> Rv {
        match self.lock().take() {
            Some(_) => CKR_OK,
            None => CKR_CRYPTOKI_NOT_INITIALIZED,
        }
    }

    /// C_GetInfo.
    pub fn info(&self) -> Result<CK_INFO, Rv> {
        self.with(|_| {
            Ok(CK_INFO {
                cryptokiVersion: version(2, 40),
                manufacturerID: pad("sesame"),
                flags: 0,
                libraryDescription: pad("sesame STSAFE-A110 PKCS#11"),
                libraryVersion: version(0, 1),
            })
        })
    }

    /// C_GetSlotList: the one slot, if a chip answers when `token_present` is asked.
    pub fn slots(&self, token_present: bool) -> Result<Vec<CK_SLOT_ID>, Rv> {
        self.with(|s| {
            if token_present && s.token().is_err() {
                return Ok(Vec::new());
            }
            Ok(vec![SLOT_ID])
        })
    }

    /// C_GetSlotInfo.
    pub fn slot_info(&self, slot: CK_SLOT_ID) -> Result<CK_SLOT_INFO, Rv> {
        self.with(|s| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            let present = s.token().is_ok();
            Ok(CK_SLOT_INFO {
                slotDescription: pad(&format!("sesame A110 on {}", s.config.bus)),
                manufacturerID: pad("sesame"),
                flags: CKF_HW_SLOT | if present { CKF_TOKEN_PRESENT } else { 0 },
                hardwareVersion: version(1, 0),
                firmwareVersion: version(1, 0),
            })
        })
    }

    /// C_GetTokenInfo.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<CK_TOKEN_INFO, Rv> {
        self.with(|s| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            let sessions = s.sessions.len() as CK_ULONG;
            let rw = s.sessions.values().filter(|x| x.rw).count() as CK_ULONG;
            let t = s.token()?;
            // The serial field holds 16 characters: the ST number's last 16 hex digits.
            let serial = &t.serial[t.serial.len().saturating_sub(16)..];
            Ok(CK_TOKEN_INFO {
                label: pad(&format!("sesame {serial}")),
                manufacturerID: pad("sesame"),
                model: pad("STSAFE-A110"),
                serialNumber: pad(serial),
                flags: CKF_RNG | CKF_TOKEN_INITIALIZED,
                ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
                ulSessionCount: sessions,
                ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
                ulRwSessionCount: rw,
                ulMaxPinLen: 0,
                ulMinPinLen: 0,
                ulTotalPublicMemory: UNAVAILABLE,
                ulFreePublicMemory: UNAVAILABLE,
                ulTotalPrivateMemory: UNAVAILABLE,
                ulFreePrivateMemory: UNAVAILABLE,
                hardwareVersion: version(1, 0),
                firmwareVersion: version(1, 0),
                utcTime: [b' '; 16],
            })
        })
    }

    /// C_GetMechanismList.
    pub fn mechanisms(&self, slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>, Rv> {
        self.with(|_| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            Ok(MECHANISMS.iter().map(|(m, _)| *m).collect())
        })
    }

    /// C_GetMechanismInfo.
    pub fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        m: CK_MECHANISM_TYPE,
    ) -> Result<CK_MECHANISM_INFO, Rv> {
        self.with(|_| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            let (_, flags) = MECHANISMS
                .iter()
                .find(|(x, _)| *x == m)
                .ok_or(CKR_MECHANISM_INVALID)?;
            Ok(CK_MECHANISM_INFO {
                ulMinKeySize: 256,
                ulMaxKeySize: 384,
                flags: flags | CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS,
            })
        })
    }

    /// C_OpenSession.
    pub fn open_session(&self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE, Rv> {
        self.with(|s| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            if flags & CKF_SERIAL_SESSION == 0 {
                return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
            }
            s.token()?;
            let h = s.next_session;
            s.next_session += 1;
            s.sessions.insert(
                h,
                Session {
                    rw: flags & CKF_RW_SESSION != 0,
                    ..Session::default()
                },
            );
            Ok(h)
        })
    }

    /// C_CloseSession: its derived secrets go with it.
    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Rv {
        rv(self.with(|s| {
            s.sessions.remove(&h).ok_or(CKR_SESSION_HANDLE_INVALID)?;
            s.session_objects.retain(|_, (owner, _)| *owner != h);
            if s.sessions.is_empty() {
                s.logged_in = false;
            }
            Ok(())
        }))
    }

    /// C_CloseAllSessions.
    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Rv {
        rv(self.with(|s| {
            if slot != SLOT_ID {
                return Err(CKR_SLOT_ID_INVALID);
            }
            s.sessions.clear();
            s.session_objects.clear();
            s.logged_in = false;
            Ok(())
        }))
    }

    /// C_GetSessionInfo.
    pub fn session_info(&self, h: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO, Rv> {
        self.with(|s| {
            let logged_in = s.logged_in;
            let x = s.session(h)?;
            let state = match (x.rw, logged_in) {
                (false, false) => CKS_RO_PUBLIC_SESSION,
                (true, false) => CKS_RW_PUBLIC_SESSION,
                (false, true) => CKS_RO_USER_FUNCTIONS,
                (true, true) => CKS_RW_USER_FUNCTIONS,
            };
            Ok(CK_SESSION_INFO {
                slotID: SLOT_ID,
                state,
                flags: CKF_SERIAL_SESSION | if x.rw { CKF_RW_SESSION } else { 0 },
                ulDeviceError: 0,
            })
        })
    }

    /// C_Login. The token has no PIN (CKF_LOGIN_REQUIRED is clear: whoever reaches the bus
    /// reaches the keys, as on the I2C bus itself), so only an empty PIN logs in; any other is
    /// CKR_PIN_INCORRECT rather than silently accepted.
    pub fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Rv {
        rv(self.with_session(h, |s| {
            // No security officer and no context-specific login on this token.
            if user != CKU_USER {
                return Err(CKR_USER_TYPE_INVALID);
            }
            if s.logged_in {
                return Err(CKR_USER_ALREADY_LOGGED_IN);
            }
            if !pin.is_empty() {
                return Err(CKR_PIN_INCORRECT);
            }
            s.logged_in = true;
            Ok(())
        }))
    }

    /// C_Logout.
    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Rv {
        rv(self.with_session(h, |s| {
            if !s.logged_in {
                return Err(CKR_USER_NOT_LOGGED_IN);
            }
            s.logged_in = false;
            Ok(())
        }))
    }

    /// C_GetAttributeValue: every requested attribute is answered; the return value is the
    /// last problem met (sensitive, unknown type, buffer too small), as the standard says.
    pub fn get_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        reqs: &mut [AttrReq<'_>],
    ) -> Rv {
        rv(self.with_session(h, |s| {
            let o = s.object(object).ok_or(CKR_OBJECT_HANDLE_INVALID)?;
            let secret_readable = !o.flag(CKA_SENSITIVE) && o.flag(CKA_EXTRACTABLE);
            let mut result = CKR_OK;
            for r in reqs.iter_mut() {
                let value = match o.get(r.kind) {
                    None => Err(CKR_ATTRIBUTE_TYPE_INVALID),
                    Some(Value::Sensitive) => Err(CKR_ATTRIBUTE_SENSITIVE),
                    Some(Value::Secret(_)) if !secret_readable => Err(CKR_ATTRIBUTE_SENSITIVE),
                    Some(Value::Secret(v)) => Ok(v.as_slice()),
                    Some(Value::Bytes(v)) => Ok(v.as_slice()),
                };
                match value {
                    Err(e) => {
                        r.len = UNAVAILABLE;
                        result = e;
                    }
                    Ok(v) => {
                        let (code, n) = output(v, r.buf.as_deref_mut());
                        if code == CKR_OK {
                            r.len = n as CK_ULONG;
                        } else {
                            r.len = UNAVAILABLE;
                            result = code;
                        }
                    }
                }
            }
            if result == CKR_OK {
                Ok(())
            } else {
                Err(result)
            }
        }))
    }

    /// C_FindObjectsInit.
    pub fn find_init(&self, h: CK_SESSION_HANDLE, template: &[(CK_ATTRIBUTE_TYPE, &[u8])]) -> Rv {
        rv(self.with_session(h, |s| {
            let mut found: Vec<CK_OBJECT_HANDLE> = s
                .token
                .iter()
                .flat_map(|t| t.objects.iter())
                .chain(s.session_objects.values().map(|(_, o)| o))
                .filter(|o| o.matches(template))
                .map(|o| o.handle)
                .collect();
            found.sort_unstable();
            let x = s.session(h)?;
            if x.find.is_some() {
                return Err(CKR_OPERATION_ACTIVE);
            }
            x.find = Some((found, 0));
            Ok(())
        }))
    }

    /// C_FindObjects: up to `max` more handles.
    pub fn find(&self, h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>, Rv> {
        self.with(|s| {
            let (found, pos) = s
                .session(h)?
                .find
                .as_mut()
                .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
            let end = (*pos + max).min(found.len());
            let out = found[*pos..end].to_vec();
            *pos = end;
            Ok(out)
        })
    }

    /// C_FindObjectsFinal.
    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Rv {
        rv(self.with(|s| {
            s.session(h)?
                .find
                .take()
                .map(|_| ())
                .ok_or(CKR_OPERATION_NOT_INITIALIZED)
        }))
    }

    /// The private key behind `key` for an operation needing `usage` (CKA_SIGN, CKA_DERIVE).
    pub(crate) fn chip_key(
        s: &State,
        key: CK_OBJECT_HANDLE,
        usage: CK_ATTRIBUTE_TYPE,
    ) -> Result<(u8, Curve), Rv> {
        let o = s.object(key).ok_or(CKR_KEY_HANDLE_INVALID)?;
        match o.kind {
            Kind::PrivateKey { slot, curve } if o.flag(usage) => Ok((slot, curve)),
            Kind::Certificate => Err(CKR_KEY_HANDLE_INVALID),
            Kind::Secret => Err(CKR_KEY_TYPE_INCONSISTENT),
            _ => Err(CKR_KEY_FUNCTION_NOT_PERMITTED),
        }
    }

    /// C_SignInit.
    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        param: Param<'_>,
        key: CK_OBJECT_HANDLE,
    ) -> Rv {
        rv(self.with_session(h, |s| {
            if s.session(h)?.sign.is_some() {
                return Err(CKR_OPERATION_ACTIVE);
            }
            if ![CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384].contains(&mechanism) {
                return Err(CKR_MECHANISM_INVALID);
            }
            if !matches!(param, Param::Bytes([])) {
                return Err(CKR_MECHANISM_PARAM_INVALID);
            }
            let (slot, curve) = Self::chip_key(s, key, CKA_SIGN)?;
            s.session(h)?.sign = Some(SignOp {
                key: slot,
                curve,
                mechanism,
                data: Vec::new(),
            });
            Ok(())
        }))
    }

    /// C_Sign: `R || S`. Asking for the size, or a buffer too small, keeps the operation.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: &[u8], out: Option<&mut [u8]>) -> (Rv, usize) {
        self.sign_with(h, Some(data), out)
    }

    /// C_SignUpdate (the hashing mechanisms only: CKM_ECDSA is single-part).
    pub fn sign_update(&self, h: CK_SESSION_HANDLE, part: &[u8]) -> Rv {
        rv(self.with(|s| {
            let x = s.session(h)?;
            let op = x.sign.as_mut().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
            if op.mechanism == CKM_ECDSA {
                x.sign = None;
                return Err(CKR_FUNCTION_NOT_SUPPORTED);
            }
            op.data.extend_from_slice(part);
            Ok(())
        }))
    }

    /// C_SignFinal.
    pub fn sign_final(&self, h: CK_SESSION_HANDLE, out: Option<&mut [u8]>) -> (Rv, usize) {
        self.sign_with(h, None, out)
    }

    fn sign_with(
        &self,
        h: CK_SESSION_HANDLE,
        data: Option<&[u8]>,
        out: Option<&mut [u8]>,
    ) -> (Rv, usize) {
        let r = self.with(|s| {
            let x = s.session(h)?;
            let op = x.sign.as_ref().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
            let len = 2 * op.curve.coordinate_len();
            let buf = match out {
                None => return Ok((CKR_OK, len)),
                Some(b) if b.len() < len => return Ok((CKR_BUFFER_TOO_SMALL, len)),
                Some(b) => b,
            };
            // From here the operation ends, whatever happens.
            let op = x.sign.take().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
            let input = data.unwrap_or(&op.data);
            let digest = match op.mechanism {
                CKM_ECDSA_SHA256 => sha2::Sha256::digest(input).to_vec(),
                CKM_ECDSA_SHA384 => sha2::Sha384::digest(input).to_vec(),
                _ => input.to_vec(),
            };
            let digest = digest_for_curve(&digest, op.curve.coordinate_len())
                .map_err(|_| CKR_DATA_LEN_RANGE)?;
            let sig = s
                .chip()?
                .lock()
                .generate_signature(op.key, &digest)
                .map_err(|_| CKR_DEVICE_ERROR)?;
            buf[..len].copy_from_slice(sig.rs());
            Ok((CKR_OK, len))
        });
        r.unwrap_or_else(|e| (e, 0))
    }
}

pub(crate) fn rv(r: Result<(), Rv>) -> Rv {
    r.err().unwrap_or(CKR_OK)
}
