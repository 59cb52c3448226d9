#!/usr/bin/env bats
# Issue "Jail every VMM like Firecracker's jailer; per-sandbox limits on
# the host": every claim is checked from the outside, through what the
# host's /proc, cgroups and kernel log say about the jailed QEMU.
load helpers

setup_file() {
	export A=$(sbx-create --timeout 900 --cpus 1)
	export B=$(sbx-create --timeout 900)
	[ -n "$A" ] && [ -n "$B" ]
}

teardown_file() {
	sbx-kill "$A" "$B"
}

# The disk quota test's own state filesystem, whatever happened to it.
teardown() {
	[ -n "${QUOTA_FS:-}" ] || return 0
	for i in $(OMNIRUN_STATE_DIR=$QUOTA_FS sbx-ls -q 2>/dev/null); do
		OMNIRUN_STATE_DIR=$QUOTA_FS sbx-kill "$i" >/dev/null 2>&1
	done
	umount "$QUOTA_FS"
}

# field NAME PID: the value of a /proc/PID/status line.
field() { awk -v k="$1:" '$1 == k { $1 = ""; sub(/^[ \t]+/, ""); print }' /proc/"$2"/status; }
# Clock ticks of user + system time a process used so far.
ticks() { awk '{ print $14 + $15 }' /proc/"$1"/stat; }
# cores PID SECONDS: how many host cores PID used over SECONDS (x100).
cores() {
	local t0 t1
	t0=$(ticks "$1"); sleep "$2"; t1=$(ticks "$1")
	echo $(( (t1 - t0) * 100 / ($(getconf CLK_TCK) * $2) ))
}
# QMP line to sandbox $1 (after the greeting and capabilities).
qmp() {
	{ echo '{"execute":"qmp_capabilities"}'; echo "$2"; sleep 1; } |
		socat -t 3 - UNIX-CONNECT:"$OMNIRUN_RUN_DIR/sandboxes/$1/qmp.sock"
}
state_of() { sbx-ls --json "$1" | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p' | head -1; }
reason_of() { sbx-ls --json "$1" | sed -n 's/.*"end_reason": "\([a-z_]*\)".*/\1/p' | head -1; }

@test "a jailed QEMU has a uid of its own, no capabilities, no_new_privs and seccomp" {
	pa=$(vmm_pid "$A"); pb=$(vmm_pid "$B")
	ua=$(field Uid "$pa"); ub=$(field Uid "$pb")
	# real, effective, saved and filesystem uid alike, and not root's
	for u in "$ua" "$ub"; do
		echo "$u" | awk '$1 > 0 && $1 == $2 && $1 == $3 && $1 == $4 { ok = 1 } END { exit !ok }' ||
			fail "uids: $u"
	done
	[ "${ua%%[[:space:]]*}" != "${ub%%[[:space:]]*}" ] || fail "A and B share uid $ua"
	assert_eq "$(field Gid "$pa")" "$ua" "gid of A"
	assert_eq "$(field Groups "$pa")" "" "supplementary groups"
	for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
		assert_eq "$(field $cap "$pa")" 0000000000000000 "$cap"
	done
	assert_eq "$(field NoNewPrivs "$pa")" 1
	assert_eq "$(field Seccomp "$pa")" 2
	# ours stacked under QEMU's own -sandbox
	assert_eq "$(field Seccomp_filters "$pa")" 2
}

@test "a jailed QEMU's root holds only /usr, the lib links, its kernel, initrd and firmware, read-only" {
	pid=$(vmm_pid "$A")
	root=/proc/$pid/root
	top=$(ls -A "$root" | sort | tr '\n' ' ')
	first=$(echo "$OMNIRUN_RUN_DIR" | cut -d/ -f2)
	# A QEMU outside /usr (one unpacked aside: OMNIRUN_TEST_QEMU) has
	# its prefix bound as well.
	exe=$(readlink /proc/"$pid"/exe)
	qtop= qprefix=/usr
	case $exe in /usr/*) ;; *) qtop=$(echo "$exe" | cut -d/ -f2) qprefix=${exe%/bin/*} ;; esac
	assert_eq "$top" "$(printf '%s\n' lib lib64 usr "$first" $qtop | sort -u | tr '\n' ' ')" \
		"top of the root"
	for gone in proc sys etc dev var home root; do
		[ "$gone" = "$first" ] || [ "$gone" = "$qtop" ] || [ ! -e "$root/$gone" ] ||
			fail "/$gone exists in the jail"
	done
	# Outside /usr (and QEMU's prefix): directories, the two links, and
	# exactly these files: the kernel, the initrd, the firmware (qboot,
	# named by -bios: the host has it), and a restored sandbox's
	# template RAM file.
	args=$(tr '\0' ' ' </proc/"$pid"/cmdline)
	sbdir=.$OMNIRUN_RUN_DIR/sandboxes/$A
	want="$sbdir/initrd $sbdir/kernel"
	if [ -f /usr/share/qemu/qboot.rom ]; then
		assert_contains "$args" " -bios ${sbdir#.}/firmware " "the firmware by -bios"
		want="$want $sbdir/firmware"
	fi
	[[ $args != *"mem-path="* ]] || want="$want $sbdir/ram"
	files=$(cd "$root" && find . \( -path ./usr -o -path ".$qprefix" \) -prune -o -type f -print |
		sort | tr '\n' ' ')
	assert_eq "$files" "$(printf '%s\n' $want | sort | tr '\n' ' ')" "files"
	cmp -s "$root$OMNIRUN_RUN_DIR/sandboxes/$A/kernel" "$OMNIRUN_STATE_DIR/templates/tiny/vmlinuz" ||
		fail "the jail's kernel is not the template's"
	# No other sandbox is in it.
	[ ! -e "$root$OMNIRUN_RUN_DIR/sandboxes/$B" ] || fail "B is visible in A's jail"
	# Every mount of its namespace is read-only.
	rw=$(awk '{ split($6, o, ","); if (o[1] != "ro") print $5 }' /proc/"$pid"/mountinfo)
	assert_eq "$rw" "" "read-write mounts in the jail"
	assert_eq "$(readlink /proc/"$pid"/cwd)" "/" "working directory"
}

@test "a jailed QEMU has namespaces of its own, no environment but its malloc setting, and no core dumps" {
	pid=$(vmm_pid "$A"); other=$(vmm_pid "$B")
	for ns in mnt pid ipc uts net cgroup; do
		mine=$(readlink /proc/$$/ns/$ns)
		[ -n "$mine" ] || fail "cannot read /proc/$$/ns/$ns"
		[ "$(readlink /proc/"$pid"/ns/$ns)" != "$mine" ] || fail "$ns namespace is the host's"
		[ "$(readlink /proc/"$pid"/ns/$ns)" != "$(readlink /proc/"$other"/ns/$ns)" ] ||
			fail "$ns namespace shared with another sandbox"
	done
	# PID 2 of its own pid namespace, behind a tiny init.
	[[ "$(field NSpid "$pid")" =~ ^$pid[[:space:]]+2$ ]] || fail "NSpid: $(field NSpid "$pid")"
	# A network namespace with nothing in it but a loopback that is down.
	links=$(nsenter -t "$pid" -n ip -o link | awk -F': ' '{ print $2 }' | tr '\n' ' ')
	assert_eq "$links" "lo " "links in the jail's network namespace"
	assert_eq "$(tr '\0' ' ' </proc/"$pid"/environ)" "MALLOC_ARENA_MAX=1 " "QEMU's environment"
	assert_eq "$(awk '/^Max core file size/ { print $5 " " $6 }' /proc/"$pid"/limits)" "0 0" "RLIMIT_CORE"
	tr '\0' ' ' </proc/"$pid"/cmdline | grep -q "dump-guest-core=off,mem-merge=off" ||
		fail "guest memory may land in a core or be merged"
	# Only what QEMU needs is open: stdio, the disk, the tap, sockets,
	# QEMU's own; a restored sandbox's template RAM file, read-only.
	for fd in /proc/"$pid"/fd/*; do
		t=$(readlink "$fd")
		case $t in
		/dev/null | /dev/net/tun | pipe:* | socket:* | anon_inode:* | *" (deleted)") ;;
		"$OMNIRUN_RUN_DIR/sandboxes/$A/ram")
			flags=$(awk '/^flags:/ { print $2 }' /proc/"$pid"/fdinfo/"${fd##*/}")
			[ $((8#$flags & 3)) -eq 0 ] || fail "the template's RAM file is open for writing ($flags)" ;;
		*) fail "QEMU holds $t" ;;
		esac
	done
}

@test "a process running as one sandbox's uid cannot read another sandbox's memory" {
	pa=$(vmm_pid "$A"); pb=$(vmm_pid "$B")
	ua=$(field Uid "$pa" | awk '{ print $1 }')
	# Any mapped address will do: the first line of maps.
	addr_a=$((16#$(head -1 /proc/"$pa"/maps | cut -d- -f1)))
	addr_b=$((16#$(head -1 /proc/"$pb"/maps | cut -d- -f1)))
	as_a() { setpriv --reuid="$ua" --regid="$ua" --clear-groups --inh-caps=-all "$@"; }
	# The control: its own QEMU's memory is readable by that uid.
	run as_a dd if=/proc/"$pa"/mem bs=16 count=1 skip="$addr_a" iflag=skip_bytes status=none
	[ "$status" -eq 0 ] && [ -n "$output" ] || fail "A's uid cannot read A's memory: $output"
	run as_a dd if=/proc/"$pb"/mem bs=16 count=1 skip="$addr_b" iflag=skip_bytes status=none
	[ "$status" -ne 0 ] || fail "A's uid read B's memory"
	assert_contains "$output" "Permission denied"
	run as_a ls /proc/"$pb"/fd
	[ "$status" -ne 0 ] || fail "A's uid lists B's fds"
}

# busy ID N SECONDS: N CPU loops in the guest for SECONDS, in the
# background ($! is the job; a command's processes end with it).
busy() {
	sbx-exec "$1" -c "for i in \$(seq $2); do timeout $3 sh -c 'while :; do :; done' & done; wait" \
		>/dev/null 2>&1 &
}

@test "a --cpus 1 guest running CPU loops uses at most about one host core" {
	pid=$(vmm_pid "$A")
	busy "$A" 2 9
	job=$!
	sleep 2
	c=$(cores "$pid" 5)
	wait "$job" || true
	echo "# --cpus 1, two busy loops: $c % of a core" >&3
	[ "$c" -ge 60 ] || fail "the guest was not busy: $c %"
	[ "$c" -le 110 ] || fail "a 1-vCPU sandbox used $c % of a core"
}

@test "the CPU quota holds below the vCPUs: 2 busy vCPUs at 50 % each use one core" {
	with_conf "[vmm]" "accel = auto" "[jail]" "cpu_quota_percent = 50"
	id=$(sbx-create --timeout 300 --cpus 2)
	pid=$(vmm_pid "$id")
	busy "$id" 4 9
	job=$!
	sleep 2
	c=$(cores "$pid" 5)
	wait "$job" || true
	sbx-kill "$id"
	echo "# --cpus 2 at cpu_quota_percent = 50: $c % of a core" >&3
	[ "$c" -ge 60 ] || fail "the guest was not busy: $c %"
	[ "$c" -le 110 ] || fail "2 vCPUs held to one core used $c % of a core"
}

@test "a sandbox past its memory limit is killed alone; the others and the host are fine" {
	# No overhead and a small translation cache: guest memory plus QEMU's
	# own is over the limit once the guest touches most of its memory.
	# A cold boot (a disk size no snapshot has): a clone's untouched
	# memory is the template's file, charged to no sandbox, so a clone
	# stays under its limit however much its guest writes.
	with_conf "[vmm]" "accel = auto" "tcg_tb_size_mb = 8" "[jail]" "memory_overhead_mb = 0"
	id=$(sbx-create --timeout 300 --memory 256 --disk 500)
	assert_eq "$(sb_field "$id" boot)" cold
	pid=$(vmm_pid "$id")
	run sbx-exec "$id" -c 'dd if=/dev/zero of=/tmp/f bs=1M count=100; dd if=/dev/zero of=/dev/null bs=120M count=1'
	for _ in $(seq 50); do [ "$(state_of "$id")" = stopped ] && break; sleep 0.2; done
	assert_eq "$(state_of "$id")" stopped "state of the sandbox over its limit"
	assert_eq "$(reason_of "$id")" oom "its end reason"
	grep -q "killed by the OOM killer.*limit of 264 MB" "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log" ||
		fail "the monitor does not say why: $(cat "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log")"
	! kill -0 "$pid" 2>/dev/null || fail "its QEMU still runs"
	# The kernel's OOM killer acted inside that cgroup, not host-wide.
	if dmesg >/dev/null 2>&1; then
		dmesg | grep "oom-kill:" | grep -q "oom_memcg=/omnirun/$id," ||
			fail "no OOM kill confined to $id's cgroup in the kernel log"
	fi
	# The others run on.
	assert_eq "$(state_of "$A")" running
	run sbx-exec "$A" -- echo alive
	assert_eq "$output" alive
	assert_gone "$id"
}

@test "a QEMU that makes a system call outside the allow-list dies, and the monitor says which" {
	id=$(sbx-create --timeout 300)
	pid=$(vmm_pid "$id")
	# A NUMA-bound RAM backend makes QEMU call mbind, which it never needs.
	qmp "$id" '{"execute":"object-add","arguments":{"qom-type":"memory-backend-ram","id":"m0","size":4194304,"host-nodes":[0],"policy":"bind"}}' >/dev/null || true
	for _ in $(seq 50); do [ "$(state_of "$id")" = stopped ] && break; sleep 0.2; done
	assert_eq "$(state_of "$id")" stopped
	assert_eq "$(reason_of "$id")" seccomp
	grep -q "killed by seccomp at system call [0-9]* (mbind), which is not in the jail's allow-list" \
		"$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log" ||
		fail "monitor log: $(cat "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log")"
	! kill -0 "$pid" 2>/dev/null || fail "its QEMU still runs"
	run sbx-exec "$B" -- echo alive
	assert_eq "$output" alive
	assert_gone "$id"
}

@test "an exhausted uid range refuses a create with the limit exit code" {
	# A range of one uid, far from the suite's sandboxes.
	with_conf "[vmm]" "accel = auto" "[jail]" "uid_base = 1879900000" "uid_count = 1"
	id=$(sbx-create --timeout 300)
	assert_eq "$(field Uid "$(vmm_pid "$id")" | awk '{ print $1 }')" 1879900000
	run --separate-stderr sbx-create --timeout 300
	assert_eq "$status" 5 "exit status"
	assert_contains "$stderr" "every jail uid is taken"
	sbx-kill "$id"
	# Given back with the sandbox.
	id=$(sbx-create --timeout 300)
	sbx-kill "$id"
	assert_gone "$id"
}

@test "without usable cgroups a create fails clearly, unless allow_unlimited" {
	other=v2
	[ -n "$(awk '$9 == "cgroup2" && $5 == "/sys/fs/cgroup"' /proc/self/mountinfo)" ] && other=v1
	with_conf "[vmm]" "accel = auto" "[jail]" "cgroup = $other"
	if [ -n "$(sbx-doctor --json | sed -n '/"cgroup"/,/}/p' | grep '"version": "'$other'"')" ]; then
		skip "this host offers both cgroup versions"
	fi
	run --separate-stderr sbx-create --timeout 300
	[ "$status" -ne 0 ] || fail "created a sandbox without its limits"
	assert_contains "$stderr" "no host limits for the sandbox"
	assert_contains "$stderr" "allow_unlimited"
	with_conf "[vmm]" "accel = auto" "[jail]" "cgroup = $other" "allow_unlimited = true"
	id=$(sbx-create --timeout 300)
	! grep -q omnirun /proc/"$(vmm_pid "$id")"/cgroup || fail "a cgroup was made"
	grep -q "runs without host limits" "$OMNIRUN_STATE_DIR/sandboxes/$id/monitor.log" ||
		fail "no warning in the monitor log"
	sbx-kill "$id"
}

@test "--processes caps the processes of all commands in the guest" {
	id=$(sbx-create --timeout 300 --processes 20)
	run sbx-exec "$id" -c 'cat /sys/fs/cgroup/omnirun-cmds/pids.max'
	assert_eq "$output" 20
	# 30 sleepers asked for: the shell and 19 of them make 20, then fork
	# fails (and ends the shell).
	run --separate-stderr sbx-exec "$id" -c 'i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); echo $i; done'
	[ "$status" -ne 0 ] || fail "30 processes started under a limit of 20"
	assert_eq "$(echo "$output" | tail -1)" 19 "sleepers started"
	assert_contains "$stderr" "can't fork"
	run sbx-create --processes 2000
	assert_eq "$status" 2 "a process count past the maximum"
	sbx-kill "$id"
}

@test "sbx-ls --json shows each sandbox's host usage" {
	run sbx-ls --json "$A"
	[ "$status" -eq 0 ] || fail "$output"
	cpu=$(echo "$output" | sed -n 's/.*"cpu_seconds": \([0-9.]*\).*/\1/p')
	mem=$(echo "$output" | sed -n 's/.*"memory_bytes": \([0-9]*\).*/\1/p')
	disk=$(echo "$output" | sed -n 's/.*"disk_bytes": \([0-9]*\).*/\1/p')
	[ -n "$cpu" ] && [ -n "$mem" ] && [ -n "$disk" ] || fail "usage missing: $output"
	[ "${cpu%.*}" -ge 1 ] || fail "cpu_seconds $cpu"
	# A clone of the snapshot is charged what it wrote and QEMU's own
	# (~45 MB); the template's RAM file it shares is charged to no sandbox.
	[ "$mem" -gt $((24 << 20)) ] || fail "memory_bytes $mem"
	# Disk bytes follow what the guest writes.
	sbx-exec "$A" -c 'dd if=/dev/urandom of=/data/u bs=1M count=20 2>/dev/null; sync'
	disk2=$(sbx-ls --json "$A" | sed -n 's/.*"disk_bytes": \([0-9]*\).*/\1/p')
	[ "$disk2" -ge $((disk + (16 << 20))) ] || fail "disk_bytes $disk -> $disk2"
	sbx-exec "$A" -- rm /data/u
}

@test "sbx-doctor shows the jail: uids, namespaces, seccomp, cgroups, a test guest" {
	run sbx-doctor
	[ "$status" -eq 0 ] || fail "$output"
	assert_contains "$output" "free), namespaces: mnt pid ipc uts net cgroup"
	assert_contains "$output" "allow-list for QEMU"
	assert_contains "$output" "a test guest booted and ended in the jail"
	[[ "$output" =~ cgroup\ +v[12]\ at ]] || fail "no cgroup version: $output"
	run sbx-doctor --json
	assert_contains "$output" '"uids_free"'
	assert_contains "$output" '"controllers"'
}

@test "disk quota: live sandboxes' disks never add up to more than the state filesystem has" {
	# A small state filesystem of its own (tmpfs), with the template.
	st=$BATS_TEST_TMPDIR/state
	mkdir -p "$st"
	mount -t tmpfs -o size=250m,mode=0700 omnirun-test "$st"
	QUOTA_FS=$st
	# Not its snapshot (its RAM file alone could fill this filesystem):
	# these sandboxes boot cold.
	tar -C "$OMNIRUN_STATE_DIR" --exclude='templates/*/snapshot' -cf - templates | tar -C "$st" -xf -
	ids=()
	export OMNIRUN_STATE_DIR=$st
	# 64 MB disks: each asks 64 MB plus the margin; two fit, a third
	# would be more than what is left once the two are full.
	ids+=("$(sbx-create --timeout 300 --disk 64)")
	ids+=("$(sbx-create --timeout 300 --disk 64)")
	run --separate-stderr sbx-create --timeout 300 --disk 64
	assert_eq "$status" 5 "a third disk over the space"
	assert_contains "$stderr" "promised to live sandboxes"
	# Both fill their disks to the end: no I/O error in either.
	for i in "${ids[@]}"; do
		sbx-exec "$i" -c 'dd if=/dev/zero of=/data/fill bs=1M 2>/dev/null; sync; dmesg | grep -ci "i/o error"' \
			>"$BATS_TEST_TMPDIR/$i.err" 2>&1 &
	done
	wait
	for i in "${ids[@]}"; do
		assert_eq "$(tail -1 "$BATS_TEST_TMPDIR/$i.err")" 0 "I/O errors in $i"
	done
	# Records can still be written.
	for i in "${ids[@]}"; do
		run sbx-kill "$i"
		[ "$status" -eq 0 ] || fail "kill $i: $output"
		grep -q '^state = stopped' "$st/sandboxes/$i/sandbox.conf" || fail "record of $i not written"
	done
}
