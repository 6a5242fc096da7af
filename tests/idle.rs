//! Hostile clients that connect and send nothing (issue 15, item 7): the hub
//! closes them after `server.header_timeout`, answers `503` and closes beyond
//! `server.max_connections`, and still answers a normal client.
//! Loopback only; every loop is bounded.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn addr(hub: &Hub) -> String {
    hub.base.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// What an idle socket gets within `wait`: `Some(bytes)` once the hub closed it
/// (the bytes it sent first, if any), `None` if it is still open.
fn closed_within(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got), // reset: closed too
        }
    }
    None
}

/// Like `closed_within`, without waiting: what the hub already sent and whether it closed.
fn closed_now(s: &mut TcpStream) -> Option<Vec<u8>> {
    s.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed.then_some(got)
}

#[test]
fn an_idle_connection_that_sends_nothing_is_closed_within_the_default_header_timeout() {
    let hub = Hub::start_demo();
    let mut idle = TcpStream::connect(addr(&hub)).unwrap();
    let t0 = Instant::now();
    let got = closed_within(&mut idle, Duration::from_secs(15));
    assert!(got.is_some(), "an idle connection was still open after 15 s (default header timeout 10 s)");
    assert!(t0.elapsed() >= Duration::from_secs(8), "closed too early: {:?}", t0.elapsed());
    // A connection that answered a request and then idles is closed the same way.
    assert_eq!(hub.get("/api/health").status, 200);
}

#[test]
fn idle_connections_beyond_max_connections_get_503_and_a_normal_client_is_still_answered() {
    let hub =
        Hub::start("server:\n  max_connections: 16\n  header_timeout: 3s\ncameras:\n  demo: /nonexistent/clip.mp4\n");
    let a = addr(&hub);
    // 2x the cap, all idle.
    let mut socks: Vec<TcpStream> = (0..32).map(|_| TcpStream::connect(&a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1000));
    let mut refused = 0;
    let mut answered_503 = 0;
    let mut held = Vec::new();
    for mut s in socks.drain(..) {
        match closed_now(&mut s) {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(text.is_empty() || text.starts_with("HTTP/1.1 503"), "{text}");
                refused += 1;
                answered_503 += usize::from(text.contains("too many open connections"));
            }
            None => held.push(s),
        }
    }
    assert_eq!(refused, 16, "the connections beyond max_connections are answered 503 and closed");
    assert_eq!(held.len(), 16);
    assert!(answered_503 > 0, "the refused ones are told why (503, JSON)");
    // The held idle ones time out, freeing the slots: a normal client is answered
    // within the header timeout (3 s) plus a margin.
    let end = Instant::now() + Duration::from_secs(8);
    let mut last = 0;
    while Instant::now() < end {
        last = hub.get("/api/health").status;
        if last == 200 {
            break;
        }
        assert_eq!(last, 503, "beyond the cap the answer is 503");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last, 200, "/api/health not answered while idle sockets held the slots");
    for mut s in held {
        assert!(closed_within(&mut s, Duration::from_secs(2)).is_some(), "an idle socket outlived the header timeout");
    }
    assert!(hub.log().contains("open files limit"), "the fd limit is logged once");
}
