/* What the host offers OmniRun (sbx-doctor, and later the shim's health
 * report); see omnirun/doctor.h. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/vm/accel.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/vm/doctor.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"

/* PATH, then the sbin directories a non-root PATH often lacks. */
static char *which(const char *name)
{
	return omr_find_program(name, "/usr/local/sbin:/usr/sbin:/sbin");
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

json_t *omr_doctor_report(const struct omr_config *c)
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
		qerr = omr_strdup_printf("%s not found",
					 c->qemu && *c->qemu ? c->qemu : "qemu-system-x86_64");
	else if (omr_qemu_version(qemu, &version, &err) < 0)
		qerr = omr_xstrdup(err->msg);
	omr_err_free(&err);
	accel_ok = omr_accel_resolve_with(c, &kvm, &accel, &why, &err) == 0;
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
