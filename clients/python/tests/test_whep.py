"""WHEP live view against real WebRTC peers: aiortc (PyPI) negotiates with the
hub's endpoint and decodes the H.264 it forwards (libavcodec via PyAV); the
frames' barcodes are checked against what the RTSP server sent.
"""

import asyncio
import os
import re
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from aiortc import RTCPeerConnection

from test_camhub import REPO, RtspServer, camera_name, clip_diff, hub, rtsp, wait_for  # noqa: F401 (fixtures)

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import whep_client  # noqa: E402


def lan_ip():
    """aiortc offers only non-loopback addresses: the hub must offer one of those too."""
    from aioice.ice import get_host_addresses

    ips = get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert ips, "this machine has no non-loopback IPv4 address for WebRTC"
    return ips[0]


def config(name, url, **webrtc):
    w = {"ips": f"[{lan_ip()}]", **webrtc}
    opts = ", ".join(f"{k}: {v}" for k, v in w.items())
    return f"server:\n  webrtc: {{{opts}}}\ncameras:\n  {name}:\n    url: {url}\n"


def view(url, frames=10, seconds=0.0, timeout=10.0, delete=True):
    args = SimpleNamespace(url=url, frames=frames, timeout=timeout, keep_open=seconds, no_delete=not delete)
    return asyncio.run(whep_client.main(args))


def request(method, url, body=b"", ctype="application/sdp"):
    req = urllib.request.Request(url, data=body or None, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def an_offer():
    """A real browser-like offer (aiortc's), never answered."""
    async def make():
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp
    return asyncio.run(make())


def viewers(h, name):
    return h.camera(name)["webrtc"]["viewers"]


def test_a_viewer_gets_the_cached_gop_at_once_then_live_frames(rtsp, hub):
    name = camera_name("whep")
    h = hub(config(name, rtsp.url))
    wait_for("a GOP in the cache", lambda: h.camera(name)["gop_cache"]["units"] >= 15, 30, h.log)
    sent = rtsp.sent()
    r = view(f"{h.base}/api/cameras/{name}/whep", frames=40)
    assert r["status"] == 201 and r["location"].startswith(f"/api/cameras/{name}/whep/"), r
    assert r["error"] is None, r
    idx = [f[0] for f in r["frames"]]
    print(f"first picture after {r['ttff_ms']:.0f} ms; server had sent clip frame {sent}; frames {idx}")
    first = idx[0]
    assert first % 100 == 0, f"the first picture is the cached keyframe (clip keyframes every 100): {idx}"
    assert clip_diff(sent, first) >= 10, f"it was cached before the request: it cannot be live: {first} vs {sent}"
    assert all(clip_diff(b, a) == 1 for a, b in zip(idx, idx[1:])), f"every frame, in order, no gap: {idx}"
    assert clip_diff(idx[-1], sent) >= 0, "the burst reaches what the camera sent at the request"
    assert all((w, hh) == (640, 360) and spread > 20 for _, w, hh, spread, _ in r["frames"]), "real pictures"
    assert r["delete_status"] == 200
    wait_for("the session gone after DELETE", lambda: viewers(h, name) == [], 5, h.log)
    assert h.camera(name)["decoder"]["running"] is False, "WebRTC forwards the camera's H.264: no decode"
    h.stop()


def test_a_viewer_stays_live(rtsp, hub):
    name = camera_name("live")
    h = hub(config(name, rtsp.url))
    wait_for("streaming", lambda: h.camera(name)["state"] == "streaming", 20, h.log)
    r = view(f"{h.base}/api/cameras/{name}/whep", frames=80)
    assert r["error"] is None, r
    last = r["frames"][-1][0]
    assert abs(clip_diff(rtsp.sent(), last)) <= 3, f"after the burst, frames follow the camera: {last} vs {rtsp.sent()}"
    h.stop()


def test_bad_requests_get_clear_errors_and_the_viewer_cap_holds(rtsp, hub):
    name = camera_name("wbad")
    h = hub(config(name, rtsp.url, max_viewers=1, ice_timeout=30))
    wait_for("streaming", lambda: h.camera(name)["state"] == "streaming", 20, h.log)
    url = f"{h.base}/api/cameras/{name}/whep"
    offer = an_offer().encode()
    status, body = request("POST", url, offer, "application/json")
    assert status == 415 and "application/sdp" in body, body
    status, body = request("POST", f"{h.base}/api/cameras/nope/whep", offer)
    assert status == 404, body
    status, body = request("POST", url, b"v=0\r\nthis is not sdp\r\n")
    assert status == 400 and "SDP" in body, body
    assert not re.search(r"0x[0-9a-fA-F]{4,}", body), f"no memory address in an error: {body}"
    status, body = request("DELETE", f"{url}/0123456789")
    assert status == 404, body
    status, body = request("POST", url, offer)
    assert status == 201 and "a=candidate:" in body
    # Trickle ICE on the session: a candidate fragment is taken, nonsense is not.
    session = [line for line in body.splitlines() if line.startswith("a=ice-ufrag")]
    assert session, body
    viewer = viewers(h, name)[0]["id"]
    frag = "a=candidate:1 1 udp 2130706431 192.0.2.77 50000 typ host\r\n"
    status, _ = request("PATCH", f"{url}/{viewer}", frag.encode(), "application/trickle-ice-sdpfrag")
    assert status == 204
    status, body = request("PATCH", f"{url}/{viewer}", b"a=candidate:garbage\r\n", "application/trickle-ice-sdpfrag")
    assert status == 400 and "candidate" in body, body
    status, _ = request("PATCH", f"{url}/{viewer}", frag.encode(), "application/sdp")
    assert status == 415
    status, _ = request("PATCH", f"{url}/nope", frag.encode(), "application/trickle-ice-sdpfrag")
    assert status == 404
    status, body = request("POST", url, an_offer().encode())
    assert status == 503 and "max_viewers" in body, body
    metrics = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
    assert f'camhub_webrtc_viewers{{camera="{name}",state="all"}} 1' in metrics
    assert f'camhub_webrtc_viewers{{camera="{name}",state="connected"}} 0' in metrics
    h.stop()


def test_an_h265_camera_is_refused_with_a_clear_message(hub):
    server = RtspServer(codec="h265")
    try:
        name = camera_name("w265")
        h = hub(config(name, server.url))
        # (The codec is known from the first unit, a moment after the state says streaming.)
        wait_for("streaming H.265", lambda: h.camera(name)["codec"] == "h265", 20, h.log)
        status, body = request("POST", f"{h.base}/api/cameras/{name}/whep", an_offer().encode())
        assert status == 422 and "H.265" in body and "MJPEG" in body, body
        h.stop()
    finally:
        server.stop()


def test_a_viewer_that_never_connects_is_dropped_and_lets_go_of_the_camera(rtsp, hub):
    name = camera_name("wgone")
    h = hub(config(name, rtsp.url, ice_timeout=2).replace(f"  {name}:\n", f"  {name}:\n    keep: on_demand\n    connect_linger: 0\n"))
    status, _ = request("POST", f"{h.base}/api/cameras/{name}/whep", an_offer().encode())
    assert status == 201
    cam = h.camera(name)
    assert len(cam["webrtc"]["viewers"]) == 1 and cam["leases"]["connected"] == 1, cam
    wait_for("the viewer dropped", lambda: viewers(h, name) == [], 8, h.log)
    cam = h.camera(name)
    assert cam["leases"]["connected"] == 0, cam
    assert "no ICE connection within 2" in h.log(), "the log says why"
    wait_for("the on-demand camera idle again", lambda: h.camera(name)["state"] == "idle", 10, h.log)
    h.stop()


def proc(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, threads, rss


def test_a_hundred_viewers_coming_and_going_leave_nothing_behind(rtsp, hub):
    name = camera_name("wcycle")
    h = hub(config(name, rtsp.url))
    wait_for("a GOP in the cache", lambda: h.camera(name)["gop_cache"]["units"] >= 5, 30, h.log)
    url = f"{h.base}/api/cameras/{name}/whep"

    def cycle():
        r = view(url, frames=1)
        assert r["status"] == 201 and len(r["frames"]) == 1 and r["delete_status"] == 200, r

    for _ in range(5):  # warm up: allocator arenas, first-use tables
        cycle()
    wait_for("no viewers", lambda: viewers(h, name) == [], 5, h.log)
    before = proc(h.p.pid)
    t = time.monotonic()
    for _ in range(100):
        cycle()
    wait_for("no viewers", lambda: viewers(h, name) == [], 5, h.log)
    time.sleep(0.5)
    after = proc(h.p.pid)
    print(f"100 cycles in {time.monotonic() - t:.1f} s; fds, threads, RSS kB before {before}, after {after}")
    assert after[0] <= before[0] + 2, f"fds {before[0]} -> {after[0]}"
    assert after[1] <= before[1] + 2, f"threads {before[1]} -> {after[1]}"
    assert after[2] - before[2] < 16 * 1024, f"RSS {before[2]} -> {after[2]} kB"
    assert h.camera(name)["leases"]["connected"] == 0
    h.stop()


def test_the_viewer_cap_holds_under_concurrent_offers(rtsp, hub):
    """Issue 15, item 12: the slot is taken before the offer's awaits, so 15 offers
    at once for a camera with max_viewers 10 admit exactly 10."""
    from concurrent.futures import ThreadPoolExecutor
    import threading

    name = camera_name("wcap")
    h = hub(config(name, rtsp.url, max_viewers=10, ice_timeout=30))
    wait_for("streaming", lambda: h.camera(name)["state"] == "streaming", 20, h.log)
    offer = an_offer().encode()
    url = f"{h.base}/api/cameras/{name}/whep"
    go = threading.Barrier(15)

    def one(_):
        go.wait(timeout=10)
        return request("POST", url, offer)

    with ThreadPoolExecutor(max_workers=15) as pool:
        answers = list(pool.map(one, range(15)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] * 10 + [503] * 5, f"statuses {statuses}"
    assert all("max_viewers" in b for s, b in answers if s == 503), answers
    assert len(viewers(h, name)) == 10
    h.stop()
