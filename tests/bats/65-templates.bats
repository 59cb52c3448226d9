#!/usr/bin/env bats
# Real templates (issue 11, DESIGN.md §5): playground built from its
# recipe once per run (kept in the run's state dir), sandboxes on it, a
# user's recipe, imports, removal, and every way a build can fail.
#
# The builds download from Debian's archive (deb.debian.org) and, for
# the npm failure, nothing: the registry given is a closed local port.
# The .deb files are kept in $OMNIRUN_CACHE_DIR/apt-archives between runs.

load helpers

FIX=$BATS_TEST_DIRNAME/../fixtures
TPL=$OMNIRUN_STATE_DIR/templates

setup_file() {
	omr_setup_file
	if ! sbx-template ls --json | jq -e '.[] | select(.name == "playground")' >/dev/null; then
		sbx-template build playground >"$BATS_FILE_TMPDIR/playground.log" 2>&1 ||
			{ cat "$BATS_FILE_TMPDIR/playground.log" >&2; return 1; }
	fi
}

# One playground sandbox shared by the tests that only run commands,
# made by the first of them (the build tests boot nothing).
play_id() {
	local f=$BATS_FILE_TMPDIR/play-id id
	if [ ! -s "$f" ]; then
		id=$(sbx-create -t playground) || return
		echo "$id" >>"$BATS_FILE_TMPDIR/.sandboxes-file"
		echo "$id" >"$f"
	fi
	cat "$f"
}

teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() {
	omr_teardown
	mountpoint -q "$BATS_TEST_TMPDIR/small" && umount "$BATS_TEST_TMPDIR/small"
	return 0
}

# Nothing of a failed build of $1 is left: no build dir, no template
# unless $2 says it existed before (then its built_at must be $2).
assert_untouched() {
	local name=$1 before=${2:-}
	[ -z "$(ls -A "$TPL" | grep -E "^\.$name\.(build|old)\.")" ] ||
		fail "a build dir of $name is left: $(ls -A "$TPL")"
	if [ -z "$before" ]; then
		[ ! -e "$TPL/$name" ] || fail "template $name exists after a failed build"
	else
		assert_eq "$(sed -n 's/^built_at=//p' "$TPL/$name/template.conf")" "$before" \
			"the old $name was replaced"
	fi
	! grep -q " $TPL/" /proc/self/mountinfo || fail "a mount is left under $TPL"
}

recipe() {  # recipe FILE LINES...: a recipe file in the test's tmpdir
	local f=$BATS_TEST_TMPDIR/$1
	shift
	printf '%s\n' "$@" >"$f"
	echo "$f"
}

@test "playground: built from its recipe, listed with base, packages, size and date" {
	run -0 sbx-template ls --json
	jq -e '.[] | select(.name == "playground") | .base == "bookworm" and
		(.packages | index("python3")) and (.packages | index("nodejs")) and
		.size_bytes > 100000000 and (.rootfs | endswith("rootfs.img")) and .memory_mb == 1024' \
		<<<"$output" >/dev/null || fail "playground in ls --json: $output"
	run -0 sbx-template ls
	assert_contains "$output" "playground"
	assert_contains "$output" "bookworm"
	# Kernel and initramfs are tiny's (hard links when built after it).
	cmp -s "$TPL/playground/vmlinuz" "$TPL/tiny/vmlinuz" || fail "playground's kernel is not tiny's"
	[ "$(blkid -o value -s TYPE "$TPL/playground/rootfs.img")" = ext4 ]
}

@test "playground: the recipe's defaults; commands run as user in /workspace, --user root as root" {
	PLAY_ID=$(play_id)
	ID=$PLAY_ID
	assert_eq "$(sb_field "$PLAY_ID" memory_mb)" 1024
	run -0 sbx-exec "$PLAY_ID" -c 'id -u; id -un; pwd; echo $HOME'
	assert_eq "$output" "$(printf '1000\nuser\n/workspace\n/workspace')"
	run -0 sbx-exec --user root "$PLAY_ID" -- id -u
	assert_eq "$output" 0
}

@test "playground: python3, pip install of a wheel, node, git" {
	PLAY_ID=$(play_id)
	ID=$PLAY_ID
	run -0 sbx-exec "$PLAY_ID" -- python3 -c 'import sys; print(sys.version_info[0] * 7)'
	assert_eq "$output" 21
	run -0 sbx-files "$PLAY_ID" put "$FIX/omr_hello-1.0-py3-none-any.whl" \
		/workspace/omr_hello-1.0-py3-none-any.whl
	run -0 sbx-exec "$PLAY_ID" -- pip install --no-index --user /workspace/omr_hello-1.0-py3-none-any.whl
	run -0 sbx-exec "$PLAY_ID" -- python3 -c 'import omr_hello; print(omr_hello.hello())'
	assert_eq "$output" "hello from a wheel"
	run -0 sbx-exec "$PLAY_ID" -- node -e 'console.log([1, 2, 3].map(x => x * 2).join(","))'
	assert_eq "$output" "2,4,6"
	run -0 sbx-exec "$PLAY_ID" -c 'set -e; mkdir repo && cd repo && git init -q &&
		echo hi >f && git add f && git -c user.name=a -c user.email=a@b commit -qm one &&
		git log --oneline | wc -l'
	assert_eq "$output" 1
}

@test "playground: a write to / is ciphertext on the host's disk and gone with the sandbox" {
	local id pid disk before after img_mtime
	img_mtime=$(stat -c %Y "$TPL/playground/rootfs.img")
	id=$(new_sandbox -t playground)
	pid=$(vmm_pid "$id")
	disk=$(disk_fd "$pid") || fail "no data disk fd in QEMU $pid"
	before=$(stat -L -c %b "$disk")
	# 8 MiB of a marker no disk holds by chance, in a system directory.
	run -0 sbx-exec --user root "$id" -c 'yes OMRTPLMARK-5b1e | head -c 8388608 >/etc/omr-mark && sync &&
		grep -c OMRTPLMARK-5b1e /etc/omr-mark | head -c 3'
	after=$(stat -L -c %b "$disk")
	# The bytes went to the sandbox's disk (512-byte blocks), encrypted.
	[ $((after - before)) -ge 16384 ] || fail "the disk grew by $(((after - before) / 2)) KiB only"
	run -1 grep -c OMRTPLMARK-5b1e "$disk"
	run -1 grep -c OMRTPLMARK-5b1e "$TPL/playground/rootfs.img"
	assert_eq "$(stat -c %Y "$TPL/playground/rootfs.img")" "$img_mtime"
	run -0 sbx-kill "$id"
	id=$(new_sandbox -t playground)
	run -0 sbx-exec "$id" -c 'test ! -e /etc/omr-mark && echo gone'
	assert_eq "$output" gone
}

@test "custom recipe (--from): an extra package, a file and env; rm refuses while used" {
	local id
	run -0 sbx-template build custom --from "$FIX/recipes/custom"
	# One progress line per step, with the time since the start.
	assert_contains "$output" "[   0.0 s] installing Debian packages (bookworm): sqlite3"
	assert_contains "$output" "making the ext4 image"
	run -0 sbx-template ls --json
	jq -e '.[] | select(.name == "custom") | .packages == ["sqlite3"] and .memory_mb == 384' \
		<<<"$output" >/dev/null || fail "custom in ls --json: $output"
	id=$(new_sandbox -t custom)
	run -0 sbx-exec "$id" -c 'sqlite3 :memory: "select 6 * 7"; cat /etc/omr-custom.txt; echo $OMR_CUSTOM'
	assert_eq "$output" "$(printf '42\nshipped by the custom recipe\nfrom-the-recipe')"
	run -4 sbx-template rm custom
	assert_contains "$output" "used by 1 sandbox ($id)"
	[ -d "$TPL/custom" ]
	# --force removes it; the running sandbox keeps its open image.
	run -0 sbx-template rm --force custom
	[ ! -e "$TPL/custom" ]
	run -0 sbx-exec "$id" -c 'cat /etc/omr-custom.txt >/dev/null && sqlite3 :memory: "select 1"'
	assert_eq "$output" 1
}

# A root filesystem made elsewhere: busybox and a passwd file.
make_rootdir() {
	local d=$1 word=$2
	mkdir -p "$d"/{bin,etc,tmp,proc,sys,dev,run,workspace}
	cp /bin/busybox "$d/bin/busybox"
	ln -s busybox "$d/bin/sh"
	ln -s busybox "$d/bin/cat"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$d/etc/passwd"
	echo "$word" >"$d/etc/which"
}

@test "import: a directory, then an ext4 image in its place while a sandbox runs on the old one" {
	local d1=$BATS_TEST_TMPDIR/r1 d2=$BATS_TEST_TMPDIR/r2 img=$BATS_TEST_TMPDIR/r2.img id id2
	make_rootdir "$d1" first
	run -0 sbx-template import imp "$d1"
	run -0 sbx-template ls --json
	jq -e '.[] | select(.name == "imp") | .base == "import"' <<<"$output" >/dev/null ||
		fail "imp in ls --json: $output"
	id=$(new_sandbox -t imp)
	run -0 sbx-exec "$id" cat /etc/which
	assert_eq "$output" first
	make_rootdir "$d2" second
	truncate -s 64M "$img"
	mkfs.ext4 -q -F -d "$d2" "$img"
	run -0 sbx-template import imp "$img"
	# The running sandbox still reads its (now replaced) image...
	run -0 sbx-exec "$id" cat /etc/which
	assert_eq "$output" first
	# ...and a new one gets the new image.
	id2=$(new_sandbox -t imp)
	run -0 sbx-exec "$id2" cat /etc/which
	assert_eq "$output" second
	run -0 sbx-kill "$id"
	run -0 sbx-kill "$id2"
	run -0 sbx-template rm imp
	assert_untouched imp
}

@test "import refuses a filesystem that is not ext4, erofs or squashfs, and junk" {
	local img=$BATS_TEST_TMPDIR/swap.img
	truncate -s 16M "$img"
	mkswap -q "$img" >/dev/null
	run -1 sbx-template import bad "$img"
	assert_contains "$output" "holds a swap filesystem: want ext4, erofs or squashfs"
	head -c 1048576 /dev/urandom >"$img"
	run -1 sbx-template import bad "$img"
	assert_contains "$output" "holds no filesystem libblkid knows"
	assert_untouched bad
}

@test "bad names and bad recipes are refused before anything is built" {
	local r
	for n in Bad a_b -x .. "$(printf 'a%.0s' {1..33})"; do
		run -2 sbx-template build -- "$n"
		assert_contains "$output" "invalid template name"
	done
	r=$(recipe colour '[template]' 'suite = bookworm' 'packages = jq' 'colour = blue')
	run -2 sbx-template build bad --from "$r"
	assert_contains "$output" "unknown key 'colour' in [template]"
	r=$(recipe nopkg '[template]' 'suite = bookworm')
	run -2 sbx-template build bad --from "$r"
	assert_contains "$output" "[template] needs 'packages'"
	r=$(recipe sect '[template]' 'suite = bookworm' 'packages = jq' '[extras]' 'a = b')
	run -2 sbx-template build bad --from "$r"
	assert_contains "$output" "unknown section [extras]"
	r=$(recipe npm '[template]' 'suite = bookworm' 'packages = jq' 'npm = left-pad')
	run -2 sbx-template build bad --from "$r"
	assert_contains "$output" "must be NAME@VERSION"
	assert_untouched bad
}

@test "an unknown package or suite fails the build and leaves the old template alone" {
	local r before
	# The old template: an import (quick), then failing rebuilds over it.
	make_rootdir "$BATS_TEST_TMPDIR/r" old
	run -0 sbx-template import keep "$BATS_TEST_TMPDIR/r"
	before=$(sed -n 's/^built_at=//p' "$TPL/keep/template.conf")
	r=$(recipe pkg '[template]' 'suite = bookworm' 'packages = omnirun-no-such-package')
	run -1 sbx-template build keep --from "$r"
	assert_contains "$output" "omnirun-no-such-package"
	assert_contains "$output" "mmdebstrap failed"
	assert_untouched keep "$before"
	r=$(recipe suite '[template]' 'suite = omnirun-no-such-suite' 'packages = jq')
	run -1 sbx-template build keep --from "$r"
	assert_contains "$output" "mmdebstrap failed"
	assert_untouched keep "$before"
	run -0 sbx-template rm keep
}

@test "the npm registry failing half-way through a build leaves nothing" {
	local r
	r=$(recipe npm '[template]' 'suite = bookworm' 'packages = nodejs npm' 'npm = left-pad@1.3.0')
	# Debian's packages install; then npm meets a closed port.
	npm_config_registry=http://127.0.0.1:9/ npm_config_fetch_retries=0 \
		run -1 sbx-template build halfway --from "$r"
	assert_contains "$output" "installing npm packages: left-pad@1.3.0"
	assert_contains "$output" "npm install failed"
	assert_untouched halfway
}

@test "a full disk during the build leaves nothing behind" {
	local small=$BATS_TEST_TMPDIR/small
	mkdir -p "$small"
	mount -t tmpfs -o size=48m,mode=0700 omr-full "$small"
	mkdir -m 0700 "$small/state" "$small/state/templates"
	# tiny (its kernel) is there already, without its snapshot (its RAM
	# file alone would fill this filesystem); the packages fill the rest.
	tar -C "$TPL" --exclude='tiny/snapshot' -cf - tiny | tar -C "$small/state/templates" -xf -
	OMNIRUN_STATE_DIR=$small/state run -1 sbx-template build custom --from "$FIX/recipes/custom"
	assert_contains "$output" "No space left on device"
	TPL=$small/state/templates assert_untouched custom
	# tiny is whole; the build dir is gone.
	assert_eq "$(ls -A "$small/state/templates" | grep -v '^\.[a-z0-9-]*\.lock$' | tr '\n' ' ')" "tiny "
}

@test "a second build of the same name at once is refused; the first completes" {
	local log=$BATS_TEST_TMPDIR/first.log i
	sbx-template build twice --from "$FIX/recipes/custom" >"$log" 2>&1 &
	for ((i = 0; i < 300; i++)); do
		ls -A "$TPL" | grep -q '^\.twice\.build\.' && break
		sleep 0.1
	done
	run -4 sbx-template build twice --from "$FIX/recipes/custom"
	assert_contains "$output" "template 'twice' is being built or removed"
	wait %1 || fail "the first build failed: $(cat "$log")"
	[ -f "$TPL/twice/rootfs.img" ]
	run -0 sbx-template rm twice
	assert_untouched twice
}
