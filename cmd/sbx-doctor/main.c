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

#include "omnirun/accel.h"
#include "omnirun/cleanup.h"
#include "omnirun/cli.h"
#include "omnirun/exitcodes.h"
#include "omnirun/template.h"
#include "omnirun/util.h"

__attribute__((noreturn)) static void usage(void)
{
	printf("Usage:\n"
	       " %s [--json]\n"
	       "\n"
	       "Check what this host offers OmniRun: KVM, QEMU/TCG, tun, nftables,\n"
	       "cgroups, dm-crypt, musl-gcc, and which accelerator OmniRun will use.\n"
	       "\n"
	       "Options:\n"
	       " -j, --json      print the report as JSON\n"
	       " -h, --help      display this help\n"
	       " -V, --version   display version\n"
	       "\n"
	       "See sbx-doctor(8).\n", omr_cli_prog());
	exit(OMR_EXIT_OK);
}

static int executable(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* PATH, then the sbin directories a non-root PATH often lacks. */
static char *which(const char *name)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = omr_strdup_printf("%s:/usr/local/sbin:/usr/sbin:/sbin",
						     path && *path ? path : "/usr/bin:/bin");
	char *save = NULL;

	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *p = omr_strdup_printf("%s/%s", d, name);
		if (*d == '/' && executable(p))
			return p;
		free(p);
	}
	return NULL;
}

static char *find_library(const char *name)
{
	static const char *const dirs[] = {
		"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64",
		"/lib64", "/usr/lib", "/usr/local/lib",
	};
	for (size_t i = 0; i < OMR_ARRAY_SIZE(dirs); i++) {
		char *p = omr_strdup_printf("%s/%s", dirs[i], name);
		if (access(p, R_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* The controllers OmniRun limits sandboxes with. */
static const char *const wanted[] = { "memory", "cpu", "pids" };

/* The wanted controllers a cgroup v2 hierarchy at dir offers us. */
static json_t *cgroup_v2(const char *dir)
{
	_cleanup_free_ char *path = omr_strdup_printf("%s/cgroup.controllers", dir);
	_cleanup_free_ char *text = NULL;
	json_t *ctl = json_array();

	if (omr_read_file_at(AT_FDCWD, path, 4096, &text, NULL, NULL) < 0 ||
	    access(dir, W_OK) < 0)
		return ctl;
	for (char *save = NULL, *w = strtok_r(text, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		for (size_t i = 0; i < OMR_ARRAY_SIZE(wanted); i++)
			if (!strcmp(w, wanted[i]))
				json_array_append_new(ctl, json_string(w));
	return ctl;
}

static json_t *cgroup_v1(void)
{
	json_t *ctl = json_array();

	for (size_t i = 0; i < OMR_ARRAY_SIZE(wanted); i++) {
		_cleanup_free_ char *d = omr_strdup_printf("/sys/fs/cgroup/%s", wanted[i]);
		struct stat st;
		if (stat(d, &st) == 0 && S_ISDIR(st.st_mode) && access(d, W_OK) == 0)
			json_array_append_new(ctl, json_string(wanted[i]));
	}
	return ctl;
}

/* v2 first (unified, or the hybrid's /sys/fs/cgroup/unified), v1 when it
 * offers more of the controllers we use, else none. */
static json_t *check_cgroup(void)
{
	static const char *const v2dirs[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
	json_t *best = NULL, *ctl;
	const char *ver = "none", *path = NULL;

	for (size_t i = 0; i < OMR_ARRAY_SIZE(v2dirs); i++) {
		ctl = cgroup_v2(v2dirs[i]);
		if (!best || json_array_size(ctl) > json_array_size(best)) {
			json_decref(best);
			best = ctl;
			ver = json_array_size(ctl) ? "v2" : "none";
			path = json_array_size(ctl) ? v2dirs[i] : NULL;
		} else {
			json_decref(ctl);
		}
	}
	ctl = cgroup_v1();
	if (json_array_size(ctl) > json_array_size(best)) {
		json_decref(best);
		best = ctl;
		ver = "v1";
		path = "/sys/fs/cgroup";
	} else {
		json_decref(ctl);
	}
	return json_pack("{s:s, s:s?, s:o}", "version", ver, "path", path, "controllers", best);
}

static int proc_misc_has(const char *name)
{
	_cleanup_free_ char *text = NULL;
	return omr_read_file_at(AT_FDCWD, "/proc/misc", 65536, &text, NULL, NULL) == 0 &&
	       strstr(text, name) != NULL;
}

static json_t *report(struct omr_config *c)
{
	struct omr_kvm_probe kvm;
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	_cleanup_free_ char *qemu = omr_qemu_find(c), *version = NULL;
	_cleanup_free_ char *nft = which("nft"), *libnft = find_library("libnftables.so.1");
	_cleanup_free_ char *musl = which("musl-gcc");
	_cleanup_free_ char *qerr = NULL, *terr = NULL, *aerr = NULL;
	_cleanup_close_ int tun = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	const char *tun_err = tun < 0 ? strerror(errno) : NULL;
	enum omr_accel accel = OMR_ACCEL_TCG;
	const char *why = NULL;
	int accel_ok, ok;

	omr_kvm_probe(&kvm);
	if (!qemu)
		qerr = omr_strdup_printf("%s not found", c->qemu);
	else if (omr_qemu_version(qemu, &version, &err) < 0)
		qerr = omr_xstrdup(err->msg);
	omr_err_free(&err);
	accel_ok = omr_accel_resolve(c, &accel, &why, &err) == 0;
	if (!accel_ok)
		aerr = omr_xstrdup(err->msg);
	omr_err_free(&err);
	if (omr_template_load(c, c->default_template, &t, &err) < 0)
		terr = omr_xstrdup(err->msg);
	omr_err_free(&err);
	ok = qemu && version && accel_ok;

	json_t *j = json_pack(
		"{s:{s:b, s:b, s:I, s:s?},"
		" s:{s:s?, s:s?, s:s?},"
		" s:{s:b, s:s?},"
		" s:{s:s?, s:s?},"
		" s:o,"
		" s:{s:b, s:b},"
		" s:s?,"
		" s:I,"
		" s:{s:s, s:b, s:s?, s:s?},"
		" s:{s:s?, s:s?, s:s?},"
		" s:b}",
		"kvm", "present", kvm.present, "usable", kvm.usable, "loop_ns",
		(json_int_t)kvm.loop_ns, "reason", kvm.reason[0] ? kvm.reason : NULL,
		"tcg", "qemu", qemu, "version", version, "error", qerr,
		"tun", "ok", tun >= 0, "error", tun_err,
		"nftables", "nft", nft, "libnftables", libnft,
		"cgroup", check_cgroup(),
		"dm_crypt", "module", access("/sys/module/dm_crypt", F_OK) == 0,
		"device_mapper", proc_misc_has(" device-mapper\n"),
		"musl_gcc", musl,
		"tsc_khz", (json_int_t)omr_tcg_tsc_khz(c),
		"template", "name", c->default_template, "ok", t != NULL,
		"kernel_version", t ? t->kernel_version : NULL, "error", terr,
		"accel", "config", c->accel, "use", accel_ok ? (accel == OMR_ACCEL_KVM ? "kvm" : "tcg") : NULL,
		"why", accel_ok ? why : aerr,
		"ok", ok);
	omr_template_free(t);
	return j;
}

static const char *str(json_t *o, const char *path1, const char *path2)
{
	return json_string_value(json_object_get(json_object_get(o, path1), path2));
}

static int flag(json_t *o, const char *path1, const char *path2)
{
	return json_is_true(json_object_get(json_object_get(o, path1), path2));
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
	printf("%-10s /dev/net/tun %s%s\n", "tun", flag(r, "tun", "ok") ? "opens" : "does not open: ",
	       flag(r, "tun", "ok") ? "" : str(r, "tun", "error"));
	printf("%-10s nft %s, libnftables %s\n", "nftables",
	       (s = str(r, "nftables", "nft")) ? s : "not found",
	       str(r, "nftables", "libnftables") ? str(r, "nftables", "libnftables") : "not found");
	printf("%-10s %s", "cgroup", json_string_value(json_object_get(cg, "version")));
	if ((s = json_string_value(json_object_get(cg, "path")))) {
		printf(" at %s:", s);
		json_array_foreach(json_object_get(cg, "controllers"), i, v)
			printf(" %s", json_string_value(v));
	} else {
		printf(": sandboxes run without resource limits");
	}
	printf("\n%-10s %s (guests do their own dm-crypt)\n", "dm-crypt",
	       flag(r, "dm_crypt", "module") ? "loaded on the host"
	       : flag(r, "dm_crypt", "device_mapper") ? "device-mapper only on the host"
	       : "absent on the host");
	s = json_string_value(json_object_get(r, "musl_gcc"));
	printf("%-10s %s\n", "musl-gcc", s ? s : "not found (needed to build the guest agent)");
	printf("%-10s %lld kHz (tsc_early_khz for TCG guests)\n", "TSC",
	       (long long)json_integer_value(json_object_get(r, "tsc_khz")));
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
		default: omr_cli_usage_error(NULL);
		}
	}
	if (optind != argc)
		omr_cli_usage_error("unexpected argument '%s'", argv[optind]);
	c = omr_cli_config();
	r = report(c);
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
