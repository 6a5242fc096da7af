"""A real WebRTC viewer for camhub's WHEP endpoint, built on aiortc (PyPI):
POSTs an SDP offer, decodes the H.264 it receives (libavcodec through PyAV),
reads each frame's barcode (the clip index drawn along the top), and DELETEs
the session at the end.

    whep_client.py URL [--frames N] [--timeout S] [--keep-open S] [--no-delete]

Prints one JSON line: {"status", "location", "ttff_ms", "frames": [[index, width, height, spread, ms], ...],
"answer_has_candidate", "error"}. The first frame's time (ttff_ms) runs from
just before the POST to the first decoded picture.
"""

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription


def barcode(y):
    s = y.shape[1] / 640
    return sum(int(y[int(20 * s), int((40 * b + 20) * s)] > 128) << b for b in range(16))


def http(method, url, body=None, ctype=None):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


async def main(args):
    out = {"status": None, "location": None, "ttff_ms": None, "frames": [], "error": None}
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    track_ready = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track):
        if not track_ready.done():
            track_ready.set_result(track)

    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers its candidates here
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    status, headers, body = await loop.run_in_executor(
        None, http, "POST", args.url, pc.localDescription.sdp.encode(), "application/sdp")
    out["status"] = status
    if status != 201:
        out["error"] = body
        await pc.close()
        return out
    base = args.url.split("/api/")[0]
    location = headers.get("Location") or headers.get("location")
    out["location"] = location
    out["answer_has_candidate"] = "a=candidate:" in body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    try:
        track = await asyncio.wait_for(track_ready, args.timeout)
        while len(out["frames"]) < args.frames:
            frame = await asyncio.wait_for(track.recv(), args.timeout)
            if out["ttff_ms"] is None:
                out["ttff_ms"] = (time.monotonic() - t0) * 1000
            y = frame.to_ndarray(format="gray")
            out["frames"].append([barcode(y), frame.width, frame.height, float(np.std(y[y.shape[0] // 8:])),
                                  (time.monotonic() - t0) * 1000])
        if args.keep_open:
            await asyncio.sleep(args.keep_open)
    except asyncio.TimeoutError:
        out["error"] = f"no frame within {args.timeout} s (got {len(out['frames'])})"
    if location and not args.no_delete:
        out["delete_status"] = (await loop.run_in_executor(None, http, "DELETE", base + location))[0]
    await pc.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--keep-open", type=float, default=0)
    ap.add_argument("--no-delete", action="store_true")
    print(json.dumps(asyncio.run(main(ap.parse_args()))), flush=True)
