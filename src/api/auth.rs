//! Who may call: bearer tokens and/or Basic users from `server.auth`, compared
//! in constant time; `/metrics` and `/api/health` open or protected by choice.
//! CORS headers only for the origins configured in `server.cors_origins`; a
//! request from any other page (an `Origin` that is neither configured nor the
//! hub's own) is refused, so a web page cannot make a user's browser drive the API.
//! With auth off, a `Host` that is not this hub's (DNS rebinding) is refused too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::ApiError;
use crate::config::ServerConfig;
use crate::hub::Hub;
use crate::secret::constant_time_eq;

/// Reads the hub's `server:` settings per request, so a reload applies at once.
pub async fn guard(State(hub): State<Arc<Hub>>, mut req: Request, next: Next) -> Response {
    let cfg = hub.server();
    // DNS rebinding: a hostile page's own name made to resolve to this hub reaches an
    // open API with that name in Host. With auth off, only names that are this hub's.
    if !cfg.auth.enabled()
        && let Some(host) = req.headers().get(header::HOST)
        && !host_allowed(host)
    {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "this hub answers only to localhost and IP addresses (its listen address) while server.auth is off \
             (DNS rebinding defence): use one of those, or set server.auth",
            None,
        )
        .into_response();
    }
    if let Some(o) = req.headers().get(header::ORIGIN)
        && !cfg.cors_origins.iter().any(|a| a.as_bytes() == o.as_bytes() || a == "*")
        && !same_origin(o, req.headers().get(header::HOST))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from other web pages are refused: add the page's origin to server.cors_origins",
            None,
        )
        .into_response();
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| cfg.cors_origins.iter().any(|a| a == o || a == "*"))
        .map(str::to_owned);
    if req.method() == Method::OPTIONS
        && let Some(o) = &origin
    {
        let mut r = StatusCode::NO_CONTENT.into_response();
        cors(&mut r, o);
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return r;
    }
    let token = take_query_token(&mut req);
    let auth = &cfg.auth;
    let path = req.uri().path();
    let open = !auth.enabled()
        || (path == "/metrics" && !auth.protect_metrics)
        || (path == "/api/health" && !auth.protect_health);
    if !open && !allowed(&cfg, &req, token.as_deref()) {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "credentials required (Bearer token or Basic auth)", None)
            .into_response();
        let challenge = if auth.users.is_empty() { "Bearer" } else { "Basic realm=\"camhub\", charset=\"UTF-8\"" };
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        return r;
    }
    if let Some(t) = token {
        // For passing on to another node (cluster mode).
        req.extensions_mut().insert(super::cluster::QueryToken(t));
    }
    let mut r = next.run(req).await;
    if let Some(o) = &origin {
        cors(&mut r, o);
    }
    r
}

/// Whether a `Host` header names this hub: an IP literal (`server.listen` is one)
/// or `localhost`. A name is what a rebinding page would send.
fn host_allowed(host: &HeaderValue) -> bool {
    fn name(hostport: &str) -> &str {
        match hostport.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
        }
    }
    let Ok(host) = host.to_str() else { return false };
    let h = name(host.trim()).trim_end_matches('.');
    h.parse::<std::net::IpAddr>().is_ok() || h.eq_ignore_ascii_case("localhost")
}

/// The hub's own pages (the dashboard): `Origin` names the host the request was sent to.
fn same_origin(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else { return false };
    origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !host.is_empty() && rest.eq_ignore_ascii_case(host)
    })
}

fn cors(r: &mut Response, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        r.headers_mut().insert(header::VARY, HeaderValue::from_static("origin"));
    }
}

fn allowed(cfg: &ServerConfig, req: &Request, query_token: Option<&str>) -> bool {
    let auth = &cfg.auth;
    let token_ok = |t: &str| auth.tokens.iter().any(|k| constant_time_eq(k.expose().as_bytes(), t.as_bytes()));
    if query_token.is_some_and(token_ok) {
        return true;
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // Auth schemes are case-insensitive (RFC 9110, 11.1): `bearer` is `Bearer`.
    let (scheme, param) = value.trim_start().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return token_ok(param.trim());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let b = param;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else { return false };
        let Ok(pair) = String::from_utf8(raw) else { return false };
        let Some((user, pass)) = pair.split_once(':') else { return false };
        // Every user is compared, so the time does not tell which names exist.
        return auth.users.iter().fold(false, |ok, (u, p)| {
            let hit = constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.expose().as_bytes(), pass.as_bytes());
            ok | hit
        });
    }
    false
}

/// Removes `token=...` from the query (handlers never see it) and returns it.
fn take_query_token(req: &mut Request) -> Option<String> {
    let query = req.uri().query()?;
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("token=") {
            Some(t) => {
                token = Some(t.to_owned());
                false
            }
            None => true,
        })
        .collect();
    token.as_ref()?;
    let path = req.uri().path().to_owned();
    let pq = if rest.is_empty() { path } else { format!("{path}?{}", rest.join("&")) };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = pq.parse().ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    token.map(|t| {
        url::form_urlencoded::parse(format!("t={t}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or(t)
    })
}
