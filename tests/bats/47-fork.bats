#!/usr/bin/env bats
# Issue 9, item 5: sbx-fork.  One source ($ID) with files, memory and a
# running process, forked once into two children shared by the tests that
# only look at them; the faults and limits use sandboxes of their own.
load helpers

bats_require_minimum_version 1.5.0

setup_file() {
	omr_setup_file
	export ID=$(new_sandbox --timeout 900 --idle-timeout 0 -m 320 -P 120 --allow example.org)
	[ -n "$ID" ] || return 1
	sbx-exec "$ID" -- sh -c 'echo on-disk-1f3a >/data/f; echo in-memory-77c2 >/tmp/m' || return 1
	# A process that keeps a count, which the children must inherit.
	sbx-exec -b "$ID" -c 'i=0; while :; do i=$((i+1)); echo $i >/tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done' >/dev/null || return 1
	sleep 1
	local out
	out=$(sbx-fork -n 2 --json "$ID") || { echo "sbx-fork: $out" >&2; return 1; }
	jq -r '.[].sandbox_id' <<<"$out" >>"$OMR_TRACK"
	export KIDS=$(jq -r '[.[].sandbox_id] | join(" ")' <<<"$out")
	export FORK_JSON=$out
}

teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() { omr_teardown; }

@test "fork: the children have the source's files, memory and running process; the source goes on" {
	set -- $KIDS
	[ $# -eq 2 ] || fail "sbx-fork -n 2 made $# sandboxes: $KIDS"
	for k in "$ID" "$@"; do
		assert_eq "$(sb_field "$k" state)" running "state of $k"
		run sbx-exec "$k" -- cat /data/f /tmp/m
		[ "$status" -eq 0 ] || fail "$k: $output"
		assert_eq "$output" $'on-disk-1f3a\nin-memory-77c2' "files of $k"
		c0=$(guest_counter "$k")
		sleep 0.6
		c1=$(guest_counter "$k")
		[ "$c1" -gt "$c0" ] || fail "the counter of $k stands still ($c0 -> $c1)"
		run sbx-exec --ps "$k"
		[ "$status" -eq 0 ]
		assert_contains "$output" "while :"
	done
	for k in "$@"; do
		assert_eq "$(sb_field "$k" forked_from)" "$ID"
		assert_eq "$(sb_field "$k" boot)" fork
	done
	# The fork's copies are gone once the children took them.
	[ -z "$(ls -A "$OMNIRUN_RUN_DIR/fork" "$OMNIRUN_STATE_DIR/fork" 2>/dev/null | grep -v ':$' | grep .)" ] ||
		fail "fork directories left: $(ls -R "$OMNIRUN_RUN_DIR/fork" "$OMNIRUN_STATE_DIR/fork")"
}

@test "fork: each child has its own id, hostname, address, RNG output and the host's clock (the source's is set after its copy)" {
	set -- $KIDS
	local seen="" k v h now t
	for k in "$ID" "$@"; do
		h=$(sbx-exec "$k" -- hostname)
		assert_eq "$h" "$k" "hostname of $k"
		v=$(sbx-exec "$k" -- sh -c 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n"')
		[ ${#v} -eq 64 ] || fail "no random bytes from $k: $v"
		[[ "$seen" != *"$v"* ]] || fail "$k drew the same random bytes as another"
		seen="$seen $v"
		a=$(sb_field "$k" network.address)
		[[ "$seen" != *" ip=$a "* ]] || fail "$k has the address $a of another"
		seen="$seen ip=$a "
		run sbx-exec "$k" -- sh -c "ip -4 addr show eth0 | grep -c 'inet $a/'"
		[ "$status" -eq 0 ] || fail "$k's guest does not have its address $a: $output"
		now=$(date +%s)
		t=$(sbx-exec "$k" -- date +%s)
		[ $((t - now)) -le 1 ] && [ $((now - t)) -le 1 ] || fail "$k's clock is $t, the host's $now"
	done
}

@test "fork: a write in one copy is seen in no other" {
	set -- $KIDS
	sbx-exec "$1" -- sh -c 'echo only-in-first >/data/mine; echo changed >/data/f'
	sbx-exec "$ID" -- sh -c 'echo only-in-source >/data/src'
	for k in "$ID" "$2"; do
		run sbx-exec "$k" -- cat /data/f
		assert_eq "$output" on-disk-1f3a "/data/f in $k"
		run sbx-exec "$k" -- test -e /data/mine
		[ "$status" -ne 0 ] || fail "the first child's file shows in $k"
	done
	for k in "$@"; do
		run sbx-exec "$k" -- test -e /data/src
		[ "$status" -ne 0 ] || fail "the source's new file shows in $k"
	done
}

@test "fork: children keep the source's limits, lifetime and network policy" {
	set -- $KIDS
	src_mem=$(sbx-exec "$ID" -- awk '/MemTotal/ {print $2}' /proc/meminfo)
	for k in "$@"; do
		for f in memory_mb cpus disk_mb processes timeout idle_timeout template network.mode; do
			assert_eq "$(sb_field "$k" "$f")" "$(sb_field "$ID" "$f")" "$f of $k"
		done
		assert_eq "$(sb_field "$k" memory_mb)" 320
		assert_eq "$(sbx-ls --json "$k" | jq -c '.[0].network.allow')" '["example.org"]'
		# The effects, in the guest: its memory and its process limit.
		assert_eq "$(sbx-exec "$k" -- awk '/MemTotal/ {print $2}' /proc/meminfo)" "$src_mem"
		assert_eq "$(sbx-exec "$k" -- cat /sys/fs/cgroup/omnirun-cmds/pids.max)" 120
		# The lifetime is the source's length, from the child's start.
		c=$(sbx-ls --json "$k" | jq -r '.[0] | ((.expires_at | fromdate) - (.created_at | fromdate))')
		assert_eq "$c" 900 "lifetime of $k"
	done
}

@test "fork of a paused sandbox: it stays paused, the child runs" {
	sbx-pause "$ID" >/dev/null
	run sbx-fork "$ID"
	sbx-resume "$ID" >/dev/null
	[ "$status" -eq 0 ] || fail "sbx-fork of a paused sandbox: $output"
	k=$output
	echo "$k" >>"$OMR_TRACK"
	assert_eq "$(sb_field "$k" state)" running
	run sbx-exec "$k" -- cat /data/f
	assert_eq "$output" on-disk-1f3a
	now=$(date +%s) t=$(sbx-exec "$k" -- date +%s)
	[ $((t - now)) -le 1 ] && [ $((now - t)) -le 1 ] || fail "the child's clock is $t, the host's $now"
	sbx-kill "$k"
}

@test "fork: bad input is refused clearly and starts nothing" {
	before=$(sbx-ls -q | wc -l)
	run sbx-fork
	[ "$status" -eq 2 ]
	assert_contains "$output" "missing sandbox id"
	for n in 0 17 x -1 ""; do
		run sbx-fork -n "$n" "$ID"
		[ "$status" -eq 2 ] || fail "-n '$n': status $status: $output"
	done
	run sbx-fork "$ID" "$ID"
	[ "$status" -eq 2 ]
	run sbx-fork sb_aaaaaaaaaa
	[ "$status" -eq 3 ] || fail "unknown id: status $status: $output"
	run sbx-fork ../../etc
	[ "$status" -ne 0 ]
	assert_contains "$output" "invalid"
	assert_eq "$(sbx-ls -q | wc -l)" "$before" "live sandboxes"
}

@test "fork of a stopped sandbox is 'no such live sandbox'" {
	id=$(new_sandbox --timeout 300)
	sbx-kill "$id"
	run sbx-fork "$id"
	[ "$status" -eq 3 ] || fail "status $status: $output"
	assert_contains "$output" "no such live sandbox"
}

@test "fork: the owner's limit counts every child, claimed before anything starts" {
	email=fork-$RANDOM$RANDOM@limit.test
	sbx-user add "$email" >/dev/null
	sbx-user limit "$email" 2 >/dev/null
	id=$(new_sandbox --timeout 300 --owner "$email")
	before=$(sbx-ls -q | wc -l)
	run sbx-fork -n 2 "$id"
	[ "$status" -eq 5 ] || fail "fork past the owner's limit: status $status: $output"
	assert_contains "$output" "limit"
	assert_eq "$(sbx-ls -q | wc -l)" "$before" "live sandboxes after the refusal"
	run sbx-fork "$id"
	[ "$status" -eq 0 ] || fail "fork within the limit: $output"
	echo "$output" >>"$OMR_TRACK"
	# The child is the owner's, and the fork is in their audit log.
	run sbx-user audit "$email"
	[ "$status" -eq 0 ]
	assert_contains "$output" fork
	assert_contains "$output" "$(tail -n1 "$OMR_TRACK")"
}

@test "fork: a source whose VMM does not answer fails in bounded time; the source is fine after, nothing is left" {
	id=$(new_sandbox --timeout 300)
	qemu=$(vmm_pid "$id")
	before=$(sbx-ls -q | wc -l)
	kill -STOP "$qemu"
	SECONDS=0
	run timeout 60 sbx-fork "$id"
	kill -CONT "$qemu"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "sbx-fork of a stuck VMM: status $status: $output"
	[ "$SECONDS" -lt 30 ] || fail "the refusal took $SECONDS s"
	assert_eq "$(sbx-ls -q | wc -l)" "$before" "live sandboxes"
	run sbx-exec "$id" -- echo alive
	assert_eq "$output" alive
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "fork: copies a dead sbx-fork left behind are found and removed by sbx-gc" {
	id=$(new_sandbox --timeout 300)
	qemu=$(vmm_pid "$id")
	kill -STOP "$qemu"
	sbx-fork "$id" >/dev/null 2>&1 &
	fpid=$!
	for _ in $(seq 100); do
		[ -n "$(ls -A "$OMNIRUN_RUN_DIR/fork" 2>/dev/null)" ] && break
		sleep 0.05
	done
	kill -9 "$fpid"
	wait "$fpid" 2>/dev/null || true
	# QEMU stays stopped until gc is done: the monitor's save times out
	# and never writes into what gc removes.
	key=$(ls "$OMNIRUN_RUN_DIR/fork")
	[ -n "$key" ] || fail "no fork directory appeared"
	# A fork made a moment ago is never taken for stale: age it.
	touch -d '-5 min' "$OMNIRUN_RUN_DIR/fork/$key" "$OMNIRUN_STATE_DIR/fork/$key"
	run sbx-gc --check
	[ "$status" -eq 1 ] || fail "gc --check found nothing: $output"
	assert_contains "$output" stale_fork
	run sbx-gc
	[ "$status" -eq 0 ] || fail "gc: $output"
	[ ! -e "$OMNIRUN_RUN_DIR/fork/$key" ] && [ ! -e "$OMNIRUN_STATE_DIR/fork/$key" ] ||
		fail "the fork's directories are still there"
	kill -CONT "$qemu"
	run sbx-exec "$id" -- echo alive
	assert_eq "$output" alive
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}
