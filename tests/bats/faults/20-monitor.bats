#!/usr/bin/env bats
# Faults against the monitor (issue 8): the idle timer and the end of a
# command, a burst of clients, a console flood.  Real VMs.
load ../helpers

# The monitor's CPU time so far, in clock ticks (utime + stime).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Waits up to $2 seconds for sandbox $1 to be stopped.
wait_stopped() {
	for _ in $(seq $(($2 * 4))); do
		sbx-ls --json "$1" | grep -q '"state": "stopped"' && return 0
		sleep 0.25
	done
	return 1
}

# Whatever a failed test left behind.
teardown() {
	[ -z "${id:-}" ] || sbx-kill "$id" >/dev/null 2>&1 || true
	omr_teardown
}
setup() { omr_setup; }

@test "idle: a running command is activity, and so is its end" {
	id=$(sbx-create --timeout 300 --idle-timeout 3)
	# Twice the idle timeout in one foreground command: not idle meanwhile.
	run sbx-exec "$id" -c 'sleep 6; echo finished'
	assert_eq "$status" 0 "the command outlived the sandbox: $output"
	assert_eq "$output" "finished"
	# Its end is activity: the output can still be fetched at once.
	run sbx-exec "$id" -- echo still-here
	assert_eq "$output" "still-here" "sandbox gone right after a long command"
	# And with nothing more, the idle timeout still ends it.
	wait_stopped "$id" 20 || fail "not torn down after being idle"
	run sbx-ls --json "$id"
	assert_contains "$output" '"end_reason": "idle"'
	assert_gone "$id"
}

@test "200 sbx-exec at once against one sandbox all succeed" {
	id=$(sbx-create --timeout 600 --memory 256)
	d=$BATS_TEST_TMPDIR/burst
	mkdir "$d"
	pids=()
	for i in $(seq 200); do
		sbx-exec "$id" -- echo "hello-$i" >"$d/$i.out" 2>"$d/$i.err" &
		pids+=($!)
	done
	fails=0
	for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
	errs=$(cat "$d"/*.err | sort | uniq -c | head -5)
	assert_eq "$fails" 0 "failed sbx-exec: $errs"
	for i in $(seq 200); do
		assert_eq "$(cat "$d/$i.out")" "hello-$i"
	done
	sbx-kill "$id"
	assert_gone "$id"
}

@test "past the client queue the error names the limit, never Broken pipe" {
	id=$(sbx-create --timeout 600)
	sock=$OMNIRUN_RUN_DIR/sandboxes/$id/monitor.sock
	# 700 idle connections fill the 128 served and 512 waiting places;
	# then sbx-exec (and the raw connections past the bound) are refused.
	run --separate-stderr perl -MIO::Socket::UNIX -e '
		my ($path, $n, @keep) = ($ARGV[0], 700);
		for (1 .. $n) {
			my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
				or die "connect $_: $!";
			push @keep, $s;
		}
		select(undef, undef, undef, 0.5);
		my $rc = system("sbx-exec", $ARGV[1], "--", "true") >> 8;
		print "rc=$rc\n";
		exit 0;' "$sock" "$id"
	assert_eq "$status" 0 "perl: $stderr"
	assert_contains "$output" "rc=125"
	assert_contains "$stderr" "128 served and 512 waiting"
	[[ "$stderr" != *"Broken pipe"* ]] || fail "user reads Broken pipe: $stderr"
	# Once those connections are gone the sandbox serves again.
	run sbx-exec "$id" -- echo back
	assert_eq "$output" "back"
	sbx-kill "$id"
	assert_gone "$id"
}

@test "a console flood costs the monitor little CPU; drops are counted" {
	id=$(sbx-create --timeout 600)
	mpid=$(monitor_pid "$id")
	t0=$(cpu_ticks "$mpid")
	s0=$(date +%s%N)
	# 6 MB: more than the burst (1 MiB) and 256 KiB/s let through even when a
	# loaded host slows the guest's serial port to 400 kB/s.
	run sbx-exec "$id" -c 'head -c 6000000 /dev/zero | tr "\0" x > /dev/console; echo done'
	assert_contains "$output" "done"
	t1=$(cpu_ticks "$mpid")
	s1=$(date +%s%N)
	# Ticks are 1/100 s: percent of a core = ticks * 1e9 / elapsed ns.
	pct=$(( (t1 - t0) * 1000000000 / (s1 - s0) ))
	echo "# monitor: $((t1 - t0)) ticks in $(( (s1 - s0) / 1000000 )) ms = $pct % of a core" >&3
	[ "$pct" -lt 15 ] || fail "the monitor used $pct % of a core under a console flood"
	sleep 1.5
	grep -q "console: dropped [0-9]* bytes" "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log" ||
		fail "no drop count in monitor.log: $(cat "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log")"
	sbx-kill "$id"
	# The count is logged at teardown too.
	grep "console: dropped" "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log" | tail -1 | grep -q "in all" ||
		fail "no total at teardown"
	assert_gone "$id"
}

@test "out of fds the monitor pauses accepting instead of spinning, then serves again" {
	id=$(sbx-create --timeout 300)
	mpid=$(monitor_pid "$id")
	prlimit --pid "$mpid" --nofile=40:40
	t0=$(cpu_ticks "$mpid")
	perl -MIO::Socket::UNIX -e '
		my @keep;
		for (1 .. 60) {
			push @keep, IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0])
				or die "connect: $!";
		}
		sleep 3;' "$OMNIRUN_RUN_DIR/sandboxes/$id/monitor.sock"
	t1=$(cpu_ticks "$mpid")
	[ $((t1 - t0)) -lt 30 ] || fail "the monitor spun: $((t1 - t0)) ticks in 3 s"
	run sbx-exec "$id" -- echo served-again
	assert_eq "$output" "served-again"
	assert_eq "$(grep -c 'cannot accept a client' "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log")" 1
	sbx-kill "$id"
	assert_gone "$id"
}
