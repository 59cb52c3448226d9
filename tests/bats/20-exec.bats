#!/usr/bin/env bats
# Issue "Run commands and move files": sbx-exec against one shared guest
# (booted once for the file; each test leaves it healthy for the next).
load helpers

# A small /data (64 MB) so that the disk filler fills it quickly.
setup_file() {
	omr_setup_file
	export ID=$(new_sandbox --timeout 900 --memory 256 --disk 64)
	[ -n "$ID" ]
}

teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() { omr_teardown; }

@test "exit codes pass through" {
	run sbx-exec "$ID" -- true
	assert_eq "$status" 0
	run sbx-exec "$ID" -- false
	assert_eq "$status" 1
	run sbx-exec "$ID" -c 'exit 42'
	assert_eq "$status" 42
}

@test "a command that does not exist is 127, a non-executable one 126" {
	run -127 --separate-stderr sbx-exec "$ID" -- /no/such/cmd
	assert_eq "$status" 127
	[[ "$stderr" == *"not found"* || "$stderr" == *"No such file"* ]] || fail "stderr: $stderr"
	sbx-exec "$ID" -c 'echo x > /tmp/noexec; chmod 644 /tmp/noexec'
	run sbx-exec "$ID" -- /tmp/noexec
	assert_eq "$status" 126
}

@test "signals: 128+N" {
	run sbx-exec "$ID" -c 'kill -KILL $$'
	assert_eq "$status" 137
	run sbx-exec "$ID" -c 'kill -TERM $$'
	assert_eq "$status" 143
}

@test "stdout and stderr are kept apart" {
	run --separate-stderr sbx-exec "$ID" -c 'echo out; echo err >&2; echo out2'
	assert_eq "$output" "$(printf 'out\nout2')"
	assert_eq "$stderr" "err"
}

@test "env, cwd and user" {
	run sbx-exec -e FOO=bar -e 'SPACED=a b  c' "$ID" -c 'echo "$FOO|$SPACED"'
	assert_eq "$output" "bar|a b  c"
	run sbx-exec -w /tmp "$ID" -- pwd
	assert_eq "$output" "/tmp"
	run sbx-exec -u user "$ID" -- id -u
	assert_eq "$output" "1000"
	run sbx-exec -u 1000 "$ID" -c 'echo $HOME'
	assert_eq "$output" "/home/user"
	run sbx-exec -u nosuchuser "$ID" -- true
	[ "$status" -ne 0 ]
	assert_contains "$output" "nosuchuser"
	run sbx-exec -w /nonexistent "$ID" -- true
	[ "$status" -ne 0 ]
	assert_contains "$output" "nonexistent"
	run sbx-exec -e NOEQUALS "$ID" -- true
	assert_eq "$status" 125
}

@test "stdin is forwarded with -i, /dev/null without" {
	run bash -c "printf 'line1\nline2\n' | sbx-exec -i $ID -- wc -l"
	assert_eq "$output" "2"
	run bash -c "echo hidden | sbx-exec $ID -- cat"
	assert_eq "$output" ""
	# Binary with NUL bytes survives both ways.
	head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/bin"
	a=$(sha256sum <"$BATS_TEST_TMPDIR/bin" | cut -d' ' -f1)
	b=$(sbx-exec -i "$ID" -- sha256sum <"$BATS_TEST_TMPDIR/bin" | cut -d' ' -f1)
	assert_eq "$b" "$a"
	c=$(sbx-exec -i "$ID" -- cat <"$BATS_TEST_TMPDIR/bin" | sha256sum | cut -d' ' -f1)
	assert_eq "$c" "$a"
}

@test "a command that never reads stdin still ends" {
	# 5 MB offered, none read: sbx-exec must end with the command (0),
	# not hang until timeout kills it (124).
	run bash -c "head -c 5000000 /dev/zero | timeout 60 sbx-exec -i $ID -- sh -c 'sleep 1; echo done'"
	assert_eq "$status" 0 "sbx-exec's status (124: it hung)"
	assert_eq "$output" "done"
}

@test "timeout kills the whole process group: 124" {
	start=$(date +%s)
	run sbx-exec --timeout 2 "$ID" -c 'sleep 100 & sleep 100; echo never'
	assert_eq "$status" 124
	[ $(( $(date +%s) - start )) -lt 20 ] || fail "timeout took too long"
	run sbx-exec "$ID" -c 'ps | grep -c "[s]leep 100"'
	assert_eq "$output" "0"
}

@test "20 commands at once all correct" {
	for i in $(seq 20); do
		sbx-exec "$ID" -c "sleep 0.\$((RANDOM % 5)); echo n$i; exit $i" >"$BATS_TEST_TMPDIR/o$i" &
		echo $! >"$BATS_TEST_TMPDIR/p$i"
	done
	for i in $(seq 20); do
		rc=0; wait "$(cat "$BATS_TEST_TMPDIR/p$i")" || rc=$?
		assert_eq "$rc" "$i" "command $i"
		assert_eq "$(cat "$BATS_TEST_TMPDIR/o$i")" "n$i"
	done
}

@test "output of hundreds of MiB streams with bounded memory" {
	# dd, not head: busybox head moves 4 KiB at a time, slow under TCG.
	n=$(sbx-exec "$ID" -c 'dd if=/dev/zero bs=1M count=300 2>/dev/null' | wc -c)
	assert_eq "$n" 314572800
	mpid=$(monitor_pid "$ID")
	hwm=$(awk '/VmHWM/ {print $2}' /proc/"$mpid"/status)
	[ "$hwm" -lt 65536 ] || fail "monitor peak RSS ${hwm} kB"
}

@test "a client that disconnects mid-stream: the command is killed, nothing leaks" {
	sbx-exec "$ID" -c 'rm -f /tmp/victim.pid; echo $$ > /tmp/victim.pid.new; mv /tmp/victim.pid.new /tmp/victim.pid; echo started; exec sleep 1000' >"$BATS_TEST_TMPDIR/out" &
	cpid=$!
	wait_file "$BATS_TEST_TMPDIR/out" 300
	victim=$(sbx-exec "$ID" -- cat /tmp/victim.pid)
	[[ "$victim" =~ ^[0-9]+$ ]] && [ "$victim" -gt 1 ] || fail "no victim pid: '$victim'"
	run sbx-exec "$ID" -c "kill -0 $victim && cat /proc/$victim/cmdline | tr '\\0' ' '"
	assert_eq "$status" 0 "the victim is not running"
	assert_contains "$output" "sleep 1000"
	kill -9 "$cpid"; wait "$cpid" || true
	for _ in $(seq 50); do
		run sbx-exec "$ID" -c "kill -0 $victim 2>/dev/null && echo alive || echo gone"
		[ "$output" = gone ] && break
		sleep 0.1
	done
	assert_eq "$output" "gone"
	run sbx-exec "$ID" -c 'ps -o pid,args | grep -c "[s]leep 1000"'
	assert_eq "$output" "0"
}

@test "background commands: pid, ps, attach, kill" {
	run sbx-exec --background "$ID" -c 'echo started; sleep 3; echo finished; exit 7'
	assert_eq "$status" 0
	pid=$output
	[[ "$pid" =~ ^[0-9]+$ ]] || fail "not a pid: $pid"
	run sbx-exec --ps "$ID"
	assert_contains "$output" "$pid"
	run sbx-exec --attach "$ID" "$pid"
	assert_eq "$status" 7
	assert_contains "$output" "started"
	assert_contains "$output" "finished"
	pid2=$(sbx-exec -b "$ID" -- sleep 1000)
	sbx-exec --kill "$ID" "$pid2" KILL
	run sbx-exec --attach "$ID" "$pid2"
	assert_eq "$status" 137
	# Without a signal, --kill sends TERM.
	pid3=$(sbx-exec -b "$ID" -- sleep 1000)
	run sbx-exec --kill "$ID" "$pid3"
	assert_eq "$status" 0 "$output"
	run sbx-exec --attach "$ID" "$pid3"
	assert_eq "$status" 143 "status of a command killed by --kill's default"
	run sbx-exec --kill "$ID" 999999
	[ "$status" -ne 0 ]
}

@test "history lists what ran" {
	sbx-exec "$ID" -- echo history-marker
	run sbx-exec --history "$ID"
	assert_contains "$output" "history-marker"
	run sbx-exec --history --json "$ID"
	assert_contains "$output" '"exit_code"'
}

@test "argv and env at their limits" {
	big=$(head -c 100000 /dev/zero | tr '\0' a)
	run sbx-exec "$ID" -- sh -c 'echo ${#1}' sh "$big"
	assert_eq "$output" "100000"
	# Ten arguments of 120 kB, 1.2 MB in all: past the protocol's limit
	# (each under the host's own 128 kB per-argument limit).
	run sbx-exec "$ID" -- echo $(for i in $(seq 10); do head -c 120000 /dev/zero | tr '\0' a; echo; done)
	assert_eq "$status" 125
	assert_contains "$output" "too large"
	# The environment counts against the same limit.
	run sbx-exec -e "BIG=$big" "$ID" -c 'echo ${#BIG}'
	assert_eq "$output" "100000"
	envs=()
	for i in $(seq 11); do envs+=(-e "V$i=$big"); done
	run sbx-exec "${envs[@]}" "$ID" -- true
	assert_eq "$status" 125
	assert_contains "$output" "too large"
	run sbx-exec "$ID" -- echo still-healthy
	assert_eq "$output" "still-healthy"
}

@test "a pty: -t runs on a terminal" {
	run sbx-exec -t "$ID" -c 'tty; test -t 1 && echo is-a-tty'
	assert_contains "$output" "is-a-tty"
	assert_contains "$output" "/dev/pts/"
}

@test "an unknown sandbox" {
	run sbx-exec sb_aaaaaaaaaa -- true
	assert_eq "$status" 125
	assert_contains "$output" "no such sandbox"
	run sbx-files sb_aaaaaaaaaa ls /
	assert_eq "$status" 3
	assert_contains "$output" "no such sandbox"
}

# Samples, every 0.2 s until $1 no longer exists, QEMU's RSS, the
# monitor's RSS and whether the monitor answers (sbx-ls), into $2.
watch_host() {
	local qemu=$(vmm_pid "$ID") mon=$(monitor_pid "$ID")
	while [ -e "$1" ]; do
		echo "$(rss_kb "$qemu") $(rss_kb "$mon") $(sb_field "$ID" state)"
		sleep 0.2
	done >"$2"
}

# The largest value of column $1 in $2, and the samples that were not
# "running".
peak() { awk -v c="$1" '$c > m {m = $c} END {print m + 0}' "$2"; }
not_running() { awk '$3 != "running"' "$1" | wc -l; }

@test "fork bomb, memory hog and disk filler hurt only the guest's commands" {
	qemu=$(vmm_pid "$ID")
	# QEMU may hold the guest's RAM and its own code; never much more.
	qemu_cap=$(((256 + 200) * 1024))
	on=$BATS_TEST_TMPDIR/running

	# A fork bomb under a command that keeps going: its timeout ends it
	# (124); it runs into the commands' pid limit (pids.events counts
	# each fork refused there), and other commands still start.
	cg=/sys/fs/cgroup/omnirun-cmds
	hits=$(sbx-exec "$ID" -c "sed -n 's/^max //p' $cg/pids.events")
	touch "$on"; watch_host "$on" "$BATS_TEST_TMPDIR/bomb" &
	sbx-exec --timeout 12 "$ID" -c 'b() { b | b & }; b; sleep 1000' >/dev/null 2>&1 &
	bomb=$!
	sleep 3
	run sbx-exec "$ID" -- echo alive-during-forkbomb
	assert_eq "$output" "alive-during-forkbomb"
	rc=0; wait "$bomb" || rc=$?
	rm "$on"; wait
	assert_eq "$rc" 124 "the fork bomb's status"
	run sbx-exec "$ID" -c "cat $cg/pids.max; sed -n 's/^max //p' $cg/pids.events"
	echo "# pids.max ${output%%$'\n'*}, forks refused at it: $((${output##*$'\n'} - hits))" >&3
	[ "${output##*$'\n'}" -gt "$hits" ] || fail "the bomb never reached the pid limit ($output)"
	run sbx-exec "$ID" -- echo alive-after-forkbomb
	assert_eq "$output" "alive-after-forkbomb"
	[ "$(peak 1 "$BATS_TEST_TMPDIR/bomb")" -le "$qemu_cap" ] || fail "QEMU grew to $(peak 1 "$BATS_TEST_TMPDIR/bomb") kB"
	assert_eq "$(not_running "$BATS_TEST_TMPDIR/bomb")" 0 "samples where the monitor did not answer"

	# A memory hog: the guest's OOM killer ends it (SIGKILL: 137), inside
	# the commands' cgroup, and QEMU stays within the guest's memory.
	ooms=$(sbx-exec "$ID" -c 'dmesg | grep -c "Memory cgroup out of memory" || true')
	touch "$on"; watch_host "$on" "$BATS_TEST_TMPDIR/hog" &
	run sbx-exec --timeout 60 "$ID" -c 'x=a; while true; do x="$x$x"; done'
	rm "$on"; wait
	assert_eq "$status" 137 "the memory hog's status"
	run sbx-exec "$ID" -c 'dmesg | grep -c "Memory cgroup out of memory"'
	[ "$output" -gt "$ooms" ] || fail "no new OOM kill in the guest's log ($ooms before, $output after)"
	run sbx-exec "$ID" -- echo alive-after-oom
	assert_eq "$output" "alive-after-oom"
	echo "# QEMU peak RSS $(peak 1 "$BATS_TEST_TMPDIR/hog") kB, monitor $(peak 2 "$BATS_TEST_TMPDIR/hog") kB" >&3
	[ "$(peak 1 "$BATS_TEST_TMPDIR/hog")" -le "$qemu_cap" ] || fail "QEMU grew to $(peak 1 "$BATS_TEST_TMPDIR/hog") kB"
	[ "$(peak 2 "$BATS_TEST_TMPDIR/hog")" -lt 65536 ] || fail "the monitor grew to $(peak 2 "$BATS_TEST_TMPDIR/hog") kB"
	assert_eq "$(not_running "$BATS_TEST_TMPDIR/hog")" 0 "samples where the monitor did not answer"

	# A disk filler: "No space left" in the guest, and the host gives
	# at most the sandbox's 64 MB disk.
	disk=$(disk_fd "$qemu")
	host_before=$(free_kb "$OMNIRUN_STATE_DIR")
	run sbx-exec --timeout 120 "$ID" -c 'dd if=/dev/zero of=/data/fill bs=1M 2>&1; sync; df -Pk /data | tail -1'
	assert_contains "$output" "No space left on device"
	avail=$(echo "$output" | tail -1 | awk '{print $4}')
	[ "$avail" -lt 1024 ] || fail "/data still has $avail kB free"
	used=$(($(stat -L -c %b "$disk") * 512 / 1024))
	echo "# disk file: $used kB allocated, host free space fell by $((host_before - $(free_kb "$OMNIRUN_STATE_DIR"))) kB" >&3
	[ "$used" -le $((64 * 1024)) ] || fail "the disk file holds $used kB for a 64 MB disk"
	# Loose: other programs share the host's disk.
	[ $((host_before - $(free_kb "$OMNIRUN_STATE_DIR"))) -le $((256 * 1024)) ] ||
		fail "the host lost far more than the disk's size"
	run sbx-exec "$ID" -c 'rm -f /data/fill; echo alive-after-fill'
	assert_eq "$output" "alive-after-fill"
}

@test "SIGINT is forwarded to the command; uncaught it exits 130; a second one leaves" {
	# Caught: the command's trap runs and its status comes back.
	sbx-exec "$ID" -c 'trap "echo got-int; exit 3" INT; echo ready; while :; do sleep 0.1; done' >"$BATS_TEST_TMPDIR/o1" &
	p1=$!
	wait_file "$BATS_TEST_TMPDIR/o1" 300
	kill -INT "$p1"
	rc=0; wait "$p1" || rc=$?
	assert_eq "$rc" 3 "status of a command that caught SIGINT"
	assert_eq "$(cat "$BATS_TEST_TMPDIR/o1")" "$(printf 'ready\ngot-int')"

	# Uncaught: the command dies of it, 128 + 2.
	sbx-exec "$ID" -c 'echo ready; exec sleep 1000' >"$BATS_TEST_TMPDIR/o2" &
	p2=$!
	wait_file "$BATS_TEST_TMPDIR/o2" 300
	kill -INT "$p2"
	rc=0; wait "$p2" || rc=$?
	assert_eq "$rc" 130 "status of a command killed by SIGINT"

	# Ignored: a second SIGINT makes sbx-exec leave (130) at once, and
	# the command it leaves is killed.
	sbx-exec "$ID" -c 'trap "" INT; echo $$ > /tmp/stubborn; echo ready; while :; do sleep 0.1; done' >"$BATS_TEST_TMPDIR/o3" &
	p3=$!
	wait_file "$BATS_TEST_TMPDIR/o3" 300
	kill -INT "$p3"; sleep 0.3; kill -INT "$p3"
	for _ in $(seq 50); do kill -0 "$p3" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$p3" 2>/dev/null || fail "sbx-exec still runs after a second SIGINT"
	rc=0; wait "$p3" || rc=$?
	assert_eq "$rc" 130 "status after a second SIGINT"
	for _ in $(seq 50); do
		run sbx-exec "$ID" -c 'kill -0 $(cat /tmp/stubborn) 2>/dev/null && echo alive || echo gone'
		[ "$output" = gone ] && break
		sleep 0.1
	done
	assert_eq "$output" "gone"
}

@test "sbx-kill while a command runs, with a known and an unknown id" {
	id=$(new_sandbox --timeout 300)
	sbx-exec "$id" -c 'echo ready; sleep 1000' >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	epid=$!
	wait_file "$BATS_TEST_TMPDIR/out" 300
	qemu=$(vmm_pid "$id")
	run --separate-stderr sbx-kill "$id" sb_aaaaaaaaaa
	assert_eq "$status" 3 "an unknown id among known ones"
	assert_contains "$stderr" "sb_aaaaaaaaaa"
	# The known one was killed all the same.
	assert_eq "$(sb_field "$id" state)" stopped
	assert_eq "$(sb_field "$id" end_reason)" killed
	! kill -0 "$qemu" 2>/dev/null || fail "QEMU $qemu lives on"
	# The command's client ends, and says why.
	for _ in $(seq 100); do kill -0 "$epid" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$epid" 2>/dev/null || fail "sbx-exec still waits on a killed sandbox"
	rc=0; wait "$epid" || rc=$?
	assert_eq "$rc" 125 "sbx-exec's status when its sandbox is killed"
	[ -s "$BATS_TEST_TMPDIR/err" ] || fail "sbx-exec said nothing"
	assert_gone "$id"
	# Unknown first, then known: the same.
	run sbx-kill sb_bbbbbbbbbb "$id"
	assert_eq "$status" 3
	# A stopped sandbox serves nothing.
	run sbx-files "$id" ls /
	assert_eq "$status" 4
	assert_contains "$output" "not running"
	run sbx-exec "$id" -- true
	assert_eq "$status" 125
	assert_contains "$output" "not running"
}
