#!/usr/bin/env bash
# Fetches Debian's headless Chromium, the browser the console's tests drive, into DEST without
# installing anything: apt-get download the chromium-headless-shell package and the libraries it
# needs beyond a base Debian 12 system, unpack them under DEST/root, and write DEST/chromium, a
# wrapper that points the loader at the unpacked libraries. Fails, naming them, if any library the
# browser links is still missing. Does nothing when DEST/chromium is already there.
# Usage: fetch-chromium.sh DEST
set -euo pipefail
dest=${1%/}
[ -x "$dest/chromium" ] && exit 0
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  { echo "fetch-chromium: apt-get and dpkg-deb are needed (a Debian or Ubuntu machine); or set CHROMIUM_BIN to a Chromium of your own" >&2; exit 1; }

# The browser, its shared data, and the libraries of its dependency tree that a base system lacks.
pkgs=(chromium-headless-shell chromium-common
  libdouble-conversion3 libflac12 libharfbuzz-subset0 libminizip1 libopenh264-7 libopus0
  libpulse0 libxnvctrl0 libasyncns0 libsndfile1 libogg0 libvorbis0a libvorbisenc2 libmpg123-0
  libmp3lame0)

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-chromium: apt-get download ${pkgs[*]} (about 90 MB) into $dest" >&2
download() { (cd "$tmp" && apt-get download -q "${pkgs[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true); }
download
if ! compgen -G "$tmp/chromium-headless-shell_*.deb" >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "fetch-chromium: the package lists may be stale: apt-get update, then again" >&2
  apt-get update -q >&2 && download
fi
for p in "${pkgs[@]}"; do
  compgen -G "$tmp/${p}_*.deb" >/dev/null || { echo "fetch-chromium: apt-get download $p failed (run apt-get update?)" >&2; exit 1; }
done
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done

libs="$dest/root/usr/lib/x86_64-linux-gnu:$dest/root/usr/lib/x86_64-linux-gnu/pulseaudio"
missing=$(LD_LIBRARY_PATH="${libs//$dest/$tmp}" ldd "$tmp/root/usr/lib/chromium/chromium-headless-shell" | awk '/not found/ {print $1}')
if [ -n "$missing" ]; then
  echo "fetch-chromium: the browser still lacks: $missing (install them, or set CHROMIUM_BIN)" >&2
  exit 1
fi
rm -rf "$dest/root"
mv "$tmp/root" "$dest/root"
dpkg-deb -f "$(compgen -G "$tmp/chromium-headless-shell_*.deb")" Version >"$dest/VERSION"
cat >"$dest/chromium.tmp" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$dest/root/usr/lib/chromium/chromium-headless-shell" "\$@"
WRAP
chmod +x "$dest/chromium.tmp"
mv "$dest/chromium.tmp" "$dest/chromium"
echo "fetch-chromium: $dest/chromium ready (chromium-headless-shell $(cat "$dest/VERSION"))" >&2
