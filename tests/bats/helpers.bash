# Shared by the bats files.  The suite runs under tests/run-all, which sets
# OMNIRUN_STATE_DIR, OMNIRUN_RUN_DIR and OMNIRUN_CONF to a throwaway tree
# and has built the tiny template there.

bats_require_minimum_version 1.5.0

# Asserts with a message that names what differed.
fail() { echo "$*" >&2; return 1; }
assert_eq() { [ "$1" = "$2" ] || fail "expected '$2', got '$1'${3:+ ($3)}"; }
assert_contains() { [[ "$1" == *"$2"* ]] || fail "expected output to contain '$2', got: $1"; }

# A sandbox's QEMU pid from the record (empty if none).
vmm_pid() { sbx-ls --json "$1" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p' | head -1; }
monitor_pid() { sbx-ls --json "$1" | sed -n 's/.*"monitor_pid": \([0-9]*\).*/\1/p' | head -1; }

# Asserts that nothing of sandbox $1 is left: no process, no runtime dir.
assert_gone() {
	local id=$1
	[ ! -e "$OMNIRUN_RUN_DIR/sandboxes/$id" ] || fail "runtime dir of $id still there"
	! pgrep -f "sandboxes/$id/" >/dev/null || fail "a process of $id still runs"
	! pgrep -f "sbx-monitor.* $id" >/dev/null || fail "the monitor of $id still runs"
	[ -z "$(ls "$OMNIRUN_STATE_DIR/sandboxes/$id" 2>/dev/null | grep -v -E '^(sandbox.conf|lock|console.log(.1)?|monitor.log|commands.jsonl)$')" ] ||
		fail "unexpected files left in the state dir of $id"
}

# Writes a config with extra lines and points OMNIRUN_CONF at it.
with_conf() {
	local f=$BATS_TEST_TMPDIR/omnirun.conf
	printf '%s\n' "$@" >"$f"
	export OMNIRUN_CONF=$f
}
