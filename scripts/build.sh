#!/bin/bash
# Configures (once) and builds vmm into ./build. With CI set, warnings are
# errors. Used by the test and demo scripts; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
opts=()
[ -n "${CI:-}" ] && opts+=(-Dwerror=true)
if [ ! -f build/build.ninja ]; then
	meson setup build "${opts[@]}" >/dev/null
fi
ninja -C build >/dev/null
echo "build: ok (build/vmm)"
