"""camhub.Hub against the real hub (real RTSP camera, real JPEGs checked by their
barcode), its errors and auth; the multipart parser on hand-made streams."""

import io
import sys

import camhub
import cv2
import numpy as np
import pytest
from camhub import _jpeg
from camhub.hub import parts
from test_camhub import barcode, camera_name, clip_diff, hub, rtsp, wait_for  # noqa: F401 (fixtures)


def luma(bgr):
    return bgr.mean(axis=2)


def one_camera(hub, rtsp, tag, server=""):
    name = camera_name(tag)
    h = hub(f"{server}cameras:\n  {name}:\n    url: {rtsp.url}\n")
    return name, h


def test_cameras_and_snapshots_show_what_the_camera_sends(rtsp, hub):
    name, h = one_camera(hub, rtsp, "http")
    c = camhub.Hub(h.base)
    assert name in [cam["name"] for cam in c.cameras()]
    wait_for("streaming", lambda: c.camera(name)["state"] == "streaming", 20, h.log)
    jpeg = c.snapshot_jpeg(name, width=320)
    assert jpeg[:2] == b"\xff\xd8"
    img = c.snapshot(name, width=320, max_age_ms=5000)
    assert img.shape == (180, 320, 3) and img.dtype == np.uint8
    assert abs(clip_diff(rtsp.sent(), barcode(luma(img), 320))) <= 12, "a recent frame of the clip"
    assert np.std(luma(img)[40:]) > 20, "a picture, not a blank"
    full = c.snapshot(name, quality=50)
    assert full.shape == (360, 640, 3)
    h.stop()


def test_pillow_decodes_when_opencv_is_missing_and_neither_is_a_clear_error(rtsp, hub, monkeypatch):
    name, h = one_camera(hub, rtsp, "pil")
    c = camhub.Hub(h.base)
    jpeg = c.snapshot_jpeg(name, width=320)
    by_cv2 = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` fails
    assert _jpeg.decoder() == "pil"
    by_pil = _jpeg.decode(jpeg)
    assert by_pil.shape == by_cv2.shape
    assert np.abs(by_pil.astype(int) - by_cv2).mean() < 3, "same picture, BGR in both"
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError) as e:
        c.snapshot(name)
    assert "OpenCV" in str(e.value) and "Pillow" in str(e.value)
    h.stop()


def test_mjpeg_stream_frames_are_decoded_in_order(rtsp, hub):
    name, h = one_camera(hub, rtsp, "mjpeg")
    c = camhub.Hub(h.base)
    ids = []
    for part in c.stream_jpeg(name, width=320, fps=5):
        ids.append(part.frame_id)
        assert part.jpeg[:2] == b"\xff\xd8" and part.jpeg[-2:] == b"\xff\xd9" and part.timestamp
        if len(ids) == 4:
            break
    assert ids == sorted(set(ids)), ids
    indices = []
    for img in c.stream(name, width=320):
        assert img.shape == (180, 320, 3)
        indices.append((barcode(luma(img), 320), rtsp.sent()))
        if len(indices) == 6:
            break
    assert all(abs(clip_diff(sent, idx)) <= 12 for idx, sent in indices[2:]), indices
    assert all(clip_diff(b[0], a[0]) >= 0 for a, b in zip(indices, indices[1:])), indices
    h.stop()


def test_cameras_are_added_changed_and_removed(rtsp, hub):
    name, h = one_camera(hub, rtsp, "base")
    c = camhub.Hub(h.base)
    new = camera_name("added")
    made = c.add(new, rtsp.url, decode_linger=3)
    assert made["name"] == new
    assert new in [cam["name"] for cam in c.cameras()]
    with pytest.raises(camhub.HubError) as e:
        c.add(new, rtsp.url)
    assert e.value.status == 409 and e.value.camera == new and e.value.message
    assert c.camera(new)["decoder"]["linger_s"] == 3
    c.update(new, url=rtsp.url, decode_linger=7)
    assert c.camera(new)["decoder"]["linger_s"] == 7
    with pytest.raises(camhub.HubError) as e:
        c.update(new, url=rtsp.url, no_such_option=1)
    assert e.value.status == 400 and "no_such_option" in e.value.message
    wait_for("the added camera streaming", lambda: c.camera(new)["state"] == "streaming", 20, h.log)
    assert c.snapshot(new, width=320).shape == (180, 320, 3)
    c.remove(new)
    with pytest.raises(camhub.HubError) as e:
        c.camera(new)
    assert e.value.status == 404 and e.value.message == f"no camera named {new!r}".replace("'", '"')
    with pytest.raises(camhub.HubError) as e:
        c.remove(new)
    assert e.value.status == 404
    assert [cam["name"] for cam in c.cameras()] == [name]
    h.stop()


def test_a_token_is_sent_as_bearer(rtsp, hub):
    name, h = one_camera(hub, rtsp, "auth", server="server:\n  auth:\n    tokens: [tok-123]\n")
    with pytest.raises(camhub.HubError) as e:
        camhub.Hub(h.base).cameras()
    assert e.value.status == 401 and "credentials" in e.value.message
    with pytest.raises(camhub.HubError) as e:
        camhub.Hub(h.base, token="wrong").camera(name)
    assert e.value.status == 401
    c = camhub.Hub(h.base, token="tok-123")
    assert c.camera(name)["name"] == name
    assert c.snapshot(name, width=320).shape == (180, 320, 3)
    h.stop()


def test_an_unreachable_hub_is_a_hub_error():
    with pytest.raises(camhub.HubError) as e:
        camhub.Hub("http://127.0.0.1:9", timeout=2).cameras()
    assert e.value.status is None and "cannot reach" in str(e.value)


# --- multipart ---------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A stream that hands out a few bytes per read, as a slow network does."""

    def __init__(self, data, step=7):
        self.data, self.at, self.step = data, 0, step

    def readable(self):
        return True

    def read1(self, n=-1):
        out = self.data[self.at:self.at + min(self.step, n if n > 0 else self.step)]
        self.at += len(out)
        return out

    read = read1


def part(body, headers=b""):
    return b"--frame\r\n" + headers + b"\r\n" + body + b"\r\n"


@pytest.mark.parametrize("step", [1, 5, 1 << 16])
def test_multipart_with_and_without_content_length(step):
    a, b, c = b"\xff\xd8first\xff\xd9", b"\xff\xd8sec--frame-not-a-boundary\xff\xd9", b"\xff\xd8third\xff\xd9"
    stream = (b"preamble\r\n"
              + part(a, b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame-Id: 7\r\n" % len(a))
              + part(b, b"Content-Length: %d\r\n" % len(b)) + b"junk after a part\r\n"
              + part(c, b"Content-Type: image/jpeg\r\n")
              + b"--frame--\r\n" + part(b"never"))
    got = list(parts(Trickle(stream, step), b"frame"))
    assert [body for _, body in got] == [a, b, c]
    assert got[0][0]["x-frame-id"] == "7" and got[0][0]["content-type"] == "image/jpeg"


def test_multipart_boundary_given_with_its_dashes_and_a_truncated_end():
    stream = part(b"one", b"Content-Length: 3\r\n") + part(b"two") + b"--frame\r\nContent-Length: 10\r\n\r\nabc"
    assert [body for _, body in parts(io.BytesIO(stream), b"--frame")] == [b"one", b"two"]
