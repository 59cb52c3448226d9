#!/usr/bin/env bats
# Issue "Boot real microVM sandboxes": create, list, kill, timeouts and
# every bad input, against real QEMU guests.
load helpers

@test "create prints only the id, ls shows it running, kill leaves nothing" {
	run --separate-stderr sbx-create --timeout 300
	[ "$status" -eq 0 ] || fail "create failed: $stderr"
	id=$output
	[[ "$id" =~ ^sb_[a-z2-7]{10}$ ]] || fail "stdout is not just an id: '$id'"
	run sbx-ls
	assert_contains "$output" "$id"
	run sbx-ls --json "$id"
	assert_contains "$output" '"state": "running"'
	pid=$(vmm_pid "$id")
	[ -n "$pid" ] && kill -0 "$pid" || fail "no live QEMU pid for $id"
	tr "\0" " " </proc/"$pid"/cmdline | grep -q -- "-sandbox on,obsolete=deny" || fail "QEMU without -sandbox"
	# The data disk is open in QEMU but has no name on the host.
	ls -l /proc/"$pid"/fd | grep -q '(deleted)' || fail "no unlinked disk in QEMU"
	! ls "$OMNIRUN_STATE_DIR/sandboxes/$id" | grep -q disk || fail "disk file has a name"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "kill failed: $output"
	! kill -0 "$pid" 2>/dev/null || fail "QEMU $pid still alive"
	run sbx-ls -q
	[[ "$output" != *"$id"* ]] || fail "ls still lists $id"
	run sbx-ls --json "$id"
	assert_contains "$output" '"state": "stopped"'
	assert_contains "$output" '"end_reason": "killed"'
	assert_gone "$id"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "killing a stopped sandbox should succeed"
}

@test "the guest's data disk is encrypted: host bytes are ciphertext" {
	id=$(sbx-create --timeout 300 --disk 64)
	pid=$(vmm_pid "$id")
	# Find the unlinked disk through QEMU's fds and look for a marker
	# the guest writes in the clear on /data.
	run sbx-exec "$id" -c 'for i in $(seq 200); do echo OMNIRUN-PLAINTEXT-MARKER; done > /data/m; sync; cat /proc/mounts | grep /data'
	[ "$status" -eq 0 ] || fail "exec failed: $output"
	assert_contains "$output" "/dev/mapper/omnirun-data"
	disk=$(ls -l /proc/"$pid"/fd | awk '/\(deleted\)/ {print $9}' | head -1)
	[ -n "$disk" ] || fail "no unlinked disk fd in QEMU"
	! grep -a -q OMNIRUN-PLAINTEXT-MARKER /proc/"$pid"/fd/"$disk" || fail "plaintext on the host disk"
	sbx-kill "$id"
	assert_gone "$id"
}

@test "two sandboxes at once never share an id, a lock or a file" {
	sbx-create --timeout 300 >"$BATS_TEST_TMPDIR/a" &
	sbx-create --timeout 300 >"$BATS_TEST_TMPDIR/b" &
	wait
	a=$(cat "$BATS_TEST_TMPDIR/a"); b=$(cat "$BATS_TEST_TMPDIR/b")
	[ -n "$a" ] && [ -n "$b" ] || fail "a create failed"
	[ "$a" != "$b" ] || fail "same id twice"
	[ "$(vmm_pid "$a")" != "$(vmm_pid "$b")" ] || fail "same QEMU"
	run sbx-exec "$a" -- echo hello-a
	assert_eq "$output" "hello-a"
	sbx-kill "$a" "$b"
	assert_gone "$a"
	assert_gone "$b"
}

@test "--timeout 5: the sandbox is gone by itself" {
	id=$(sbx-create --timeout 5)
	for _ in $(seq 60); do
		sbx-ls --json "$id" | grep -q '"state": "stopped"' && break
		sleep 0.5
	done
	run sbx-ls --json "$id"
	assert_contains "$output" '"end_reason": "timeout"'
	assert_gone "$id"
}

@test "bad input: unknown template" {
	run --separate-stderr sbx-create -t nosuch
	[ "$status" -eq 3 ] || fail "status $status"
	assert_contains "$stderr" "unknown template 'nosuch'"
	[ -z "$output" ]
	run sbx-create -t '../etc'
	[ "$status" -ne 0 ]
	assert_contains "$output" "invalid template name"
}

@test "bad input: sizes 0, negative, non-numeric, over the maximum" {
	before=$(sbx-ls -q -a | wc -l)
	for args in "--memory 0" "--memory -5" "--cpus 0" "--disk 0" "--timeout 0" "--memory 12x" "--cpus abc"; do
		run sbx-create $args
		[ "$status" -eq 2 ] || fail "$args: status $status"
		assert_contains "$output" "invalid"
	done
	run sbx-create --memory 999999
	[ "$status" -eq 2 ] || fail "status $status"
	assert_contains "$output" "must be between"
	run sbx-create --cpus 99
	assert_contains "$output" "cpu count"
	run sbx-create --disk 99999999
	assert_contains "$output" "disk"
	run sbx-create --bogus
	[ "$status" -eq 2 ]
	assert_contains "$output" "Try 'sbx-create --help'"
	assert_eq "$(sbx-ls -q -a | wc -l)" "$before" "records after bad creates"
}

@test "bad input: a template whose kernel is missing" {
	cp -a "$OMNIRUN_STATE_DIR/templates/tiny" "$OMNIRUN_STATE_DIR/templates/broken"
	sed -i 's/^name *=.*/name = broken/' "$OMNIRUN_STATE_DIR/templates/broken/template.conf"
	rm "$OMNIRUN_STATE_DIR/templates/broken/vmlinuz"
	run sbx-create -t broken
	[ "$status" -ne 0 ]
	assert_contains "$output" "vmlinuz"
	rm -rf "$OMNIRUN_STATE_DIR/templates/broken"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "fault: QEMU fails to start" {
	with_conf "[vmm]" "qemu = /bin/false"
	before=$(ls "$OMNIRUN_STATE_DIR/sandboxes" | wc -l)
	runs=$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)
	run sbx-create
	[ "$status" -eq 6 ] || fail "status $status: $output"
	assert_contains "$output" "QEMU exited"
	assert_eq "$(ls "$OMNIRUN_STATE_DIR/sandboxes" | wc -l)" "$before" "state dirs"
	assert_eq "$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)" "$runs" "runtime dirs"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "fault: the guest does not answer within the boot timeout" {
	with_conf "[vmm]" "boot_timeout = 1"
	qemus=$(pgrep -c -f "$OMNIRUN_RUN_DIR/sandboxes" || true)
	runs=$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)
	run sbx-create
	[ "$status" -eq 6 ] || fail "status $status: $output"
	assert_contains "$output" "did not answer within 1 s"
	assert_eq "$(pgrep -c -f "$OMNIRUN_RUN_DIR/sandboxes" || true)" "$qemus" "QEMU processes"
	assert_eq "$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)" "$runs" "runtime dirs"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "fault: a guest flooding its console cannot grow the host's disk" {
	with_conf "[vmm]" "console_log_max = 65536"
	id=$(sbx-create --timeout 300)
	run sbx-exec "$id" -c 'head -c 3000000 /dev/zero | tr "\0" x > /dev/console; echo done'
	assert_contains "$output" "done"
	sleep 1
	size=$(cat "$OMNIRUN_STATE_DIR/sandboxes/$id"/console.log* | wc -c)
	[ "$size" -le $((2 * 65536)) ] || fail "console logs hold $size bytes"
	sbx-kill "$id"
}

@test "sbx-kill and sbx-ls: unknown ids and usage" {
	run sbx-kill sb_aaaaaaaaaa
	[ "$status" -eq 3 ]
	assert_contains "$output" "no such sandbox"
	run sbx-kill '../../etc'
	[ "$status" -ne 0 ]
	assert_contains "$output" "invalid sandbox id"
	run sbx-kill
	[ "$status" -eq 2 ]
	run sbx-ls sb_aaaaaaaaaa
	[ "$status" -eq 3 ]
}

@test "sbx-doctor reports the host and the accelerator it will use" {
	run sbx-doctor
	[ "$status" -eq 0 ] || fail "$output"
	assert_contains "$output" "tcg"
	run sbx-doctor --json
	[ "$status" -eq 0 ]
	assert_contains "$output" "kvm"
}

@test "every program answers --help and --version" {
	for p in sbx-create sbx-ls sbx-kill sbx-gc sbx-exec sbx-files sbx-template sbx-doctor; do
		run "$p" --help
		[ "$status" -eq 0 ] || fail "$p --help: $status"
		assert_contains "$output" "Usage"
		run "$p" --version
		[ "$status" -eq 0 ] || fail "$p --version: $status"
	done
}

@test "sbx-gc finds and reaps a sandbox whose monitor died" {
	id=$(sbx-create --timeout 300)
	mpid=$(monitor_pid "$id")
	kill -9 "$mpid"
	sleep 0.5
	run sbx-gc --check
	[ "$status" -eq 1 ] || fail "gc --check found nothing: $output"
	assert_contains "$output" "$id"
	run sbx-gc
	[ "$status" -eq 0 ]
	assert_gone "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers after gc: $output"
}
