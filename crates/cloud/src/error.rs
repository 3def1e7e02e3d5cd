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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "storage unavailable".into(),
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
