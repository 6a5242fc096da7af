//! `transport: udp` against cameras that refuse it or deliver nothing over it: a
//! small RTSP server on loopback that answers OPTIONS, DESCRIBE, SETUP and PLAY
//! and sends no media, and a stepped clock for the first-frame watchdog.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

use super::*;

/// What the fake camera does with a UDP SETUP.
#[derive(Clone, Copy)]
enum Udp {
    /// `461 Unsupported Transport`.
    Refuse,
    /// Accepted; then nothing is ever sent (a firewall eats it).
    Silent,
}

/// The fake camera: its URL and the Transport header of each SETUP it got.
struct Camera {
    url: Url,
    setups: Arc<Mutex<Vec<String>>>,
}

async fn camera(udp: Udp) -> Camera {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A server port pair that exists, so nothing sent to it comes back refused.
    let (rtp, rtcp) = loop {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let p = a.local_addr().unwrap().port();
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p.wrapping_add(1))).await {
            break (a, b);
        }
    };
    let server_port = rtp.local_addr().unwrap().port();
    let setups = Arc::new(Mutex::new(Vec::new()));
    let seen = setups.clone();
    tokio::spawn(async move {
        let _udp = (rtp, rtcp);
        loop {
            let Ok((conn, _)) = listener.accept().await else { return };
            tokio::spawn(serve(conn, port, server_port, udp, seen.clone()));
        }
    });
    Camera { url: Url::parse(&format!("rtsp://127.0.0.1:{port}/cam")).unwrap(), setups }
}

async fn serve(conn: tokio::net::TcpStream, port: u16, server_port: u16, udp: Udp, setups: Arc<Mutex<Vec<String>>>) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let method = head[0].split(' ').next().unwrap_or_default().to_owned();
        let header = |name: &str| {
            head.iter()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
                .unwrap_or_default()
                .to_owned()
        };
        let cseq = header("CSeq");
        let base = format!("rtsp://127.0.0.1:{port}/cam/");
        let answer = match method.as_str() {
            "OPTIONS" => "200 OK\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n".to_owned(),
            "DESCRIBE" => {
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                           m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                           a=fmtp:96 packetization-mode=1\r\na=control:track1\r\n";
                format!(
                    "200 OK\r\nContent-Base: {base}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            }
            "SETUP" => {
                let t = header("Transport");
                setups.lock().push(t.clone());
                if t.contains("TCP") {
                    "200 OK\r\nSession: 4242;timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                        .to_owned()
                } else {
                    match udp {
                        Udp::Refuse => "461 Unsupported Transport\r\n".to_owned(),
                        Udp::Silent => {
                            let client = t.split(';').find(|p| p.starts_with("client_port=")).unwrap_or_default();
                            format!(
                                "200 OK\r\nSession: 4242;timeout=60\r\nTransport: RTP/AVP;unicast;{client};\
                                 server_port={server_port}-{};source=127.0.0.1\r\n",
                                server_port + 1
                            )
                        }
                    }
                }
            }
            "PLAY" => "200 OK\r\nSession: 4242\r\n".to_owned(),
            _ => "200 OK\r\nSession: 4242\r\n".to_owned(),
        };
        // A body-less answer ends its head here; DESCRIBE's carries its own blank line.
        let end = if method == "DESCRIBE" { "" } else { "\r\n" };
        let status = answer.split_once("\r\n").map(|(s, rest)| format!("RTSP/1.0 {s}\r\nCSeq: {cseq}\r\n{rest}"));
        if w.write_all(format!("{}{end}", status.unwrap()).as_bytes()).await.is_err() {
            return;
        }
    }
}

fn source(url: &Url, clock: &Clock) -> RtspSource {
    RtspSource::new(url.clone(), None, None, Transport::Udp, clock.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_refused_with_461_falls_back_to_tcp_in_the_same_attempt_and_stays_there() {
    let cam = camera(Udp::Refuse).await;
    let clock = Clock::stepped();
    let src = source(&cam.url, &clock);
    assert_eq!(src.fallback(), None);
    let stream = tokio::time::timeout(Duration::from_secs(10), src.open()).await.expect("answered");
    assert!(stream.is_ok(), "connected over TCP: {:?}", stream.err());
    let why = src.fallback().expect("the fallback is shown");
    assert!(why.starts_with("UDP refused") && why.contains("461"), "{why}");
    let setups = cam.setups.lock().clone();
    assert_eq!(setups.len(), 2, "{setups:?}");
    assert!(!setups[0].contains("TCP") && setups[1].contains("TCP"), "UDP first, then TCP: {setups:?}");
    drop(stream);

    // The next connection goes straight to TCP.
    let again = tokio::time::timeout(Duration::from_secs(10), src.open()).await.expect("answered");
    assert!(again.is_ok());
    let setups = cam.setups.lock().clone();
    assert_eq!(setups.len(), 3);
    assert!(setups[2].contains("TCP"), "{setups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_session_with_no_packets_within_5_s_fails_on_the_clock_and_the_next_one_is_tcp() {
    let cam = camera(Udp::Silent).await;
    let clock = Clock::stepped();
    let src = source(&cam.url, &clock);
    let mut stream = tokio::time::timeout(Duration::from_secs(10), src.open())
        .await
        .expect("answered")
        .expect("UDP SETUP and PLAY accepted");
    let next = tokio::spawn(async move { stream.next().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(UDP_FIRST_FRAME - Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!next.is_finished(), "still waiting for the first frame 1 ms before the bound");
    assert_eq!(src.fallback(), None);
    clock.advance(Duration::from_millis(1));
    let item = tokio::time::timeout(Duration::from_secs(5), next).await.expect("the watchdog fired").unwrap();
    let e = item.expect("an item").expect_err("a failure, not a unit");
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_eq!(e.message, "no UDP packets in 5 s; reconnecting over TCP");
    assert_eq!(src.fallback().as_deref(), Some("no UDP packets in 5 s"));

    let again = tokio::time::timeout(Duration::from_secs(10), src.open()).await.expect("answered");
    assert!(again.is_ok(), "{:?}", again.err());
    let setups = cam.setups.lock().clone();
    assert_eq!(setups.len(), 2, "{setups:?}");
    assert!(!setups[0].contains("TCP") && setups[1].contains("TCP"), "UDP, then TCP: {setups:?}");
}
