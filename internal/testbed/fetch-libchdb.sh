#!/usr/bin/env bash
# Fetches libchdb.so, the embedded ClickHouse that tests and the demo run, from the npm registry:
# npm pack @chdb/lib-linux-x64-gnu@VERSION, check the tarball against the pinned integrity, unpack
# the library into DEST. Does nothing when DEST/libchdb.so is already there.
# Usage: fetch-libchdb.sh VERSION INTEGRITY DEST
set -euo pipefail
version=$1 integrity=$2 dest=$3
[ -f "$dest/libchdb.so" ] && exit 0
command -v npm >/dev/null || { echo "fetch-libchdb: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }

mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "fetch-libchdb: npm pack @chdb/lib-linux-x64-gnu@$version (about 180 MB) into $dest" >&2
(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$version" >/dev/null)
tgz="$tmp/chdb-lib-linux-x64-gnu-$version.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
  echo "fetch-libchdb: integrity mismatch for $tgz: got $actual, want $integrity" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/libchdb.so
mv "$tmp/package/libchdb.so" "$dest/libchdb.so"
echo "fetch-libchdb: $dest/libchdb.so ready" >&2
