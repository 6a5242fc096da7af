#!/usr/bin/python3
"""A real RTSP server on loopback for camhub's tests and benchmarks.

GStreamer's rtsp-server serves an Annex B clip (H.264 or H.265) as a live camera:
a feeder thread pushes one access unit per frame interval into an appsrc, looping
the clip forever. Because the feeder knows which frame it pushed, it reports
each one on stdout as `SENT <clip_index> <keyframe 0|1>`, so a test can tell
which frame the camera last sent. The first line is `PORT <port>`.

Run with Debian's /usr/bin/python3 (the gi bindings live there).

    rtsp_server.py --clip tests/clips/idx-h264.h264 --codec h264 --fps 10 \
        [--port 0] [--path /cam] [--user U --password P] [--tcp-only] [--quiet]
        [--tls CERT KEY]

--tls serves RTSP over TLS (rtsps://, the way UniFi Protect does) with the given
PEM certificate and key.

--tcp-only refuses RTP over UDP (SETUP answers 461 Unsupported Transport), as
cameras behind some firewalls and NVRs do.
"""

import argparse
import os
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

AUD = {"h264": lambda b: b & 0x1F == 9, "h265": lambda b: (b >> 1) & 0x3F == 35}
KEY = {"h264": lambda b: b & 0x1F == 5, "h265": lambda b: 16 <= (b >> 1) & 0x3F <= 21}


def split_access_units(data, codec):
    """Splits an Annex B stream into access units at each access unit delimiter."""
    starts = []
    i = 0
    n = len(data)
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            break
        starts.append(i)
        i += 3
    units, cur_start, cur_key = [], None, False
    for s in starts:
        header = data[s + 3]
        # A 4-byte start code begins one byte earlier.
        begin = s - 1 if s > 0 and data[s - 1] == 0 else s
        if AUD[codec](header):
            if cur_start is not None:
                units.append((data[cur_start:begin], cur_key))
            cur_start, cur_key = begin, False
        elif KEY[codec](header):
            cur_key = True
    if cur_start is not None:
        units.append((data[cur_start:], cur_key))
    return units


class Feeder:
    """Pushes the clip into one media's appsrc in real time, looping."""

    def __init__(self, appsrc, units, fps, quiet):
        self.appsrc, self.units, self.fps, self.quiet = appsrc, units, fps, quiet
        self.stop = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        period = 1.0 / self.fps
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            idx = n % len(self.units)
            data, key = self.units[idx]
            buf = Gst.Buffer.new_wrapped(bytes(data))
            buf.pts = int(n * period * Gst.SECOND)
            buf.duration = int(period * Gst.SECOND)
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                break
            if not self.quiet:
                print(f"SENT {idx} {int(key)}", flush=True)
            n += 1
            delay = start + n * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", required=True)
    ap.add_argument("--codec", choices=["h264", "h265"], required=True)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--tcp-only", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = ap.parse_args()

    Gst.init(None)
    with open(args.clip, "rb") as f:
        units = split_access_units(f.read(), args.codec)
    if not units:
        sys.exit(f"no access units in {args.clip}")

    # Port 0: the server binds a free port itself (no window in which another
    # process can take a port picked in advance).
    port = args.port
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))

    caps = f"video/x-{args.codec},stream-format=byte-stream,alignment=au"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=src is-live=true format=time caps={caps} "
        f"! {args.codec}parse ! rtp{args.codec}pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)
    if args.tcp_only:
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    feeders = []

    def on_configure(_factory, media):
        appsrc = media.get_element().get_by_name("src")
        feeders.append(Feeder(appsrc, units, args.fps, args.quiet))

    factory.connect("media-configure", on_configure)

    if args.user or args.tls:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.user:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        else:
            auth.set_default_token(token)
        if args.tls:
            auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(*args.tls))
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    port = server.get_bound_port()
    print(f"PORT {port}", flush=True)
    try:
        GLib.MainLoop().run()
    except KeyboardInterrupt:
        pass
    finally:
        for f in feeders:
            f.stop.set()
        os._exit(0)


if __name__ == "__main__":
    main()
