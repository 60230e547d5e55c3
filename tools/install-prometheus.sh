#!/usr/bin/env bash
# Install Debian's `prometheus` package (the real server and promtool) into DEST,
# without root and without a service: the .deb is unpacked, nothing runs.
#
#   tools/install-prometheus.sh .tools/prometheus   # then .tools/prometheus/bin/{prometheus,promtool}
#
# The version is pinned (Debian 12 "bookworm", Prometheus 2.42) and the .deb is
# checked against the SHA-256 of bookworm's signed Packages index, so every
# machine tests against the same binaries. `apt-get download` is tried first
# (it honours the machine's mirror and proxy); where apt's lists are stale,
# missing or from another release, the same file is fetched from the Debian
# pool by its exact name. The binaries are Go programs that need only glibc
# >= 2.34, so they run on other Linux distributions too.
set -euo pipefail

DEST=${1:?usage: tools/install-prometheus.sh DEST}
VERSION=2.42.0+ds-5+deb12u1
DEBIAN_MIRROR=${DEBIAN_MIRROR:-https://deb.debian.org/debian}
declare -A SHA256=(
    [amd64]=81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55
    [arm64]=ca131aa102390083398afbc80be9c8dd1dda78f9f92154fc00df8f7f1f4556e9
)

case "$(uname -m)" in
    x86_64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) echo "install-prometheus: no pinned prometheus .deb for $(uname -m) (amd64, arm64 only)" >&2; exit 2 ;;
esac
DEB="prometheus_${VERSION}_${ARCH}.deb"
WANT=${SHA256[$ARCH]}

for tool in dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || { echo "install-prometheus: $tool is needed (Debian: dpkg, coreutils)" >&2; exit 2; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

verified() { [[ -f "$tmp/$DEB" ]] && [[ "$(sha256sum "$tmp/$DEB" | cut -d' ' -f1)" == "$WANT" ]]; }

if command -v apt-get >/dev/null && (cd "$tmp" && apt-get download -q "prometheus:$ARCH=$VERSION") >"$tmp/apt.log" 2>&1 && verified; then
    echo "install-prometheus: $DEB from apt-get download"
else
    echo "install-prometheus: apt-get download of prometheus=$VERSION failed (stale or missing apt lists?): fetching $DEB from the Debian pool" >&2
    rm -f "$tmp/$DEB"
    url="$DEBIAN_MIRROR/pool/main/p/prometheus/${DEB//+/%2B}"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 3 -o "$tmp/$DEB" "$url"
    elif command -v wget >/dev/null; then
        wget -q --tries=3 -O "$tmp/$DEB" "$url"
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$tmp/$DEB"
    fi
    verified || { echo "install-prometheus: $url does not have SHA-256 $WANT: refusing it" >&2; exit 1; }
fi

dpkg-deb -x "$tmp/$DEB" "$tmp/root"
rm -rf "$DEST"
mkdir -p "$DEST/bin"
cp "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$DEST/bin/"
"$DEST/bin/promtool" --version >/dev/null
"$DEST/bin/prometheus" --version 2>&1 | head -1
echo "$VERSION $ARCH" >"$DEST/.installed"
