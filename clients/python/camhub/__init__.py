"""camhub: read frames from camhub's shared-memory rings, zero-copy, as numpy arrays.

    import camhub
    with camhub.open("door", "ai") as ring:          # /dev/shm/camhub.door.ai (or $CAMHUB_SHM_DIR/...)
        for frame_id, captured, img in ring.frames():  # img: (h, w, 3) uint8 view for bgr24
            ...

`camhub.open(camera, output, directory=None, timeout=None)` attaches to a ring (the hub
decodes while a reader is attached) and returns a `Ring`. The ring is looked for where
the hub writes it: `directory`, else `$CAMHUB_SHM_DIR`, else /dev/shm (`camhub.shm_dir()`).

- `ring.latest()`: the newest frame now, or None;
- `ring.wait(timeout=None)`: the next frame newer than the last returned (None on timeout);
- `ring.frames(timeout=None)`: every frame in order (live: skips what the reader was too
  slow for, counted in `ring.missed`; replay: paces the hub, ends when the file is done);
- `ring.newest(timeout=None)`: the newest frame each time;
- `ring.readers`, `ring.write_seq`, `ring.missed`, `ring.mode`, `ring.close()`;
- `ring.last_skip`: `(frame_id, similarity)` of the newest frame skipped as similar, or None.

A `Frame` has `frame_id`, `captured` (Unix s), `captured_ns`, `published_ns`, `decoded_ns`,
`similarity` (luma difference from the previous published frame, 0..1, with `skip_similar`; else None),
`seq`, `slot`, `width`, `height`, `format`, `array` (gray (h, w); rgb24/bgr24 (h, w, 3);
i420/nv12 (h*3/2, w) as OpenCV's COLOR_YUV2BGR_I420/NV12 take it), `planes`, `intact()`
and `copy()` (None if the frame was overwritten while copying). Protocol: docs/shm.md.
"""

from .ring import FORMATS, Frame, Ring, RingError, futex_available, open, ring_path, shm_dir

__all__ = ["open", "Ring", "Frame", "RingError", "ring_path", "shm_dir", "FORMATS", "futex_available"]
__version__ = "0.1.0"
