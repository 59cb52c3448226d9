/* sbx-doctor: what this host offers OmniRun, and what OmniRun will use. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/cleanup.h"
#include "cli.h"
#include "omnirun/net/doctor.h"
#include "omnirun/vm/doctor.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"

__attribute__((noreturn)) static void usage(void)
{
	printf("Usage:\n"
	       " %s [--json]\n"
	       "\n"
	       "Check what this host offers OmniRun: KVM, QEMU/TCG, tun, nftables,\n"
	       "network namespaces and NAT, the uplink and the address pool, cgroups,\n"
	       "the VMM jail (boots a test guest in it), dm-crypt, musl-gcc, and which\n"
	       "accelerator OmniRun will use.\n"
	       "\n"
	       "Options:\n"
	       " -j, --json      print the report as JSON\n"
	       " -h, --help      display this help\n"
	       " -V, --version   display version\n"
	       "\n"
	       "See sbx-doctor(8).\n", omr_cli_prog());
	exit(OMR_EXIT_OK);
}


static const char *str(json_t *o, const char *path1, const char *path2)
{
	return json_string_value(json_object_get(json_object_get(o, path1), path2));
}

static int flag(json_t *o, const char *path1, const char *path2)
{
	return json_is_true(json_object_get(json_object_get(o, path1), path2));
}

static void print_network(json_t *n)
{
	json_t *up = json_object_get(n, "uplink"), *v;
	const char *e;
	size_t i;

	printf("%-10s %s", "netns", flag(n, "namespaces", "ok") ? "per-sandbox namespaces work"
	       : "cannot make network namespaces: ");
	printf("%s\n", flag(n, "namespaces", "ok") ? "" : str(n, "namespaces", "error"));
	printf("%-10s %s%s\n", "NAT", flag(n, "nat", "ok") ? "nat, redirect and reject work"
	       : "not possible: ", flag(n, "nat", "ok") ? "" : str(n, "nat", "error"));
	printf("%-10s %s: room for %lld sandboxes (a /30 each), %lld in use\n", "pool",
	       str(n, "pool", "range"),
	       (long long)json_integer_value(json_object_get(json_object_get(n, "pool"), "size")),
	       (long long)json_integer_value(json_object_get(json_object_get(n, "pool"), "used")));
	printf("%-10s ", "uplink");
	if (!json_is_string(json_object_get(up, "name"))) {
		printf("%s\n", str(n, "uplink", "error"));
		return;
	}
	printf("%s", str(n, "uplink", "name"));
	json_array_foreach(json_object_get(up, "addresses"), i, v)
		printf(" %s", json_string_value(v));
	e = str(n, "uplink", "error");
	printf(": %s\n", e ? e : "IPv4 forwarding on; --internet can NAT out of it");
}

static void print_jail(json_t *j)
{
	json_t *sc = json_object_get(j, "seccomp"), *st = json_object_get(j, "self_test"), *v;
	size_t i;

	if (!json_is_true(json_object_get(j, "enabled"))) {
		printf("%-10s off ([jail] enable = false): QEMU runs as root, unconfined\n", "jail");
		return;
	}
	printf("%-10s uids %lld-%lld (%lld free), namespaces:", "jail",
	       (long long)json_integer_value(json_object_get(j, "uid_base")),
	       (long long)(json_integer_value(json_object_get(j, "uid_base")) +
			   json_integer_value(json_object_get(j, "uid_count")) - 1),
	       (long long)json_integer_value(json_object_get(j, "uids_free")));
	json_array_foreach(json_object_get(j, "namespaces"), i, v)
		printf(" %s", json_string_value(v));
	printf("\n%-10s %s: allow-list for QEMU %s (%lld calls)%s, libseccomp %s\n", "seccomp",
	       json_string_value(json_object_get(sc, "mode")),
	       json_string_value(json_object_get(sc, "list")),
	       (long long)json_integer_value(json_object_get(sc, "calls")),
	       json_is_true(json_object_get(sc, "exact")) ? "" : " (not made for this QEMU)",
	       json_string_value(json_object_get(sc, "libseccomp")));
	if (json_is_true(json_object_get(st, "ok")))
		printf("%-10s a test guest booted and ended in the jail in %lld ms\n", "self-test",
		       (long long)json_integer_value(json_object_get(st, "ms")));
	else
		printf("%-10s failed: %s\n", "self-test", json_string_value(json_object_get(st, "why")));
}

static void print_human(json_t *r)
{
	json_t *cg = json_object_get(r, "cgroup"), *v;
	const char *s;
	size_t i;

	printf("%-10s ", "KVM");
	if (flag(r, "kvm", "usable"))
		printf("usable (self-test %.3f ms)\n",
		       (double)json_integer_value(json_object_get(json_object_get(r, "kvm"), "loop_ns")) / 1e6);
	else
		printf("%s: %s\n", flag(r, "kvm", "present") ? "present, not usable" : "absent",
		       str(r, "kvm", "reason"));
	if (str(r, "tcg", "version"))
		printf("%-10s %s: %s\n", "TCG", str(r, "tcg", "qemu"), str(r, "tcg", "version"));
	else
		printf("%-10s not usable: %s\n", "TCG", str(r, "tcg", "error"));
	if (str(r, "tcg", "version"))
		printf("%-10s %s\n", "firmware", (s = str(r, "tcg", "firmware"))
		       ? s : "QEMU's default (no qboot.rom found; option ROMs load -kernel)");
	printf("%-10s /dev/net/tun %s%s\n", "tun", flag(r, "tun", "ok") ? "opens" : "does not open: ",
	       flag(r, "tun", "ok") ? "" : str(r, "tun", "error"));
	printf("%-10s nft %s, libnftables %s\n", "nftables",
	       (s = str(r, "nftables", "nft")) ? s : "not found",
	       str(r, "nftables", "libnftables") ? str(r, "nftables", "libnftables") : "not found");
	print_network(json_object_get(r, "network"));
	printf("%-10s %s", "cgroup", json_string_value(json_object_get(cg, "version")));
	if ((s = json_string_value(json_object_get(cg, "path")))) {
		printf(" at %s:", s);
		json_array_foreach(json_object_get(cg, "controllers"), i, v)
			printf(" %s", json_string_value(v));
		printf(" (sandboxes under %s/)", json_string_value(json_object_get(cg, "parent")));
	} else {
		printf(": %s; %s", json_string_value(json_object_get(cg, "why")),
		       flag(r, "cgroup", "allow_unlimited")
		       ? "sandboxes run without host limits (allow_unlimited)"
		       : "sandboxes cannot start (allow_unlimited is false)");
	}
	printf("\n");
	print_jail(json_object_get(r, "jail"));
	printf("%-10s %s (guests do their own dm-crypt)\n", "dm-crypt",
	       flag(r, "dm_crypt", "module") ? "loaded on the host"
	       : flag(r, "dm_crypt", "device_mapper") ? "device-mapper only on the host"
	       : "absent on the host");
	s = json_string_value(json_object_get(r, "musl_gcc"));
	printf("%-10s %s\n", "musl-gcc", s ? s : "not found (needed to build the guest agent)");
	printf("%-10s %lld kHz (tsc_early_khz for TCG guests)\n", "TSC",
	       (long long)json_integer_value(json_object_get(r, "tsc_khz")));
	printf("%-10s %s\n", "snapshots", str(r, "snapshots", "why"));
	if (flag(r, "template", "ok"))
		printf("%-10s %s: kernel %s\n", "template", str(r, "template", "name"),
		       str(r, "template", "kernel_version"));
	else
		printf("%-10s %s (sbx-template build %s)\n", "template", str(r, "template", "error"),
		       str(r, "template", "name"));
	if ((s = str(r, "accel", "use")))
		printf("%-10s %s (accel = %s)%s%s\n", "accel", s, str(r, "accel", "config"),
		       str(r, "accel", "why") ? ": " : "",
		       str(r, "accel", "why") ? str(r, "accel", "why") : "");
	else
		printf("%-10s none: %s\n", "accel", str(r, "accel", "why"));
	printf("%-10s %s\n", "verdict", json_is_true(json_object_get(r, "ok"))
	       ? "OmniRun can run sandboxes on this host"
	       : "OmniRun cannot run sandboxes on this host");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct omr_config *c;
	int json = 0, ch, ok;
	json_t *r;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "jhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = 1; break;
		case 'h': usage();
		case 'V': omr_cli_version();
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind != argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind]);
	c = omr_cli_config();
	r = omr_doctor_report(c);
	json_object_set_new(r, "network", omr_net_doctor(c));
	ok = json_is_true(json_object_get(r, "ok"));
	if (json) {
		omr_cli_print_json(r);
	} else {
		print_human(r);
		json_decref(r);
	}
	omr_config_free(c);
	return ok ? OMR_EXIT_OK : OMR_EXIT_FAILURE;
}
