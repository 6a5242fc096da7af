#!/usr/bin/env python3
"""Reads a camera's ring, draws a box around what moved on a writable copy of each
frame (OpenCV), and prints the frame rate.

    detect_opencv.py door [ai] [--frames 100] [--save last.png]

Prints `frame <frame_id> box <x> <y> <w> <h>` per frame (`box none` when nothing
moved), `fps <n>` every second, and a summary line at the end. `frame.array` is
a read-only view of the ring: drawing needs `frame.writable()` (an owned copy).
"""

from __future__ import annotations

import argparse
import time

import camhub
import cv2
import numpy as np

TO_BGR = {"gray": cv2.COLOR_GRAY2BGR, "i420": cv2.COLOR_YUV2BGR_I420, "nv12": cv2.COLOR_YUV2BGR_NV12,
          "rgb24": cv2.COLOR_RGB2BGR}


def bgr(frame: camhub.Frame) -> np.ndarray | None:
    """A writable BGR picture of the frame, or None if the hub overwrote it meanwhile."""
    img = frame.writable()
    if img is None or frame.format == "bgr24":
        return img
    return cv2.cvtColor(img, TO_BGR[frame.format])


def moved(previous: np.ndarray | None, gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box around the pixels that changed since `previous`, or None."""
    if previous is None or previous.shape != gray.shape:
        return None
    mask = cv2.threshold(cv2.absdiff(previous, gray), 40, 255, cv2.THRESH_BINARY)[1]
    points = cv2.findNonZero(mask)
    return None if points is None else cv2.boundingRect(points)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("camera")
    ap.add_argument("output", nargs="?", default="ai")
    ap.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: never)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds to wait for the ring and each frame")
    ap.add_argument("--save", help="write the last annotated picture here")
    args = ap.parse_args()

    done = torn = 0
    previous = img = None
    start = second = time.monotonic()
    with camhub.open(args.camera, args.output, timeout=args.timeout) as ring:
        for frame in ring.frames(timeout=args.timeout):
            img = bgr(frame)
            if img is None:
                torn += 1
                continue
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            box = moved(previous, gray)
            previous = gray
            if box is not None:
                x, y, w, h = box
                cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), 2)
            print(f"frame {frame.frame_id} box {' '.join(map(str, box)) if box else 'none'}", flush=True)
            done += 1
            if time.monotonic() - second >= 1:
                print(f"fps {done / (time.monotonic() - start):.1f}", flush=True)
                second = time.monotonic()
            if done == args.frames:
                break
        missed = ring.missed
    if args.save and img is not None:
        cv2.imwrite(args.save, img)
    elapsed = time.monotonic() - start
    print(f"done {done} frames in {elapsed:.1f} s ({done / elapsed:.1f} fps), torn {torn}, missed {missed}")


if __name__ == "__main__":
    main()
