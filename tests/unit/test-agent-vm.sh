#!/bin/sh
# Boots omnirun-agent as PID 1 of a throwaway QEMU microVM (TCG) and runs
# test-agent against it over virtio-serial.  Not a template builder: the
# initramfs here is the smallest thing that exercises the agent's PID 1
# work (modules, cgroup, dm-crypt data disk, port discovery, power off).
#
#   test-agent-vm.sh AGENT TEST KERNEL_ROOT
#
# AGENT is the static omnirun-agent, TEST the test-agent binary, and
# KERNEL either a linux-image-*-cloud-amd64 .deb (the one `sbx-template
# build tiny` keeps in $OMNIRUN_CACHE_DIR/debs; only the kernel and the
# few modules used here are extracted) or a directory holding boot/vmlinuz-*
# and lib/modules/*/ (dpkg-deb -x of the package).  ACCEL (tcg unless
# given) is QEMU's -accel.  Prints TAP; exits 77 (skip) when QEMU or the
# kernel is missing.
set -eu

agent=$1 test=$2 kroot=$3 accel=${4:-tcg}
# The suite's QEMU (OMNIRUN_TEST_QEMU: one unpacked aside) or the host's.
qemu=${OMNIRUN_TEST_QEMU:-$(command -v qemu-system-x86_64 || true)}
if [ -z "$qemu" ] || ! [ -x "$qemu" ] || ! [ -e "$kroot" ]; then
	echo "1..0 # SKIP no kernel at '$kroot' or no qemu-system-x86_64"
	exit 77
fi
# The firmware the sandboxes boot with (omr_vmm_firmware): qboot from
# QEMU's own prefix, else the system's.  Debian's QEMU 10 gives microvm
# SeaBIOS, which loads no -kernel without option ROMs; with no qboot at
# all, QEMU's default firmware keeps its option ROMs.
prefix=$(dirname "$(dirname "$(readlink -f "$qemu")")")
machine=microvm,x-option-roms=off,isa-serial=on,rtc=on,pit=on,pic=on
bios=
for f in "$prefix/share/qemu/qboot.rom" /usr/share/qemu/qboot.rom; do
	if [ -f "$f" ]; then
		bios=$f
		break
	fi
done
[ -n "$bios" ] || machine=microvm,isa-serial=on,rtc=on,pit=on,pic=on

work=$(mktemp -d /tmp/omnirun-agent-vm.XXXXXX)
qpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -f "$kroot" ]; then
	mkdir "$work/k"
	dpkg-deb --fsys-tarfile "$kroot" | tar -x -C "$work/k" --wildcards \
		'./boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio' \
		'./lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
		'./lib/modules/*/kernel/drivers/char/virtio_console.ko' \
		'./lib/modules/*/kernel/drivers/md/dm-*.ko' './lib/modules/*/kernel/crypto/ecb.ko' \
		'./lib/modules/*/kernel/crypto/xts.ko'
	kroot=$work/k
fi
vmlinuz=$(ls "$kroot"/boot/vmlinuz-* 2>/dev/null | head -n1)
mods=$(ls -d "$kroot"/lib/modules/*/kernel 2>/dev/null | head -n1)
if [ -z "$vmlinuz" ] || [ -z "$mods" ]; then
	echo "1..0 # SKIP no kernel or modules in $3"
	exit 77
fi

root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/etc/omnirun" "$root/lib/modules" "$root/dev" "$root/root"
cp "$agent" "$root/init"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
done
ln -sf ../bin/busybox "$root/sbin/mke2fs"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
	>"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
# Load order matters: dependencies first (see HOSTS.md).
for m in virtio/virtio_ring virtio/virtio virtio/virtio_mmio block/virtio_blk \
	char/virtio_console md/dm-mod md/dm-crypt ../crypto/ecb ../crypto/xts; do
	f=$(find "$mods" -path "*${m#../}.ko" | head -n1)
	[ -n "$f" ] || { echo "Bail out! module $m not in $3"; exit 1; }
	cp "$f" "$root/lib/modules/"
	echo "/lib/modules/$(basename "$f")" >>"$root/etc/omnirun/modules"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd"
truncate -s 256M "$work/data.img"

# shellcheck disable=SC2086 # ${bios:+...}: two words or none
"$qemu" -M "$machine" ${bios:+-bios "$bios"} \
	-accel "$accel" -cpu max -m 256 -smp 1 -nodefaults -no-user-config -nographic \
	-kernel "$vmlinuz" -initrd "$work/initrd" \
	-append "console=ttyS0 ${OMNIRUN_VM_QUIET-quiet} panic=-1 reboot=t tsc=reliable tsc_early_khz=2100000 init_on_alloc=0 omnirun.hostname=omr-test" \
	-serial file:"$work/console.log" -no-reboot \
	-drive file="$work/data.img",if=none,id=data,format=raw,cache=unsafe \
	-device virtio-blk-device,drive=data \
	-device virtio-serial-device \
	-chardev socket,id=agent,path="$work/agent.sock",server=on,wait=off \
	-device virtserialport,chardev=agent,name=omnirun.0 </dev/null >"$work/qemu.log" 2>&1 &
qpid=$!

rc=0
"$test" --socket "$work/agent.sock" || rc=$?
# After shutdown QEMU must exit by itself.
for _ in $(seq 100); do
	kill -0 "$qpid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$qpid" 2>/dev/null; then
	echo "# QEMU still running after shutdown"
	rc=1
	kill "$qpid"
fi
wait "$qpid" 2>/dev/null || true
qpid=
if [ "$rc" != 0 ] || [ "${OMNIRUN_VM_CONSOLE:-0}" = 1 ]; then
	echo "# guest console:"
	sed 's/^/#   /' "$work/console.log" | tail -n "${OMNIRUN_VM_CONSOLE_LINES:-60}"
fi
exit "$rc"
