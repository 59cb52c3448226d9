#!/usr/bin/env bats
# Processes killed at bad moments, a guest frozen past every timeout, a
# host reboot, and many create -> exec -> kill cycles: each ends in a
# defined state with nothing left behind.
load ../helpers

teardown() {
	for p in ${STOPPED:-}; do kill -CONT "$p" 2>/dev/null || true; done
	for id in $(sbx-ls -q 2>/dev/null); do sbx-kill "$id" >/dev/null 2>&1 || true; done
}

# Waits (at most 30 s) for sbx-gc --check to come back clean, cleaning
# on the way; fails with what is left.
gc_settles() {
	local i
	for i in $(seq 60); do
		sbx-gc --check >/dev/null 2>&1 && return 0
		sbx-gc >/dev/null 2>&1 || true
		sleep 0.5
	done
	run sbx-gc --check
	fail "leftovers: $output"
}

# The newest sandbox id in the state dir.
newest() { ls -t "$OMNIRUN_STATE_DIR/sandboxes" | grep '^sb_' | head -1; }

@test "kill -9 of QEMU during the boot and after: a clean failure or teardown" {
	for delay in 0.3 1 2; do
		sbx-create --timeout 120 >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
		pid=$!
		sleep "$delay"
		# The first moment QEMU is known after the delay.
		for i in $(seq 100); do
			id=$(newest)
			q=$(vmm_pid "$id")
			[ -n "$q" ] && [ "$q" != 0 ] && break
			sleep 0.05
		done
		kill -9 "$q"
		st=0; wait "$pid" || st=$?
		if [ "$st" -eq 0 ]; then
			# It was ready before the kill: the monitor tears it down.
			id=$(cat "$BATS_TEST_TMPDIR/out")
			for i in $(seq 50); do
				sbx-ls --json "$id" | grep -q '"state": "stopped"' && break
				sleep 0.2
			done
		else
			assert_eq "$st" 6 "create after QEMU was killed at ${delay}s: $(cat "$BATS_TEST_TMPDIR/err")"
		fi
		# A failed create leaves no record; a torn-down one a stopped one.
		shown=$(sbx-ls --json "$id" 2>/dev/null | grep -o '"state": "[a-z]*"' || true)
		[ -z "$shown" ] || [ "$shown" = '"state": "stopped"' ] || fail "$id: $shown"
		gc_settles
		assert_gone "$id"
	done
	# And a running one.
	id=$(sbx-create --timeout 120)
	kill -9 "$(vmm_pid "$id")"
	for i in $(seq 50); do
		sbx-ls --json "$id" | grep -q '"state": "stopped"' && break
		sleep 0.2
	done
	assert_contains "$(sbx-ls --json "$id")" '"end_reason": "vmm_exited"'
	run sbx-exec "$id" -- true
	[ "$status" -eq 125 ]
	assert_contains "$output" "not running"
	gc_settles
	assert_gone "$id"
}

@test "kill -9 of the monitor during the boot and after: nothing is left once gc ran" {
	for delay in 0.3 1 2; do
		sbx-create --timeout 120 >/dev/null 2>"$BATS_TEST_TMPDIR/err" &
		pid=$!
		sleep "$delay"
		id=$(newest)
		m=$(monitor_pid "$id")
		[ -n "$m" ] && [ "$m" != 0 ] && kill -9 "$m" 2>/dev/null || true
		st=0; wait "$pid" || st=$?
		# Its QEMU dies with it (PDEATHSIG); the record is lost or
		# failed, and gc settles it.
		gc_settles
		shown=$(sbx-ls --json "$id" 2>/dev/null | grep -o '"state": "[a-z]*"' || true)
		# A create that failed leaves a stopped record or none.
		[ "$st" -eq 0 ] || [ -z "$shown" ] || [ "$shown" = '"state": "stopped"' ] || fail "$id: $shown"
		sbx-kill "$id" >/dev/null 2>&1 || true
		gc_settles
		assert_gone "$id"
	done
	id=$(sbx-create --timeout 120)
	q=$(vmm_pid "$id")
	kill -9 "$(monitor_pid "$id")"
	for i in $(seq 50); do kill -0 "$q" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$q" 2>/dev/null || fail "QEMU outlived its monitor"
	run sbx-ls
	[[ "$output" == *"$id"*lost* ]] || fail "not shown lost: $output"
	run sbx-exec "$id" -- true
	[ "$status" -eq 125 ]
	assert_contains "$output" "is lost"
	gc_settles
	assert_contains "$(sbx-ls --json "$id")" '"end_reason": "gc"'
	assert_gone "$id"
}

@test "a guest frozen past every timeout still ends on time, and its clients too" {
	with_conf '[files]' 'timeout = 2'
	id=$(sbx-create --timeout 8)
	q=$(vmm_pid "$id")
	kill -STOP "$q"; STOPPED=$q
	t0=$(date +%s)
	run timeout 60 sbx-exec "$id" -- echo never
	t=$(($(date +%s) - t0))
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "exec: $status after ${t}s: $output"
	[ "$t" -le 20 ] || fail "exec held for ${t}s"
	run timeout 60 sbx-files "$id" ls /
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ]
	for i in $(seq 100); do
		sbx-ls --json "$id" | grep -q '"state": "stopped"' && break
		sleep 0.2
	done
	assert_contains "$(sbx-ls --json "$id")" '"end_reason": "timeout"'
	! kill -0 "$q" 2>/dev/null || fail "the frozen QEMU was not killed at the lifetime"
	STOPPED=
	gc_settles
	assert_gone "$id"
}

@test "a reboot (every process killed, the run dir gone) is reconciled by sbx-gc" {
	a=$(sbx-create --timeout 300)
	b=$(sbx-create --timeout 300)
	for id in $a $b; do
		kill -9 "$(monitor_pid "$id")" "$(vmm_pid "$id")" 2>/dev/null || true
	done
	rm -rf "$OMNIRUN_RUN_DIR"
	run sbx-ls
	[[ "$output" == *"$a"*lost* ]] && [[ "$output" == *"$b"*lost* ]] || fail "$output"
	run sbx-gc --check
	[ "$status" -eq 1 ]
	run sbx-gc
	[ "$status" -eq 0 ]
	run sbx-gc --check
	[ "$status" -eq 0 ]
	for id in $a $b; do
		assert_contains "$(sbx-ls --json "$id")" '"state": "stopped"'
		assert_gone "$id"
	done
	# And the host works as before: the run dir is made again.
	id=$(sbx-create --timeout 300)
	run sbx-exec "$id" -- echo back
	assert_eq "$output" "back"
	sbx-kill "$id"
	assert_eq "$(stat -c %a "$OMNIRUN_RUN_DIR")" "700"
}

@test "100 create -> exec -> kill cycles leave no fd, memory, process or disk behind" {
	n=${OMNIRUN_CYCLES:-100}
	fds() { awk '{print $1}' /proc/sys/fs/file-nr; }
	avail() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
	procs() { ls /proc | grep -c '^[0-9]'; }
	disk() { du -sk "$OMNIRUN_STATE_DIR/sandboxes" | cut -f1; }
	# One cycle first, so that caches (page cache of the kernel and
	# initrd, the accelerator probe) are warm before the baseline.
	id=$(sbx-create --timeout 120); sbx-exec "$id" -- true; sbx-kill "$id"
	f0=$(fds); m0=$(avail); p0=$(procs); d0=$(disk)
	for i in $(seq "$n"); do
		id=$(sbx-create --timeout 120) || fail "create $i failed"
		run sbx-exec "$id" -- echo "cycle $i"
		assert_eq "$output" "cycle $i"
		sbx-kill "$id" || fail "kill $i failed"
	done
	f1=$(fds); m1=$(avail); p1=$(procs); d1=$(disk)
	echo "# $n cycles: fds $f0 -> $f1, MemAvailable ${m0} -> ${m1} kB, processes $p0 -> $p1, state ${d0} -> ${d1} kB" >&3
	[ $((f1 - f0)) -le 64 ] || fail "open files grew by $((f1 - f0))"
	[ $((p1 - p0)) -le 8 ] || fail "processes grew by $((p1 - p0))"
	# Each stopped record keeps its small files (history); 100 of them
	# stay far under 8 MB.
	[ $((d1 - d0)) -le $((n * 80)) ] || fail "state grew by $((d1 - d0)) kB"
	[ $((m0 - m1)) -le 262144 ] || fail "MemAvailable fell by $((m0 - m1)) kB"
	[ -z "$(ls -A "$OMNIRUN_RUN_DIR/sandboxes")" ] || fail "runtime dirs left: $(ls "$OMNIRUN_RUN_DIR/sandboxes")"
	run sbx-gc --check
	[ "$status" -eq 0 ]
}
