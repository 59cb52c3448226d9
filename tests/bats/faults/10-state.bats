#!/usr/bin/env bats
# Faults of the host side: hostile destinations for downloads, unbounded
# transfers, corrupt records, creators that die, full filesystems, dirs
# that are not ours, messages.  Each test checks the effect itself.
load ../helpers

setup_file() {
	export ID=$(sbx-create --timeout 900 --disk 256)
	[ -n "$ID" ]
	# A 3 MiB file of known content for the downloads.
	sbx-exec "$ID" -- dd if=/dev/urandom of=/data/three bs=1M count=3 2>/dev/null
	export THREE_SUM=$(sbx-exec "$ID" -c 'sha256sum /data/three' | cut -d' ' -f1)
}

teardown_file() {
	sbx-kill "$ID" >/dev/null 2>&1 || true
}

# Every sandbox a test makes besides the shared one, killed whatever happens.
teardown() {
	for id in ${MADE:-}; do sbx-kill "$id" >/dev/null 2>&1 || true; done
	for m in ${MOUNTS:-}; do umount -l "$m" 2>/dev/null || true; done
	for p in ${STOPPED:-}; do kill -CONT "$p" 2>/dev/null || true; done
	omr_teardown
}
setup() { omr_setup; }

# Files in dir other than the ones named: leftovers of a download.
leftovers() { (cd "$1" && ls -A | grep -v -x -F -e "${2:-}" || true); }

@test "get never replaces a device, a FIFO or a read-only file; refuses links and directories" {
	d=$BATS_TEST_TMPDIR
	sbx-exec "$ID" -c 'echo guest-data > /tmp/small'
	# A device node the test owns (the host's /dev/null is not risked).
	mknod "$d/null" c 1 3
	run sbx-files "$ID" get /tmp/small "$d/null"
	[ "$status" -eq 0 ]
	[ -c "$d/null" ] || fail "the device was replaced: $(stat -c %F "$d/null")"
	# A FIFO is written in place: its reader gets the bytes.
	mkfifo "$d/fifo"
	cat "$d/fifo" >"$d/fifo.out" &
	run sbx-files "$ID" get /tmp/small "$d/fifo"
	[ "$status" -eq 0 ]
	wait
	[ -p "$d/fifo" ] || fail "the FIFO was replaced"
	assert_eq "$(cat "$d/fifo.out")" "guest-data"
	# A read-only file is refused unless -f, and kept as it was.
	echo keep >"$d/ro"; chmod 0444 "$d/ro"
	run sbx-files "$ID" get /tmp/small "$d/ro"
	[ "$status" -eq 1 ]
	assert_contains "$output" "read-only"
	assert_eq "$(cat "$d/ro")" "keep"
	assert_eq "$(stat -c %a "$d/ro")" "444"
	run sbx-files "$ID" get -f /tmp/small "$d/ro"
	[ "$status" -eq 0 ]
	assert_eq "$(cat "$d/ro")" "guest-data"
	# A symbolic link is refused; its target is untouched.
	echo target >"$d/target"; ln -s "$d/target" "$d/link"
	run sbx-files "$ID" get /tmp/small "$d/link"
	[ "$status" -eq 2 ]
	assert_contains "$output" "symbolic link"
	assert_eq "$(cat "$d/target")" "target"
	[ -L "$d/link" ]
	run sbx-files "$ID" get /tmp/small "$d"
	[ "$status" -eq 2 ]
	# Nothing else was made in the directory (no temporary files).
	assert_eq "$(leftovers "$d" | sort | tr '\n' ' ')" "fifo fifo.out link null ro target "
}

@test "a download's temporary file is never one that was already there" {
	d=$BATS_TEST_TMPDIR
	# The old fixed name: a symlink planted there must not be followed.
	echo victim >"$d/victim"
	ln -s "$d/victim" "$d/out.part"
	run sbx-files "$ID" get /data/three "$d/out"
	[ "$status" -eq 0 ]
	assert_eq "$(sha256sum <"$d/out" | cut -d' ' -f1)" "$THREE_SUM"
	assert_eq "$(cat "$d/victim")" "victim"
	[ -L "$d/out.part" ]
}

@test "a download stops at [files] max_download_mb and leaves nothing" {
	d=$BATS_TEST_TMPDIR/dst; mkdir "$d"
	with_conf '[files]' 'max_download_mb = 1'
	run sbx-files "$ID" get /data/three "$d/out"
	[ "$status" -eq 5 ]
	assert_contains "$output" "more than 1048576 bytes"
	assert_eq "$(leftovers "$d")" ""
	# To standard output too: at most the bound is written.
	run bash -c "sbx-files '$ID' get /data/three - 2>/dev/null | wc -c"
	[ "$output" -le 1048576 ]
}

@test "a download stops before the host filesystem is full" {
	d=$BATS_TEST_TMPDIR/small; mkdir "$d"
	mount -t tmpfs -o size=6m tmpfs "$d"; MOUNTS=$d
	with_conf '[files]' 'host_reserve_mb = 4'
	run sbx-files "$ID" get /data/three "$d/out"
	[ "$status" -eq 5 ]
	assert_contains "$output" "less than 4 MB free"
	assert_eq "$(leftovers "$d")" ""
	# With room enough it goes through.
	with_conf '[files]' 'host_reserve_mb = 0'
	run sbx-files "$ID" get /data/three "$d/out"
	[ "$status" -eq 0 ]
	assert_eq "$(sha256sum <"$d/out" | cut -d' ' -f1)" "$THREE_SUM"
}

@test "file calls against a stopped guest time out instead of hanging" {
	qemu=$(vmm_pid "$ID")
	[ -n "$qemu" ]
	with_conf '[files]' 'timeout = 2'
	kill -STOP "$qemu"; STOPPED=$qemu
	for call in "ls /" "get /data/three $BATS_TEST_TMPDIR/x" "put /etc/hostname /tmp/h"; do
		t0=$(date +%s)
		run timeout 30 sbx-files "$ID" $call
		t=$(($(date +%s) - t0))
		[ "$status" -eq 6 ] || fail "$call: exit $status after ${t}s: $output"
		[ "$t" -le 10 ] || fail "$call: took ${t}s"
		assert_contains "$output" "sent nothing for 2 s"
	done
	[ ! -e "$BATS_TEST_TMPDIR/x" ]
	assert_eq "$(ls -A "$BATS_TEST_TMPDIR" | grep -c '^\.x\.')" "0"
	kill -CONT "$qemu"; STOPPED=
	run sbx-files "$ID" ls /data
	[ "$status" -eq 0 ]
	assert_contains "$output" "three"
}

@test "an interrupted download leaves nothing, even with the guest stopped" {
	qemu=$(vmm_pid "$ID")
	kill -STOP "$qemu"; STOPPED=$qemu
	sbx-files "$ID" get /data/three "$BATS_TEST_TMPDIR/out" 2>/dev/null &
	pid=$!
	sleep 1
	[ -n "$(ls -A "$BATS_TEST_TMPDIR" | grep '^\.out\.')" ] || fail "no temporary file during the download"
	kill -INT "$pid"; sleep 0.5; kill -INT "$pid" 2>/dev/null || true
	run wait "$pid"
	[ "$status" -ne 0 ]
	kill -CONT "$qemu"; STOPPED=
	assert_eq "$(ls -A "$BATS_TEST_TMPDIR" | grep -c 'out')" "0"
}

@test "a corrupt record is shown, kept out of gc's way, and torn down by sbx-kill" {
	id=$(sbx-create --timeout 300); MADE=$id
	rec=$OMNIRUN_STATE_DIR/sandboxes/$id/sandbox.conf
	cp "$rec" "$BATS_TEST_TMPDIR/good"
	qemu=$(vmm_pid "$id")
	for bad in unknown-state truncated empty binary; do
		case $bad in
		unknown-state) sed 's/^state = running/state = hibernating/' "$BATS_TEST_TMPDIR/good" >"$rec" ;;
		truncated) head -c 40 "$BATS_TEST_TMPDIR/good" >"$rec" ;;
		empty) : >"$rec" ;;
		binary) head -c 300 /dev/urandom >"$rec" ;;
		esac
		run sbx-ls
		[ "$status" -eq 0 ]
		assert_contains "$output" "$id"
		[[ "$output" == *"$id"*corrupt* ]] || fail "$bad: not shown as corrupt: $output"
		run sbx-ls --json "$id"
		[ "$status" -eq 0 ]
		assert_contains "$output" '"state": "corrupt"'
		run sbx-gc --check
		[ "$status" -eq 1 ]
		assert_contains "$output" "corrupt_record $id"
		# gc must not take a healthy VM for an orphan, nor fix it blind.
		run sbx-gc
		[ "$status" -eq 1 ]
		assert_contains "$output" "NOT fixed"
		kill -0 "$qemu" || fail "$bad: sbx-gc killed the VM of a corrupt record"
		run sbx-exec "$id" -- true
		cp "$BATS_TEST_TMPDIR/good" "$rec"
		run sbx-exec "$id" -- echo alive
		assert_eq "$output" "alive"
	done
	# Now broken for good: sbx-kill still tears it down.
	sed 's/^state = running/state = ???/' "$BATS_TEST_TMPDIR/good" >"$rec"
	run sbx-kill "$id"
	[ "$status" -eq 0 ]
	for i in $(seq 50); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$qemu" 2>/dev/null || fail "QEMU still runs after sbx-kill"
	assert_eq "$(sbx-ls --json "$id" | grep -o '"state": "[a-z]*"')" '"state": "stopped"'
	run sbx-gc --check
	[ "$status" -eq 0 ]
	MADE=
}

@test "a creator killed within milliseconds leaves nothing gc must wait for" {
	for delay in 0.01 0.05 0.2 0.8 2; do
		before=$(ls "$OMNIRUN_STATE_DIR/sandboxes" | sort)
		sbx-create --timeout 60 >/dev/null 2>&1 &
		pid=$!
		sleep "$delay"
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		new=$(comm -13 <(echo "$before") <(ls "$OMNIRUN_STATE_DIR/sandboxes" | sort) | grep '^sb_' || true)
		# Whatever the creator left is either torn down by its monitor
		# (creator_gone, once it sees it) or seen by gc at once, and
		# cleaned.
		for id in $new; do
			for i in $(seq 300); do
				pgrep -f "sbx-monitor.* $id" >/dev/null || break
				sleep 0.2
			done
		done
		for i in $(seq 100); do
			sbx-gc >/dev/null 2>&1 || true
			sbx-gc --check >/dev/null 2>&1 && break
			sleep 0.2
		done
		run sbx-gc --check
		[ "$status" -eq 0 ] || fail "after ${delay}s: $output"
		for id in $new; do
			st=$(sbx-ls --json "$id" 2>/dev/null | grep -o '"state": "[a-z]*"' || echo none)
			[ "$st" = '"state": "stopped"' ] || [ "$st" = none ] || fail "$id: $st"
			assert_gone "$id"
		done
	done
}

@test "a creator's death is seen at once, not after a boot window" {
	# A record in "starting" with no creator and no monitor is lost now.
	sbx-create --timeout 60 >/dev/null 2>&1 &
	pid=$!
	for i in $(seq 100); do
		id=$(ls -t "$OMNIRUN_STATE_DIR/sandboxes" | grep '^sb_' | head -1)
		[ -n "$id" ] && grep -q 'state = starting' "$OMNIRUN_STATE_DIR/sandboxes/$id/sandbox.conf" 2>/dev/null && break
		sleep 0.02
	done
	mon=$(monitor_pid "$id")
	kill -9 "$pid"
	[ -n "$mon" ] && [ "$mon" != 0 ] && kill -9 "$mon" 2>/dev/null || true
	sleep 0.3
	run sbx-gc --check
	[ "$status" -eq 1 ]
	assert_contains "$output" "$id"
	run sbx-gc
	run sbx-gc --check
	[ "$status" -eq 0 ]
}

@test "with the state filesystem full, a teardown still writes its record" {
	st=$BATS_TEST_TMPDIR/state; mkdir "$st"
	mount -t tmpfs -o size=120m,mode=0700 tmpfs "$st"; MOUNTS=$st
	# tiny alone, without its snapshot: other templates of the run
	# (playground) and its 256 MB RAM file do not fit.
	mkdir -m 0700 "$st/templates"
	tar -C "$OMNIRUN_STATE_DIR/templates" --exclude='tiny/snapshot' -cf - tiny | tar -C "$st/templates" -xf -
	# A state and a run dir of its own: gc then sees only this sandbox.
	export OMNIRUN_STATE_DIR=$st OMNIRUN_RUN_DIR=$BATS_TEST_TMPDIR/run
	id=$(sbx-create --timeout 300 --disk 16); MADE=$id
	sbx-exec "$id" -- echo before-full >/dev/null
	# Fill it to the last byte.
	dd if=/dev/zero of="$st/filler" bs=64k 2>/dev/null || true
	dd if=/dev/zero of="$st/filler2" bs=1 2>/dev/null || true
	for i in $(seq 14); do
		run sbx-exec "$id" -- echo still-works-with-a-long-argument-"$(head -c 300 /dev/zero | tr '\0' x)"
		assert_contains "$output" "still-works"
	done
	# The history holds whole lines only (a cut one is cut back).
	h=$st/sandboxes/$id/commands.jsonl
	grep -q before-full "$h"
	[ -z "$(tail -c 1 "$h" | tr -d '\n')" ] || fail "history ends mid-line"
	! grep -v -q '}$' "$h" || fail "a history line is cut: $(grep -v '}$' "$h" | head -c 200)"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "sbx-kill failed on a full filesystem: $output"
	grep -q '^state = stopped$' "$st/sandboxes/$id/sandbox.conf" ||
		fail "the record does not say stopped: $(cat "$st/sandboxes/$id/sandbox.conf")"
	grep -q '^end_reason = killed$' "$st/sandboxes/$id/sandbox.conf"
	MADE=
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "$output"
	rm -f "$st/filler" "$st/filler2"
}

@test "state and run dirs that are not ours are refused" {
	bad=$BATS_TEST_TMPDIR/bad; mkdir -m 0777 "$bad"
	OMNIRUN_STATE_DIR=$bad run sbx-ls
	[ "$status" -eq 1 ]
	assert_contains "$output" "refusing $bad"
	OMNIRUN_STATE_DIR=$bad run sbx-kill sb_aaaaaaaaaa
	[ "$status" -eq 1 ]
	assert_contains "$output" "refusing $bad"
	[ ! -e "$bad/sandboxes" ]
	chown 65534 "$BATS_TEST_TMPDIR/bad"; chmod 0700 "$bad"
	OMNIRUN_STATE_DIR=$bad run sbx-ls
	[ "$status" -eq 1 ]
	assert_contains "$output" "owned by uid 65534"
	# A fresh one is made 0700.
	OMNIRUN_STATE_DIR=$BATS_TEST_TMPDIR/fresh run sbx-template build tiny
	[ "$status" -eq 0 ]
	assert_eq "$(stat -c %a "$BATS_TEST_TMPDIR/fresh")" "700"
}

@test "messages stay one line and bounded; --json escapes every control" {
	long=sb_$(head -c 100000 /dev/zero | tr '\0' a)
	run sbx-kill "$long"
	[ "$status" -eq 2 ]
	[ "${#output}" -lt 300 ] || fail "a ${#output}-byte message for a long id"
	assert_contains "$output" "(100003 bytes)"
	# A guest-chosen path with a newline cannot forge a line of ours.
	run sbx-files "$ID" stat $'/tmp/no\nsbx-files: forged'
	[ "$status" -eq 3 ]
	assert_eq "$(printf '%s\n' "$output" | wc -l)" "1"
	# DEL and a C1 control in a guest file name.
	sbx-exec "$ID" -c "mkdir -p /tmp/ctl && touch \"/tmp/ctl/a$(printf '\177')b$(printf '\302\205')c\""
	run sbx-files --json "$ID" ls /tmp/ctl
	[ "$status" -eq 0 ]
	! printf '%s' "$output" | grep -q "$(printf '\177')" || fail "raw DEL in --json output"
	! printf '%s' "$output" | grep -q "$(printf '\302\205')" || fail "raw C1 in --json output"
	assert_contains "$output" 'a\u007fb\u0085c'
}
