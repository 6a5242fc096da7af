#!/bin/bash
# camhub's Debian package from a built binary, with dpkg-deb (no cargo-deb: it
# would be compiled on every fresh machine, for what these few lines do).
#
#   packaging/build-deb.sh BINARY OUT_DIR     prints the path of the .deb it wrote
#
# Contents: /usr/bin/camhub (debug info stripped, symbols kept for backtraces),
# the systemd unit, /etc/camhub/cameras.yaml (a conffile), shell completions,
# /usr/share/doc/camhub. Depends: the shared libraries the binary links, found
# by dpkg-shlibdeps (lower bounds from Debian's symbols files), the packages of
# the GStreamer plugins the restream loads (gst-elements), and adduser.
# Needs dpkg-dev, binutils and pkg-config (all in the Makefile's APT_PACKAGES).
# DEB_COMPRESS, DEB_COMPRESS_LEVEL: dpkg-deb's compressor and level (default xz
# at its default level; the test uses gzip -1: quicker, and not under test).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUT_DIR" >&2
    exit 2
fi
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# dpkg-shlibdeps wants debian/control, and the files in debian/<package>/.
pkg=$work/debian/camhub
mkdir -p "$pkg/DEBIAN"
printf 'Source: camhub\n\nPackage: camhub\nArchitecture: any\n' >"$work/debian/control"

install -D -m 755 "$bin" "$pkg/usr/bin/camhub"
strip --strip-debug "$pkg/usr/bin/camhub"
version=$("$pkg/usr/bin/camhub" -V | awk '{print $2}')
[ -n "$version" ] || { echo "$0: $bin -V printed no version" >&2; exit 1; }

install -D -m 644 "$here/camhub.service" "$pkg/lib/systemd/system/camhub.service"
install -D -m 644 "$here/cameras.yaml" "$pkg/etc/camhub/cameras.yaml"
echo /etc/camhub/cameras.yaml >"$pkg/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 755 "$here/$s" "$pkg/DEBIAN/$s"
done
doc=$pkg/usr/share/doc/camhub
install -D -m 644 "$here/copyright" "$doc/copyright"
install -m 644 "$src/README.md" "$src/cameras.example.yaml" "$doc/"
comp() { install -d "$pkg/$(dirname "$2")"; "$pkg/usr/bin/camhub" completions "$1" >"$pkg/$2"; chmod 644 "$pkg/$2"; }
comp bash usr/share/bash-completion/completions/camhub
comp zsh usr/share/zsh/vendor-completions/_camhub
comp fish usr/share/fish/vendor_completions.d/camhub.fish

# Shared libraries: what the binary itself links (its NEEDED entries), each
# mapped to its package and the lowest version with the symbols it uses.
shlibs=$(cd "$work" && dpkg-shlibdeps -O debian/camhub/usr/bin/camhub 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "$0: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# GStreamer plugins are loaded at run time, so no linker records them.
plugindir=$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null ||
    echo "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/gstreamer-1.0")
plugins=""
for p in $(grep -v '^#' "$here/gst-elements" | awk 'NF {print $2}' | sort -u); do
    owner=$(dpkg -S "$plugindir/libgst$p.so" | cut -d: -f1) ||
        { echo "$0: no package holds $plugindir/libgst$p.so (GStreamer plugin $p)" >&2; exit 1; }
    plugins="$plugins $owner"
done
plugins=$(echo $plugins | tr ' ' '\n' | sort -u | grep -v '^libgstreamer1.0-0$' | paste -sd, | sed 's/,/, /g')

cat >"$pkg/DEBIAN/control" <<CONTROL
Package: camhub
Version: $version
Architecture: $(dpkg --print-architecture)
Maintainer: ${DEB_MAINTAINER:-camhub contributors <camhub@localhost>}
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $shlibs, $plugins, adduser
Section: video
Priority: optional
Description: camera hub: instant fresh snapshots, streams and frames from IP cameras
 One process holds a fleet of IP cameras (RTSP H.264/H.265, HTTP MJPEG and
 JPEG, files) and hands out their newest picture at once: JPEG snapshots,
 MJPEG streams, WebRTC live view, an RTSP restream, a dashboard, Prometheus
 metrics, a REST API, and raw frames in shared memory and Redis Streams.
CONTROL

mkdir -p "$out"
deb=$out/camhub_${version}_$(dpkg --print-architecture).deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" ${DEB_COMPRESS_LEVEL:+-z"$DEB_COMPRESS_LEVEL"} --build "$pkg" "$deb" >/dev/null
echo "$deb"
