#!/bin/bash
# t-cpu-check.sh -- `vmm cpu-check` on a host with /dev/kvm: the JSON has the
# fingerprint and the KVM CPUID; the host is compatible with itself (exit 0);
# a copy of its file without AVX2/SSE4.2 (as if from an older host) is not
# (exit 1, both named); a file from another vendor is refused by vendor; a
# broken file is an error (exit 2).
# Environment: VMM. Exit 0 pass, 1 fail, 77 skip (no /dev/kvm).
set -euo pipefail
VMM=${VMM:?set VMM to the vmm binary}
fail() { echo "t-cpu-check: FAIL: $*" >&2; exit 1; }
ok() { echo "t-cpu-check: ok: $*"; }
[ -e /dev/kvm ] || { echo "t-cpu-check: SKIP: no /dev/kvm"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$VMM" cpu-check >"$T/here.json" || fail "cpu-check exited $?"
python3 - "$T" <<'PY' || fail "JSON content"
import json, sys
t = sys.argv[1]
d = json.load(open(t + "/here.json"))
assert d["format"] == "vmm-cpu-check/1", d["format"]
assert d["cpu"]["vendor"] and isinstance(d["cpu"]["family"], int)
assert d["kvm"] and len(d["kvm"]["cpuid"]) > 5, "no KVM CPUID"
feats = set(d["kvm"]["features"])
print("t-cpu-check: here: %s family 0x%x, %d KVM features" %
      (d["cpu"]["vendor"], d["cpu"]["family"], len(feats)))
old = json.loads(json.dumps(d))
dropped = []
for e in old["kvm"]["cpuid"]:
    if e["function"] == 7 and e["index"] == 0 and e["ebx"] & (1 << 5):
        e["ebx"] &= ~(1 << 5); dropped.append("avx2")
    if e["function"] == 1 and e["ecx"] & (1 << 20):
        e["ecx"] &= ~(1 << 20); dropped.append("sse4_2")
json.dump(old, open(t + "/old.json", "w"))
open(t + "/dropped", "w").write(" ".join(dropped))
other = json.loads(json.dumps(d))
other["cpu"]["vendor"] = "GenuineIntel" if d["cpu"]["vendor"] != "GenuineIntel" else "AuthenticAMD"
json.dump(other, open(t + "/other.json", "w"))
PY
ok "JSON has the fingerprint and KVM CPUID"
"$VMM" cpu-check --against "$T/here.json" >"$T/self.out" || fail "not compatible with itself"
grep -q '^compatible' "$T/self.out" || fail "$(cat "$T/self.out")"
ok "compatible with itself"
dropped=$(cat "$T/dropped")
if [ -n "$dropped" ]; then
	rc=0
	"$VMM" cpu-check --against "$T/old.json" >"$T/old.out" || rc=$?
	cat "$T/old.out"
	[ "$rc" = 1 ] || fail "older host: exit $rc, not 1"
	for f in $dropped; do grep -q "missing on .* $f\b\|missing on .*$f" "$T/old.out" || fail "$f not listed"; done
	ok "older host refused, missing features listed ($dropped)"
	"$VMM" cpu-check --from "$T/old.json" --against "$T/here.json" >/dev/null ||
		fail "a guest from the older host should run here"
	ok "--from the older host against this one: compatible"
fi
rc=0
"$VMM" cpu-check --against "$T/other.json" >"$T/other.out" || rc=$?
[ "$rc" = 1 ] && grep -q "CPU mismatch" "$T/other.out" || fail "other vendor: exit $rc: $(cat "$T/other.out")"
ok "other vendor refused"
echo '{"format":' >"$T/bad.json"
rc=0
"$VMM" cpu-check --against "$T/bad.json" 2>"$T/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "broken file: exit $rc, not 2"
ok "broken file: exit 2 ($(cat "$T/bad.err"))"
echo "t-cpu-check: all ok"
