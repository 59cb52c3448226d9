# Shared by the bats files.  The suite runs under tests/run-all, which sets
# OMNIRUN_STATE_DIR, OMNIRUN_RUN_DIR and OMNIRUN_CONF to a throwaway tree
# and has built the tiny template there.

bats_require_minimum_version 1.5.0

# Asserts with a message that names what differed.
fail() { echo "$*" >&2; return 1; }
assert_eq() { [ "$1" = "$2" ] || fail "expected '$2', got '$1'${3:+ ($3)}"; }
assert_contains() { [[ "$1" == *"$2"* ]] || fail "expected output to contain '$2', got: $1"; }

# A sandbox's QEMU and monitor pids from the record (empty if none).
vmm_pid() { sbx-ls --json "$1" | jq -r '.[0].pid // empty'; }
monitor_pid() { sbx-ls --json "$1" | jq -r '.[0].monitor_pid // empty'; }

# Asserts that nothing of sandbox $1 is left: no process, no runtime dir.
assert_gone() {
	local id=$1
	[ ! -e "$OMNIRUN_RUN_DIR/sandboxes/$id" ] || fail "runtime dir of $id still there"
	! pgrep -f "sandboxes/$id/" >/dev/null || fail "a process of $id still runs"
	! pgrep -f "sbx-monitor.* $id" >/dev/null || fail "the monitor of $id still runs"
	[ -z "$(ls "$OMNIRUN_STATE_DIR/sandboxes/$id" 2>/dev/null | grep -v -E '^(sandbox.conf|lock|console.log(.1)?|monitor.log|commands.jsonl|events.jsonl)$')" ] ||
		fail "unexpected files left in the state dir of $id"
}

# Writes a config with extra lines and points OMNIRUN_CONF at it.
with_conf() {
	local f=$BATS_TEST_TMPDIR/omnirun.conf
	printf '%s\n' "$@" >"$f"
	export OMNIRUN_CONF=$f
}

# ---- cleaning up after each test -------------------------------------
#
# Every file calls omr_setup / omr_teardown from setup / teardown (and
# omr_setup_file / omr_teardown_file when it shares a VM between tests),
# so that a failing test never leaves its VMs to the next ones:
# teardown kills the test's background jobs, every sandbox it created
# through new_sandbox, and every sandbox that is live now and was not
# when the test began (a create in the background, say).

# The test's own bookkeeping lives beside its tmpdir, never in it (tests
# list their tmpdir).
omr_setup() {
	export OMR_TRACK=$BATS_FILE_TMPDIR/.sandboxes-$BATS_TEST_NUMBER
	OMR_BEFORE=$BATS_FILE_TMPDIR/.live-before-$BATS_TEST_NUMBER
	sbx-ls -q >"$OMR_BEFORE" 2>/dev/null || true
}

omr_teardown() {
	local j id
	for j in $(jobs -p); do
		kill -9 "$j" 2>/dev/null
		wait "$j" 2>/dev/null
	done
	for id in $(cat "$OMR_TRACK" 2>/dev/null) $(sbx-ls -q 2>/dev/null); do
		[ "$id" = "${ID:-}" ] && continue  # the file's shared VM
		grep -qxF "$id" "$OMR_BEFORE" 2>/dev/null && continue
		sbx-kill "$id" >/dev/null 2>&1 || true
	done
	# A failed test may leave what no kill reaches (a record that lies,
	# an orphan process); one that passed leaves them for run-all to
	# report against its file.
	[ -n "${BATS_TEST_COMPLETED:-}" ] || sbx-gc >/dev/null 2>&1 || true
}

omr_setup_file() {
	export OMR_TRACK=$BATS_FILE_TMPDIR/.sandboxes-file
}

omr_teardown_file() {
	local id
	for id in $(cat "$BATS_FILE_TMPDIR/.sandboxes-file" 2>/dev/null); do
		sbx-kill "$id" >/dev/null 2>&1 || true
	done
}

# sbx-create that remembers the id for teardown.  Prints the id.
new_sandbox() {
	local id
	id=$(sbx-create "$@") || return
	echo "$id" >>"$OMR_TRACK"
	echo "$id"
}

# ---- looking at a sandbox from the host ------------------------------

# A field of the sandbox's record as sbx-ls --json shows it.
sb_field() {
	local j
	j=$(sbx-ls --json "$1") || return
	jq -r ".[0].$2" <<<"$j"
}

# Waits (up to $2 tenths of a second) until sandbox $1 is stopped.
wait_stopped() {
	local i st
	for ((i = 0; i < $2; i++)); do
		st=$(sb_field "$1" state) || fail "sandbox $1 has no record"
		[ "$st" = stopped ] && return 0
		sleep 0.1
	done
	fail "sandbox $1 still $st after $(($2 / 10)) s"
}

# Waits (up to $3 tenths of a second) until sandbox $1 is in state $2.
wait_state() {
	local i st
	for ((i = 0; i < $3; i++)); do
		st=$(sb_field "$1" state)
		[ "$st" = "$2" ] && return 0
		sleep 0.1
	done
	fail "sandbox $1 still $st after $(($3 / 10)) s, not $2"
}

# A busy loop's counter in sandbox $1's /tmp/count (a read may fall
# between the loop's truncation or rename and its write: read again).
guest_counter() {
	local v
	for _ in $(seq 20); do
		v=$(sbx-exec "$1" -- cat /tmp/count 2>/dev/null)
		[ -n "$v" ] && { echo "$v"; return; }
	done
	fail "the counter of $1 stays empty"
}

# Waits (up to $2 tenths of a second) until file $1 is not empty.
wait_file() {
	local i
	for ((i = 0; i < $2; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	fail "$1 still empty after $(($2 / 10)) s"
}

# The unlinked data disk QEMU $1 holds open: the path of its fd, found by
# readlink (never by parsing ls).  Memory files are not disks.
disk_fd() {
	local fd t
	for fd in /proc/"$1"/fd/*; do
		t=$(readlink "$fd") || continue
		[[ "$t" == *" (deleted)" && "$t" != /memfd:* && "$t" == "$OMNIRUN_STATE_DIR"/* ]] || continue
		echo "$fd"
		return 0
	done
	return 1
}

# What each fd of process $1 points at, one per line.
fd_targets() {
	local fd
	for fd in /proc/"$1"/fd/*; do readlink "$fd"; done
}

# Resident memory of process $1 in kB (0 if gone).
rss_kb() { awk '/^VmRSS/ {print $2; f=1} END {if (!f) print 0}' /proc/"$1"/status 2>/dev/null || echo 0; }
# Free kB on the filesystem that holds $1.
free_kb() { df -Pk "$1" | awk 'NR == 2 {print $4}'; }
