#!/usr/bin/env bash
# build-runsc.sh OUT: build runsc from the gvisor.dev/gvisor version pinned
# in go.mod, with its seccomp programs precompiled as gVisor's own build
# does (internal/tools/seccompgen says why). The module is copied (hard
# links where the filesystem allows) into .cache/runsc-build, the two
# generated files replace their empty stubs there, and runsc is built in a
# module that requires everything at go.mod's versions and points
# gvisor.dev/gvisor at the copy.
set -euo pipefail
out=${1:?usage: build-runsc.sh OUT}
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$root/.cache/runsc-build
gv=$($GO list -m -f '{{.Dir}}' gvisor.dev/gvisor)
if [ -z "$gv" ] || [ ! -d "$gv" ]; then
	$GO mod download gvisor.dev/gvisor
	gv=$($GO list -m -f '{{.Dir}}' gvisor.dev/gvisor)
fi
rm -rf "$work"
mkdir -p "$work"
cp -al "$gv" "$work/gvisor" 2>/dev/null || { rm -rf "$work/gvisor"; cp -r "$gv" "$work/gvisor"; }
# Directories are the copy's own; files may be hard links into the read-only
# module cache, which seccompgen replaces rather than writes through.
find "$work/gvisor" -type d -exec chmod u+w {} +
echo "precompiling runsc's seccomp programs (about a minute)"
$GO run ./internal/tools/seccompgen -module "$work/gvisor"
sed -e 's|^module .*|module den.local/runsc-build|' -e '/^tool /d' go.mod > "$work/go.mod"
echo 'replace gvisor.dev/gvisor => ./gvisor' >> "$work/go.mod"
cp go.sum "$work/go.sum"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod $GO build -o "$root/$out.tmp" gvisor.dev/gvisor/runsc)
mv "$root/$out.tmp" "$root/$out"
rm -rf "$work"
