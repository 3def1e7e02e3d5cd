//! Who is calling, as types: an operator ([`Admin`]) or a logged-in device ([`DeviceSession`]).
//!
//! Both are axum extractors, and the service's protected operations take them as arguments, so a
//! handler that forgets to authenticate its caller does not compile: it has nothing to pass.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::auth::Reason;
use crate::error::ApiError;
use crate::service::Service;
use crate::store_trust::SessionRow;
use crate::trust::Standing;

/// Proof that the caller presented the operator token. Only the extractor makes one.
#[derive(Debug)]
pub struct Admin(());

/// The device behind a live session token, whose standing was good at this request.
#[derive(Debug)]
pub struct DeviceSession(pub(crate) SessionRow);

impl DeviceSession {
    /// The device's serial.
    pub fn serial(&self) -> &str {
        &self.0.serial
    }
}

/// The bearer token of a request (empty if none).
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.into(),
    }
}

impl FromRequestParts<Arc<Service>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<Service>) -> Result<Self, ApiError> {
        let given = bearer(&parts.headers);
        // Constant time: the comparison must not tell how much of a guess was right.
        if !given.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                s.config.admin_token.as_bytes(),
            ))
        {
            Ok(Admin(()))
        } else {
            Err(unauthorized("operator token required"))
        }
    }
}

impl FromRequestParts<Arc<Service>> for DeviceSession {
    type Rejection = ApiError;

    /// Refused if the session is unknown or expired (401 `unauthorized`), or the device, its
    /// certificate, key or family has been revoked since (401 `revoked` / `family_revoked`).
    async fn from_request_parts(parts: &mut Parts, s: &Arc<Service>) -> Result<Self, ApiError> {
        match s.session(bearer(&parts.headers)).await? {
            Some(Ok(row)) => Ok(DeviceSession(row)),
            Some(Err(Standing::FamilyRevoked)) => Err(ApiError::auth(Reason::FamilyRevoked)),
            Some(Err(Standing::Revoked)) => Err(ApiError::auth(Reason::Revoked)),
            Some(Err(_)) => Err(ApiError::auth(Reason::NotEnrolled)),
            None => Err(unauthorized("no valid session")),
        }
    }
}
