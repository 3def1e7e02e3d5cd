//! What every request leaves behind: a request id (kept from the client only if it is short and
//! plain, else made here) echoed in `x-request-id`, an info-level log line under a span that
//! carries it, and the HTTP metrics by route template and status.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::service::Service;

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id kept from a client.
pub const REQUEST_ID_MAX: usize = 64;

/// The layers around every route (the innermost first).
pub(crate) fn layers(routes: Router<Arc<Service>>, s: &Arc<Service>) -> Router<Arc<Service>> {
    routes
        .layer(from_fn_with_state(s.clone(), http_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            NewId(ring::rand::SystemRandom::new()),
        ))
        .layer(from_fn(drop_unfit_request_id))
}

/// A client's id is kept only if it is 1 to 64 characters of `A-Z a-z 0-9 - _ . :`: anything
/// else (long, spaces, quotes, control or non-ASCII bytes) could bloat or forge log lines.
pub fn fit_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=REQUEST_ID_MAX).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

async fn drop_unfit_request_id(mut req: Request, next: Next) -> Response {
    let ids = req.headers().get_all(&REQUEST_ID).iter().count();
    let fit = req.headers().get(&REQUEST_ID).is_some_and(fit_request_id);
    if ids > 1 || (ids == 1 && !fit) {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

/// Makes request ids: 16 random bytes, hex.
#[derive(Clone, Debug)]
struct NewId(ring::rand::SystemRandom);

impl MakeRequestId for NewId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut b = [0u8; 16];
        ring::rand::SecureRandom::fill(&self.0, &mut b).ok()?;
        HeaderValue::from_str(&hex::encode(b))
            .ok()
            .map(RequestId::new)
    }
}

/// The span of one request: its id, method and route template (never the raw path, which a
/// stranger chooses).
fn span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", id, method = %req.method(), route)
}

async fn http_metrics(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let rsp = next.run(req).await;
    s.metrics.http(
        &method,
        route.as_deref(),
        rsp.status().as_u16(),
        started.elapsed(),
    );
    rsp
}
