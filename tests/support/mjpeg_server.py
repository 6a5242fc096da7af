#!/usr/bin/python3
"""An HTTP MJPEG camera on loopback for camhub's tests, serving the indexed test
clip as JPEG frames (made with ffmpeg into --frames-dir, so a test can compare
bytes), the way ESP32 cameras, ustreamer and mjpg-streamer do:

  /stream          multipart/x-mixed-replace, parts with Content-Length, 10 fps
  /nolength        the same without Content-Length (the boundary ends a part)
  /snapshot.jpg    one JPEG: the current frame
  /auth/stream     /stream behind Basic auth (user u, password p)
  /truncated       a part announced with 50000 bytes, cut after 1000, then closed
  /wrongboundary   declares one boundary, sends another
  /endless         a part that never ends

`--tls CERT KEY` serves the same over https. First line on stdout: `PORT <port>`; then `SENT <index>` for each /stream frame.
"""

import argparse
import base64
import glob
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOUNDARY = "123456789000000000000987654321"
FRAMES = []
FPS = 10.0
START = time.monotonic()
LOCK = threading.Lock()


def current_index():
    return int((time.monotonic() - START) * FPS) % len(FRAMES)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def multipart_head(self, boundary=BOUNDARY):
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={boundary}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def stream(self, with_length=True, report=True):
        self.multipart_head()
        last = -1
        while True:
            idx = current_index()
            if idx == last:
                time.sleep(0.005)
                continue
            last = idx
            jpeg = FRAMES[idx]
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
            if with_length:
                head += f"Content-Length: {len(jpeg)}\r\n"
            self.wfile.write((head + "\r\n").encode() + jpeg + b"\r\n")
            self.wfile.flush()
            if report:
                with LOCK:
                    print(f"SENT {idx}", flush=True)

    def do_GET(self):
        try:
            if self.path == "/stream":
                self.stream()
            elif self.path == "/nolength":
                self.stream(with_length=False, report=False)
            elif self.path == "/auth/stream":
                want = "Basic " + base64.b64encode(b"u:p").decode()
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                    self.end_headers()
                    return
                self.stream(report=False)
            elif self.path == "/snapshot.jpg":
                jpeg = FRAMES[current_index()]
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg)))
                self.end_headers()
                self.wfile.write(jpeg)
            elif self.path == "/truncated":
                self.multipart_head()
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: 50000\r\n\r\n".encode())
                self.wfile.write(FRAMES[0][:1000])
                self.wfile.flush()
            elif self.path == "/wrongboundary":
                self.multipart_head("expected-boundary")
                while True:
                    jpeg = FRAMES[current_index()]
                    self.wfile.write(f"--other\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                    time.sleep(0.01)
            elif self.path == "/endless":
                self.multipart_head()
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode() + FRAMES[0][:100])
                chunk = b"\x55" * 65536
                while True:
                    self.wfile.write(chunk)
            else:
                self.send_response(404)
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", required=True)
    ap.add_argument("--frames-dir", required=True)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve https with this certificate")
    args = ap.parse_args()
    os.makedirs(args.frames_dir, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", args.clip, "-frames:v", str(args.frames),
         "-q:v", "4", os.path.join(args.frames_dir, "%03d.jpg")],
        check=True,
    )
    for path in sorted(glob.glob(os.path.join(args.frames_dir, "*.jpg"))):
        with open(path, "rb") as f:
            FRAMES.append(f.read())
    if not FRAMES:
        sys.exit("no frames")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if args.tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*args.tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
