//! One error type for every handler: JSON `{ "error": code, "message": … }`, internals hidden
//! on 5xx (logged instead).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Reason;
use crate::store::StoreError;

/// An HTTP error with a stable code.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// 401 for a refused authentication (429 when throttled).
    pub fn auth(r: Reason) -> Self {
        let status = if r == Reason::Throttled {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::UNAUTHORIZED
        };
        let message = r.message();
        Self {
            status,
            code: r.code(),
            message: message.into(),
        }
    }
}

/// The kind of a refused operation, whatever the transport (HTTP maps it to a status in
/// [`From<Failure> for ApiError`](ApiError); another front end maps it its own way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The request is malformed or names something impossible.
    Invalid,
    /// The caller is not (or no longer) who it must be.
    Unauthenticated,
    /// Nothing by that name.
    NotFound,
    /// The state of things does not allow it (already there, replayed, not configured).
    Conflict,
    /// Well formed, but its content is refused (e.g. a signature that does not verify).
    Unprocessable,
    /// The database or a key operation failed.
    Unavailable,
}

/// A service operation refused: its kind, a stable machine-readable code, a sentence.
#[derive(Debug)]
pub struct Failure {
    /// What kind of refusal.
    pub kind: Kind,
    /// Stable code (the `error` of the HTTP body).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl Failure {
    /// A refusal of `kind`.
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    /// A malformed request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, code, message)
    }

    /// Nothing by that name.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, "not_found", message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::new(Kind::Unavailable, "unavailable", "storage unavailable")
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        let status = match f.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            status,
            code: f.code,
            message: f.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "service failure");
        match e {
            StoreError::Database(_) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: "storage unavailable".into(),
            },
            _ => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: "internal error (see the service's log)".into(),
            },
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        let status = r.status();
        match r {
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => Self {
                status,
                code: "payload_too_large",
                message: "request body over the size limit".into(),
            },
            J::MissingJsonContentType(_) => Self {
                status,
                code: "unsupported_media_type",
                message: "send application/json".into(),
            },
            other => Self::bad_request("malformed_request", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(sesame_proto::ErrorBody {
                error: self.code.into(),
                message: self.message,
            }),
        )
            .into_response()
    }
}
