//! Cluster mode over HTTP: any node answers for any camera. A request for a
//! camera another node runs (its snapshot, MJPEG stream, WHEP session, camera
//! JSON, the go2rtc/Frigate aliases) is passed to that node as it came, and its
//! answer streamed back; every camera answer says which node served it and the
//! lease's fencing token (`X-Camhub-Node`, `X-Camhub-Fence`). `/api/cameras`
//! lists the whole fleet, asking the other nodes for theirs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::ApiError;
use crate::hub::Hub;
use crate::hub::cluster::Remote;

/// Set on a request passed to the camera's owner: the owner answers it itself
/// (never passes it on again), and `/api/cameras` lists only its own cameras.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-camhub-forwarded");
const NODE: HeaderName = HeaderName::from_static("x-camhub-node");
const FENCE: HeaderName = HeaderName::from_static("x-camhub-fence");
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A `?token=` the auth guard took off the query, for passing it on.
#[derive(Clone)]
pub struct QueryToken(pub String);

/// The camera a request is about, by its path (or go2rtc's `src=`/`name=`).
fn camera_of(req: &Request) -> Option<String> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/api/cameras/") {
        return rest.split('/').next().filter(|n| !n.is_empty()).map(str::to_owned);
    }
    if path == "/api/frame.jpeg" || path == "/api/stream.mjpeg" {
        let q = req.uri().query().unwrap_or("");
        return url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "src" || k == "name")
            .map(|(_, v)| v.into_owned());
    }
    let name = path.strip_prefix("/api/")?.strip_suffix("/latest.jpg")?;
    (!name.contains('/')).then(|| name.to_owned())
}

/// Passes requests for other nodes' cameras on; marks this node's answers.
pub async fn route(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let Some(cluster) = hub.cluster().cloned() else { return next.run(req).await };
    let Some(name) = camera_of(&req) else { return next.run(req).await };
    if hub.get(&name).is_some() {
        let mut r = next.run(req).await;
        mark(&mut r, cluster.node(), cluster.fence(&name));
        return r;
    }
    if !cluster.in_fleet(&name) {
        return next.run(req).await; // the native 404
    }
    let forwarded = req.headers().contains_key(&FORWARDED);
    // This node's view is a step old at most: a camera just taken elsewhere
    // shows up at its next step (woken now), so wait that long for an owner.
    let mut owner = hub.remote_owner(&name);
    if owner.is_none() && !forwarded {
        cluster.wake();
        let clock = hub.clock();
        let until = clock.now() + 2 * cluster.step_interval();
        while owner.is_none() && hub.get(&name).is_none() && clock.now() < until {
            clock.sleep(Duration::from_millis(50)).await;
            owner = hub.remote_owner(&name);
        }
        if hub.get(&name).is_some() {
            let mut r = next.run(req).await;
            mark(&mut r, cluster.node(), cluster.fence(&name));
            return r;
        }
    }
    match owner {
        Some(owner) if !forwarded => forward(&owner, req, cluster.node(), &name).await,
        _ => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("camera {name:?} is between nodes (no node holds its lease yet); try again in a moment"),
                Some(&name),
            );
            e.retry_after = Some(1);
            e.into_response()
        }
    }
}

fn mark(r: &mut Response, node: &str, fence: Option<u64>) {
    if let Ok(v) = HeaderValue::from_str(node) {
        r.headers_mut().insert(NODE, v);
    }
    if let Some(f) = fence {
        r.headers_mut().insert(FENCE, HeaderValue::from(f));
    }
}

/// The request, as it came, to the camera's owner; its answer, streamed back.
async fn forward(owner: &Remote, req: Request, me: &str, name: &str) -> Response {
    let fail = |why: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("camera {name:?} runs on node {} ({}), which did not answer: {why}", owner.node, owner.advertise),
            Some(name),
        )
        .into_response()
    };
    let Some(authority) = owner.advertise.strip_prefix("http://").map(|a| a.trim_end_matches('/').to_owned()) else {
        return fail("not an http:// address".into());
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&authority)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(e.to_string()),
        Err(_) => return fail("connect timed out".into()),
    };
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(x) => x,
        Err(e) => return fail(e.to_string()),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (mut parts, body) = req.into_parts();
    let token = parts.extensions.get::<QueryToken>().cloned();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    parts.uri = match pq.parse() {
        Ok(u) => u,
        Err(_) => return fail("bad path".into()),
    };
    let h = &mut parts.headers;
    for hop in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::TE] {
        h.remove(hop);
    }
    if let Ok(v) = HeaderValue::from_str(&authority) {
        h.insert(header::HOST, v);
    }
    // The owner checks auth as this node did (one config): pass a ?token= on.
    if let Some(QueryToken(t)) = token
        && !h.contains_key(header::AUTHORIZATION)
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
    {
        h.insert(header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(me) {
        h.insert(FORWARDED, v);
    }
    // A browser's Origin was checked here; the owner sees a node, not a page.
    h.remove(header::ORIGIN);
    let resp = match sender.send_request(hyper::Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let (parts, body) = resp.into_parts();
    let mut r = Response::from_parts(parts, Body::new(body));
    if !r.headers().contains_key(&NODE) {
        mark(&mut r, &owner.node, Some(owner.fence));
    }
    r
}

/// The answer to a camera added or changed through the API in cluster mode:
/// the camera as the node that takes it shows it (`status`), once one does
/// (a few steps at most), else `202` with the camera still unowned.
pub async fn changed(hub: &Arc<Hub>, name: &str, status: StatusCode, headers: &axum::http::HeaderMap) -> Response {
    let Some(c) = hub.cluster().cloned() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    c.wake();
    let clock = hub.clock();
    let until = clock.now() + 4 * c.step_interval() + Duration::from_secs(3);
    loop {
        if let Some(cam) = hub.get(name) {
            let mut r = (status, axum::Json(super::cameras::describe(hub, &cam))).into_response();
            mark(&mut r, c.node(), c.fence(name));
            return r;
        }
        if let Some(owner) = hub.remote_owner(name) {
            let mut req = Request::get(format!("/api/cameras/{name}")).body(Body::empty()).unwrap_or_default();
            if let Some(a) = headers.get(header::AUTHORIZATION) {
                req.headers_mut().insert(header::AUTHORIZATION, a.clone());
            }
            let mut r = forward(&owner, req, c.node(), name).await;
            if r.status() == StatusCode::OK {
                *r.status_mut() = status;
                return r;
            }
        }
        if clock.now() >= until {
            let body = json!({ "name": name, "state": "unowned", "cluster": { "node": null, "fence": null } });
            return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        }
        clock.sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/cameras` in cluster mode: this node's cameras, the other nodes'
/// (asked in parallel), and the fleet's cameras no node runs right now
/// (`state: unowned`), each with `cluster: {node, fence}`.
pub async fn fleet(hub: &Arc<Hub>, local: Vec<Value>, forwarded: bool, auth: Option<HeaderValue>) -> Vec<Value> {
    let Some(c) = hub.cluster().cloned() else { return local };
    if forwarded {
        return local;
    }
    let view = c.view();
    let mut out = local;
    let me = c.node().to_owned();
    let asks = view.nodes.iter().filter(|(n, _)| **n != me).map(|(n, node)| {
        let (name, addr, auth, me) = (n.clone(), node.advertise.clone(), auth.clone(), me.clone());
        async move { (name, ask_cameras(&addr, &me, auth).await) }
    });
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(cams) => out.extend(cams.into_iter().filter(|v| {
                let n = v["name"].as_str().unwrap_or_default();
                view.leases.get(n).is_some_and(|l| l.node == node)
            })),
            Err(e) => tracing::debug!("cluster: node {node} did not list its cameras: {e}"),
        }
    }
    let listed: std::collections::BTreeSet<String> =
        out.iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect();
    for cfg in c.fleet() {
        if !listed.contains(&cfg.name) {
            let owner = view.leases.get(&cfg.name);
            out.push(json!({
                "name": cfg.name,
                "url": cfg.display_url(),
                "state": "unowned",
                "cluster": { "node": owner.map(|l| &l.node), "fence": owner.map(|l| l.fence) },
            }));
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

async fn ask_cameras(advertise: &str, me: &str, auth: Option<HeaderValue>) -> Result<Vec<Value>, String> {
    let authority = advertise.strip_prefix("http://").ok_or("not http")?.trim_end_matches('/').to_owned();
    let io = async {
        let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::get("/api/cameras")
            .header(header::HOST, &authority)
            .header(FORWARDED, me)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        if let Some(a) = auth {
            req.headers_mut().insert(header::AUTHORIZATION, a);
        }
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.map_err(|e| e.to_string())?.to_bytes();
        serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), io).await.map_err(|_| "timed out".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(uri: &str) -> Option<String> {
        camera_of(&Request::get(uri).body(Body::empty()).unwrap())
    }

    #[test]
    fn the_camera_of_each_route() {
        assert_eq!(of("/api/cameras/door").as_deref(), Some("door"));
        assert_eq!(of("/api/cameras/door/snapshot.jpg?width=3").as_deref(), Some("door"));
        assert_eq!(of("/api/cameras/door/whep/abc").as_deref(), Some("door"));
        assert_eq!(of("/api/frame.jpeg?w=1&src=yard").as_deref(), Some("yard"));
        assert_eq!(of("/api/stream.mjpeg?name=yard").as_deref(), Some("yard"));
        assert_eq!(of("/api/gate/latest.jpg?h=100").as_deref(), Some("gate"));
        for none in ["/api/cameras", "/api/cameras/", "/api/health", "/metrics", "/api/a/b/latest.jpg", "/"] {
            assert_eq!(of(none), None, "{none}");
        }
    }
}
