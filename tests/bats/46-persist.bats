#!/usr/bin/env bats
# Issue 9, items 4 and 6: sbx-pause --persist (encrypted at rest, no VMM
# and no monitor left), sbx-resume from the image, the idle action
# persist, sbx-gc --boot, and the faults: a damaged image, another host's
# key, a full filesystem.
load helpers

bats_require_minimum_version 1.5.0

setup() { omr_setup; }
teardown() {
	mountpoint -q "$BATS_TEST_TMPDIR/mnt" 2>/dev/null && umount "$BATS_TEST_TMPDIR/mnt"
	for m in $(awk -v d="$OMNIRUN_STATE_DIR" '$2 ~ "^" d {print $2}' /proc/mounts); do umount "$m"; done
	omr_teardown
}

pdir() { echo "$OMNIRUN_STATE_DIR/sandboxes/$1/persist"; }
clock_ok() {
	local now t
	now=$(date +%s) t=$(sbx-exec "$1" -- date +%s)
	[ $((t - now)) -le 1 ] && [ $((now - t)) -le 1 ] || fail "$1's clock is $t, the host's $now"
}

@test "persist: encrypted at rest, nothing of it runs; resume: its files, memory and running process, the clock set, the lifetime frozen" {
	id=$(new_sandbox --timeout 900)
	sbx-exec "$id" -- sh -c 'echo DISKMARK-51c0e2 >/data/f; echo MEMMARK-8a7f31 >/tmp/m'
	sbx-exec -b "$id" -c 'i=0; while :; do i=$((i+1)); echo $i >/tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done' >/dev/null
	sleep 1
	c0=$(guest_counter "$id")
	left0=$(( $(date -d "$(sb_field "$id" expires_at)" +%s) - $(date +%s) )) t0=$(date +%s)
	run sbx-pause --persist --json "$id"
	[ "$status" -eq 0 ] || fail "persist: $output"
	assert_eq "$(jq -r .state <<<"$output")" persisted
	assert_eq "$(sb_field "$id" state)" persisted
	# Nothing of it runs: no QEMU, no monitor, no runtime dir.
	! pgrep -f "$id" >/dev/null || fail "a process of $id still runs: $(pgrep -af "$id")"
	[ ! -e "$OMNIRUN_RUN_DIR/sandboxes/$id" ] || fail "its runtime dir is still there"
	run sbx-ls
	assert_contains "$output" "$id"
	assert_contains "$output" persisted
	# At rest: the image is there, private, and neither marker shows in it.
	for f in state disk key meta; do
		[ -f "$(pdir "$id")/$f" ] || fail "no $f in the image"
	done
	assert_eq "$(stat -c %a "$(pdir "$id")")" 700
	assert_eq "$(stat -c %a "$(pdir "$id")/state")" 600
	assert_eq "$(stat -c %a "$OMNIRUN_HOST_KEY")" 400
	[ "$(stat -c %s "$(pdir "$id")/state")" -gt 1000000 ] || fail "the state is too small to be the memory"
	run grep -rlaF -e MEMMARK-8a7f31 -e DISKMARK-51c0e2 "$(pdir "$id")"
	[ "$status" -eq 1 ] || fail "plaintext in the image: $output"
	# Persisted is not lost: gc, and gc at boot, leave it alone.
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
	sleep 4
	run sbx-resume --json "$id"
	[ "$status" -eq 0 ] || fail "resume: $output"
	assert_eq "$(sb_field "$id" state)" running
	run sbx-exec "$id" -- cat /data/f /tmp/m
	assert_eq "$output" $'DISKMARK-51c0e2\nMEMMARK-8a7f31'
	c1=$(guest_counter "$id")
	[ "$c1" -ge "$c0" ] || fail "the counter went back ($c0 -> $c1)"
	sleep 0.6
	c2=$(guest_counter "$id")
	[ "$c2" -gt "$c1" ] || fail "the process does not run after the resume ($c1 -> $c2)"
	clock_ok "$id"
	# The lifetime stood still for the 4 s (and more) it was persisted: it
	# lost at most the time it ran (persisting, resuming, the checks),
	# however slow the host.  Had it run on, it would have lost all.
	left1=$(( $(date -d "$(sb_field "$id" expires_at)" +%s) - $(date +%s) )) t1=$(date +%s)
	[ $((left0 - left1)) -le $((t1 - t0 - 2)) ] ||
		fail "the lifetime ran on while persisted: $left0 s left before, $left1 after, $((t1 - t0)) s apart"
	[ ! -e "$(pdir "$id")" ] || fail "the image is still there after the resume"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}

@test "persist: a paused one too; while persisted, commands and pause are refused; kill removes the image; resume of a killed one is not found" {
	id=$(new_sandbox --timeout 900)
	sbx-exec "$id" -- sh -c 'echo p >/data/p'
	sbx-pause "$id" >/dev/null
	run sbx-pause --persist "$id"
	[ "$status" -eq 0 ] || fail "persist of a paused one: $output"
	run sbx-pause --persist "$id"
	[ "$status" -eq 4 ] || fail "persist of a persisted one: $status: $output"
	assert_contains "$output" "persisted already"
	run sbx-pause "$id"
	[ "$status" -eq 4 ]
	run sbx-exec "$id" -- true
	[ "$status" -ne 0 ]
	assert_contains "$output" persisted
	run sbx-fork "$id"
	[ "$status" -ne 0 ]
	sbx-resume "$id" >/dev/null
	run sbx-exec "$id" -- cat /data/p
	assert_eq "$output" p
	sbx-pause -p "$id" >/dev/null
	sbx-kill "$id"
	[ ! -e "$(pdir "$id")" ] || fail "the image outlived the kill"
	assert_gone "$id"
	run sbx-resume "$id"
	[ "$status" -eq 3 ] || fail "resume of a killed one: $status: $output"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}

@test "persist: a damaged image or another host's key is refused clearly and stays persisted" {
	id=$(new_sandbox --timeout 900)
	sbx-exec "$id" -- sh -c 'echo kept >/data/k'
	sbx-pause -p "$id" >/dev/null
	# Another host's key: the sandbox's key does not open.
	run env OMNIRUN_HOST_KEY="$BATS_TEST_TMPDIR/other.key" sbx-resume "$id"
	[ "$status" -ne 0 ] || fail "resumed with another host's key"
	[ ! -e "$BATS_TEST_TMPDIR/other.key" ] || fail "a resume made a host key"
	assert_contains "$output" "host key"
	head -c 32 /dev/urandom >"$BATS_TEST_TMPDIR/other.key"
	chmod 400 "$BATS_TEST_TMPDIR/other.key"
	run env OMNIRUN_HOST_KEY="$BATS_TEST_TMPDIR/other.key" sbx-resume "$id"
	[ "$status" -eq 4 ] || fail "resume with another host's key: $status: $output"
	assert_contains "$output" "another host"
	assert_eq "$(sb_field "$id" state)" persisted
	# One flipped byte in the middle of the state.
	st=$(pdir "$id")/state
	cp "$st" "$BATS_TEST_TMPDIR/state.good"
	off=$(( $(stat -c %s "$st") / 2 ))
	printf '\x5a' | dd of="$st" bs=1 seek="$off" conv=notrunc status=none
	cmp -s "$st" "$BATS_TEST_TMPDIR/state.good" && printf '\xa5' | dd of="$st" bs=1 seek="$off" conv=notrunc status=none
	run sbx-resume "$id"
	[ "$status" -eq 4 ] || fail "resume of a damaged image: $status: $output"
	assert_contains "$output" "damaged"
	assert_eq "$(sb_field "$id" state)" persisted
	! pgrep -f "$id" >/dev/null || fail "a process of $id runs after the refusal"
	# Cut short.
	head -c $(( $(stat -c %s "$BATS_TEST_TMPDIR/state.good") - 100 )) "$BATS_TEST_TMPDIR/state.good" >"$st"
	run sbx-resume "$id"
	[ "$status" -eq 4 ] || fail "resume of a cut image: $status: $output"
	assert_eq "$(sb_field "$id" state)" persisted
	# The good image again: it resumes.
	cp "$BATS_TEST_TMPDIR/state.good" "$st"
	run sbx-resume "$id"
	[ "$status" -eq 0 ] || fail "resume of the good image: $output"
	run sbx-exec "$id" -- cat /data/k
	assert_eq "$output" kept
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}

@test "persist on a full filesystem fails clearly; the sandbox runs on and nothing is left" {
	id=$(new_sandbox --timeout 900)
	sbx-exec "$id" -- sh -c 'echo still >/data/s'
	mkdir -p "$(pdir "$id")"
	mount -t tmpfs -o size=8m,mode=0700 omr-persist-test "$(pdir "$id")"
	run sbx-pause --persist "$id"
	[ "$status" -ne 0 ] || fail "persist into 8 MB succeeded"
	assert_contains "$output" "No space left"
	assert_eq "$(sb_field "$id" state)" running
	run sbx-exec "$id" -- cat /data/s
	assert_eq "$output" still
	clock_ok "$id"
	assert_eq "$(ls -A "$(pdir "$id")")" ""
	umount "$(pdir "$id")"
	rmdir "$(pdir "$id")" 2>/dev/null || true
	run sbx-pause --persist "$id"
	[ "$status" -eq 0 ] || fail "persist with room: $output"
	sbx-kill "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}

@test "idle action persist: an idle sandbox is persisted, then resumes as it was" {
	id=$(new_sandbox --timeout 900 --idle-timeout 2 --idle-action persist)
	assert_eq "$(sb_field "$id" idle_action)" persist
	sbx-exec "$id" -- sh -c 'echo idle >/data/i'
	wait_state "$id" persisted 150
	! pgrep -f "$id" >/dev/null || fail "a process of $id still runs"
	run sbx-resume "$id"
	[ "$status" -eq 0 ] || fail "resume: $output"
	run sbx-exec "$id" -- cat /data/i
	assert_eq "$output" idle
}

@test "sbx-gc --boot: sandboxes that died with the host are stopped (host_reboot), persisted ones stay resumable; a resume that died is persisted again" {
	dead=$(new_sandbox --timeout 900)
	kept=$(new_sandbox --timeout 900)
	sbx-exec "$kept" -- sh -c 'echo boot >/data/b'
	sbx-pause -p "$kept" >/dev/null
	# The host "dies": the monitor and QEMU are gone at once.
	mpid=$(monitor_pid "$dead") qpid=$(vmm_pid "$dead")
	kill -9 "$mpid" "$qpid"
	sleep 0.5
	run sbx-gc --check
	[ "$status" -eq 1 ]
	assert_contains "$output" "$dead"
	[[ "$output" != *"$kept"* ]] || fail "gc takes the persisted one for lost: $output"
	run sbx-gc --boot
	[ "$status" -eq 0 ] || fail "gc --boot: $output"
	assert_eq "$(sb_field "$dead" state)" stopped
	assert_eq "$(sb_field "$dead" end_reason)" host_reboot
	assert_eq "$(sb_field "$kept" state)" persisted
	# A resume that died midway: the record says starting, nobody serves it.
	sed -i 's/^state = persisted$/state = starting/' "$OMNIRUN_STATE_DIR/sandboxes/$kept/sandbox.conf"
	run sbx-gc --check
	[ "$status" -eq 1 ]
	assert_contains "$output" "interrupted_resume $kept"
	run sbx-gc
	[ "$status" -eq 0 ] || fail "gc: $output"
	assert_eq "$(sb_field "$kept" state)" persisted
	run sbx-resume "$kept"
	[ "$status" -eq 0 ] || fail "resume: $output"
	run sbx-exec "$kept" -- cat /data/b
	assert_eq "$output" boot
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}

@test "persist: a monitor killed halfway leaves a lost sandbox that sbx-gc reaps whole, image and all" {
	id=$(new_sandbox --timeout 900)
	mpid=$(monitor_pid "$id") qpid=$(vmm_pid "$id")
	sbx-pause --persist "$id" >/dev/null 2>&1 &
	for _ in $(seq 300); do
		[ -e "$(pdir "$id")/state" ] && break
		sleep 0.01
	done
	[ -e "$(pdir "$id")/state" ] || fail "the persist never started writing"
	kill -9 "$mpid" "$qpid"
	wait || true
	[ "$(sb_field "$id" state)" != persisted ] || fail "persisted although its monitor was killed before the end"
	run sbx-gc --check
	[ "$status" -eq 1 ]
	assert_contains "$output" "lost_sandbox $id"
	run sbx-gc
	[ "$status" -eq 0 ] || fail "gc: $output"
	assert_eq "$(sb_field "$id" state)" stopped
	[ ! -e "$(pdir "$id")" ] || fail "the half-written image outlived the reap"
	assert_gone "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc --check: $output"
}
