"""The typed API around the rings: `Frame.writable()` and `np.asarray(frame)`, the
`_wait_any` primitive, and `camhub.select` over several rings, with the test writer
(tests/ringwriter.py) and then with the real hub."""

import threading
import time

import camhub
import cv2
import numpy as np
import pytest
from camhub.ring import _wait_any, _wake, _wake_word
from ringwriter import value_of
from test_camhub import barcode, camera_name, clip_diff, hub, luma, rtsp, spread  # noqa: F401 (fixtures)


def attach(shm, camera="cam", output="out", **kw):
    return camhub.open(camera, output, directory=shm, **kw)


def later(delay, fn, *args):
    t = threading.Timer(delay, fn, args)
    t.start()
    return t


def words(n):
    """n shared u32 words (as a ring's), all 0: (the mapping, the `_wait_any` words)."""
    m = _wake_word()
    return m, [(m, 4 * i, 0) for i in range(n)]


# --- Frame ---------------------------------------------------------------------------


def test_frame_array_is_read_only_and_writable_gives_an_owned_copy(make, shm):
    w = make()
    w.configure("bgr24", 32, 16)
    w.publish()
    with attach(shm, timeout=0) as r:
        f = r.latest()
        assert not f.array.flags.writeable
        with pytest.raises(ValueError):
            f.array[0, 0, 0] = 0
        img = f.writable()
        assert img.flags.writeable and img.shape == (16, 32, 3) and not np.shares_memory(img, f.array)
        assert (img == value_of(1)).all()
        cv2.rectangle(img, (2, 2), (10, 10), (0, 0, 0), 2)
        assert (img[2, 2] == 0).all() and (f.array == value_of(1)).all(), "drawing leaves the ring alone"
        c = f.copy()
        again = c.writable()
        assert again is not None and not np.shares_memory(again, c.array)


def test_writable_is_none_once_the_frame_was_overwritten(make, shm):
    w = make()
    w.configure("gray", 16, 8, slots=2)
    w.publish()
    with attach(shm, timeout=0) as r:
        f = r.latest()
        assert f.writable() is not None
        w.publish()
        w.publish()  # frame 3 takes frame 1's slot
        assert not f.intact() and f.writable() is None and f.copy() is None


def test_np_asarray_is_the_frame_array(make, shm):
    w = make()
    w.configure("gray", 16, 8)
    w.publish()
    with attach(shm, timeout=0) as r:
        f = r.latest()
        a = np.asarray(f)
        assert a.shape == (8, 16) and np.shares_memory(a, f.array) and not a.flags.writeable
        owned = np.array(f)
        assert owned.flags.writeable and not np.shares_memory(owned, f.array) and (owned == value_of(1)).all()
        as_float = np.asarray(f, dtype=np.float32)
        assert as_float.dtype == np.float32 and (as_float == value_of(1)).all()
        assert np.mean(f) == value_of(1)  # numpy functions take a Frame


# --- _wait_any ---------------------------------------------------------------------------


def test_wait_any_returns_the_lowest_changed_word_at_once():
    m, ws = words(4)
    m.store_u32(4, 5)
    m.store_u32(12, 5)
    assert _wait_any(ws, None) == 1
    assert _wait_any(ws[2:], 0) == 1  # indexes are into the list given
    assert _wait_any([ws[0], ws[2]], 0) is None


def test_wait_any_times_out_with_every_word_equal():
    _, ws = words(3)
    t = time.monotonic()
    assert _wait_any(ws, 0.2) is None
    assert time.monotonic() - t >= 0.2
    assert _wait_any([], 0.05) is None


def test_wait_any_wakes_on_any_word():
    m, ws = words(3)
    for k in (2, 0):
        timer = later(0.1, _wake, m, 4 * k)
        assert _wait_any(ws, 10) == k
        timer.join()
        ws = [(v, o, v.load_u32(o)) for v, o, _ in ws]


def test_wait_any_over_more_words_than_one_system_call_takes():
    m, ws = words(300)  # futex_waitv takes 128: the rest are checked between slices
    t = time.monotonic()
    assert _wait_any(ws, 0.05) is None and time.monotonic() - t >= 0.05
    timer = later(0.1, _wake, m, 4 * 250)
    assert _wait_any(ws, 10) == 250
    timer.join()
    ws = [(v, o, v.load_u32(o)) for v, o, _ in ws]
    timer = later(0.1, _wake, m, 4 * 7)
    assert _wait_any(ws, 10) == 7


def test_wait_any_wakes_on_a_published_frame(make, shm):
    w = make()
    w.configure("gray", 16, 8)
    with attach(shm, timeout=0) as r:
        ready, word = r._select_state()
        assert not ready and word is not None
        timer = later(0.1, w.publish)
        assert _wait_any([word], 10) == 0
        timer.join()


# --- select --------------------------------------------------------------------------------


def test_select_returns_the_rings_with_new_frames(make, shm):
    writers = {name: make(name) for name in ("a", "b", "c")}
    for w in writers.values():
        w.configure("gray", 16, 8)
    rings = [attach(shm, name, timeout=0) for name in writers]
    try:
        assert camhub.select(rings, timeout=0) == []
        t = time.monotonic()
        assert camhub.select(rings, timeout=0.2) == []
        assert time.monotonic() - t >= 0.2

        timer = later(0.1, writers["b"].publish)
        assert camhub.select(rings) == [rings[1]]  # timeout=None: until one has a frame
        timer.join()
        f = rings[1].wait(0)
        assert f is not None and (f.array == value_of(1)).all()
        assert camhub.select(rings, timeout=0) == [], "b returned its frame"

        writers["a"].publish()
        writers["c"].publish()
        assert camhub.select(rings, timeout=5) == [rings[0], rings[2]]
        assert rings[0].wait(0).seq == 1 and rings[2].wait(0).seq == 1
    finally:
        for r in rings:
            r.close()


def test_select_returns_ended_and_closed_rings(make, shm):
    wa, wb = make("a", mode=1), make("b")
    wa.configure("gray", 16, 8)
    wb.configure("gray", 16, 8)
    a, b = attach(shm, "a", timeout=0), attach(shm, "b", timeout=0)
    assert camhub.select([a, b], timeout=0) == []
    wa.end()
    assert camhub.select([a, b], timeout=5) == [a]
    assert a.wait(0) is None and a.ended
    b.close()
    assert camhub.select([b], timeout=0) == [b]
    a.close()


def test_select_over_two_real_cameras(rtsp, hub):
    names = [camera_name(f"sel{i}") for i in range(2)]
    cfg = "cameras:\n" + "".join(
        f"  {n}:\n    url: {rtsp.url}\n    outputs:\n      ai:\n        shm: {{format: gray, width: 320}}\n"
        for n in names)
    h = hub(cfg, *(f"{camhub.shm_dir()}/camhub.{n}.ai" for n in names))
    rings = [camhub.open(n, "ai", timeout=10) for n in names]
    ids = {r.path: [] for r in rings}
    fresh = {r.path: 0 for r in rings}  # frames showing what the server sends now (after catching up)
    deadline = time.monotonic() + 40
    while min(fresh.values()) < 5 and time.monotonic() < deadline:
        for ring in camhub.select(rings, timeout=10):
            f = ring.wait(0)
            assert f is not None, "a ring select returned has a frame at once"
            ids[ring.path].append(f.frame_id)
            c = f.copy()
            if c is not None and spread(luma(c)) > 20 and abs(clip_diff(rtsp.sent(), barcode(luma(c), c.width))) <= 3:
                fresh[ring.path] += 1
    assert min(fresh.values()) >= 5, f"fresh frames per ring: {fresh}\n{h.log()}"
    for got in ids.values():
        assert got == sorted(set(got)), "each frame once, in order"
    for r in rings:
        r.close()
    h.stop()
