//! The actor's connection: opening, open, or none, and when it may take the
//! next unit (live: at once; replay: when the decoder has room).

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;

use crate::error::Result;
use crate::media::EncodedUnit;
use crate::source::UnitStream;

/// The connection, as far as the actor holds one.
pub(super) enum Conn {
    None,
    Opening(BoxFuture<'static, Result<UnitStream>>),
    Open(UnitStream),
}

pub(super) enum ConnEvent {
    Opened(Result<UnitStream>),
    Item(Option<Result<EncodedUnit>>),
}

/// When the actor may take the next unit from an open connection.
pub(super) enum Gate {
    /// Now (live: a decoder that falls behind loses units, never the camera).
    Open,
    /// Once the decoder has room (replay: nothing is lost, the file waits).
    Room(Arc<tokio::sync::Semaphore>),
    /// Not now (replay with no decoder: the file waits for someone to want pictures).
    Closed,
}

/// Waits for the connection's next step; never resolves without one.
pub(super) async fn next_conn_event(conn: &mut Conn, gate: Gate) -> ConnEvent {
    match conn {
        Conn::Opening(f) => ConnEvent::Opened(f.await),
        Conn::Open(s) => {
            match gate {
                Gate::Open => {}
                // The actor alone takes permits, so room seen here is still there when it sends.
                Gate::Room(room) => drop(room.acquire().await),
                Gate::Closed => std::future::pending::<()>().await,
            }
            ConnEvent::Item(s.next().await)
        }
        Conn::None => std::future::pending().await,
    }
}
