#!/usr/bin/env bats
# Issue 9, item 3: the warm pool.  [pool] tiny = 2 keeps two tiny
# sandboxes started and claimed by nobody; sbx-create takes one when the
# shape it asks for is the template's, gives it its own terms, and the
# pool refills in the background.  Each test starts from an empty pool
# and leaves one (teardown drains it).
load helpers

bats_require_minimum_version 1.5.0

# The run's config plus lines of the test's own (a pool, a broken QEMU).
pool_conf() {
	local f=$BATS_TEST_TMPDIR/omnirun.conf
	{ cat "$RUN_CONF"; printf '%s\n' "$@"; } >"$f"
	export OMNIRUN_CONF=$f
}

setup_file() { export RUN_CONF=$OMNIRUN_CONF; }
setup() {
	omr_setup
	pool_conf '[pool]' 'tiny = 2'
}

# Waits until no filler runs (one started by a create execs within a few
# ms of the create's return), then kills what waits in the pools.
drain_all() {
	sleep 0.3
	for _ in $(seq 600); do
		pgrep -f "sbx-monitor --fill-pool" >/dev/null || break
		sleep 0.1
	done
	sbx-pool drain -q
}
teardown() {
	drain_all >/dev/null 2>&1 || true
	omr_teardown
}

# The ids waiting in tiny's pool, one per line (sorted).
pooled() { sbx-pool ls --json | jq -r '.[] | select(.template == "tiny") | .sandboxes[]' | sort; }
pool_ready() { sbx-pool ls --json | jq -r '.[] | select(.template == "tiny") | .ready'; }
# Waits (up to $2 tenths of a second) until tiny's pool has $1 ready and
# none starting.
wait_ready() {
	local i j
	for ((i = 0; i < $2; i++)); do
		j=$(sbx-pool ls --json | jq -c '.[] | select(.template == "tiny")')
		[ "$(jq -r .ready <<<"$j")/$(jq -r .starting <<<"$j")" = "$1/0" ] && return 0
		sleep 0.1
	done
	fail "the pool of tiny is $j after $(($2 / 10)) s, not $1 ready"
}
ms() { date +%s%3N; }
# Sends one request (JSON) to sandbox $1's monitor, as a client does, and
# prints the END it answers with.
monitor_op() {
	python3 - "$OMNIRUN_RUN_DIR/sandboxes/$1/monitor.sock" "$2" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1])
p = sys.argv[2].encode()
s.sendall(struct.pack(">IBBHI", len(p), 2, 0, 0, 1) + p)
buf = b""
while True:
    b = s.recv(65536)
    if not b: sys.exit("monitor closed the connection")
    buf += b
    while len(buf) >= 12:
        n, t, _, _, sid = struct.unpack(">IBBHI", buf[:12])
        if len(buf) < 12 + n: break
        if t == 8 and sid == 1: print(buf[12:12 + n].decode()); sys.exit(0)
        buf = buf[12 + n:]
EOF
}

@test "fill starts exactly N pooled sandboxes, hidden from sbx-ls but with --all; a smaller size trims it; sbx-gc --check is clean" {
	run sbx-pool fill
	[ "$status" -eq 0 ] || fail "fill: $status: $output"
	assert_eq "$(pool_ready)" 2
	ids=$(pooled)
	assert_eq "$(wc -l <<<"$ids")" 2
	# Filled already: nothing more starts.
	run sbx-pool fill
	[ "$status" -eq 0 ] || fail "second fill: $output"
	assert_eq "$(pooled)" "$ids"
	assert_eq "$(sbx-ls -q)" ""
	for id in $ids; do
		sbx-ls --all | grep -E "^$id +tiny +pooled " >/dev/null || fail "$id not shown as pooled"
		j=$(sbx-ls --all --json | jq -c ".[] | select(.sandbox_id == \"$id\")")
		assert_eq "$(jq -r '[.pooled, .state, .network.mode, .idle_timeout] | join(" ")' <<<"$j")" \
			"true running air-gapped 0"
		# Its own identity already: the hostname is its id.
		assert_eq "$(sbx-exec "$id" -- hostname)" "$id"
	done
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc with a full pool: $output"
	# The size went down: the pool never stays larger than it.
	pool_conf '[pool]' 'tiny = 1'
	run sbx-pool fill
	[ "$status" -eq 0 ] || fail "fill to 1: $output"
	assert_eq "$(pool_ready)" 1
	assert_eq "$(sbx-ls --all --json | jq '[.[] | select(.pooled)] | length')" 1
}

@test "a create claims a pooled sandbox with its own terms, far faster than a boot; the pool refills to N in the background" {
	sbx-pool fill -q
	ids=$(pooled)
	t0=$(ms)
	id=$(new_sandbox --timeout 300 --idle-timeout 120 --allow example.com -v 2>"$BATS_TEST_TMPDIR/err")
	t1=$(ms)
	# A cold boot of tiny, for comparison.
	cold=$(new_sandbox --processes 100)
	t2=$(ms)
	echo "# claim from the pool: $((t1 - t0)) ms; cold boot: $((t2 - t1)) ms" >&3
	grep -qxF "$id" <<<"$ids" || fail "$id is not one of the pooled ($ids)"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/err")" "claimed from the pool of template tiny"
	[ $((t1 - t0)) -lt 1500 ] || fail "the claim took $((t1 - t0)) ms"
	[ $((t1 - t0)) -lt $(((t2 - t1) / 2)) ] || fail "the claim ($((t1 - t0)) ms) is not far below a boot ($((t2 - t1)) ms)"
	j=$(sbx-ls --json "$id")
	assert_eq "$(jq -r '.[0] | [.pooled, .from_pool, .timeout, .idle_timeout, .network.mode, (.network.allow | join(","))] | join(" ")' <<<"$j")" \
		"false true 300 120 allow-list example.com"
	# The lifetime counts from the claim.
	exp=$(date -d "$(jq -r '.[0].expires_at' <<<"$j")" +%s)
	[ $((exp - $(date +%s))) -gt 290 ] && [ $((exp - $(date +%s))) -le 300 ] ||
		fail "expires in $((exp - $(date +%s))) s, not 300"
	# It is the caller's now: listed, and it answers, its clock the host's.
	assert_contains "$(sbx-ls -q)" "$id"
	h0=$(date +%s); g=$(sbx-exec "$id" -- date +%s); h1=$(date +%s)
	[ "$g" -ge $((h0 - 1)) ] && [ "$g" -le $((h1 + 1)) ] || fail "guest clock $g, host $h0..$h1"
	# Back to two, without the claimed one, and never more.
	wait_ready 2 600
	! pooled | grep -qxF "$id" || fail "$id is still in the pool"
	sleep 1
	assert_eq "$(pooled | wc -l)" 2
	assert_eq "$(sbx-ls --all --json | jq '[.[] | select(.pooled)] | length')" 2
}

@test "concurrent creates never get the same sandbox: two from a pool of two, the third boots; a monitor refuses a second claim" {
	sbx-pool fill -q
	ids=$(pooled)
	for i in 1 2 3; do
		sbx-create --timeout 300 --json >"$BATS_TEST_TMPDIR/c$i" 2>&1 &
	done
	wait
	for i in 1 2 3; do
		jq -r .sandbox_id "$BATS_TEST_TMPDIR/c$i" >>"$OMR_TRACK" ||
			fail "create $i: $(cat "$BATS_TEST_TMPDIR/c$i")"
	done
	got=$(for i in 1 2 3; do jq -r .sandbox_id "$BATS_TEST_TMPDIR/c$i"; done | sort)
	assert_eq "$(uniq <<<"$got" | wc -l)" 3
	from=$(for i in 1 2 3; do jq -r '.from_pool // false' "$BATS_TEST_TMPDIR/c$i"; done | sort | tr '\n' ' ')
	assert_eq "$from" "false true true "
	for id in $ids; do grep -qxF "$id" <<<"$got" || fail "pooled $id was not claimed"; done
	# The monitor decides: a sandbox claimed already is refused to the
	# next claim, which changes nothing of it.
	id=$(head -n1 <<<"$ids")
	ans=$(monitor_op "$id" '{"op":"pool_claim","timeout":60}')
	assert_contains "$ans" "is not in a pool (claimed already)"
	assert_eq "$(sb_field "$id" timeout)" 300
}

@test "a create with a shape the pool does not have boots; the pool is left alone" {
	sbx-pool fill -q
	ids=$(pooled)
	id=$(new_sandbox --processes 100 -v 2>"$BATS_TEST_TMPDIR/err")
	! grep -qxF "$id" <<<"$ids" || fail "$id came from the pool"
	# Started as any create starts: restored where a snapshot fits, else cold.
	grep -qE "restored from the snapshot|cold boot" "$BATS_TEST_TMPDIR/err" ||
		fail "how it started: $(cat "$BATS_TEST_TMPDIR/err")"
	assert_eq "$(sb_field "$id" processes)" 100
	assert_eq "$(pooled)" "$ids"
}

@test "pooled sandboxes count against no API user until claimed" {
	email=pool-$RANDOM$RANDOM@pool.test
	sbx-user add "$email" >/dev/null
	sbx-user limit "$email" 1 >/dev/null
	sbx-pool fill -q
	ids=$(pooled)
	# Two pooled sandboxes live, and the user's one place is free.
	id=$(new_sandbox --owner "$email")
	grep -qxF "$id" <<<"$ids" || fail "$id is not one of the pooled"
	# Now it is theirs: their limit holds, pool or not.
	run sbx-create --owner "$email"
	[ "$status" -eq 5 ] || fail "a second create for a user limited to 1: $status: $output"
	assert_contains "$output" "limit"
}

@test "drain kills the pooled sandboxes and leaves nothing" {
	sbx-pool fill -q
	ids=$(pooled)
	run sbx-pool drain
	[ "$status" -eq 0 ] || fail "drain: $output"
	assert_eq "$output" "2 pooled sandboxes killed"
	for id in $ids; do
		assert_eq "$(sb_field "$id" state)" stopped
		assert_gone "$id"
	done
	assert_eq "$(pool_ready)" 0
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc after a drain: $output"
}

@test "the filler failing is said clearly and leaves nothing: no such template, a broken QEMU, in the background" {
	pool_conf '[pool]' 'nosuch = 1'
	run sbx-pool fill
	[ "$status" -eq 3 ] || fail "fill of a missing template: $status: $output"
	assert_contains "$output" "pool nosuch: cannot start sandbox 1 of 1"
	assert_contains "$output" "nosuch"
	run sbx-pool ls
	assert_contains "$output" "pool nosuch: cannot start"
	# A broken QEMU: the boot fails, nothing of it stays.
	pool_conf '[vmm]' 'qemu = /nonexistent/qemu' '[pool]' 'tiny = 1'
	run sbx-pool fill tiny
	[ "$status" -ne 0 ] || fail "fill with a broken QEMU succeeded: $output"
	assert_contains "$output" "pool tiny: cannot start sandbox 1 of 1"
	assert_eq "$(sbx-ls --all --json | jq '[.[] | select(.state != "stopped")] | length')" 0
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc after a failed fill: $output"
	# In the background: a claim works (no QEMU needed), the refill
	# that follows fails, says so in the pool's status and log.
	pool_conf '[pool]' 'tiny = 1'
	sbx-pool fill -q
	pool_conf '[vmm]' 'qemu = /nonexistent/qemu' '[pool]' 'tiny = 1'
	id=$(new_sandbox)
	assert_eq "$(sb_field "$id" from_pool)" true
	drain_all >/dev/null
	err=$(sbx-pool ls --json | jq -r '.[] | select(.template == "tiny") | .last_error')
	assert_contains "$err" "pool tiny: cannot start sandbox 1 of 1"
	assert_contains "$(cat "$OMNIRUN_STATE_DIR/pool/tiny.log")" "pool tiny: cannot start"
	assert_eq "$(pool_ready)" 0
	assert_eq "$(sbx-ls --all --json | jq '[.[] | select(.state != "stopped")] | length')" 1
	run sbx-gc --check
	[ "$status" -eq 0 ] || fail "gc after a failed refill: $output"
}

@test "[pool] is checked: a bad name, a size out of range, more than the host's limit" {
	for bad in '[pool]|Tiny = 1' '[pool]|tiny = 65' '[pool]|tiny = x' '[sandbox]|max_sandboxes = 2|[pool]|tiny = 3'; do
		IFS='|' read -r -a lines <<<"$bad"
		pool_conf "${lines[@]}"
		run sbx-pool ls
		[ "$status" -ne 0 ] || fail "config '$bad' was taken"
		assert_contains "$output" "pool"
	done
}
