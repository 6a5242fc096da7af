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

/// WHEP (RFC 9725): start a WebRTC live view.
///
/// The camera's H.264 is forwarded as it arrived (no transcode), starting from the GOP
/// cache's keyframe so the first picture shows at once.
#[utoipa::path(
    post,
    path = super::WHEP,
    operation_id = "whep_offer",
    tag = "webrtc",
    params(super::openapi::CameraName),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (
            status = 201,
            description = "The SDP answer; Location names the session (PATCH for trickle ICE, DELETE to end).",
            body = String,
            content_type = "application/sdp",
            headers(("Location" = String)),
        ),
        (status = 400, description = "Not a usable SDP offer.", body = super::ErrorBody),
        (status = 403, description = "WebRTC is switched off (server.webrtc.enabled).", body = super::ErrorBody),
        (status = 404, description = "No such camera.", body = super::ErrorBody),
        (status = 413, description = "Offer too large.", body = super::ErrorBody),
        (status = 415, description = "Not Content-Type: application/sdp.", body = super::ErrorBody),
        (
            status = 422,
            description = "The camera does not send H.264 (browsers' WebRTC takes H.264 only): use the MJPEG stream.",
            body = super::ErrorBody,
        ),
        (
            status = 503,
            description = "The camera has server.webrtc.max_viewers viewers already, or no UDP port is free.",
            body = super::ErrorBody,
        ),
    ),
)]
pub async fn offer(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    local: Option<axum::Extension<axum::extract::ConnectInfo<super::LocalAddr>>>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let cam = hub.get(&name).ok_or_else(|| ApiError::unknown_camera(&name))?;
    check_body(&headers, &body, "application/sdp", "a WHEP offer", &name)?;
    // Where the request came in, not what its Host header names (a caller's choice).
    let ip = crate::whep::bind_ip(local.map(|l| (l.0).0.0.ip()));
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

/// Trickle ICE: remote candidates as an SDP fragment (a=candidate: lines).
#[utoipa::path(
    patch,
    path = super::WHEP_SESSION,
    operation_id = "whep_trickle",
    tag = "webrtc",
    params(super::openapi::WhepSession),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses(
        (status = 204, description = "Candidates taken."),
        (status = 400, description = "A bad candidate line.", body = super::ErrorBody),
        (status = 404, description = "No such session.", body = super::ErrorBody),
        (status = 415, description = "Wrong Content-Type.", body = super::ErrorBody),
    ),
)]
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

/// End the session: the viewer's UDP port and its hold on the camera's connection are released.
#[utoipa::path(
    delete,
    path = super::WHEP_SESSION,
    operation_id = "whep_end",
    tag = "webrtc",
    params(super::openapi::WhepSession),
    responses(
        (status = 200, description = "Ended."),
        (status = 404, description = "No such session.", body = super::ErrorBody),
    ),
)]
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
