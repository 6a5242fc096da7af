//! WHEP (RFC 9725): `POST /api/cameras/{name}/whep` with an SDP offer answers
//! `201 Created`, the SDP answer and a `Location` for the session; `PATCH` on it
//! takes trickled ICE candidates, `DELETE` ends it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::hub::Hub;

/// The largest offer taken (a browser's is a few KiB).
const MAX_SDP: usize = 64 * 1024;

fn refused(e: crate::whep::WhepError, name: &str) -> ApiError {
    use crate::whep::Refusal;
    let status = match e.refusal {
        Refusal::Disabled => StatusCode::FORBIDDEN,
        Refusal::Unsupported => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Busy | Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::BadRequest => StatusCode::BAD_REQUEST,
        Refusal::NoSession => StatusCode::NOT_FOUND,
    };
    ApiError::new(status, e.message, Some(name))
}

/// A body of the content type the route takes, and not too large.
fn check_body(headers: &HeaderMap, body: &str, want: &str, what: &str, name: &str) -> Result<(), ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.starts_with(want) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what} takes Content-Type: {want}"),
            Some(name),
        ));
    }
    if body.len() > MAX_SDP {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body of {what} is too large"),
            Some(name),
        ));
    }
    Ok(())
}

pub async fn offer(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let cam = hub.get(&name).ok_or_else(|| ApiError::unknown_camera(&name))?;
    check_body(&headers, &body, "application/sdp", "a WHEP offer", &name)?;
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let ip = crate::whep::host_ip(host, None);
    let (id, answer) = hub.whep.create(&cam, &body, ip).await.map_err(|e| refused(e, &name))?;
    let location = format!("/api/cameras/{name}/whep/{id}");
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn trickle(
    State(hub): State<Arc<Hub>>,
    Path((name, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    check_body(&headers, &body, "application/trickle-ice-sdpfrag", "trickle ICE", &name)?;
    hub.whep.trickle(&name, &session, &body).map_err(|e| refused(e, &name))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn end(
    State(hub): State<Arc<Hub>>,
    Path((name, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if hub.whep.delete(&name, &session) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "no such WebRTC session", Some(&name)))
    }
}
