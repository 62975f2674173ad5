#!/bin/bash
# The same stock-kernel guest (512 MiB, 2 vCPUs, 256 MiB filled by
# bench/dirtier) live-migrated over a unix socket by vmm and by QEMU
# (-accel kvm, max-bandwidth unlimited, both with a 100 ms downtime limit),
# idle and dirtying 20k pages/s, ROUNDS (3) times each, vmm and QEMU one
# after the other in each round, taking turns at going first.
# Prints downtime, total time and bytes sent, and the ratios vmm/QEMU (lower
# is better for vmm), per round and as medians of the rounds. Downtime twice:
# as each reports it in query-migrate, where QEMU's source counts until it has
# sent the last byte but vmm's until the destination runs the guest; and
# measured the same way for both, from the source's STOP event to the
# destination's RESUME event, by the events' timestamps. And each
# process's peak memory beyond guest RAM during the migration (all resident
# memory but the 512 MiB guest RAM mapping, from smaps), against the budget
# of 16 MiB + 1% of guest RAM (vmm only: QEMU maps its guest RAM differently,
# so the same figure means nothing for it). And each one's total time against
# the floor under it: how long plain send()/recv() over a unix socket, in the
# same boot, takes to move as many bytes as it sent (bench/sockfloor), once
# through a buffer in cache and once from distinct RAM into fresh RAM, as a
# migration's destination receives. Without
# /dev/kvm it runs each round inside a fresh nested-KVM sandbox, where only
# the ratios mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOADS=${WORKLOADS:-"0 20000"}
ROUNDS=${ROUNDS:-3}

# median: of the numbers on stdin; of an even count, the mean of the middle two.
median() {
	tr ' ' '\n' | sort -g | awk '{v[NR] = $1} END {
		printf "%.2f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# medians LABEL LINES...: the medians of the rounds' "ratios:" lines.
medians() {
	local label=$1 n=0 rd=() rt=() rb=() rc=() rg=() rfv=() rfq=() rxv=() rxq=()
	shift
	for l in "$@"; do
		read -r _ d t b c g fv fq xv xq <<<"$l"
		rd+=("$d") rt+=("$t") rb+=("$b") rc+=("$c") rg+=("$g") rfv+=("$fv") rfq+=("$fq")
		rxv+=("$xv") rxq+=("$xq")
		n=$((n + 1))
	done
	echo "$label, median of $n rounds (vmm/QEMU): downtime $(echo "${rd[*]}" | median)" \
		"(STOP to RESUME $(echo "${rg[*]}" | median)), total time $(echo "${rt[*]}" | median)," \
		"bytes $(echo "${rb[*]}" | median), CPU used $(echo "${rc[*]}" | median);" \
		"total time against the floor: vmm $(echo "${rfv[*]}" | median)," \
		"QEMU $(echo "${rfq[*]}" | median); into fresh RAM: vmm $(echo "${rxv[*]}" | median)," \
		"QEMU $(echo "${rxq[*]}" | median)"
}

# Nested KVM under emulation now and then wedges the sandbox while a guest
# boots (no output at all for minutes): a round whose sandbox wedged is run
# again in a new one, up to twice.
if [ ! -w /dev/kvm ] && [ -z "${VMM_IN_SANDBOX:-}" ]; then
	bash scripts/build.sh >/dev/null
	echo "bench: no /dev/kvm here; each round runs in a fresh nested-KVM sandbox"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	for rate in $WORKLOADS; do
		label=$([ "$rate" = 0 ] && echo idle || echo "dirtying $rate pages/s")
		lines=()
		for round in $(seq 1 "$ROUNDS"); do
			for try in 1 2 3; do
				rc=0
				SANDBOX_STALL=240 bash test/sandbox/sandbox.sh --timeout 1500 -- \
					env VMM_IN_SANDBOX=1 WORKLOADS="$rate" ROUNDS=1 FIRST_ROUND=$round \
					bash bench/migrate.sh >"$out" 2>&1 || rc=$?
				[ "$rc" -eq 125 ] && [ "$try" -lt 3 ] || break
				echo "bench: $label, round $round: the sandbox wedged; again"
			done
			if [ "$rc" -ne 0 ]; then
				cat "$out"
				echo "bench: round failed ($rc)" >&2
				exit 1
			fi
			sed -n 's/, round 1\([ :]\)/, round '"$round"'\1/p' "$out"
			lines+=("$(grep '^ratios:' "$out")")
		done
		medians "$label" "${lines[@]}"
	done
	exit 0
fi
KERNEL=$(ls /boot/vmlinuz-* | sort -V | tail -1)
L=$(mktemp -d /run/vmm-bench.XXXXXX 2>/dev/null || mktemp -d)
# The interpreter itself, not a version manager's shim: under emulation a
# shim's shell start-up costs seconds of the CPU the migration shares.
PY=$(python3 -c 'import sys; print(sys.executable)')
QMP="$PY bench/qmp.py"
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$L"' EXIT

# In a fresh sandbox, memory costs more the first time it is used, and the
# first migration of a boot paid for it: idle, vmm took 6.2-8.4 s first and
# 4.6-5.3 s after; QEMU 6.3 s first and 5.2 s second (in another boot). Until
# now vmm always went first. So the memory the two guests will use is written
# once before the first round (14 s; vmm's first migration then took 4.7 s),
# and vmm and QEMU take turns at going first.
if [ -n "${VMM_IN_SANDBOX:-}" ]; then
	dd if=/dev/zero of=/dev/shm/vmm-bench-warm bs=1M count=1536 status=none
	rm -f /dev/shm/vmm-bench-warm
fi

# The default initramfs plus /bin/dirtier, as a second concatenated cpio.
mkdir -p "$L/root/bin"
gcc -O2 -static -o "$L/root/bin/dirtier" bench/dirtier.c
(cd "$L/root" && find . | cpio -o -H newc --quiet | gzip) >"$L/extra.gz"
cat build/guest/initramfs.img "$L/extra.gz" >"$L/initrd.img"

wait_log() {
	for i in $(seq 1 3000); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		# the sandbox's watchdog wants a line every 300 s
		[ $((i % 600)) -ne 0 ] || echo "bench: still waiting for '$2'" >&2
		sleep 0.1
	done
	echo "bench: timed out waiting for '$2' in $1" >&2; tail -5 "$1" "$L"/*.out >&2; exit 1
}

# field JSON PATH: prints a number from query-migrate's answer.
field() { "$PY" -c "import json,sys; d=json.loads(sys.argv[1]); print(eval('d'+sys.argv[2]))" "$1" "$2"; }

# one PEER RATE: migrates once, prints "downtime_ms total_ms bytes src_kib dst_kib
# passes cpu_ms stopped_ms detail" (src_kib, dst_kib: peak memory beyond guest
# RAM of each side during the migration; passes: dirty-sync-count; cpu_ms: CPU
# time both processes, guest included, used from the migrate command to the
# end; stopped_ms: from the source's STOP event to the destination's RESUME;
# detail:
# vmm's downtime breakdown, the downtime it expected at switchover and the
# highest throttle auto-converge set).
one() {
	local peer=$1 rate=$2 cmd="console=ttyS0 vmm.run=\"/bin/dirtier 256 $2 &\"" r thr
	rm -f "$L"/*.qmp "$L"/*.mig "$L"/*.log
	if [ "$peer" = vmm ]; then
		build/vmm run --memory 512M --cpus 2 --qmp "unix:$L/d.qmp" --serial "file:$L/d.log" \
			--incoming "unix:$L/m.mig" >"$L/d.out" 2>&1 &
		pids+=($!)
		build/vmm run --memory 512M --cpus 2 --qmp "unix:$L/s.qmp" --serial "file:$L/s.log" \
			--kernel "$KERNEL" --initrd "$L/initrd.img" --cmdline "$cmd" >"$L/s.out" 2>&1 &
		pids+=($!)
		bw=0
	else
		local q=(qemu-system-x86_64 -accel kvm -cpu host -m 512 -smp 2 -nodefaults -display none
			 -kernel "$KERNEL" -initrd "$L/initrd.img" -append "$cmd")
		"${q[@]}" -qmp "unix:$L/d.qmp,server=on,wait=off" -serial "file:$L/d.log" \
			-incoming "unix:$L/m.mig" >"$L/d.out" 2>&1 &
		pids+=($!)
		"${q[@]}" -qmp "unix:$L/s.qmp,server=on,wait=off" -serial "file:$L/s.log" >"$L/s.out" 2>&1 &
		pids+=($!)
		bw=10737418240
	fi
	echo "bench: $peer, $rate pages/s: booting" >&2
	wait_log "$L/s.log" "dirtier: ready"
	echo "bench: $peer: guest ready, migrating" >&2
	sleep 2
	$QMP "$L/s.qmp" migrate-set-parameters "{\"downtime-limit\":100,\"max-bandwidth\":$bw}" >/dev/null
	r=$(BENCH_DST_QMP="$L/d.qmp" $QMP "$L/s.qmp" migrate-wait "{\"uri\":\"unix:$L/m.mig\"}" 400 "${pids[1]}" "${pids[0]}")
	[ "$(field "$r" '["status"]')" = completed ] || { echo "bench: $peer migration: $r" >&2; exit 1; }
	[ "$(field "$r" '["bench"]["stop-to-resume-ms"]')" != None ] ||
		{ echo "bench: $peer: no STOP event from the source or RESUME from the destination" >&2; exit 1; }
	# the highest vCPU throttle auto-converge set (vmm logs it every pass;
	# QEMU runs with its default, auto-converge off)
	thr=$(sed -n 's/.*, throttle \([0-9]*\)%$/\1/p' "$L/s.out" | sort -n | tail -1)
	thr=${thr:-0}
	$QMP "$L/d.qmp" quit >/dev/null 2>&1 || true
	$QMP "$L/s.qmp" quit >/dev/null 2>&1 || true
	wait 2>/dev/null || true
	pids=()
	echo "$(field "$r" '["downtime"]') $(field "$r" '["total-time"]') $(field "$r" '["ram"]["transferred"]')" \
		"$(field "$r" '["bench"]["peak-kib"][0]') $(field "$r" '["bench"]["peak-kib"][1]')" \
		"$(field "$r" '["ram"]["dirty-sync-count"]') $(field "$r" '["bench"]["cpu-ms"]')" \
		"$(field "$r" '["bench"]["stop-to-resume-ms"]')" \
		"$(field "$r" '.get("x-downtime-breakdown", "-")' | tr -d " '{}")/expected:$(field "$r" '.get("x-expected-downtime", "-")')/throttle:$thr%"
}

ratio() { "$PY" -c "import sys; print(f'{float(sys.argv[1])/max(float(sys.argv[2]),1e-9):.2f}')" "$1" "$2"; }

# floor_rate [--fresh]: MiB/s that plain send()/recv() moves over a unix
# socket here and now (bench/sockfloor, the better of two runs of 256 MiB):
# no migration over such a socket moves its bytes faster. With --fresh, from
# distinct RAM into RAM not yet touched, as a migration's destination gets it.
floor_rate() {
	for i in 1 2; do
		build/bench/sockfloor "$@" 256 | sed -n 's/.*, \([0-9]*\) MiB\/s\( (.*)\)\?$/\1/p'
	done | sort -n | tail -1
}

# floor_ms BYTES RATE: how long RATE MiB/s takes to move BYTES.
floor_ms() { "$PY" -c "import sys; print(round(int(sys.argv[1]) / 1048576 / float(sys.argv[2]) * 1000))" "$1" "$2"; }

# ROUNDS rounds of each workload, vmm and QEMU taking turns; a line per
# round, then the medians of the per-round ratios (the sandbox's figures
# swing by tens of percent from run to run).
for rate in $WORKLOADS; do
	label=$([ "$rate" = 0 ] && echo idle || echo "dirtying $rate pages/s")
	lines=()
	for round in $(seq 1 "$ROUNDS"); do
		first=$([ $(((round + ${FIRST_ROUND:-1}) % 2)) = 0 ] && echo vmm || echo QEMU)
		if [ "$first" = vmm ]; then
			v=$(one vmm "$rate")
			q=$(one qemu "$rate")
		else
			q=$(one qemu "$rate")
			v=$(one vmm "$rate")
		fi
		read -r vd vt vb vms vmd vp vc vg vx <<<"$v"
		read -r qd qt qb _ _ qp qc qg _ <<<"$q"
		rd=$(ratio "$vd" "$qd") rt=$(ratio "$vt" "$qt")
		rb=$(ratio "$vb" "$qb") rc=$(ratio "$vc" "$qc") rg=$(ratio "$vg" "$qg")
		fr=$(floor_rate) xr=$(floor_rate --fresh)
		[ -n "$fr" ] && [ -n "$xr" ] || { echo "bench: bench/sockfloor measured nothing" >&2; exit 1; }
		fv=$(floor_ms "$vb" "$fr") fq=$(floor_ms "$qb" "$fr")
		xv=$(floor_ms "$vb" "$xr") xq=$(floor_ms "$qb" "$xr")
		rfv=$(ratio "$vt" "$fv") rfq=$(ratio "$qt" "$fq")
		rxv=$(ratio "$vt" "$xv") rxq=$(ratio "$qt" "$xq")
		lines+=("ratios: $rd $rt $rb $rc $rg $rfv $rfq $rxv $rxq")
		echo "$label, round $round ($first first): downtime vmm ${vd} ms / qemu ${qd} ms = $rd;" \
			"STOP to RESUME vmm ${vg} ms / qemu ${qg} ms = $rg;" \
			"total vmm ${vt} ms / qemu ${qt} ms = $rt;" \
			"bytes vmm $((vb >> 20)) MiB / qemu $((qb >> 20)) MiB = $rb;" \
			"passes vmm $vp / qemu $qp; CPU used vmm ${vc} ms / qemu ${qc} ms = $rc"
		echo "$label, round $round: total time against the floor, each side's bytes moved by" \
			"plain send()/recv() over a unix socket here ($fr MiB/s, bench/sockfloor):" \
			"vmm ${vt} ms / ${fv} ms = $rfv; QEMU ${qt} ms / ${fq} ms = $rfq;" \
			"from distinct RAM into fresh RAM ($xr MiB/s): vmm ${vt} ms / ${xv} ms = $rxv;" \
			"QEMU ${qt} ms / ${xq} ms = $rxq"
		echo "$label, round $round: vmm downtime ${vd} ms against a limit of 100 ms:" \
			"${vx%/throttle:*}; vCPUs throttled by up to ${vx##*/throttle:} (auto-converge;" \
			"QEMU ran with its default, no auto-converge)"
		echo "$label, round $round: memory beyond guest RAM (peak during migration): vmm" \
			"source $((vms / 1024)) MiB, destination $((vmd / 1024)) MiB (budget" \
			"$(( (16 * 1024 + 512 * 1024 / 100) / 1024 )) MiB = 16 MiB + 1% of 512 MiB;" \
			"ratio $(ratio "$(( vms > vmd ? vms : vmd ))" $(( 16 * 1024 + 512 * 1024 / 100 ))))"
	done
	printf '%s\n' "${lines[@]}"
	medians "$label" "${lines[@]}"
done
