#!/usr/bin/env bash
# Makes the clips camhub ships: the demo camera clip and the indexed test clips.
# Each frame carries its own index as a 16-bit barcode in the top 40 rows
# (bit b is the 40x40 block at x = 40*b, white = 1), so a test or a person can
# tell exactly which frame a snapshot shows. The clips are committed; this script
# documents how they were made and remakes them.
set -euo pipefail
cd "$(dirname "$0")/.."

barcode="geq=lum='if(lt(Y,40),255*mod(floor(N/pow(2,floor(X/40))),2),lum(X,Y))':cb='if(lt(Y,40),128,cb(X,Y))':cr='if(lt(Y,40),128,cr(X,Y))'"

# Test clips: 640x360, 10 fps, 30 s, one keyframe every 10 s (a camera's long GOP).
src="testsrc2=s=640x360:r=10:d=30,${barcode}"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$src" -pix_fmt yuv420p \
  -c:v libx264 -preset veryfast -b:v 120k -g 100 -keyint_min 100 -sc_threshold 0 -bf 0 \
  -x264-params aud=1:repeat-headers=1 -f h264 tests/clips/idx-h264.h264
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "$src" -pix_fmt yuv420p \
  -c:v libx265 -preset veryfast -b:v 120k -g 100 -keyint_min 100 -sc_threshold 0 -bf 0 \
  -x265-params aud=1:repeat-headers=1:log-level=error -f hevc tests/clips/idx-h265.h265

# Demo clip: 640x360, 10 fps, 20 s, a keyframe every 4 s, in MP4 (served looped).
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=s=640x360:r=10:d=20,${barcode}" \
  -pix_fmt yuv420p -c:v libx264 -preset veryfast -b:v 150k -g 40 -keyint_min 40 \
  -sc_threshold 0 -bf 0 -movflags +faststart assets/demo.mp4
ls -l tests/clips assets
