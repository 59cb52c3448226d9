#!/usr/bin/env bats
# Issue "Run commands and move files": sbx-exec against one shared guest
# (booted once for the file; each test leaves it healthy for the next).
load helpers

setup_file() {
	export ID=$(sbx-create --timeout 900 --memory 256)
	[ -n "$ID" ]
}

teardown_file() {
	sbx-kill "$ID"
}

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
	run bash -c "head -c 5000000 /dev/zero | timeout 60 sbx-exec -i $ID -- sh -c 'sleep 1; echo done'"
	assert_contains "$output" "done"
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
	sbx-exec "$ID" -c 'echo $$ > /tmp/victim.pid; exec sleep 1000' &
	cpid=$!
	sleep 2
	kill -9 "$cpid"; wait "$cpid" || true
	sleep 1
	run sbx-exec "$ID" -c 'kill -0 $(cat /tmp/victim.pid) 2>/dev/null && echo alive || echo gone'
	assert_eq "$output" "gone"
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

@test "unknown and stopped sandboxes" {
	run sbx-exec sb_aaaaaaaaaa -- true
	assert_eq "$status" 125
	assert_contains "$output" "no such sandbox"
	id=$(sbx-create --timeout 300)
	sbx-kill "$id"
	run sbx-files "$id" ls /
	assert_eq "$status" 4
	assert_contains "$output" "not running"
	run sbx-exec "$id" -- true
	assert_eq "$status" 125
	assert_contains "$output" "not running"
}

@test "fork bomb, memory hog and disk filler hurt only the guest's commands" {
	run sbx-exec --timeout 15 "$ID" -c 'b() { b | b & }; b' 
	run sbx-exec "$ID" -- echo alive-after-forkbomb
	assert_eq "$output" "alive-after-forkbomb"
	run sbx-exec --timeout 60 "$ID" -c 'x=a; while true; do x="$x$x"; done'
	run sbx-exec "$ID" -- echo alive-after-oom
	assert_eq "$output" "alive-after-oom"
	run sbx-exec --timeout 120 "$ID" -c 'dd if=/dev/zero of=/data/fill bs=1M 2>&1; df /data | tail -1'
	run sbx-exec "$ID" -c 'rm -f /data/fill; echo alive-after-fill'
	assert_eq "$output" "alive-after-fill"
}
