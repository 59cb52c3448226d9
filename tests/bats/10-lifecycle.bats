#!/usr/bin/env bats
# Issue "Boot real microVM sandboxes": create, list, kill, timeouts and
# every bad input, against real QEMU guests.
load helpers

setup() { omr_setup; }
teardown() { omr_teardown; }

@test "create prints only the id, ls shows it running, kill leaves nothing" {
	run --separate-stderr sbx-create --timeout 300
	[ "$status" -eq 0 ] || fail "create failed: $stderr"
	id=$output
	echo "$id" >>"$OMR_TRACK"
	[[ "$id" =~ ^sb_[a-z2-7]{10}$ ]] || fail "stdout is not just an id: '$id'"
	run sbx-ls
	assert_contains "$output" "$id"
	assert_eq "$(sb_field "$id" state)" running
	pid=$(vmm_pid "$id")
	[ -n "$pid" ] && kill -0 "$pid" || fail "no live QEMU pid for $id"
	tr "\0" " " </proc/"$pid"/cmdline | grep -q -- "-sandbox on,obsolete=deny" || fail "QEMU without -sandbox"
	# The data disk is open in QEMU but has no name on the host.
	disk_fd "$pid" >/dev/null || fail "no unlinked disk in QEMU"
	[ -z "$(ls "$OMNIRUN_STATE_DIR/sandboxes/$id" | grep disk)" ] || fail "disk file has a name"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "kill failed: $output"
	! kill -0 "$pid" 2>/dev/null || fail "QEMU $pid still alive"
	run sbx-ls -q
	[[ "$output" != *"$id"* ]] || fail "ls still lists $id"
	assert_eq "$(sb_field "$id" state)" stopped
	assert_eq "$(sb_field "$id" end_reason)" killed
	assert_gone "$id"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "killing a stopped sandbox should succeed"
}

@test "the guest's data disk is encrypted: host bytes are ciphertext" {
	id=$(new_sandbox --timeout 300 --disk 64)
	pid=$(vmm_pid "$id")
	# The marker goes to /data in the clear, then to the disk (sync).
	run sbx-exec "$id" -c 'for i in $(seq 2000); do echo OMNIRUN-PLAINTEXT-MARKER; done > /data/m; sync; grep -c MARKER /data/m; grep " /data " /proc/mounts'
	[ "$status" -eq 0 ] || fail "exec failed: $output"
	assert_contains "$output" "2000"
	assert_contains "$output" "/dev/mapper/omnirun-data /data"
	disk=$(disk_fd "$pid") || fail "no unlinked disk fd in QEMU $pid"
	# It is the 64 MiB disk (not some other unlinked file)...
	assert_eq "$(stat -L -c %s "$disk")" $((64 << 20)) "size of $(readlink "$disk")"
	# ...and it holds what the guest wrote: 50 kB of marker plus the
	# filesystem, so well over 50 kB that are not zero.
	nonzero=$(tr -d '\0' <"$disk" | wc -c)
	[ "$nonzero" -gt 51200 ] || fail "only $nonzero non-zero bytes on the disk: the data never reached it"
	# grep read the whole disk and found nothing (1), not failed (2).
	rc=0; grep -a -q OMNIRUN-PLAINTEXT-MARKER "$disk" || rc=$?
	assert_eq "$rc" 1 "grep's status on the disk (0: plaintext found, 2: unreadable)"
	run sbx-kill "$id"
	assert_gone "$id"
}

@test "two sandboxes at once never share an id, a lock or a file" {
	new_sandbox --timeout 300 --disk 32 >"$BATS_TEST_TMPDIR/a" &
	new_sandbox --timeout 300 --disk 32 >"$BATS_TEST_TMPDIR/b" &
	wait
	a=$(cat "$BATS_TEST_TMPDIR/a"); b=$(cat "$BATS_TEST_TMPDIR/b")
	[ -n "$a" ] && [ -n "$b" ] || fail "a create failed"
	[ "$a" != "$b" ] || fail "same id twice"
	qa=$(vmm_pid "$a") qb=$(vmm_pid "$b") ma=$(monitor_pid "$a") mb=$(monitor_pid "$b")
	[ "$qa" != "$qb" ] || fail "same QEMU"
	[ "$ma" != "$mb" ] || fail "same monitor"
	# Their own lock, record, console and socket: different inodes.
	for f in lock sandbox.conf console.log; do
		ia=$(stat -c %i "$OMNIRUN_STATE_DIR/sandboxes/$a/$f") ib=$(stat -c %i "$OMNIRUN_STATE_DIR/sandboxes/$b/$f")
		[ "$ia" != "$ib" ] || fail "$f shared"
	done
	[ "$(stat -c %i "$OMNIRUN_RUN_DIR/sandboxes/$a/monitor.sock")" != "$(stat -c %i "$OMNIRUN_RUN_DIR/sandboxes/$b/monitor.sock")" ] ||
		fail "monitor.sock shared"
	# Each QEMU holds its own disk, and nothing of the other's.
	da=$(disk_fd "$qa") db=$(disk_fd "$qb")
	[ "$(stat -L -c %i "$da")" != "$(stat -L -c %i "$db")" ] || fail "same disk"
	! fd_targets "$qa" | grep -q "$b" || fail "QEMU of $a holds a file of $b"
	! fd_targets "$qb" | grep -q "$a" || fail "QEMU of $b holds a file of $a"
	fd_targets "$qa" | grep -q "$a" || fail "QEMU of $a holds no file of its own (the check sees nothing)"
	! tr '\0' ' ' </proc/"$qa"/cmdline | grep -q "$b" || fail "QEMU of $a names $b"
	# Each guest is its own: what one writes the other does not see.
	run sbx-exec "$a" -c 'echo from-a > /data/who; cat /proc/sys/kernel/random/boot_id'
	assert_eq "$status" 0
	boot_a=${output##*$'\n'}
	run sbx-exec "$b" -c 'cat /data/who 2>/dev/null || echo nothing-here; cat /proc/sys/kernel/random/boot_id'
	assert_eq "$status" 0
	assert_contains "$output" "nothing-here"
	[ "${output##*$'\n'}" != "$boot_a" ] || fail "same guest kernel (boot_id)"
	sbx-kill "$a" "$b"
	assert_gone "$a"
	assert_gone "$b"
}

@test "--timeout 5: the sandbox is gone by itself" {
	id=$(new_sandbox --timeout 5)
	wait_stopped "$id" 300
	assert_eq "$(sb_field "$id" end_reason)" timeout
	assert_gone "$id"
}

@test "create --json, --cpus and --memory reach the guest, the idle timeout, the host's limit" {
	run --separate-stderr sbx-create --json --cpus 2 --memory 320 --idle-timeout 4 --timeout 300
	assert_eq "$status" 0 "$stderr"
	echo "$output" | jq -e . >/dev/null || fail "not JSON: $output"
	id=$(echo "$output" | jq -r .sandbox_id)
	echo "$id" >>"$OMR_TRACK"
	[[ "$id" =~ ^sb_ ]] || fail "no sandbox_id in $output"
	assert_eq "$(echo "$output" | jq -r '[.state, .cpus, .memory_mb, .idle_timeout, .template] | join(" ")')" \
		"running 2 320 4 tiny"
	run sbx-exec "$id" -c 'nproc; awk "/MemTotal/ {print \$2}" /proc/meminfo'
	assert_eq "${output%%$'\n'*}" 2 "guest CPUs"
	mem=${output##*$'\n'}
	# The kernel keeps some memory for itself: 80-100 % of 320 MiB.
	[ "$mem" -gt $((320 * 1024 * 8 / 10)) ] && [ "$mem" -le $((320 * 1024)) ] ||
		fail "guest MemTotal $mem kB for --memory 320"
	# A full host: past max_sandboxes a create is refused with exit 5.
	with_conf "[sandbox]" "max_sandboxes = 1"
	run --separate-stderr sbx-create --timeout 60
	assert_eq "$status" 5 "create past the limit: $stderr"
	assert_contains "$stderr" "limit"
	[ -z "$output" ] || fail "a refused create printed '$output'"
	export OMNIRUN_CONF=$OMNIRUN_TEST_ROOT/omnirun.conf
	# A command running is activity: the sandbox outlives its idle timeout.
	run sbx-exec "$id" -c 'sleep 6; echo still-here'
	assert_eq "$output" "still-here"
	# Then idle: gone within the timeout and a little.
	wait_stopped "$id" 100
	assert_eq "$(sb_field "$id" end_reason)" idle
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
	rm -rf "$OMNIRUN_STATE_DIR/templates/broken"
	[ "$status" -ne 0 ]
	assert_contains "$output" "vmlinuz"
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
	# A guest whose init is cat: it boots and never answers, however fast
	# the host (no reliance on a slow boot).
	cp -a "$OMNIRUN_STATE_DIR/templates/tiny" "$OMNIRUN_STATE_DIR/templates/mute"
	sed -i 's|^cmdline=.*|cmdline=rdinit=/bin/cat|; s|^name *=.*|name=mute|' "$OMNIRUN_STATE_DIR/templates/mute/template.conf"
	with_conf "[vmm]" "boot_timeout = 3"
	qemus=$(pgrep -c -f "$OMNIRUN_RUN_DIR/sandboxes" || true)
	runs=$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)
	start=$(date +%s)
	run sbx-create -t mute
	took=$(($(date +%s) - start))
	rm -rf "$OMNIRUN_STATE_DIR/templates/mute"
	[ "$status" -eq 6 ] || fail "status $status: $output"
	assert_contains "$output" "did not answer within 3 s"
	[ "$took" -ge 3 ] && [ "$took" -lt 30 ] || fail "the boot timeout took $took s"
	assert_eq "$(pgrep -c -f "$OMNIRUN_RUN_DIR/sandboxes" || true)" "$qemus" "QEMU processes"
	assert_eq "$(ls "$OMNIRUN_RUN_DIR/sandboxes" 2>/dev/null | wc -l)" "$runs" "runtime dirs"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "fault: a guest flooding its console cannot grow the host's disk" {
	cap=65536
	with_conf "[vmm]" "console_log_max = $cap"
	id=$(new_sandbox --timeout 300)
	log=$OMNIRUN_STATE_DIR/sandboxes/$id/console.log
	# Six times the cap: several rotations (the serial line is slow).
	run sbx-exec "$id" -c 'head -c 400000 /dev/zero | tr "\0" x > /dev/console; echo flood-done'
	assert_eq "$status" 0
	assert_contains "$output" "flood-done"
	# The tail of the flood reaches the log: it ends in a run of x.
	for _ in $(seq 50); do
		tail -c 100 "$log" | grep -q xxxxxxxxxxxxxxxxxxxx && break
		sleep 0.1
	done
	tail -c 100 "$log" | grep -q xxxxxxxxxxxxxxxxxxxx || fail "the flood never reached $log"
	# The log reached its cap and was rotated: console.log.1 is a full
	# file (within one read of the cap) of the flood, and each file is
	# at most the cap.
	[ -f "$log.1" ] || fail "console.log was never rotated"
	s1=$(stat -c %s "$log.1") s0=$(stat -c %s "$log")
	[ "$s1" -le "$cap" ] && [ "$s1" -gt $((cap - 16384)) ] || fail "console.log.1 holds $s1 bytes (cap $cap)"
	[ "$s0" -le "$cap" ] || fail "console.log holds $s0 bytes (cap $cap)"
	[ "$(tr -d x <"$log.1" | wc -c)" -lt 1024 ] || fail "console.log.1 is not the flood"
	[ -z "$(ls "$OMNIRUN_STATE_DIR/sandboxes/$id" | grep -E '^console\.log\.[2-9]')" ] || fail "more than two console files"
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

@test "sbx-doctor reports the accelerator the probe chose, and sandboxes use it" {
	run sbx-doctor --json
	[ "$status" -eq 0 ] || fail "$output"
	usable=$(echo "$output" | jq -r .kvm.usable)
	use=$(echo "$output" | jq -r .accel.use)
	assert_eq "$(echo "$output" | jq -r .accel.config)" auto
	# accel = auto: KVM exactly when the probe found it usable.
	if [ "$usable" = true ]; then want=kvm; else want=tcg; fi
	assert_eq "$use" "$want" "accel chosen with kvm.usable=$usable"
	run sbx-doctor
	[ "$status" -eq 0 ] || fail "$output"
	assert_contains "$output" "accel      $want"
	# The sandboxes' records say what they booted with: the same.
	for id in $(sbx-ls -q -a); do
		a=$(sb_field "$id" accel)
		[ -z "$a" ] || [ "$a" = null ] || assert_eq "$a" "$want" "accel of $id"
	done
}

@test "every program answers --help and --version, and has a man page and completions" {
	local n=0
	for d in "$OMNIRUN_SRC"/cmd/*/; do
		p=$(basename "$d")
		n=$((n + 1))
		[ "$p" = sbx-monitor ] && bin=$OMNIRUN_LIBEXEC_DIR/$p || bin=$p
		run "$bin" --help
		[ "$status" -eq 0 ] || fail "$p --help: $status"
		assert_contains "$output" "Usage"
		run "$bin" --version
		[ "$status" -eq 0 ] || fail "$p --version: $status"
		ls "$OMNIRUN_SRC"/man/"$p".[158] >/dev/null 2>&1 || fail "$p has no man page"
		[ -f "$OMNIRUN_SRC/completions/$p.bash" ] || fail "$p has no bash completion"
		[ -f "$OMNIRUN_SRC/completions/_$p" ] || fail "$p has no zsh completion"
		bash -n "$OMNIRUN_SRC/completions/$p.bash" || fail "$p's bash completion does not parse"
	done
	[ "$n" -ge 16 ] || fail "only $n programs under cmd/"
}

@test "sbx-gc finds and reaps a sandbox whose monitor died" {
	id=$(new_sandbox --timeout 300)
	mpid=$(monitor_pid "$id")
	kill -9 "$mpid"
	sleep 0.5
	run sbx-gc --check
	[ "$status" -eq 1 ] || fail "gc --check found nothing: $output"
	assert_contains "$output" "$id"
	run sbx-gc
	[ "$status" -eq 0 ]
	assert_eq "$(sb_field "$id" state)" stopped
	assert_eq "$(sb_field "$id" end_reason)" gc
	assert_gone "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers after gc: $output"
}

# What sbx-gc must not touch, and the orphan path, on one sandbox: it is
# created while gc runs, used, then its record is made to lie (stopped)
# while its monitor and QEMU run on.
@test "sbx-gc leaves live and starting sandboxes alone, --json, orphan processes" {
	sbx-create --timeout 300 >"$BATS_TEST_TMPDIR/id" 2>"$BATS_TEST_TMPDIR/err" &
	cpid=$!
	for _ in $(seq 200); do
		id=$(grep -l '^state = starting' "$OMNIRUN_STATE_DIR"/sandboxes/sb_*/sandbox.conf 2>/dev/null | head -1)
		[ -n "$id" ] && break
		sleep 0.05
	done
	id=$(basename "$(dirname "$id")")
	[[ "$id" =~ ^sb_ ]] || fail "no starting sandbox appeared"
	echo "$id" >>"$OMR_TRACK"
	run sbx-gc --check
	assert_eq "$status" 0 "gc --check during a create: $output"
	run sbx-gc
	assert_eq "$status" 0 "gc during a create: $output"
	rc=0; wait "$cpid" || rc=$?
	assert_eq "$rc" 0 "the create gc ran beside: $(cat "$BATS_TEST_TMPDIR/err")"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/id")" "$id"
	run sbx-gc
	assert_eq "$status" 0 "gc beside a live sandbox: $output"
	run sbx-exec "$id" -- echo still-served
	assert_eq "$output" "still-served"
	qemu=$(vmm_pid "$id") mon=$(monitor_pid "$id")
	run sbx-gc --check --json
	assert_eq "$output" "[]"
	# The record lies: stopped, while its monitor and QEMU run.
	sed -i 's/^state = running$/state = stopped/; s/^end_reason = .*/end_reason = killed/' \
		"$OMNIRUN_STATE_DIR/sandboxes/$id/sandbox.conf"
	run --separate-stderr sbx-gc --check --json
	assert_eq "$status" 1
	echo "$output" | jq -e 'type == "array"' >/dev/null || fail "not a JSON array: $output"
	assert_eq "$(echo "$output" | jq -r "[.[] | select(.kind == \"orphan_process\" and .sandbox_id == \"$id\")] | length")" 2 \
		"orphan processes in $output"
	kill -0 "$qemu" && kill -0 "$mon" || fail "gc --check killed something"
	run sbx-gc --json
	assert_eq "$status" 0 "gc: $output"
	echo "$output" | jq -e "all(.[]; .fixed == true)" >/dev/null || fail "not all fixed: $output"
	for _ in $(seq 30); do kill -0 "$qemu" 2>/dev/null || kill -0 "$mon" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$qemu" 2>/dev/null || fail "orphan QEMU $qemu lives on"
	! kill -0 "$mon" 2>/dev/null || fail "orphan monitor $mon lives on"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers after gc: $output"
}

# The history of two stopped sandboxes, written as sbx-kill leaves it:
# one that ended ten days ago, one an hour ago.
stopped_record() {  # ID ENDED_AT
	local d=$OMNIRUN_STATE_DIR/sandboxes/$1
	mkdir -m 0700 "$d"
	printf '%s\n' "id = $1" "template = tiny" "state = stopped" "created_at = $(($2 - 60))" \
		"expires_at = $(($2 + 240))" "ended_at = $2" "end_reason = killed" "cpus = 1" \
		"memory_mb = 256" "disk_mb = 512" "timeout = 300" "idle_timeout = 0" \
		"monitor_pid = 0" "vmm_pid = 0" "accel = tcg" "owner = 0" >"$d/sandbox.conf"
	chmod 0600 "$d/sandbox.conf"
}

@test "sbx-gc --prune-days removes stopped records past the limit, and only those" {
	old=sb_oooooooooo recent=sb_rrrrrrrrrr
	stopped_record "$old" $(($(date +%s) - 10 * 86400))
	stopped_record "$recent" $(($(date +%s) - 3600))
	assert_eq "$(sb_field "$old" state) $(sb_field "$recent" state)" "stopped stopped"
	run sbx-gc --check
	assert_eq "$status" 0 "without --prune-days: $output"
	run sbx-gc --check --prune-days 7 --json
	assert_eq "$status" 1
	assert_eq "$(echo "$output" | jq -r '[.[] | .kind + " " + .sandbox_id] | join(",")')" "expired_record $old"
	[ -d "$OMNIRUN_STATE_DIR/sandboxes/$old" ] || fail "--check removed it"
	run sbx-gc --prune-days 11
	assert_eq "$status" 0
	[ -d "$OMNIRUN_STATE_DIR/sandboxes/$old" ] || fail "10 days is within --prune-days 11"
	run sbx-gc --prune-days 7
	assert_eq "$status" 0 "$output"
	[ ! -e "$OMNIRUN_STATE_DIR/sandboxes/$old" ] || fail "the expired record is still there"
	[ -d "$OMNIRUN_STATE_DIR/sandboxes/$recent" ] || fail "a recent record was pruned"
	run sbx-ls "$old"
	assert_eq "$status" 3
	run sbx-gc --prune-days 0x
	assert_eq "$status" 2
	rm -rf "$OMNIRUN_STATE_DIR/sandboxes/$recent"
}
