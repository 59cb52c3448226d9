#!/usr/bin/env bats
# sbx-files against one shared guest.
load helpers

setup_file() {
	omr_setup_file
	export ID=$(new_sandbox --timeout 900 --disk 1024)
	[ -n "$ID" ]
}

teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() { omr_teardown; }

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
	printf 'hello\0world\0\0\n\0' >"$BATS_TEST_TMPDIR/nul"
	sbx-files "$ID" put - /tmp/nul.bin <"$BATS_TEST_TMPDIR/nul"
	sbx-files "$ID" get /tmp/nul.bin - >"$BATS_TEST_TMPDIR/nul.back"
	cmp "$BATS_TEST_TMPDIR/nul" "$BATS_TEST_TMPDIR/nul.back" || fail "NUL bytes did not survive the round trip"
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

@test "watch streams create, modify, rename and delete events" {
	sbx-files "$ID" mkdir -p /tmp/w
	sbx-files --json "$ID" watch -r /tmp/w >"$BATS_TEST_TMPDIR/ev" &
	wpid=$!
	sleep 1.5
	# touch creates without writing, so the one modify is the append.
	sbx-exec "$ID" -c 'touch /tmp/w/new; echo 2 >> /tmp/w/new; mkdir /tmp/w/sub; echo 3 > /tmp/w/sub/deep; mv /tmp/w/new /tmp/w/renamed; rm /tmp/w/renamed'
	sleep 1.5
	kill -INT "$wpid"
	rc=0; wait "$wpid" || rc=$?
	assert_eq "$rc" 0 "watch's status after SIGINT"
	ev=$BATS_TEST_TMPDIR/ev
	jq -e . <"$ev" >/dev/null || fail "not JSON: $(cat "$ev")"
	has() { [ "$(jq -c "select(.event == \"$1\" and .path == \"$2\")" <"$ev" | wc -l)" -ge 1 ] ||
		fail "no $1 event for $2 in: $(cat "$ev")"; }
	has create /tmp/w/new
	has modify /tmp/w/new
	has create /tmp/w/sub
	has create /tmp/w/sub/deep
	has rename_from /tmp/w/new
	has rename_to /tmp/w/renamed
	has delete /tmp/w/renamed
	# The two halves of the rename carry the same cookie.
	c1=$(jq -r 'select(.event == "rename_from") | .cookie' <"$ev")
	c2=$(jq -r 'select(.event == "rename_to") | .cookie' <"$ev")
	[ -n "$c1" ] && [ "$c1" != null ] && [ "$c1" = "$c2" ] || fail "rename cookies '$c1' and '$c2'"
	assert_eq "$(jq -r 'select(.event == "create" and .path == "/tmp/w/sub") | .dir' <"$ev")" true
	run sbx-exec "$ID" -- echo still-healthy
	assert_eq "$output" "still-healthy"
}

@test "put -p makes the parents, put overwrites, get never leaves a partial file" {
	echo one >"$BATS_TEST_TMPDIR/f"
	run sbx-files "$ID" put "$BATS_TEST_TMPDIR/f" /tmp/p/q/r/f
	assert_eq "$status" 3 "put into missing directories without -p"
	run sbx-files "$ID" put -p "$BATS_TEST_TMPDIR/f" /tmp/p/q/r/f
	assert_eq "$status" 0 "$output"
	assert_eq "$(sbx-exec "$ID" -- cat /tmp/p/q/r/f)" one
	# Overwriting replaces content and mode, whatever was there.
	printf 'two, longer than one\n' >"$BATS_TEST_TMPDIR/g"; chmod 600 "$BATS_TEST_TMPDIR/g"
	sbx-exec "$ID" -c 'chmod 755 /tmp/p/q/r/f'
	run sbx-files "$ID" put "$BATS_TEST_TMPDIR/g" /tmp/p/q/r/f
	assert_eq "$status" 0 "$output"
	assert_eq "$(sbx-exec "$ID" -c 'cat /tmp/p/q/r/f; stat -c %a /tmp/p/q/r/f')" "$(printf 'two, longer than one\n600')"
	run sbx-exec "$ID" -c 'ls -A /tmp/p/q/r'
	assert_eq "$output" "f" "no temporary file left in the guest"

	# A download interrupted half-way: DST keeps what it held, and no
	# temporary file is left next to it.
	sbx-exec "$ID" -c 'dd if=/dev/urandom of=/data/dl bs=1M count=96 2>/dev/null'
	d=$BATS_TEST_TMPDIR/dl; mkdir "$d"
	echo "old content" >"$d/dst"
	sbx-files "$ID" get /data/dl "$d/dst" &
	gpid=$!
	for _ in $(seq 400); do
		[ "$(ls -A "$d" | wc -l)" -gt 1 ] && [ -n "$(find "$d" -name '.*' -size +0)" ] && break
		sleep 0.02
	done
	[ -n "$(find "$d" -name '.*' -size +0)" ] || fail "the download never started (or ended at once): $(ls -lA "$d")"
	kill -INT "$gpid"
	rc=0; wait "$gpid" || rc=$?
	[ "$rc" -ne 0 ] || fail "an interrupted download exited 0"
	assert_eq "$(cat "$d/dst")" "old content" "DST after an interrupted download"
	assert_eq "$(ls -A "$d")" "dst" "files next to DST"
	# Uninterrupted, the same download is whole.
	run sbx-files "$ID" get /data/dl "$d/dst"
	assert_eq "$status" 0 "$output"
	assert_eq "$(stat -c %s "$d/dst")" $((96 << 20))
	assert_eq "$(ls -A "$d")" "dst"
	sbx-files "$ID" rm /data/dl
}

@test "the data disk takes thousands of files past its first inode group, and reads them back from the disk" {
	# The agent writes the filesystem itself and leaves unused inode
	# tables unwritten (noise under dm-crypt): inodes taken from them must
	# read back as written once the page cache is dropped.  1 GiB: eight
	# groups of 2048 inodes; 2250 files fill group 0 and spill over, 250
	# to a directory: more than a block of entries, so hashed (dir_index).
	run sbx-exec "$ID" -c 'cd /data && for d in $(seq 9); do mkdir -p many/$d &&
		for f in $(seq 250); do echo "$d-$f" >many/$d/$f; done; done && sync &&
		echo 3 >/proc/sys/vm/drop_caches && bad=0 &&
		for d in $(seq 9); do for f in $(seq 250); do
			read -r x <many/$d/$f; [ "$x" = "$d-$f" ] || bad=$((bad + 1)); done; done &&
		echo "files $(find many -type f | wc -l) bad $bad maxino $(stat -c %i many/*/* | sort -n | tail -1)"'
	assert_eq "$status" 0 "$output"
	[[ "$output" =~ ^files\ 2250\ bad\ 0\ maxino\ ([0-9]+)$ ]] || fail "got: $output"
	[ "${BASH_REMATCH[1]}" -gt 2048 ] || fail "every inode in group 0: $output"
	run sbx-exec "$ID" -c 'rm -r /data/many && df -i /data | tail -1'
	assert_eq "$status" 0 "$output"
}
