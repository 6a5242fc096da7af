//! Run-time control: `POST /api/cameras` adds a camera, `PUT /api/cameras/{name}`
//! adds or changes one, `DELETE /api/cameras/{name}` stops it and frees all it held.
//! Bodies are JSON with the same keys as a camera's long form in the config file,
//! taken literally: no `${VAR}` (that is the file's), `Content-Type: application/json`
//! only (a cross-site form or `text/plain` POST is refused), and files only from
//! `server.media_dirs`. A change is written into the config file before it is
//! applied (`hub::store`); one that cannot be saved is refused (`409`), and a
//! run-time-only change (`server.persist: false`, the demo) says so in `Warning`.
//! In cluster mode a change goes into the fleet every node shares (in Redis),
//! and the answer is the camera as the node that takes it shows it.

use std::path::{Component, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::ApiError;
use super::cameras::describe;
use crate::config::{CameraConfig, CameraOptions, SourceSpec};
use crate::hub::{ChangeError, Hub, Saved};

/// Reads a camera from a JSON body; `name` comes from the body or the path.
/// Returns it with its options as given (the body's keys, but the name).
fn parse(
    headers: &HeaderMap,
    body: &[u8],
    path_name: Option<&str>,
    hub: &Hub,
) -> Result<(CameraConfig, Map<String, Value>), ApiError> {
    let bad = |m: String, name: Option<&str>| ApiError::new(StatusCode::BAD_REQUEST, m, name);
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a camera is written with Content-Type: application/json",
            path_name,
        ));
    }
    let mut v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}"), path_name))?;
    let obj = v.as_object_mut().ok_or_else(|| bad("body must be a JSON object".into(), path_name))?;
    let body_name = match obj.remove("name") {
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(bad("name must be a string".into(), path_name)),
        None => None,
    };
    let name = match (path_name, body_name.as_deref()) {
        (Some(p), Some(b)) if p != b => {
            return Err(bad(format!("name {b:?} in the body differs from {p:?} in the path"), Some(p)));
        }
        (Some(p), _) => p.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) => return Err(bad("a camera needs a name".into(), None)),
    };
    let given = obj.clone();
    let options: CameraOptions =
        serde_json::from_value(v).map_err(|e| bad(format!("bad camera options: {e}"), Some(&name)))?;
    let cfg = CameraConfig::resolve(&name, options, &hub.base_dir).map_err(|e| bad(e.to_string(), Some(&name)))?;
    let dirs = hub.media_dirs();
    if let SourceSpec::File(path) = &cfg.source
        && !in_media_dirs(path, &dirs)
    {
        // One answer whether or not the path exists: the API is no probe of the disk.
        let why = if dirs.is_empty() { "none are configured" } else { "this path is not under one" };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("cameras added through the API may read files only from server.media_dirs ({why})"),
            Some(&name),
        ));
    }
    Ok((cfg, given))
}

/// A refused change: the name taken (`409`), or the config file could not take it (`409`).
fn refused(e: ChangeError, name: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, e.to_string(), Some(name))
}

/// An answer to a change, saying when it will not outlast a restart.
fn answer(mut r: Response, saved: Saved) -> Response {
    if let Saved::RuntimeOnly(why) = saved {
        let text = format!("299 camhub \"run-time only ({why}): this change is lost at restart\"");
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().insert(header::WARNING, v);
        }
    }
    r
}

/// Whether `path` lies under one of `dirs`: first by its text (`..` folded, no disk
/// access, so a refusal tells nothing about the disk), then, inside a media dir,
/// by its real path, so a symlink there cannot lead out.
fn in_media_dirs(path: &std::path::Path, dirs: &[PathBuf]) -> bool {
    fn lexical(p: &std::path::Path) -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in std::path::absolute(p).ok()?.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                c => out.push(c),
            }
        }
        Some(out)
    }
    let Some(p) = lexical(path) else { return false };
    if !dirs.iter().filter_map(|d| lexical(d)).any(|d| p.starts_with(d)) {
        return false;
    }
    match std::fs::canonicalize(&p) {
        Ok(real) => dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).any(|d| real.starts_with(d)),
        // Not there (yet): the camera says so, which a media dir may tell.
        Err(_) => true,
    }
}

/// Add a camera.
#[utoipa::path(
    post,
    path = super::CAMERAS,
    operation_id = "add_camera",
    tag = "cameras",
    request_body = super::openapi::NewCamera,
    responses(
        (status = 201, description = "The camera.", body = super::openapi::Camera),
        (
            status = 202,
            description = "Cluster mode: added to the shared fleet; no node runs it yet.",
            body = super::openapi::Camera
        ),
        (status = 400, description = "Bad options (the reason names the key).", body = super::ErrorBody),
        (status = 403, description = "A file outside server.media_dirs, or a refused Origin.", body = super::ErrorBody),
        (status = 415, description = "Not Content-Type: application/json.", body = super::ErrorBody),
        (
            status = 409,
            description = "The name is taken, or the config file could not take the change (nothing changed).",
            body = super::ErrorBody
        ),
        (status = 401, description = "Credentials required.", body = super::ErrorBody),
    ),
)]
pub async fn add(State(hub): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let (cfg, given) = parse(&headers, &body, None, &hub)?;
    let name = cfg.name.clone();
    if hub.cluster().is_some() {
        hub.cluster_add(&cfg, &given).await.map_err(|e| refused(e, &name))?;
        tracing::info!(camera = %name, "camera added to the cluster's fleet through the API");
        return Ok(super::cluster::changed(&hub, &name, StatusCode::CREATED, &headers).await);
    }
    let (cam, saved) = hub.api_add(cfg, &given).await.map_err(|e| refused(e, &name))?;
    tracing::info!(camera = %name, "camera added through the API");
    Ok(answer((StatusCode::CREATED, Json(describe(&hub, &cam))).into_response(), saved))
}

/// Add or change a camera (identical options leave it untouched).
#[utoipa::path(
    put,
    path = super::CAMERA,
    operation_id = "put_camera",
    tag = "cameras",
    params(super::openapi::CameraName),
    request_body = CameraOptions,
    responses(
        (status = 200, description = "The camera.", body = super::openapi::Camera),
        (status = 201, description = "The camera.", body = super::openapi::Camera),
        (
            status = 202,
            description = "Cluster mode: set in the shared fleet; no node runs it yet.",
            body = super::openapi::Camera
        ),
        (status = 400, description = "Bad options.", body = super::ErrorBody),
        (status = 409, description = "The config file could not take the change (nothing changed).", body = super::ErrorBody),
        (status = 403, description = "A file outside server.media_dirs, or a refused Origin.", body = super::ErrorBody),
        (status = 415, description = "Not Content-Type: application/json.", body = super::ErrorBody),
    ),
)]
pub async fn put(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (cfg, given) = parse(&headers, &body, Some(&name), &hub)?;
    if hub.cluster().is_some() {
        let created = hub.cluster_put(&cfg, &given).await.map_err(|e| refused(e, &name))?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        return Ok(super::cluster::changed(&hub, &name, status, &headers).await);
    }
    let (cam, created, saved) = hub.api_put(cfg, &given).await.map_err(|e| refused(e, &name))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(answer((status, Json(describe(&hub, &cam))).into_response(), saved))
}

/// Stop a camera and free what it held.
#[utoipa::path(
    delete,
    path = super::CAMERA,
    operation_id = "remove_camera",
    tag = "cameras",
    params(super::openapi::CameraName),
    responses(
        (status = 204, description = "Removed."),
        (status = 409, description = "The config file could not take the change (nothing changed).", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
    ),
)]
pub async fn remove(State(hub): State<Arc<Hub>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if hub.cluster().is_some() {
        return match hub.cluster_remove(&name).await.map_err(|e| refused(e, &name))? {
            true => Ok(StatusCode::NO_CONTENT.into_response()),
            false => Err(ApiError::unknown_camera(&name)),
        };
    }
    match hub.api_remove(&name).await.map_err(|e| refused(e, &name))? {
        Some(saved) => Ok(answer(StatusCode::NO_CONTENT.into_response(), saved)),
        None => Err(ApiError::unknown_camera(&name)),
    }
}
