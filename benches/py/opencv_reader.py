"""The users' prior art, as a reference for P2: one Python process per camera
reading frames with OpenCV (FFmpeg backend, decode + conversion to BGR).

    opencv_reader.py URL SECONDS   -> prints the number of frames read
"""

import os
import sys
import time

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|threads;1")
import cv2  # noqa: E402

cv2.setNumThreads(1)
url, seconds = sys.argv[1], float(sys.argv[2])
cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
n = 0
end = time.time() + seconds
while time.time() < end:
    ok, img = cap.read()
    if not ok:
        break
    n += 1
print(n, flush=True)
