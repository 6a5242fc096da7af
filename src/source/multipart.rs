//! An incremental parser for `multipart/x-mixed-replace` MJPEG streams, as ESP32
//! cameras, ustreamer, mjpg-streamer and other hubs serve them. Bounded: a part
//! may not outgrow `max_part` bytes, so a wrong boundary or an endless part is an
//! error, never unbounded memory.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes allowed between parts (a CRLF or a short preamble in practice).
const MAX_SKIP: usize = 64 * 1024;

pub struct Multipart {
    delimiter: Vec<u8>,
    buf: BytesMut,
    max_part: usize,
    /// Bytes passed over while looking for a delimiter.
    skipped: usize,
    /// How far into `buf` a body without length was already searched.
    searched: usize,
    state: State,
}

enum State {
    /// Looking for the next delimiter line.
    Boundary,
    /// After a delimiter: reading part headers.
    Headers,
    /// Reading a body: of known length, or up to the next delimiter.
    Body(Option<usize>),
}

impl Multipart {
    /// `boundary` as given in the Content-Type (with or without leading `--`).
    pub fn new(boundary: &str, max_part: usize) -> Self {
        let b = boundary.trim_matches('"');
        let b = b.strip_prefix("--").unwrap_or(b);
        Multipart {
            delimiter: format!("--{b}").into_bytes(),
            buf: BytesMut::new(),
            max_part,
            skipped: 0,
            searched: 0,
            state: State::Boundary,
        }
    }

    /// Feeds bytes; returns the complete parts' bodies.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Bytes>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Boundary => match find(&self.buf, &self.delimiter) {
                    Some(i) => {
                        self.buf.advance(i + self.delimiter.len());
                        self.skipped = 0;
                        self.state = State::Headers;
                    }
                    None => {
                        // Keep a tail that may hold the start of a delimiter.
                        let n = self.buf.len().saturating_sub(self.delimiter.len());
                        self.buf.advance(n);
                        self.skipped += n;
                        if self.skipped > MAX_SKIP {
                            return Err(format!(
                                "no boundary {:?} in {} bytes (wrong boundary?)",
                                String::from_utf8_lossy(&self.delimiter),
                                self.skipped
                            ));
                        }
                        return Ok(out);
                    }
                },
                State::Headers => {
                    let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > 16 * 1024 {
                            return Err("part headers longer than 16 KiB".into());
                        }
                        return Ok(out);
                    };
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.advance(end + 4);
                    let mut len = None;
                    for line in head.lines() {
                        if let Some((k, v)) = line.split_once(':')
                            && k.trim().eq_ignore_ascii_case("content-length")
                        {
                            let n: usize =
                                v.trim().parse().map_err(|_| format!("bad Content-Length {:?}", v.trim()))?;
                            if n > self.max_part {
                                return Err(format!(
                                    "a part of {n} bytes exceeds the limit of {} bytes",
                                    self.max_part
                                ));
                            }
                            len = Some(n);
                        }
                    }
                    self.state = State::Body(len);
                }
                State::Body(Some(n)) => {
                    if self.buf.len() < n {
                        return Ok(out);
                    }
                    out.push(self.buf.split_to(n).freeze());
                    self.state = State::Boundary;
                }
                State::Body(None) => match find_from(&self.buf, &self.delimiter, self.searched) {
                    Some(i) => {
                        self.searched = 0;
                        let mut body = self.buf.split_to(i).freeze();
                        // The CRLF before the delimiter belongs to the boundary.
                        while body.ends_with(b"\n") || body.ends_with(b"\r") {
                            body.truncate(body.len() - 1);
                        }
                        out.push(body);
                        self.state = State::Boundary;
                    }
                    None => {
                        // Next time, search only what is new (plus a delimiter's overlap).
                        self.searched = self.buf.len().saturating_sub(self.delimiter.len());
                        if self.buf.len() > self.max_part {
                            return Err(format!(
                                "a part exceeded {} bytes without a boundary (endless part?)",
                                self.max_part
                            ));
                        }
                        return Ok(out);
                    }
                },
            }
        }
    }

    /// True between parts: a stream that ends here ended cleanly.
    pub fn between_parts(&self) -> bool {
        matches!(self.state, State::Boundary)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    find_from(hay, needle, 0)
}

fn find_from(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(body: &[u8], with_len: bool) -> Vec<u8> {
        let mut v = b"--frame\r\nContent-Type: image/jpeg\r\n".to_vec();
        if with_len {
            v.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n");
        v
    }

    #[test]
    fn parts_with_and_without_length_in_any_chunking() {
        let mut stream = part(b"\xff\xd8one\xff\xd9", true);
        stream.extend(part(b"\xff\xd8two\r\n--fram\xff\xd9", false));
        stream.extend(part(b"\xff\xd8three\xff\xd9", true));
        for chunk in [1, 3, 7, 1000] {
            let mut m = Multipart::new("frame", 1000);
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                got.extend(m.push(c).unwrap());
            }
            let got: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
            assert_eq!(
                got,
                [&b"\xff\xd8one\xff\xd9"[..], b"\xff\xd8two\r\n--fram\xff\xd9", b"\xff\xd8three\xff\xd9"],
                "chunk {chunk}"
            );
            assert!(m.between_parts());
        }
        // A quoted boundary with its dashes works the same.
        assert_eq!(Multipart::new("\"--frame\"", 1000).push(&stream).unwrap().len(), 3);
    }

    #[test]
    fn wrong_boundary_and_endless_parts_are_bounded_errors() {
        let mut m = Multipart::new("expected", 500);
        let e = (0..1000).find_map(|_| m.push(&part(&[0xAB; 100], true)).err()).unwrap();
        assert!(e.contains("wrong boundary"), "{e}");
        assert!(m.buf.len() <= 16, "only a delimiter's length is kept while searching");
        let mut m = Multipart::new("frame", 500);
        m.push(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n").unwrap();
        let e = (0..10).find_map(|_| m.push(&[0x55; 100]).err()).unwrap();
        assert!(e.contains("endless part"), "{e}");
        let mut m = Multipart::new("frame", 500);
        let e = m.push(b"--frame\r\nContent-Length: 100000\r\n\r\n").unwrap_err();
        assert!(e.contains("exceeds the limit"), "{e}");
    }
}
