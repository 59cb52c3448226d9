#!/usr/bin/env bats
# Hostile input to the guest agent, against one shared guest: paths that
# spell "/" another way (issue 8 item 5), and bytes that are not UTF-8 in
# argv, the environment, the working directory and file names (item 6).
load ../helpers

# od -An -tx1 output ($1) as hex pairs on one line: "61 ff fe 62".
squash() { echo "$1" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//'; }

setup_file() {
	export ID=$(sbx-create --timeout 900)
	[ -n "$ID" ]
	export FF=$(printf '\xff\xfe')
}

teardown_file() {
	sbx-kill "$ID"
}
setup() { omr_setup; }
teardown() { omr_teardown; }

@test "rm -r of / spelled /. /./ // /data/.. /tmp/../ is refused, and the guest lives on" {
	sbx-exec "$ID" -c 'mkdir -p /data/keep && echo x >/data/keep/f && ln -s / /tmp/toroot'
	for p in /. /./ // /data/.. /tmp/../ /tmp/.. /../.. /./data/../.; do
		run sbx-files "$ID" rm -r "$p"
		[ "$status" -ne 0 ] || fail "rm -r $p succeeded"
		assert_contains "$output" "refusing to remove /"
	done
	# A symlink to / is removed as a link, never walked.
	sbx-files "$ID" rm -r /tmp/toroot/
	run sbx-exec "$ID" -c 'test -e /bin/sh && cat /data/keep/f && test ! -e /tmp/toroot && echo alive'
	assert_eq "$status" 0
	assert_eq "$output" "$(printf 'x\nalive')"
}

@test "paths are normalized before they are used: /tmp/./a//b/../c is /tmp/a/c" {
	echo hi | sbx-files "$ID" put -p - /tmp/./na//b/../c
	run sbx-exec "$ID" -- cat /tmp/na/c
	assert_eq "$output" "hi"
	run sbx-files "$ID" put /etc/hostname /tmp/na/dir/
	[ "$status" -ne 0 ] || fail "a put to a path ending in / wrote a file"
	assert_contains "$output" "directory"
	sbx-files "$ID" rm -r /tmp/na/../na
	run sbx-files "$ID" stat /tmp/na
	assert_eq "$status" 3
}

@test "an argv element with bytes ff fe reaches the command exactly" {
	run bash -c "sbx-exec '$ID' -- printf '[%s]' 'a${FF}b' x | od -An -tx1"
	assert_eq "$status" 0
	assert_eq "$(squash "$output")" \
		"5b 61 ff fe 62 5d 5b 78 5d"
}

@test "an -e value, a shell line and a working directory with bytes ff fe arrive exactly" {
	run bash -c "sbx-exec -e 'V=$FF' -e 'W=ok' '$ID' -c 'printf %s\$W \"\$V\"' | od -An -tx1"
	assert_eq "$(squash "$output")" "ff fe 6f 6b"
	run bash -c "sbx-exec '$ID' -c 'printf %s ${FF}' | od -An -tx1"
	assert_eq "$(squash "$output")" "ff fe"
	sbx-files "$ID" mkdir "/tmp/d$FF"
	run bash -c "sbx-exec -w '/tmp/d$FF' '$ID' -- pwd | od -An -tx1"
	assert_eq "$(squash "$output")" "2f 74 6d 70 2f 64 ff fe 0a"
}

@test "a file whose name is not UTF-8: put, ls, stat, get, mv, rm" {
	printf 'payload\n' >"$BATS_TEST_TMPDIR/src"
	sbx-files "$ID" mkdir -p /tmp/nu
	sbx-files "$ID" put "$BATS_TEST_TMPDIR/src" "/tmp/nu/n$FF"
	# (busybox ls shows such bytes as '?': the shell's glob does not)
	run bash -c "sbx-exec '$ID' -c 'cd /tmp/nu && printf %s *' | od -An -tx1"
	assert_eq "$(squash "$output")" "6e ff fe"
	run sbx-files "$ID" ls /tmp/nu
	assert_eq "$output" 'n\xff\xfe'
	run sbx-files --json "$ID" ls /tmp/nu
	assert_contains "$output" '"name_b64": "bv/+"'
	run sbx-files --json "$ID" stat "/tmp/nu/n$FF"
	assert_contains "$output" '"name_b64": "bv/+"'
	sbx-files "$ID" get "/tmp/nu/n$FF" "$BATS_TEST_TMPDIR/back"
	cmp "$BATS_TEST_TMPDIR/src" "$BATS_TEST_TMPDIR/back"
	sbx-files "$ID" mv "/tmp/nu/n$FF" "/tmp/nu/m$FF"
	sbx-files "$ID" get "/tmp/nu/m$FF" - | cmp "$BATS_TEST_TMPDIR/src" -
	sbx-files "$ID" rm "/tmp/nu/m$FF"
	run sbx-files "$ID" ls /tmp/nu
	assert_eq "$output" ""
}

@test "watch events and ps carry names and arguments that are not UTF-8 exactly" {
	sbx-files "$ID" mkdir -p /tmp/w
	out=$BATS_TEST_TMPDIR/watch
	sbx-files --json "$ID" watch /tmp/w >"$out" &
	w=$!
	for _ in $(seq 100); do grep -q '"ready"' "$out" && break; sleep 0.1; done
	sbx-exec "$ID" -c "touch '/tmp/w/e$FF'"
	for _ in $(seq 100); do grep -q '"path_b64"' "$out" && break; sleep 0.1; done
	kill -INT "$w"
	wait "$w" || true
	# base64 of "/tmp/w/e\xff\xfe"
	assert_contains "$(cat "$out")" '"path_b64":"L3RtcC93L2X//g=="'
	pid=$(sbx-exec -b "$ID" -- sh -c 'sleep 60' "x$FF")
	run sbx-exec --ps --json "$ID"
	assert_contains "$output" '"argv_b64"'
	assert_contains "$output" "$(printf '%s' "x$FF" | base64)"
	sbx-exec --kill "$ID" "$pid" KILL
}
