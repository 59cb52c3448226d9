#!/usr/bin/env bats
# Issue 9, items 4 and 6: pause and resume in memory, the lifetime
# (sbx-timeout) and the idle action.  One shared guest ($ID) for the
# tests that leave it running; the idle action and the kills need
# sandboxes of their own.
load helpers

bats_require_minimum_version 1.5.0

setup_file() {
	omr_setup_file
	export ID=$(new_sandbox --timeout 900 --idle-timeout 0)
	[ -n "$ID" ]
}

teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
# A test that failed halfway leaves the shared guest running for the next.
teardown() {
	[ -n "${BATS_TEST_COMPLETED:-}" ] || [ "$(sb_field "$ID" state 2>/dev/null)" != paused ] ||
		sbx-resume "$ID" >/dev/null 2>&1 || true
	omr_teardown
}

# Clock ticks (user + system) QEMU $1 used so far.
ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }

@test "pause stops the guest (a busy loop makes no progress, QEMU uses no CPU); resume goes on with the clock set" {
	sbx-exec -b "$ID" -c 'echo $$ >/tmp/loop.pid; i=0; while :; do i=$((i+1)); echo $i >/tmp/count; done' >/dev/null
	sleep 1
	c0=$(guest_counter "$ID")
	sbx-pause "$ID"
	assert_eq "$(sb_field "$ID" state)" paused
	[ "$(sb_field "$ID" paused_at)" != null ] || fail "no paused_at"
	qemu=$(vmm_pid "$ID")
	t0=$(ticks "$qemu"); sleep 3; t1=$(ticks "$qemu")
	# A running guest in that loop takes a whole core (300 ticks at 100
	# Hz); a stopped one next to nothing.
	[ $((t1 - t0)) -lt $(( $(getconf CLK_TCK) * 3 / 10 )) ] ||
		fail "QEMU used $((t1 - t0)) ticks in 3 s while paused"
	sleep 2.5
	sbx-resume "$ID"
	assert_eq "$(sb_field "$ID" state)" running
	# The guest's clock stood still for 5.5 s: it is the host's again.
	h0=$(date +%s); g=$(sbx-exec "$ID" -- date +%s); h1=$(date +%s)
	[ "$g" -ge $((h0 - 1)) ] && [ "$g" -le $((h1 + 1)) ] ||
		fail "guest clock $g, host $h0..$h1 after a 5.5 s pause"
	c1=$(guest_counter "$ID")
	sleep 3
	c2=$(guest_counter "$ID")
	sbx-exec "$ID" -c 'kill $(cat /tmp/loop.pid)'
	echo "# counter: $c0 before the pause, $c1 after 5.5 s paused, $c2 after 3 s running" >&3
	# 5.5 s paused moved it less than half of what 3 s running did.
	[ $((c2 - c1)) -gt 0 ] || fail "the loop does not go on after the resume ($c1 -> $c2)"
	[ $(( (c1 - c0) * 2 )) -lt $((c2 - c1)) ] ||
		fail "the loop went on while paused: $c0 -> $c1 paused, $c1 -> $c2 in 3 s running"
}

@test "while paused: commands and files are refused clearly; pause twice and resume twice are errors" {
	sbx-pause "$ID"
	run -125 timeout -k 2 20 sbx-exec "$ID" -- true
	assert_contains "$output" "is paused: resume it first"
	run -4 timeout -k 2 20 sbx-files "$ID" get /etc/hostname -
	assert_contains "$output" "is paused"
	run -4 sbx-pause "$ID"
	assert_contains "$output" "paused already"
	# The monitor still answers what is its own.
	run -0 sbx-ls --json "$ID"
	sbx-resume "$ID"
	run -4 sbx-resume "$ID"
	assert_contains "$output" "not paused"
	run -0 sbx-exec "$ID" -- true
	run -3 sbx-resume sb_aaaaaaaa
	assert_contains "$output" "no such sandbox"
	run -3 sbx-pause sb_aaaaaaaa
	run -2 sbx-pause
	run -2 sbx-pause "$ID" "$ID"
}

@test "sbx-timeout extends from now; 0, garbage and more than max_timeout are refused" {
	now=$(date +%s)
	run -0 sbx-timeout "$ID" 1800
	exp=$(date -d "$output" +%s)
	[ "$exp" -ge $((now + 1799)) ] && [ "$exp" -le $((now + 1803)) ] ||
		fail "expires at $output ($exp), asked now ($now) + 1800"
	assert_eq "$(date -d "$(sb_field "$ID" expires_at)" +%s)" "$exp"
	for bad in 0 -5 abc 12x 86401; do
		run -2 sbx-timeout "$ID" "$bad"
		assert_contains "$output" "timeout"
	done
	run -2 sbx-timeout "$ID"
	run -3 sbx-timeout sb_aaaaaaaa 60
	assert_eq "$(date -d "$(sb_field "$ID" expires_at)" +%s)" "$exp"
}

@test "idle action pause: idleness pauses (never kills), the idle timer does not run while paused; a shortened lifetime ends it paused" {
	run -2 sbx-create --idle-action nap
	id=$(new_sandbox --idle-timeout 2 --idle-action pause)
	assert_eq "$(sb_field "$id" idle_action)" pause
	wait_state "$id" paused 80
	# Three idle timeouts later, still paused, not killed.
	sleep 6
	assert_eq "$(sb_field "$id" state)" paused
	sbx-resume "$id"
	run -0 sbx-exec "$id" -- true
	# Idle again after the resume: paused again.
	wait_state "$id" paused 80
	# The paused time counts: a lifetime that ends while paused ends it.
	sbx-timeout "$id" 2
	wait_stopped "$id" 80
	assert_eq "$(sb_field "$id" end_reason)" timeout
	assert_gone "$id"
	run -3 sbx-resume "$id"
	assert_contains "$output" "stopped: timeout"
}

@test "kill -9 of the monitor of a paused sandbox: sbx-gc reconciles it" {
	id=$(new_sandbox)
	sbx-pause "$id"
	mon=$(monitor_pid "$id")
	kill -9 "$mon"
	# QEMU dies with its monitor (PDEATHSIG).
	for _ in $(seq 50); do pgrep -f "sandboxes/$id/" >/dev/null || break; sleep 0.1; done
	assert_eq "$(sb_field "$id" state)" lost
	run ! sbx-gc --check
	sbx-gc
	run -0 sbx-gc --check
	assert_eq "$(sb_field "$id" state)" stopped
	assert_gone "$id"
	run -3 sbx-resume "$id"
}

@test "kill -9 of QEMU while paused: the monitor tears the sandbox down" {
	sbx-pause "$ID"
	kill -9 "$(vmm_pid "$ID")"
	wait_stopped "$ID" 100
	assert_eq "$(sb_field "$ID" end_reason)" vmm_exited
	assert_gone "$ID"
	run -0 sbx-gc --check
	run -3 sbx-resume "$ID"
}
