"""camhub: frames from the camhub camera hub, in Python.

Three ways to get frames (clients/python/README.md says when to use which):

- **Shared-memory rings** (same host, zero copy): `camhub.open(camera, output)` ->
  `Ring`, whose frames' `array` is a read-only numpy view of the hub's memory;
- **Redis Streams** (any host, consumer groups): `camhub.redis.frames(stream, group,
  consumer)` -> `RedisFrame`s, pixels from the local ring or the record's JPEG;
- **HTTP** (any host): `camhub.Hub(url, token=...)`: `cameras()`, `snapshot()`,
  `stream()` (MJPEG), `add()`, `update()`, `remove()`.

    import camhub
    with camhub.open("door", "ai") as ring:          # /dev/shm/camhub.door.ai (or $CAMHUB_SHM_DIR/...)
        for frame in ring.frames():                    # frame.array: (h, w, 3) uint8 view for bgr24
            img = frame.writable()                     # an owned, writable copy (None if overwritten)

`Frame.array` is read-only by design (zero copy from shared memory): `frame.copy()`
(a Frame owning its pixels) and `frame.writable()` (a writable ndarray) give owned
arrays and return None when the hub overwrote the frame during the copy;
`np.asarray(frame)` is `frame.array`.

Rings (see `camhub.ring`):
- `camhub.open(camera, output, *, directory=None, timeout=None)`: attaches (the hub
  decodes while a reader is attached); looks in `directory`, else `$CAMHUB_SHM_DIR`,
  else /dev/shm (`camhub.shm_dir()`);
- `ring.latest()`: the newest frame now, or None;
- `ring.wait(timeout=None)`: the next frame newer than the last returned (None on timeout);
- `ring.frames(timeout=None)`: every frame in order (live: skips what the reader was too
  slow for, counted in `ring.missed`; replay: paces the hub, ends when the file is done);
- `ring.newest(timeout=None)`: the newest frame each time; `ring.get(seq)`;
- `ring.readers`, `ring.write_seq`, `ring.missed`, `ring.mode`, `ring.ended`, `ring.close()`;
- `ring.last_skip`: `(frame_id, similarity)` of the newest frame skipped as similar, or None;
- `camhub.select(rings, timeout=None)`: the rings with a new frame (one thread, many rings);
- `camhub.aio`: the same for asyncio (`frames`, `wait`, `next`, `select`), one waiter
  thread per event loop however many rings are awaited.

Timeouts mean the same everywhere: None waits for ever, 0 checks once and returns
(or raises) at once, a number of seconds waits at most that long.

A `Frame` has `frame_id`, `captured` (Unix s), `captured_ns`, `published_ns`, `decoded_ns`,
`similarity` (luma difference from the previous published frame, 0..1, with `skip_similar`; else None),
`seq`, `slot`, `width`, `height`, `format`, `array` (gray (h, w); rgb24/bgr24 (h, w, 3);
i420/nv12 (h*3/2, w) as OpenCV's COLOR_YUV2BGR_I420/NV12 take it), `planes`, `intact()`,
`copy()` and `writable()`. Protocol: docs/shm.md.
"""

from . import aio, redis
from ._select import select
from .hub import Hub, HubError
from .ring import FORMATS, Frame, Ring, RingError, futex_available, open, ring_path, shm_dir

__all__ = ["open", "Ring", "Frame", "RingError", "ring_path", "shm_dir", "FORMATS", "futex_available",
           "select", "aio", "redis", "Hub", "HubError"]
__version__ = "0.2.0"
