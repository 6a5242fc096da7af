//! Serving the router: one task per accepted socket, each bounded in time (a
//! header-read timeout that also closes idle keep-alive connections) and in
//! number (`server.max_connections`, `503` and close beyond), with a graceful
//! drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// What the connections of one server may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open HTTP connections at most; one more is answered `503` and closed.
    pub max_connections: u32,
    /// A connection must send a whole request head within this, counted from
    /// when it opens or from the end of its previous response (so an idle
    /// keep-alive connection is closed after it too). A streaming response
    /// (MJPEG) is not idle: the timer runs only while a request head is awaited.
    pub header_timeout: Duration,
}

/// `503` answers being written at once, at most; beyond, the socket is just closed.
const MAX_REFUSING: usize = 64;
/// How long a refused client gets to read its `503`.
const REFUSE_LINGER: Duration = Duration::from_millis(500);

fn busy_answer() -> Vec<u8> {
    let body = r#"{"error":"too many open connections; retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests (idle ones close at once) and returns
/// when all are closed.
pub async fn serve(listener: TcpListener, app: Router, limits: ConnLimits, shutdown: impl Future<Output = ()>) {
    let max = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let busy: Arc<[u8]> = busy_answer().into();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut warned = false;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: wait for a connection to close.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if !warned {
                tracing::warn!("{max} connections open (server.max_connections): answering 503 to more");
                warned = true;
            }
            if let Ok(p) = refusing.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, busy.clone(), p));
            }
            continue;
        };
        if open.available_permits() > 0 {
            warned = false;
        }
        let _ = stream.set_nodelay(true);
        // The address the request came in at (WHEP binds its UDP socket there).
        let local = stream.local_addr().unwrap_or_else(|_| ([127, 0, 0, 1], 0).into());
        let info = axum::extract::ConnectInfo(super::LocalAddr(local));
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(info)));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = open.acquire_many(max).await;
}

/// Writes the `503`, closes the writing side and waits briefly for the client to
/// read it (closing with its request unread would reset the connection first).
async fn refuse(mut stream: TcpStream, busy: Arc<[u8]>, _slot: tokio::sync::OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(&busy).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
