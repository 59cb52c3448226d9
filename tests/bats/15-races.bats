#!/usr/bin/env bats
# Lifecycle races: a kill during boot, a creator that goes away.
load helpers

setup() { omr_setup; }
teardown() { omr_teardown; }

# Waits until a sandbox record in state "starting" appears; prints its id.
starting_id() {
	for _ in $(seq 200); do
		for f in "$OMNIRUN_STATE_DIR"/sandboxes/sb_*/sandbox.conf; do
			[ -e "$f" ] || continue
			if grep -q '^state = starting' "$f"; then
				basename "$(dirname "$f")"
				return 0
			fi
		done
		sleep 0.05
	done
	return 1
}

@test "sbx-kill during boot: the create fails cleanly and nothing is left" {
	sbx-create --timeout 300 >"$BATS_TEST_TMPDIR/out" 2>"$BATS_TEST_TMPDIR/err" &
	cpid=$!
	id=$(starting_id) || fail "no starting sandbox appeared"
	run sbx-kill "$id"
	[ "$status" -eq 0 ] || fail "kill during boot: $output"
	rc=0; wait "$cpid" || rc=$?
	[ "$rc" -ne 0 ] || fail "create succeeded although its sandbox was killed"
	[ ! -s "$BATS_TEST_TMPDIR/out" ] || fail "create printed an id: $(cat "$BATS_TEST_TMPDIR/out")"
	# How it ended, as its creator was told; a create that failed keeps
	# no record.
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "killed during boot"
	run sbx-ls "$id"
	assert_eq "$status" 3 "a record is left: $output"
	assert_gone "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}

@test "a create whose caller died: the sandbox tears itself down" {
	sbx-create --timeout 300 >/dev/null 2>&1 &
	cpid=$!
	id=$(starting_id) || fail "no starting sandbox appeared"
	kill -9 "$cpid"; wait "$cpid" 2>/dev/null || true
	wait_stopped "$id" 600
	# Its monitor found nobody to report to once the guest answered.
	assert_eq "$(sb_field "$id" end_reason)" creator_gone
	assert_gone "$id"
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "leftovers: $output"
}
