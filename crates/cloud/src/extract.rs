//! Request extractors that turn everything a stranger sends into typed values or a 400: JSON
//! bodies that the databases can store, path and query strings without NUL, the client address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The caller's address (unspecified when the service runs without a socket, as in tests).
#[derive(Clone, Copy, Debug)]
pub struct Client(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

/// The client certificate of a mutual-TLS connection (already verified in the handshake), if any.
#[derive(Clone, Debug)]
pub struct ClientCert(pub Option<Vec<u8>>);

impl<S: Send + Sync> FromRequestParts<S> for ClientCert {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientCert(
            parts
                .extensions
                .get::<crate::mtls::PeerCertificate>()
                .map(|c| c.0.clone()),
        ))
    }
}

/// A JSON body, refused with a 400 if it cannot be stored as given: a NUL character (which
/// PostgreSQL text cannot hold), invalid UTF-8 or a lone surrogate, or a shape that does not
/// match `T`. Oversize bodies get 413 from the body limit.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.trim_start().to_ascii_lowercase();
                v.starts_with("application/json") || v.contains("+json")
            });
        if !json {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "send application/json".into(),
            });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "payload_too_large",
                    message: "request body over the size limit".into(),
                },
                _ => ApiError::bad_request("malformed_request", r.body_text()),
            })?;
        if has_nul_escape(&bytes) {
            return Err(unstorable("a string in the body contains NUL"));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request("malformed_request", e.to_string()))
    }
}

/// True if a JSON text contains the `\u0000` escape (raw NUL is not valid JSON anyway).
fn has_nul_escape(b: &[u8]) -> bool {
    // An escape is `\u0000` after an odd number of backslashes; `\\u0000` is a literal text.
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn unstorable(why: &str) -> ApiError {
    ApiError::bad_request("unstorable_input", why)
}

/// Middleware: a request whose path or query decodes to NUL or invalid UTF-8 is a 400 before it
/// reaches a handler (so no store sees it).
pub async fn storable_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    for part in [uri.path(), uri.query().unwrap_or_default()] {
        let decoded: Vec<u8> = percent_decode(part);
        if decoded.contains(&0) {
            return unstorable("the path or query contains NUL").into_response();
        }
        if std::str::from_utf8(&decoded).is_err() {
            return unstorable("the path or query is not UTF-8").into_response();
        }
    }
    next.run(req).await
}

fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode(s.as_bytes()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes() {
        assert!(has_nul_escape(br#"{"a":"x\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"x\\u0000"}"#));
        assert!(has_nul_escape(br#"{"a":"x\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\u0001"}"#));
    }

    #[test]
    fn uri_decoding() {
        assert_eq!(percent_decode("a%00b"), b"a\0b");
        assert_eq!(percent_decode("%ff"), [0xff]);
    }
}
