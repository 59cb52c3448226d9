#!/usr/bin/env bats
# sbx-files against one shared guest.
load helpers

setup_file() {
	export ID=$(sbx-create --timeout 900 --disk 1024)
	[ -n "$ID" ]
}

teardown_file() {
	sbx-kill "$ID"
}

@test "a 100 MiB file round trip keeps its sha256 both ways" {
	f=$BATS_TEST_TMPDIR/big
	head -c 104857600 /dev/urandom >"$f"
	want=$(sha256sum <"$f" | cut -d' ' -f1)
	sbx-files "$ID" put "$f" /data/big
	run sbx-exec "$ID" -c 'sha256sum /data/big'
	assert_eq "${output%% *}" "$want"
	sbx-files "$ID" get /data/big "$BATS_TEST_TMPDIR/back"
	assert_eq "$(sha256sum <"$BATS_TEST_TMPDIR/back" | cut -d' ' -f1)" "$want"
	sbx-files "$ID" rm /data/big
}

@test "put and get with - for stdin/stdout, modes preserved" {
	printf 'hello\0world' | sbx-files "$ID" put - /tmp/nul.bin
	run bash -c "sbx-files $ID get /tmp/nul.bin - | od -c | head -1"
	assert_contains "$output" '\0'
	echo '#!/bin/sh' >"$BATS_TEST_TMPDIR/s.sh"; chmod 750 "$BATS_TEST_TMPDIR/s.sh"
	sbx-files "$ID" put "$BATS_TEST_TMPDIR/s.sh" /tmp/s.sh
	run sbx-exec "$ID" -c 'stat -c %a /tmp/s.sh'
	assert_eq "$output" "750"
	sbx-files "$ID" get /tmp/s.sh "$BATS_TEST_TMPDIR/s2.sh"
	assert_eq "$(stat -c %a "$BATS_TEST_TMPDIR/s2.sh")" "750"
	sbx-files "$ID" put -m 600 "$BATS_TEST_TMPDIR/s.sh" /tmp/s600
	run sbx-exec "$ID" -c 'stat -c %a /tmp/s600'
	assert_eq "$output" "600"
}

@test "ls, stat, mkdir -p, mv, rm -r" {
	sbx-files "$ID" mkdir -p /data/a/b/c
	echo x | sbx-files "$ID" put - /data/a/b/c/f
	run sbx-files "$ID" ls /data/a/b/c
	assert_eq "$output" "f"
	run sbx-files "$ID" ls -l /data/a/b
	assert_contains "$output" "dir"
	run sbx-files --json "$ID" stat /data/a/b/c/f
	assert_contains "$output" '"size": 2'
	sbx-files "$ID" mv /data/a/b/c/f /data/a/g
	run sbx-files "$ID" ls /data/a
	assert_contains "$output" "g"
	run sbx-files "$ID" rm /data/a
	[ "$status" -ne 0 ]
	sbx-files "$ID" rm -r /data/a
	run sbx-files "$ID" stat /data/a
	assert_eq "$status" 3
}

@test "file names with spaces and newlines" {
	name=$'/tmp/a name\nwith newline'
	echo data | sbx-files "$ID" put - "$name"
	run sbx-files "$ID" get "$name" -
	assert_eq "$output" "data"
	run sbx-files --json "$ID" ls /tmp
	assert_contains "$output" 'a name\nwith newline'
}

@test "missing file, directory where a file is expected, relative path" {
	run sbx-files "$ID" get /no/such "$BATS_TEST_TMPDIR/x"
	assert_eq "$status" 3
	assert_contains "$output" "/no/such"
	[ ! -e "$BATS_TEST_TMPDIR/x" ] && [ ! -e "$BATS_TEST_TMPDIR/x.part" ] || fail "partial file left"
	run sbx-files "$ID" get /tmp "$BATS_TEST_TMPDIR/x"
	[ "$status" -ne 0 ]
	assert_contains "$output" "directory"
	run sbx-files "$ID" put /etc/hostname relative/path
	assert_eq "$status" 2
	run sbx-files "$ID" put /nonexistent-host-file /tmp/x
	[ "$status" -ne 0 ]
	run sbx-files "$ID" frobnicate /x
	assert_eq "$status" 2
}

@test "watch streams create/modify/delete events" {
	sbx-files "$ID" mkdir -p /tmp/w
	sbx-files --json "$ID" watch -r /tmp/w >"$BATS_TEST_TMPDIR/ev" &
	wpid=$!
	sleep 1.5
	sbx-exec "$ID" -c 'echo 1 > /tmp/w/new; echo 2 >> /tmp/w/new; mkdir /tmp/w/sub; echo 3 > /tmp/w/sub/deep; mv /tmp/w/new /tmp/w/renamed; rm /tmp/w/renamed'
	sleep 1.5
	kill -INT "$wpid"; wait "$wpid" || true
	ev=$(cat "$BATS_TEST_TMPDIR/ev")
	assert_contains "$ev" '"create"'
	assert_contains "$ev" '/tmp/w/new'
	assert_contains "$ev" '"delete"'
	assert_contains "$ev" '/tmp/w/sub/deep'
	run sbx-exec "$ID" -- echo still-healthy
	assert_eq "$output" "still-healthy"
}
