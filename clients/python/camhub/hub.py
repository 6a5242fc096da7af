"""`camhub.Hub`: the hub's HTTP API (README, "API"), standard library only.

    hub = camhub.Hub("http://127.0.0.1:8080", token="...")
    hub.cameras()                       # [{"name": ..., "state": ..., ...}, ...]
    img = hub.snapshot("door", width=640)  # (h, w, 3) uint8 BGR
    for img in hub.stream("door", fps=5):  # MJPEG, decoded
        ...
    hub.add("yard", "rtsp://10.0.0.8/stream1", decode_linger=5)
    hub.remove("yard")

Pictures are decoded with OpenCV if importable, else Pillow (`snapshot_jpeg` and
`stream_jpeg` give the JPEG bytes). Errors answered by the hub raise `HubError`
with the status and the hub's message; a hub that cannot be reached raises
`HubError` with status None.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from . import _jpeg

__all__ = ["Hub", "HubError", "Part"]

MAX_PART = 32 << 20  # an MJPEG part larger than this is a wrong boundary, not a picture
_READ = 1 << 16


class HubError(Exception):
    """An error answer of the hub: `status` (None: not reached), `message` (the hub's
    `error`), `camera` (the camera it concerns, if the hub said)."""

    def __init__(self, status: int | None, message: str, camera: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status, self.message, self.camera = status, message, camera


class Part(NamedTuple):
    """One picture of an MJPEG stream: the JPEG and the hub's part headers."""

    jpeg: bytes
    frame_id: int | None
    timestamp: str | None


class Hub:
    """A client of one hub at `url`. `token`: sent as `Authorization: Bearer` (the
    hub's `server.auth.tokens`). `timeout`: seconds for connecting and for each read
    (an MJPEG stream slower than one picture per `timeout` needs a longer one)."""

    def __init__(self, url: str = "http://127.0.0.1:8080", token: str | None = None,
                 timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- plumbing ----------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> Any:
        url = self.url + path + _query(params)
        headers = {"Accept": "application/json, image/jpeg, */*"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise _error(e) from None
        except (urllib.error.URLError, OSError) as e:
            raise HubError(None, f"cannot reach the hub at {self.url}: {getattr(e, 'reason', e)}") from e

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with self._request(method, path, body=body) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    # -- cameras -------------------------------------------------------------------

    def cameras(self) -> list[dict[str, Any]]:
        """`GET /api/cameras`: every camera's state (as `camera(name)`)."""
        return self._json("GET", "/api/cameras")

    def camera(self, name: str) -> dict[str, Any]:
        """`GET /api/cameras/{name}`: state, latest frame, decoder, counters, outputs..."""
        return self._json("GET", _camera_path(name))

    def add(self, name: str, url: str, **options: Any) -> dict[str, Any]:
        """`POST /api/cameras`: adds a camera with the config file's long-form keys
        (`outputs`, `decode_linger`, `streams`, ...). HubError 409 if the name is taken."""
        return self._json("POST", "/api/cameras", {"name": name, "url": url, **options})

    def update(self, name: str, **options: Any) -> dict[str, Any]:
        """`PUT /api/cameras/{name}`: the camera's whole new configuration (`url` and
        every option; what is left out returns to its default). Adds the camera if
        there is none; identical options leave it running untouched."""
        return self._json("PUT", _camera_path(name), options)

    def remove(self, name: str) -> None:
        """`DELETE /api/cameras/{name}`: stops the camera and frees all it held."""
        self._json("DELETE", _camera_path(name))

    # -- pictures ------------------------------------------------------------------

    def snapshot_jpeg(self, name: str, width: int | None = None, max_age_ms: int | None = None,
                      **params: Any) -> bytes:
        """`GET /api/cameras/{name}/snapshot.jpg`: the newest picture as JPEG. Other
        query parameters by name: `height`, `quality`, `cached`, `fresh`, `keyframe`,
        `stream` ('main' or 'sub')."""
        q = {"width": width, "max_age_ms": max_age_ms, **params}
        with self._request("GET", _camera_path(name, "snapshot.jpg"), q) as r:
            return r.read()

    def snapshot(self, name: str, width: int | None = None, max_age_ms: int | None = None,
                 **params: Any) -> np.ndarray:
        """`snapshot_jpeg`, decoded: a (h, w, 3) uint8 BGR array."""
        return _jpeg.decode(self.snapshot_jpeg(name, width, max_age_ms, **params))

    def stream_jpeg(self, name: str, **params: Any) -> Iterator[Part]:
        """`GET /api/cameras/{name}/stream.mjpeg`: its pictures as they come (a slow
        reader skips frames, the hub does not queue them). Query parameters by name:
        `width`, `height`, `fps`, `quality`, `stream`. Closing the iterator (or
        leaving a `for` loop) ends the stream."""
        with self._request("GET", _camera_path(name, "stream.mjpeg"), params) as r:
            boundary = _boundary(r.headers.get("Content-Type", ""))
            for headers, body in parts(r, boundary):
                yield Part(body, _int(headers.get("x-frame-id")), headers.get("x-frame-timestamp"))

    def stream(self, name: str, **params: Any) -> Iterator[np.ndarray]:
        """`stream_jpeg`, decoded: (h, w, 3) uint8 BGR arrays."""
        _jpeg.decoder()  # no decoder: fail before connecting
        for part in self.stream_jpeg(name, **params):
            yield _jpeg.decode(part.jpeg)

    def __repr__(self) -> str:
        return f"<camhub.Hub {self.url}>"


# --- helpers ----------------------------------------------------------------------


def _camera_path(name: str, tail: str = "") -> str:
    path = "/api/cameras/" + urllib.parse.quote(name, safe="")
    return f"{path}/{tail}" if tail else path


def _query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    q = {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(q) if q else ""


def _error(e: urllib.error.HTTPError) -> HubError:
    """The hub's JSON error body (`{"error", "camera"}`) as a HubError."""
    try:
        body = json.loads(e.read() or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return HubError(e.code, str(body["error"]), body.get("camera"))
    return HubError(e.code, e.reason or "error")


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip().strip('"').encode()
    raise HubError(None, f"not a multipart stream (Content-Type {content_type!r})")


# --- multipart/x-mixed-replace --------------------------------------------------------


class _Reader:
    """A growing buffer over a byte stream."""

    def __init__(self, fp: BinaryIO) -> None:
        self.fp, self.buf = fp, bytearray()

    def fill(self) -> bool:
        """Reads more; False at the end of the stream."""
        read1 = getattr(self.fp, "read1", None)
        chunk = read1(_READ) if read1 is not None else self.fp.read(_READ)
        if not chunk:
            return False
        self.buf += chunk
        if len(self.buf) > MAX_PART + _READ:
            raise HubError(None, f"no multipart boundary in {len(self.buf)} bytes (wrong boundary?)")
        return True

    def find(self, needle: bytes, start: int = 0) -> int:
        """The index of `needle` in the buffer, reading as needed; -1 at the end."""
        while True:
            i = self.buf.find(needle, start)
            if i >= 0:
                return i
            start = max(start, len(self.buf) - len(needle) + 1)
            if not self.fill():
                return -1

    def peek(self, n: int) -> bytes:
        """The next `n` bytes (fewer at the end of the stream), left in the buffer."""
        while len(self.buf) < n and self.fill():
            pass
        return bytes(self.buf[:n])

    def take(self, n: int) -> bytes | None:
        """The next `n` bytes, or None if the stream ends first."""
        while len(self.buf) < n:
            if not self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def parts(fp: BinaryIO, boundary: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body as `(headers, body)`, header names lower-case.
    A part's size is its Content-Length when it has one, else it runs to the next
    delimiter; bytes between a part and the next delimiter are skipped. The
    boundary may be given with or without its leading `--`."""
    reader = _Reader(fp)
    delim = b"--" + (boundary[2:] if boundary.startswith(b"--") else boundary)
    while True:
        i = reader.find(delim)
        if i < 0:
            return
        del reader.buf[:i + len(delim)]
        if reader.peek(2) == b"--":  # the closing delimiter
            return
        end = reader.find(b"\r\n\r\n")
        if end < 0:
            return
        headers = _headers(bytes(reader.buf[:end]))
        del reader.buf[:end + 4]
        body = _body(reader, headers, delim)
        if body is None:
            return
        yield headers, body


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("latin-1").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def _body(reader: _Reader, headers: dict[str, str], delim: bytes) -> bytes | None:
    n = _int(headers.get("content-length"))
    if n is not None and 0 <= n <= MAX_PART:
        return reader.take(n)
    j = reader.find(b"\r\n" + delim)
    if j < 0:
        return None
    body = bytes(reader.buf[:j])
    del reader.buf[:j]
    return body
