//! TLS to cameras (`https://`, `rtsps://`): OpenSSL over tokio, with the
//! system's roots and the host name checked, or with `tls_verify: false` any
//! certificate (a self-signed camera; the connection is still encrypted).

use std::sync::Arc;

use futures::future::BoxFuture;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// A connection to a camera: plain TCP, or TLS over it.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// The TLS handshake over `tcp` with `host`; the error says what failed (and,
/// for a refused certificate, how a self-signed camera is accepted).
pub async fn connect(tcp: TcpStream, host: &str, verify: bool) -> Result<SslStream<TcpStream>, String> {
    let err = |what: &str, e: String| format!("TLS with {host}: {what}{e}");
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| err("", e.to_string()))?;
    if !verify {
        b.set_verify(SslVerifyMode::NONE);
    }
    let ssl = b
        .build()
        .configure()
        .and_then(|c| c.verify_hostname(verify).into_ssl(host))
        .map_err(|e| err("", e.to_string()))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| err("", e.to_string()))?;
    std::pin::Pin::new(&mut stream).connect().await.map_err(|e| {
        let hint = if verify { " (a self-signed camera needs tls_verify: false)" } else { "" };
        err("handshake failed: ", format!("{e}{hint}"))
    })?;
    Ok(stream)
}

/// `rtsps://` for retina's RTSP client.
pub struct RtspTls {
    pub verify: bool,
}

impl RtspTls {
    pub fn new(verify: bool) -> Arc<Self> {
        Arc::new(RtspTls { verify })
    }
}

impl retina::client::TlsConnect for RtspTls {
    fn connect(
        &self,
        host: String,
        tcp: TcpStream,
    ) -> BoxFuture<'static, std::io::Result<Box<dyn retina::client::RtspIo>>> {
        let verify = self.verify;
        Box::pin(async move {
            let s = connect(tcp, &host, verify).await.map_err(std::io::Error::other)?;
            Ok(Box::new(s) as Box<dyn retina::client::RtspIo>)
        })
    }
}
