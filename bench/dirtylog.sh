#!/bin/bash
# KVM's dirty bitmap against its dirty ring under the same guest load (see
# bench/dirtylog.c): prints the guest's speed and the collector's CPU per
# dirty page in each mode, and the ratios ring/bitmap. Arguments go to
# build/bench/dirtylog. Without /dev/kvm it runs inside the nested-KVM
# sandbox, where only the ratios mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -w /dev/kvm ] && [ -z "${VMM_IN_SANDBOX:-}" ]; then
	bash scripts/build.sh >/dev/null
	echo "bench: no /dev/kvm here; running inside the nested-KVM sandbox"
	exec bash test/sandbox/sandbox.sh --timeout 1200 -- env VMM_IN_SANDBOX=1 \
		bash bench/dirtylog.sh "$@"
fi
[ -n "${VMM_IN_SANDBOX:-}" ] || bash scripts/build.sh >/dev/null
exec build/bench/dirtylog "$@"
