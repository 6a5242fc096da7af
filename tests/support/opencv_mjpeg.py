"""Reads an MJPEG URL the way CV programs do, with cv2.VideoCapture, and prints
one JSON line per frame: its shape and the frame index drawn as a barcode along
the top of camhub's test clips (16 blocks of 40 px at 640 wide).

    opencv_mjpeg.py URL FRAMES
"""
import json
import sys

import cv2

url, frames = sys.argv[1], int(sys.argv[2])
cap = cv2.VideoCapture(url)
if not cap.isOpened():
    sys.exit(f"OpenCV could not open {url}")
for _ in range(frames):
    ok, img = cap.read()
    if not ok:
        sys.exit("OpenCV could not read a frame")
    h, w = img.shape[:2]
    s = w / 640.0
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    code = sum(int(gray[int(20 * s), int((40 * b + 20) * s)] > 128) << b for b in range(16))
    print(json.dumps({"shape": list(img.shape), "barcode": code}), flush=True)
cap.release()
