//! The C ABI: the module's one place with `unsafe`. Each exported function checks its
//! pointers, turns them into slices, calls [`crate::token::Module`], and writes lengths and
//! handles back. Nothing here decides a return code except for null pointers
//! (CKR_ARGUMENTS_BAD) and the two-call convention of list outputs.
//!
//! Safety contract (the caller's, per PKCS#11): every non-null pointer points to memory of the
//! given length, valid for the duration of the call.
#![allow(unsafe_code, non_snake_case, clippy::missing_safety_doc)]

use std::ffi::c_void;
use std::ptr;
use std::slice;

use cryptoki_sys::*;

use crate::config::Config;
use crate::token::{AttrReq, Module, Param};

static MODULE: Module = Module::new();

/// `n` bytes at `p`; a null pointer is only allowed with `n == 0`.
unsafe fn bytes<'a>(p: *const u8, n: CK_ULONG) -> Option<&'a [u8]> {
    if p.is_null() {
        return (n == 0).then_some(&[][..]);
    }
    Some(slice::from_raw_parts(p, n as usize))
}

/// A template's attributes as (type, value) pairs.
unsafe fn template<'a>(
    p: *const CK_ATTRIBUTE,
    n: CK_ULONG,
) -> Option<Vec<(CK_ATTRIBUTE_TYPE, &'a [u8])>> {
    if p.is_null() {
        return (n == 0).then(Vec::new);
    }
    slice::from_raw_parts(p, n as usize)
        .iter()
        .map(|a| Some((a.type_, bytes(a.pValue as *const u8, a.ulValueLen)?)))
        .collect()
}

/// A mechanism and its parameter (CK_ECDH1_DERIVE_PARAMS read for CKM_ECDH1_DERIVE).
unsafe fn mechanism<'a>(p: *const CK_MECHANISM) -> Option<(CK_MECHANISM_TYPE, Param<'a>)> {
    let m = p.as_ref()?;
    let param = if m.mechanism == CKM_ECDH1_DERIVE
        && !m.pParameter.is_null()
        && m.ulParameterLen as usize == std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>()
    {
        let e = &*(m.pParameter as *const CK_ECDH1_DERIVE_PARAMS);
        Param::Ecdh1 {
            kdf: e.kdf,
            shared: bytes(e.pSharedData, e.ulSharedDataLen)?,
            public: bytes(e.pPublicData, e.ulPublicDataLen)?,
        }
    } else {
        Param::Bytes(bytes(m.pParameter as *const u8, m.ulParameterLen)?)
    };
    Some((m.mechanism, param))
}

/// The caller's output buffer: `None` when it only asks for the size.
unsafe fn out_buf<'a>(p: *mut u8, len: *const CK_ULONG) -> Option<&'a mut [u8]> {
    (!p.is_null()).then(|| slice::from_raw_parts_mut(p, *len as usize))
}

/// Writes `value` to `p` when it is not null.
unsafe fn put<T>(p: *mut T, value: T) -> CK_RV {
    match p.as_mut() {
        Some(slot) => {
            *slot = value;
            CKR_OK
        }
        None => CKR_ARGUMENTS_BAD,
    }
}

/// A list output with the two-call convention.
unsafe fn put_list<T: Copy>(items: &[T], p: *mut T, count: *mut CK_ULONG) -> CK_RV {
    let Some(count) = count.as_mut() else {
        return CKR_ARGUMENTS_BAD;
    };
    let n = items.len() as CK_ULONG;
    if p.is_null() {
        *count = n;
        return CKR_OK;
    }
    if *count < n {
        *count = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    ptr::copy_nonoverlapping(items.as_ptr(), p, items.len());
    *count = n;
    CKR_OK
}

fn code<T>(r: Result<T, CK_RV>, ok: impl FnOnce(T) -> CK_RV) -> CK_RV {
    match r {
        Ok(v) => ok(v),
        Err(e) => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    if let Some(a) = (args as *const CK_C_INITIALIZE_ARGS).as_ref() {
        if !a.pReserved.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        let given = [
            a.CreateMutex.is_some(),
            a.DestroyMutex.is_some(),
            a.LockMutex.is_some(),
            a.UnlockMutex.is_some(),
        ];
        if given.contains(&true) && given.contains(&false) {
            return CKR_ARGUMENTS_BAD;
        }
        // The module locks with the OS's primitives; it cannot use the caller's instead.
        if given[0] && a.flags & CKF_OS_LOCKING_OK == 0 {
            return CKR_CANT_LOCK;
        }
    }
    match Config::from_env() {
        Ok(c) => MODULE.initialize(c),
        Err(e) => {
            // The only way to tell a user of pkcs11-tool or OpenSSL what is missing.
            eprintln!("sesame-pkcs11: {e}");
            CKR_GENERAL_ERROR
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    if !reserved.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    MODULE.finalize()
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    code(MODULE.info(), |i| put(info, i))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    // Callers only read the table; the cast is what the C prototype demands.
    put(list, ptr::addr_of!(FUNCTION_LIST) as *mut CK_FUNCTION_LIST)
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    code(MODULE.slots(present != CK_FALSE), |s| {
        put_list(&s, list, count)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    code(MODULE.slot_info(slot), |i| put(info, i))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    code(MODULE.token_info(slot), |i| put(info, i))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    code(MODULE.mechanisms(slot), |m| put_list(&m, list, count))
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    m: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    code(MODULE.mechanism_info(slot, m), |i| put(info, i))
}

#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    if session.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    code(MODULE.open_session(slot, flags), |h| put(session, h))
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    MODULE.close_session(h)
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    MODULE.close_all_sessions(slot)
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    h: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    code(MODULE.session_info(h), |i| put(info, i))
}

#[no_mangle]
pub unsafe extern "C" fn C_Login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    match bytes(pin, len) {
        Some(pin) => MODULE.login(h, user, pin),
        None => CKR_ARGUMENTS_BAD,
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    MODULE.logout(h)
}

#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    h: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    attrs: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    if attrs.is_null() {
        return if count == 0 {
            CKR_OK
        } else {
            CKR_ARGUMENTS_BAD
        };
    }
    let n = count as usize;
    let mut reqs: Vec<AttrReq<'_>> = (0..n)
        .map(|i| {
            let a = ptr::read(attrs.add(i));
            let buf = (!a.pValue.is_null())
                .then(|| slice::from_raw_parts_mut(a.pValue as *mut u8, a.ulValueLen as usize));
            AttrReq {
                kind: a.type_,
                buf,
                len: a.ulValueLen,
            }
        })
        .collect();
    let rv = MODULE.get_attributes(h, object, &mut reqs);
    if rv == CKR_SESSION_HANDLE_INVALID
        || rv == CKR_OBJECT_HANDLE_INVALID
        || rv == CKR_CRYPTOKI_NOT_INITIALIZED
    {
        return rv;
    }
    for (i, r) in reqs.iter().enumerate() {
        (*attrs.add(i)).ulValueLen = r.len;
    }
    rv
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    h: CK_SESSION_HANDLE,
    attrs: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    match template(attrs, count) {
        Some(t) => MODULE.find_init(h, &t),
        None => CKR_ARGUMENTS_BAD,
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    out: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    if count.is_null() || (out.is_null() && max > 0) {
        return CKR_ARGUMENTS_BAD;
    }
    code(MODULE.find(h, max as usize), |found| {
        if !found.is_empty() {
            ptr::copy_nonoverlapping(found.as_ptr(), out, found.len());
        }
        put(count, found.len() as CK_ULONG)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    MODULE.find_final(h)
}

#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    h: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    match mechanism(m) {
        Some((m, p)) => MODULE.sign_init(h, m, p, key),
        None => CKR_ARGUMENTS_BAD,
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    let (Some(data), false) = (bytes(data, len), sig_len.is_null()) else {
        return CKR_ARGUMENTS_BAD;
    };
    let (rv, n) = MODULE.sign(h, data, out_buf(sig, sig_len));
    if rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL {
        *sig_len = n as CK_ULONG;
    }
    rv
}

#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    h: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    match bytes(part, len) {
        Some(p) => MODULE.sign_update(h, p),
        None => CKR_ARGUMENTS_BAD,
    }
}

#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    if sig_len.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let (rv, n) = MODULE.sign_final(h, out_buf(sig, sig_len));
    if rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL {
        *sig_len = n as CK_ULONG;
    }
    rv
}

#[no_mangle]
pub unsafe extern "C" fn C_DeriveKey(
    h: CK_SESSION_HANDLE,
    m: *mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    attrs: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    let (Some((m, p)), Some(t), false) = (mechanism(m), template(attrs, count), key.is_null())
    else {
        return CKR_ARGUMENTS_BAD;
    };
    code(MODULE.derive(h, m, p, base, &t), |k| put(key, k))
}

#[no_mangle]
pub unsafe extern "C" fn C_DestroyObject(h: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> CK_RV {
    MODULE.destroy(h, object)
}

#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    h: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    if out.is_null() {
        return if len == 0 {
            MODULE.random(h, &mut [])
        } else {
            CKR_ARGUMENTS_BAD
        };
    }
    MODULE.random(h, slice::from_raw_parts_mut(out, len as usize))
}

#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    h: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    MODULE.seed_random(h)
}

// Functions the token does not offer: each with its C prototype, answering
// CKR_FUNCTION_NOT_SUPPORTED (the legacy parallel functions: CKR_FUNCTION_NOT_PARALLEL).
type U = CK_ULONG;
type B = *mut CK_BYTE;
type A = *mut CK_ATTRIBUTE;
type M = *mut CK_MECHANISM;
type PU = *mut CK_ULONG;
unsafe extern "C" fn ns_init_token(_: U, _: B, _: U, _: B) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_b_u(_: U, _: B, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_set_pin(_: U, _: B, _: U, _: B, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_b_pu(_: U, _: B, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_set_state(_: U, _: B, _: U, _: U, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_create(_: U, _: A, _: U, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_copy(_: U, _: U, _: A, _: U, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_size(_: U, _: U, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_set_attr(_: U, _: U, _: A, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_m_o(_: U, _: M, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_b_u_b_pu(_: U, _: B, _: U, _: B, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_m(_: U, _: M) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_s_o(_: U, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_verify(_: U, _: B, _: U, _: B, _: U) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_gen_key(_: U, _: M, _: A, _: U, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_gen_pair(_: U, _: M, _: A, _: U, _: A, _: U, _: PU, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_wrap(_: U, _: M, _: U, _: U, _: B, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_unwrap(_: U, _: M, _: U, _: B, _: U, _: A, _: U, _: PU) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}
unsafe extern "C" fn ns_parallel(_: U) -> CK_RV {
    CKR_FUNCTION_NOT_PARALLEL
}
unsafe extern "C" fn ns_wait(_: U, _: *mut CK_SLOT_ID, _: *mut c_void) -> CK_RV {
    CKR_FUNCTION_NOT_SUPPORTED
}

static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(ns_init_token),
    C_InitPIN: Some(ns_s_b_u),
    C_SetPIN: Some(ns_set_pin),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(ns_s_b_pu),
    C_SetOperationState: Some(ns_set_state),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(ns_create),
    C_CopyObject: Some(ns_copy),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(ns_size),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(ns_set_attr),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(ns_s_m_o),
    C_Encrypt: Some(ns_s_b_u_b_pu),
    C_EncryptUpdate: Some(ns_s_b_u_b_pu),
    C_EncryptFinal: Some(ns_s_b_pu),
    C_DecryptInit: Some(ns_s_m_o),
    C_Decrypt: Some(ns_s_b_u_b_pu),
    C_DecryptUpdate: Some(ns_s_b_u_b_pu),
    C_DecryptFinal: Some(ns_s_b_pu),
    C_DigestInit: Some(ns_s_m),
    C_Digest: Some(ns_s_b_u_b_pu),
    C_DigestUpdate: Some(ns_s_b_u),
    C_DigestKey: Some(ns_s_o),
    C_DigestFinal: Some(ns_s_b_pu),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(ns_s_m_o),
    C_SignRecover: Some(ns_s_b_u_b_pu),
    C_VerifyInit: Some(ns_s_m_o),
    C_Verify: Some(ns_verify),
    C_VerifyUpdate: Some(ns_s_b_u),
    C_VerifyFinal: Some(ns_s_b_u),
    C_VerifyRecoverInit: Some(ns_s_m_o),
    C_VerifyRecover: Some(ns_s_b_u_b_pu),
    C_DigestEncryptUpdate: Some(ns_s_b_u_b_pu),
    C_DecryptDigestUpdate: Some(ns_s_b_u_b_pu),
    C_SignEncryptUpdate: Some(ns_s_b_u_b_pu),
    C_DecryptVerifyUpdate: Some(ns_s_b_u_b_pu),
    C_GenerateKey: Some(ns_gen_key),
    C_GenerateKeyPair: Some(ns_gen_pair),
    C_WrapKey: Some(ns_wrap),
    C_UnwrapKey: Some(ns_unwrap),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(ns_parallel),
    C_CancelFunction: Some(ns_parallel),
    C_WaitForSlotEvent: Some(ns_wait),
};
