//! Which of a camera's streams serves a picture request. A camera with a
//! sub-stream (`streams.sub`) serves from it every request whose size it
//! covers (a tile, `width=480`), so the main stream can stay disconnected;
//! full-size requests, and requests the sub cannot cover, go to the main.
//! The decision is a plain function of the sub's known size and the request.

use std::sync::Arc;

use super::Hub;
use crate::camera::Camera;
use crate::config::StreamRole;

/// Whether a picture of `sub`'s size serves a request for `width` x `height`
/// (aspect kept, fitted inside the box, as `encode::fit_size` scales): yes when
/// the fitted picture needs no upscaling. A request with no size wants the
/// full picture: the main stream's.
pub fn covers(sub: (u32, u32), width: Option<u32>, height: Option<u32>) -> bool {
    let (sw, sh) = (f64::from(sub.0.max(1)), f64::from(sub.1.max(1)));
    let scale = match (width, height) {
        (None, None) => return false,
        (Some(w), None) => f64::from(w) / sw,
        (None, Some(h)) => f64::from(h) / sh,
        (Some(w), Some(h)) => (f64::from(w) / sw).min(f64::from(h) / sh),
    };
    scale <= 1.0
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Main,
    Sub,
    /// The sub's size is not known yet (it has not made a picture): try the
    /// sub, and go to the main if the picture it makes does not cover the request.
    TrySub,
}

/// What the sub-stream looks like to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubView {
    /// The camera has no sub-stream.
    None,
    /// It cannot give a picture soon (failed, backing off): requests go to the main.
    Failed,
    /// Its newest picture's size, if it made one.
    Ready(Option<(u32, u32)>),
}

/// Why a request cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no camera named {0:?}")]
    UnknownCamera(String),
    #[error("camera {0:?} has no sub-stream (streams.sub)")]
    NoSub(String),
}

/// The route of a request for `width` x `height`, `forced` by `?stream=` if given.
/// None: `stream=sub` on a camera without one.
pub fn route(forced: Option<StreamRole>, sub: SubView, width: Option<u32>, height: Option<u32>) -> Option<Route> {
    match (forced, sub) {
        (Some(StreamRole::Main), _) => Some(Route::Main),
        (Some(StreamRole::Sub), SubView::None) => None,
        (Some(StreamRole::Sub), _) => Some(Route::Sub),
        (None, SubView::None | SubView::Failed) => Some(Route::Main),
        (None, SubView::Ready(_)) if width.is_none() && height.is_none() => Some(Route::Main),
        (None, SubView::Ready(None)) => Some(Route::TrySub),
        (None, SubView::Ready(Some(size))) => Some(if covers(size, width, height) { Route::Sub } else { Route::Main }),
    }
}

/// The camera a request goes to.
pub struct Pick {
    pub camera: Arc<Camera>,
    pub role: StreamRole,
    /// Set when the sub's size was unknown: once it made a picture, check
    /// `Pick::covered`, and go to `main` if it does not cover the request.
    pub main: Option<Arc<Camera>>,
}

impl Pick {
    /// Whether the picked camera's newest picture covers the request (always
    /// true for a sure pick).
    pub fn covered(&self, width: Option<u32>, height: Option<u32>) -> bool {
        self.main.is_none() || self.camera.latest_info().is_some_and(|f| covers((f.width, f.height), width, height))
    }
}

impl Hub {
    /// Which stream of camera `name` serves a picture of `width` x `height`
    /// (`forced`: `?stream=main|sub`).
    pub fn pick(
        &self,
        name: &str,
        forced: Option<StreamRole>,
        width: Option<u32>,
        height: Option<u32>,
    ) -> Result<Pick, RouteError> {
        let m = self.member(name).ok_or_else(|| RouteError::UnknownCamera(name.to_owned()))?;
        let view = match &m.sub {
            None => SubView::None,
            Some(s) if s.status().state.is_failed() => SubView::Failed,
            Some(s) => SubView::Ready(s.latest_info().map(|f| (f.width, f.height))),
        };
        let main = m.camera.clone();
        Ok(match (route(forced, view, width, height), m.sub.clone()) {
            (None, _) => return Err(RouteError::NoSub(name.to_owned())),
            (Some(Route::Sub), Some(sub)) => Pick { camera: sub, role: StreamRole::Sub, main: None },
            (Some(Route::TrySub), Some(sub)) => Pick { camera: sub, role: StreamRole::Sub, main: Some(main) },
            _ => Pick { camera: main, role: StreamRole::Main, main: None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_covers_what_it_needs_not_upscale() {
        let sub = (640, 360);
        assert!(covers(sub, Some(480), None));
        assert!(covers(sub, Some(640), None));
        assert!(!covers(sub, Some(641), None));
        assert!(covers(sub, None, Some(360)));
        assert!(!covers(sub, None, Some(720)));
        // A box larger on one side only: the picture fits the other side.
        assert!(covers(sub, Some(8192), Some(360)));
        assert!(!covers(sub, Some(1280), Some(720)));
        assert!(!covers(sub, None, None), "a full-size request is the main's");
    }

    #[test]
    fn requests_route_by_size_and_by_force() {
        let ready = SubView::Ready(Some((320, 180)));
        assert_eq!(route(None, ready, Some(320), None), Some(Route::Sub));
        assert_eq!(route(None, ready, Some(480), None), Some(Route::Main));
        assert_eq!(route(None, ready, None, None), Some(Route::Main));
        assert_eq!(route(None, SubView::Ready(None), Some(320), None), Some(Route::TrySub));
        assert_eq!(route(None, SubView::Ready(None), None, None), Some(Route::Main));
        assert_eq!(route(None, SubView::Failed, Some(100), None), Some(Route::Main));
        assert_eq!(route(None, SubView::None, Some(100), None), Some(Route::Main));
        assert_eq!(route(Some(StreamRole::Sub), ready, None, None), Some(Route::Sub));
        assert_eq!(route(Some(StreamRole::Sub), SubView::Failed, None, None), Some(Route::Sub));
        assert_eq!(route(Some(StreamRole::Main), ready, Some(16), None), Some(Route::Main));
        assert_eq!(route(Some(StreamRole::Sub), SubView::None, None, None), None);
        assert_eq!(route(Some(StreamRole::Main), SubView::None, None, None), Some(Route::Main));
    }
}
