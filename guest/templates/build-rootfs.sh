#!/bin/bash
# The root filesystem of a template built from an INI recipe (DESIGN.md §5).
# Run by "sbx-template build NAME" (libcore/vm/template-build.c), which read
# and checked the recipe and passes it here:
#
#   OUT        the build directory to fill (rootfs.img goes there)
#   CACHE      kept between builds: apt-archives/ (.deb files), npm/
#   SUITE      Debian suite (bookworm)
#   PACKAGES   Debian packages, space-separated
#   NPM        npm packages (NAME@VERSION), installed with the image's npm
#   WORKDIR    the default user's home and working directory
#   GUEST_CONF file to install as /etc/omnirun/guest.conf (user, env,
#              services: read by the agent at boot)
#   FILES      file of "SOURCE<TAB>DESTINATION" lines to copy into the image
#
# Only Debian's archive (deb.debian.org) is used for packages, whatever the
# host's own apt sources say, and the npm registry for NPM.  No systemd:
# the agent is PID 1 and starts the recipe's services.  Lines starting with
# "progress: " are shown to the user.
set -euo pipefail
umask 022

MIRROR=${OMNIRUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${OMNIRUN_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

say() { printf 'progress: %s\n' "$*"; }
die() { printf 'build-rootfs: %s\n' "$*" >&2; exit 1; }

# ---- inside mmdebstrap: the customize hook, with the chroot as $2 ----------
if [ "${1:-}" = customize ]; then
	root=$2
	# The default user: uid 1000, its home the working directory.
	chroot "$root" groupadd -g 1000 user
	chroot "$root" useradd -u 1000 -g 1000 -d "$WORKDIR" -m -s /bin/bash user
	chmod 0755 "$root$WORKDIR"
	install -d -m 0755 "$root/etc/omnirun"
	install -m 0644 "$GUEST_CONF" "$root/etc/omnirun/guest.conf"
	if [ -s "$FILES" ]; then
		while IFS=$'\t' read -r src dst; do
			install -D -m "$(stat -c %a "$src")" "$src" "$root$dst"
		done <"$FILES"
	fi
	if [ -n "$NPM" ]; then
		say "installing npm packages: $NPM"
		chroot "$root" sh -c 'command -v npm' >/dev/null ||
			die "the recipe names npm packages but its packages do not include npm"
		mkdir -p "$CACHE/npm" "$root/tmp/npm-cache"
		mount --bind "$CACHE/npm" "$root/tmp/npm-cache"
		trap 'umount "$root/tmp/npm-cache" 2>/dev/null || true' EXIT
		# shellcheck disable=SC2086
		npm_env=(HOME=/root npm_config_fetch_retries="${npm_config_fetch_retries:-2}")
		[ -n "${npm_config_registry:-}" ] && npm_env+=(npm_config_registry="$npm_config_registry")
		# The build host's CA bundle, when it names one (a TLS-inspecting
		# proxy's CA is there, not in the image's ca-certificates); it is
		# used for this install only and goes with /tmp below.
		ca=${npm_config_cafile:-${NODE_EXTRA_CA_CERTS:-}}
		if [ -z "$ca" ] && command -v npm >/dev/null; then
			ca=$(npm config get cafile 2>/dev/null || true)
			[ "$ca" = null ] || [ "$ca" = undefined ] && ca=
		fi
		if [ -n "$ca" ] && [ -r "$ca" ]; then
			cp "$ca" "$root/tmp/npm-ca.crt"
			npm_env+=(npm_config_cafile=/tmp/npm-ca.crt)
		fi
		chroot "$root" env "${npm_env[@]}" \
			npm install --global --no-fund --no-audit --no-update-notifier \
			--cache /tmp/npm-cache --loglevel=error $NPM ||
			die "npm install failed: $NPM"
		umount "$root/tmp/npm-cache"
		trap - EXIT
		rmdir "$root/tmp/npm-cache"
	fi
	# Nothing of the build host's identity stays in the image.
	rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
	rm -rf "$root/root/.npm" "$root/tmp/"*
	exit 0
fi

: "${OUT:?}" "${CACHE:?}" "${SUITE:?}" "${WORKDIR:?}" "${GUEST_CONF:?}" "${FILES:?}"
: "${PACKAGES=}" "${NPM=}"
for tool in mmdebstrap mkfs.ext4 du chroot; do
	command -v "$tool" >/dev/null || die "$tool is missing (contrib/install-deps)"
done

sources=("deb $MIRROR $SUITE main")
if [ "$SUITE" = bookworm ] || [ "$SUITE" = trixie ]; then
	sources+=("deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main")
fi

root=$OUT/root
archives=$CACHE/apt-archives
mkdir -p "$archives"
self=$(readlink -f "$0")
# The .deb files stay in the cache between builds: it is bind-mounted as
# the chroot's /var/cache/apt/archives from the setup hook until the
# first customize hook (before mmdebstrap's cleanup would empty it), and
# the essential packages' files are not unlinked.  One build at a time
# uses it (apt locks it too, but fails instead of waiting).
exec 8>"$archives/.omnirun-lock"
flock -w 1800 8 || die "the package cache $archives stayed locked by another build"
say "installing Debian packages ($SUITE): ${PACKAGES:-none}"
# Its "I:" lines are noise; apt's and dpkg's errors ("E: Unable to locate
# package ...") stay for the error message, which shows the last lines.
# Docs, man pages and locales are left out of the image.
mmdebstrap --mode=root --variant=minbase --format=directory \
	--skip=download/empty --skip=essential/unlink \
	--aptopt='APT::Sandbox::User "root"' \
	--include="ca-certificates ${PACKAGES//,/ }" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
	--setup-hook="mount --bind \"$archives\" \"\$1/var/cache/apt/archives\"" \
	--customize-hook='umount "$1"/var/cache/apt/archives' \
	--customize-hook="\"$self\" customize \"\$1\"" \
	"$SUITE" "$root" "${sources[@]}" 2>&1 </dev/null |
	{ grep --line-buffered -v '^I: ' || true; } ||
	{ umount "$root/var/cache/apt/archives" 2>/dev/null
	  die "mmdebstrap failed (an unknown package or suite, the archive unreachable, or no space?)"; }
exec 8>&-

say "making the ext4 image"
used=$(du -sxm "$root" | cut -f1)
files=$(find "$root" -xdev | wc -l)
# Room for ext4's own metadata; no journal (the image is only ever read).
size=$((used + used / 5 + 64))
inodes=$((files + files / 5 + 1024))
truncate -s "${size}M" "$OUT/rootfs.img"
mkfs.ext4 -q -F -O ^has_journal -m 0 -N "$inodes" -L omnirun-root \
	-E root_owner=0:0 -d "$root" "$OUT/rootfs.img" || die "mkfs.ext4 failed"
rm -rf "$root"
echo "build-rootfs: $SUITE, ${used} MiB of files in a ${size} MiB image"
