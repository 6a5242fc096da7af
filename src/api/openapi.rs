//! `GET /api/openapi.json`: the OpenAPI 3.1 document of this API, generated once
//! from the handlers' `#[utoipa::path]` attributes and the body types (the config's
//! `CameraOptions` among them), so it cannot drift from the code. `tests/openapi.rs`
//! checks it against `ROUTES`, the config types and a live camera's JSON.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::{cameras, compat, manage, metrics, mjpeg, snapshot, whep};
use crate::config::{CameraOptions, Keep, Mode, Transport};
use crate::hub::metrics::{STATES, state_name};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "camhub",
        description = "A camera hub: the newest picture of any camera, at once. Errors are JSON {error, camera}. \
                       With server.auth configured, every route but /api/health (and /metrics unless \
                       protect_metrics) needs a Bearer token, ?token=, or Basic auth."
    ),
    paths(
        super::dashboard,
        metrics::health,
        metrics::metrics,
        serve,
        cameras::list,
        manage::add,
        cameras::one,
        manage::put,
        manage::remove,
        snapshot::get,
        mjpeg::get,
        whep::offer,
        whep::trickle,
        whep::end,
        compat::go2rtc_frame,
        compat::go2rtc_mjpeg,
        compat::go2rtc_streams,
        compat::frigate_latest,
    ),
    components(schemas(super::ErrorBody, Camera, CameraOptions)),
    modifiers(&Auth, &Aliases),
    security((), ("bearer" = []), ("basic" = []))
)]
struct ApiDoc;

/// The document as JSON, built on first use.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// This document.
#[utoipa::path(
    get,
    path = super::OPENAPI,
    operation_id = "openapi",
    tag = "hub",
    responses((status = 200, description = "OpenAPI 3.1.", content_type = "application/json")),
)]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// The ways to authenticate that `server.auth` offers.
struct Auth;

impl Modify for Auth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        c.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// Each alias route's operation says which route it stands for: `x-alias-of`
/// (its path), and a description that starts "Alias of".
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, of) in super::ALIASES {
            let Some(item) = doc.paths.paths.get_mut(*path) else { continue };
            let Some(op) = item.get.as_mut() else { continue };
            let ext = op.extensions.get_or_insert_with(Default::default);
            ext.insert("x-alias-of".to_owned(), serde_json::json!(of));
            let rest = op.description.take().unwrap_or_default();
            op.description = Some(format!("Alias of `GET {of}` (same contract and headers). {rest}"));
        }
    }
}

/// go2rtc's `src` (the camera) and `name` (the same, its other spelling).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only its documentation is used
pub struct AliasSrc {
    /// Camera name (required, or `name`).
    src: Option<String>,
    /// Camera name, go2rtc's other spelling of `src`.
    name: Option<String>,
}

/// go2rtc's short names for the size.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only its documentation is used
pub struct AliasSize {
    /// Same as width.
    #[param(minimum = 1, maximum = 8192)]
    w: Option<u32>,
    /// Same as height.
    #[param(minimum = 1, maximum = 8192)]
    h: Option<u32>,
}

/// `/api/streams?src=`: one camera's entry only.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only its documentation is used
pub struct AliasStreams {
    /// Camera name: answer this camera's entry alone.
    src: Option<String>,
}

/// Frigate's `latest.jpg` options.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only its documentation is used
pub struct AliasFrigate {
    /// Same as height.
    #[param(minimum = 1, maximum = 8192)]
    h: Option<u32>,
    /// Frigate's drawing option: accepted and ignored.
    bbox: Option<u8>,
    /// Frigate's drawing option: accepted and ignored.
    timestamp: Option<u8>,
    /// Frigate's drawing option: accepted and ignored.
    zones: Option<u8>,
    /// Frigate's drawing option: accepted and ignored.
    mask: Option<u8>,
    /// Frigate's drawing option: accepted and ignored.
    motion: Option<u8>,
    /// Frigate's drawing option: accepted and ignored.
    regions: Option<u8>,
}

/// `{name}` in a path.
#[derive(IntoParams)]
#[into_params(names("name"), parameter_in = Path)]
#[allow(dead_code)] // only its documentation is used
pub struct CameraName(
    /// Camera name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    String,
);

/// `{name}` and `{session}` in a WHEP session's path.
#[derive(IntoParams)]
#[into_params(names("name", "session"), parameter_in = Path)]
#[allow(dead_code)] // only its documentation is used
pub struct WhepSession(
    /// Camera name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    String,
    /// Session id from the Location of the POST.
    String,
);

/// RFC 3339 in UTC with milliseconds (`rfc3339_ms`).
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}
impl ToSchema for Timestamp {}

/// `X-Snapshot-Source`: how the picture was obtained.
pub struct SnapshotSourceName;

impl PartialSchema for SnapshotSourceName {
    fn schema() -> RefOr<Schema> {
        let names = crate::snapshot::SnapshotSource::ALL.map(|s| s.as_str());
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)).into()
    }
}
impl ToSchema for SnapshotSourceName {}

/// `X-Snapshot-Stream`: which of a camera's streams served.
pub struct StreamName;

impl PartialSchema for StreamName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["main", "sub"])).into()
    }
}
impl ToSchema for StreamName {}

/// `POST /api/cameras`: a camera's long form and its `name`.
pub struct NewCamera;

impl PartialSchema for NewCamera {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut o)) = CameraOptions::schema() else {
            unreachable!("CameraOptions is a plain object");
        };
        o.properties.shift_insert(0, "name".into(), String::schema());
        o.required.insert(0, "name".into());
        o.description = Some("A camera's long form (CameraOptions) and its name.".into());
        RefOr::T(Schema::Object(o))
    }
}

impl ToSchema for NewCamera {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((CameraOptions::name().into(), CameraOptions::schema()));
        CameraOptions::schemas(schemas);
    }
}

fn enum_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).build()
}

/// The states a camera reports (`camera::State`, as `/metrics` lists them).
fn states() -> Object {
    // `unowned`: cluster mode, a fleet camera no node holds right now.
    let names: Vec<String> = STATES.iter().map(|s| state_name(*s)).chain(["unowned".to_owned()]).collect();
    enum_of(names.iter().map(String::as_str))
}

/// The tiers `cameras::describe` reports.
fn tiers() -> Object {
    enum_of(["idle", "connected", "decoding"])
}

/// A camera's configuration summary, state and counters (see README).
// `cameras::describe` writes it; tests/openapi.rs checks that the two have the same keys.
#[derive(ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct Camera {
    name: String,
    /// Without credentials.
    url: String,
    codec: Option<String>,
    #[schema(schema_with = states)]
    state: String,
    #[schema(value_type = String, format = DateTime)]
    since: String,
    /// `{kind, message}` of the last failure.
    #[schema(value_type = Option<Object>)]
    last_error: Option<()>,
    retry_in_ms: Option<u64>,
    keep: Keep,
    transport: Transport,
    /// `{transport, reason}` when `transport: udp` fell back to TCP (a `461`
    /// answer, or no UDP packets within 5 s); it stays so until the config changes.
    #[schema(value_type = Option<Object>)]
    transport_fallback: Option<()>,
    width: Option<u32>,
    height: Option<u32>,
    /// `{frame_id, timestamp, age_ms}` of the newest decoded picture.
    #[schema(value_type = Option<Object>)]
    latest_frame: Option<()>,
    #[schema(schema_with = tiers)]
    tier: String,
    attempts: u32,
    /// Times the camera's task panicked and was restarted (with backoff).
    restarts: u64,
    /// `{state, at}` of the latest state changes.
    #[schema(value_type = Vec<Object>)]
    history: Vec<()>,
    /// `{running, linger_s, priority, shedding, hwaccel_requested, hwaccel,
    /// hwaccel_fallback}`: `hwaccel` is the device decoding (`none`: software,
    /// `vaapi`, `cuda`), `hwaccel_fallback` why not the one `decoder.hwaccel`
    /// asked for (missing, or failed mid-stream), else null.
    #[schema(value_type = Object)]
    decoder: (),
    #[schema(value_type = Object)]
    leases: (),
    #[schema(value_type = Object)]
    gop_cache: (),
    jpeg_cache_bytes: u64,
    #[schema(value_type = Object)]
    memory: (),
    mode: Mode,
    #[schema(value_type = Object)]
    webrtc: (),
    /// The camera's outputs for programs (shm rings, redis streams) and what they did.
    #[schema(value_type = Vec<Object>)]
    outputs: Vec<()>,
    #[schema(value_type = Object)]
    counters: (),
    /// The sub-stream (`streams.sub`), null without one: `{url, state, since,
    /// codec, tier, width, height, latest_frame, last_error, leases}`, the url
    /// without credentials; it connects only while something reads it.
    #[schema(value_type = Option<Object>)]
    sub: Option<()>,
    /// Cluster mode: `{node, fence}`, the node that runs the camera and its
    /// lease's fencing token (`state: unowned` while no node holds it); null on
    /// a single node.
    #[schema(value_type = Option<Object>)]
    cluster: Option<()>,
}
