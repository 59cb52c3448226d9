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
#include "omnirun/vm/vmm.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/vm/cgroup.h"
#include "omnirun/vm/doctor.h"
#include "omnirun/vm/jail.h"
#include "omnirun/vm/snapshot.h"
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
	_cleanup_free_ char *firmware = qemu ? omr_vmm_firmware(qemu) : NULL;
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
	json_t *cgroup = omr_cgroup_report(c), *jail = omr_jail_report(c);
	/* Sandboxes start only with the limits (or leave to run without) and
	 * in a jail that worked. */
	ok = qemu && version && accel_ok && json_is_true(json_object_get(cgroup, "ok")) &&
	     (!c->jail_enable ||
	      json_is_true(json_object_get(json_object_get(jail, "self_test"), "ok")));

	json_t *j = json_pack(
		"{s:{s:b, s:b, s:I, s:s?},"
		" s:{s:s?, s:s?, s:s?, s:s?},"
		" s:{s:b, s:s?},"
		" s:{s:s?, s:s?},"
		" s:o, s:o,"
		" s:{s:b, s:b},"
		" s:s?,"
		" s:I,"
		" s:{s:s, s:b, s:s?, s:s?},"
		" s:{s:s?, s:s?, s:s?},"
		" s:b}",
		"kvm", "present", kvm.present, "usable", kvm.usable, "loop_ns",
		(json_int_t)kvm.loop_ns, "reason", kvm.reason[0] ? kvm.reason : NULL,
		"tcg", "qemu", qemu, "version", version, "firmware", firmware, "error", qerr,
		"tun", "ok", tun >= 0, "error", tun_err,
		"nftables", "nft", nft, "libnftables", libnft,
		"cgroup", cgroup, "jail", jail,
		"dm_crypt", "module", access("/sys/module/dm_crypt", F_OK) == 0,
		"device_mapper", proc_misc_has(" device-mapper\n"),
		"musl_gcc", musl,
		"tsc_khz", (json_int_t)omr_tcg_tsc_khz(c),
		"template", "name", c->default_template, "ok", t != NULL,
		"kernel_version", t ? t->kernel_version : NULL, "error", terr,
		"accel", "config", c->accel, "use", accel_ok ? (accel == OMR_ACCEL_KVM ? "kvm" : "tcg") : NULL,
		"why", accel_ok ? why : aerr,
		"ok", ok);
	/* Snapshots need a QEMU that maps a read-only RAM file privately
	 * (8.2+); with an older one every sandbox boots cold. */
	json_object_set_new(j, "snapshots",
			    json_pack("{s:b, s:s}", "supported", omr_snapshot_qemu_ok(version),
				      "why", omr_snapshot_qemu_ok(version)
				      ? "sandboxes restore from template snapshots"
				      : "QEMU older than 8.2 (or none): cold boots only; "
					"contrib/install-deps installs 10.0 from bookworm-backports"));
	omr_template_free(t);
	return j;
}
