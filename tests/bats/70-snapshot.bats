#!/usr/bin/env bats
# Issue 9: sandboxes start as clones of the template's snapshot, each with
# an identity of its own; a snapshot that does not fit is refused whole.
load helpers

TPL_DIR() { echo "$OMNIRUN_STATE_DIR/templates/tiny"; }
SNAP() { echo "$OMNIRUN_STATE_DIR/templates/tiny/snapshot"; }

# The QEMU that runs the sandboxes can clone (8.2 and later), or the
# file checks that 7.2 boots cold and says why.
qemu_clones() {
	local v
	v=$(sbx-doctor --json | jq -r '.snapshots.supported')
	[ "$v" = true ]
}

setup_file() {
	omr_setup_file
	if sbx-doctor --json | jq -e '.snapshots.supported' >/dev/null; then
		# run-all's build made one; make sure (a failed make says why).
		[ -f "$(SNAP)/snapshot.conf" ] || sbx-template snapshot -q tiny
	fi
}
teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() { omr_teardown; }

# Puts the snapshot back as sbx-template makes it, if a test broke it.
remake() { sbx-template snapshot -q tiny; }

@test "QEMU 7.2 (no read-only clones): snapshot refused, sandboxes boot cold and say why" {
	if qemu_clones; then skip "QEMU $(sbx-doctor --json | jq -r .tcg.version) clones; checked below"; fi
	run --separate-stderr sbx-template snapshot tiny
	assert_eq "$status" 1 "$stderr"
	assert_contains "$stderr" "8.2 or later"
	run --separate-stderr sbx-create --verbose --timeout 60
	assert_eq "$status" 0 "$stderr"
	assert_contains "$stderr" "cold boot"
	sbx-kill "$output"
}

@test "ls and --json show the snapshot; restored sandboxes answer with their own identity" {
	qemu_clones || skip "QEMU older than 8.2: cold boots only (see the test above)"
	run sbx-template ls
	assert_eq "$status" 0
	[[ "$output" == *"tiny "*" yes"* ]] || fail "ls: $output"
	run sbx-template ls --json
	assert_eq "$(jq -r '.[] | select(.name == "tiny") | .snapshot.usable' <<<"$output")" true
	[ "$(stat -c %a "$(SNAP)/ram")" = 444 ] || fail "RAM file mode $(stat -c %a "$(SNAP)/ram")"
	ram_sum=$(sha256sum <"$(SNAP)/ram")
	# A clone that kept the template's clock would be behind by the
	# snapshot's age at restore: make that at least 3 s.
	age=$(($(date +%s) - $(stat -c %Y "$(SNAP)/state")))
	[ "$age" -ge 3 ] || sleep $((3 - age))

	run --separate-stderr sbx-create --verbose --timeout 120
	assert_eq "$status" 0 "$stderr"
	a=$output
	echo "$a" >>"$OMR_TRACK"
	assert_contains "$stderr" "restored from the snapshot"
	b=$(new_sandbox --timeout 120)
	[ "$a" != "$b" ] || fail "same id twice"
	assert_eq "$(sb_field "$b" boot)" restore
	# The clone's QEMU maps the template's RAM read-only (readonly=on;
	# in the jail through a read-only bind of it).
	pid=$(vmm_pid "$a")
	tr '\0' ' ' </proc/"$pid"/cmdline | grep -q "mem-path=[^ ]*/ram,readonly=on,rom=off,share=off" ||
		fail "QEMU's command line: $(tr '\0' ' ' </proc/"$pid"/cmdline)"
	grep -q '/ram' /proc/"$pid"/maps || fail "QEMU maps no RAM file"

	assert_eq "$(sbx-exec "$a" -- hostname)" "$a"
	assert_eq "$(sbx-exec "$b" -- hostname)" "$b"
	ra=$(sbx-exec "$a" -c 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n"')
	rb=$(sbx-exec "$b" -c 'head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n"')
	[ ${#ra} -eq 64 ] && [ "$ra" != "$rb" ] || fail "RNG output: $ra / $rb"
	for id in "$a" "$b"; do
		g=$(sbx-exec "$id" -- date +%s | tr -d '\r')
		h=$(date +%s)
		d=$((h - g)); d=${d#-}
		[ "$d" -le 1 ] || fail "$id: guest clock $d s off the host's"
	done

	# The disks: the same plaintext in both, different ciphertext (a
	# key of their own, drawn after the reseed).
	for id in "$a" "$b"; do
		run sbx-exec "$id" -c 'test "$(cat /proc/mounts | grep -c " /data ")" = 1 &&
			yes omnirun-snapshot-plaintext | head -c 4194304 >/data/p && sync && echo ok'
		assert_eq "$output" ok "$id: /data"
	done
	python3 - "$(disk_fd "$(vmm_pid "$a")")" "$(disk_fd "$(vmm_pid "$b")")" <<-'EOF'
		import sys, hashlib
		def blocks(p):
		    s = set()
		    with open(p, 'rb') as f:
		        while True:
		            b = f.read(4096)
		            if not b: break
		            if b.count(0) != len(b): s.add(hashlib.sha256(b).digest())
		    return s
		a, b = blocks(sys.argv[1]), blocks(sys.argv[2])
		data = open(sys.argv[1], 'rb').read()
		assert b'omnirun-snapshot-plaintext' not in data, "plaintext on the host"
		assert len(a) > 1000 and len(b) > 1000, (len(a), len(b))
		common = len(a & b)
		assert common == 0, "%d identical ciphertext blocks: the same key" % common
	EOF

	# A write in one is seen neither in the other nor in the template.
	sbx-exec "$a" -c 'echo omnirun-clone-marker-$((6*7)) >/tmp/marker; sync'
	run sbx-exec "$b" -- cat /tmp/marker
	[ "$status" -ne 0 ] || fail "b sees a's /tmp/marker: $output"
	! grep -q omnirun-clone-marker-42 "$(SNAP)/ram" || fail "the marker is in the template's RAM file"
	assert_eq "$(sha256sum <"$(SNAP)/ram")" "$ram_sum" "the template's RAM file changed"
	sbx-kill "$a"
	sbx-kill "$b"
}

@test "a sandbox that does not fit the snapshot boots cold and says why" {
	qemu_clones || skip "QEMU older than 8.2: cold boots only"
	run --separate-stderr sbx-create --verbose --timeout 60 --memory 320
	assert_eq "$status" 0 "$stderr"
	echo "$output" >>"$OMR_TRACK"
	assert_contains "$stderr" "cold boot: the snapshot has 1 vCPUs, 256 MB"
	assert_eq "$(sb_field "$output" boot)" cold
	sbx-kill "$output"
}

# Each broken snapshot: refused whole, the sandbox boots cold, says why.
cold_because() {
	run --separate-stderr sbx-create --verbose --timeout 60
	assert_eq "$status" 0 "$stderr"
	echo "$output" >>"$OMR_TRACK"
	assert_contains "$stderr" "cold boot: $1"
	assert_eq "$(sbx-exec "$output" -- echo up)" up
	sbx-kill "$output"
}

@test "fault: corrupt or truncated state, truncated RAM, another QEMU, kernel or agent: cold boot, then rebuilt" {
	qemu_clones || skip "QEMU older than 8.2: cold boots only"
	s=$(SNAP)
	cp "$s/state" "$BATS_TEST_TMPDIR/state"
	printf '\xff' | dd of="$s/state" bs=1 seek=4000 conv=notrunc status=none
	cold_because "the snapshot's device state is missing, truncated or corrupt"
	cp "$BATS_TEST_TMPDIR/state" "$s/state"
	truncate -s 1000 "$s/state"
	cold_because "the snapshot's device state is missing, truncated or corrupt"
	cp "$BATS_TEST_TMPDIR/state" "$s/state"
	truncate -s 1M "$s/ram"
	cold_because "the snapshot's RAM file is missing or truncated"
	remake
	sed -i 's/^qemu_id=.*/qemu_id=1:2:3:4/' "$s/snapshot.conf"
	cold_because "the snapshot was made with another QEMU binary"
	run sbx-template ls --json
	assert_contains "$(jq -r '.[] | select(.name == "tiny") | .snapshot.why' <<<"$output")" "another QEMU binary"
	remake
	# Another kernel or agent than the template's now: refused whole.
	sed -i 's/^kernel_id=.*/kernel_id=1:2:3:4/' "$s/snapshot.conf"
	cold_because "the snapshot was made with another kernel"
	remake
	sed -i 's/^initrd_id=.*/initrd_id=1:2:3:4/' "$s/snapshot.conf"
	cold_because "the snapshot was made with another initrd (agent)"
	remake
	run sbx-template ls --json
	assert_eq "$(jq -r '.[] | select(.name == "tiny") | .snapshot.usable' <<<"$output")" true
	run --separate-stderr sbx-create --verbose --timeout 60
	assert_contains "$stderr" "restored"
	sbx-kill "$output"
}

@test "fault: the snapshot deleted while clones use it: they run on, new ones boot cold" {
	qemu_clones || skip "QEMU older than 8.2: cold boots only"
	a=$(new_sandbox --timeout 120)
	assert_eq "$(sb_field "$a" boot)" restore
	rm -rf "$(SNAP)"
	assert_eq "$(sbx-exec "$a" -c 'dd if=/dev/zero of=/tmp/z bs=1M count=8 2>/dev/null && echo still')" still
	cold_because "template 'tiny' has no snapshot"
	assert_eq "$(sbx-exec "$a" -- echo up)" up
	sbx-kill "$a"
	remake
	run sbx-gc --check
	assert_eq "$status" 0 "$output"
}
