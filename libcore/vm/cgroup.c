/* Host cgroups per sandbox; see omnirun/vm/cgroup.h.
 *
 * The hierarchy is found in /proc/self/mountinfo (not assumed at
 * /sys/fs/cgroup): a cgroup2 mount whose root offers memory, cpu and pids,
 * else cgroup v1 mounts that carry them (on the test hosts each controller
 * is its own hierarchy, cpu and cpuacct apart; elsewhere cpu,cpuacct are
 * co-mounted).  Limits are plain file writes; a child joins by writing
 * "0" to cgroup.procs fds opened here, before it drops its privileges. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/state/record.h"
#include "omnirun/vm/cgroup.h"

#define CPU_PERIOD_US 100000
#define RMDIR_WAIT_MS 2000
#define SELFTEST_PREFIX "selftest-"

static const struct {
	unsigned bit;
	const char *v1, *v2;   /* controller names */
} ctl_names[] = {
	{ OMR_CGC_MEMORY, "memory", "memory" },
	{ OMR_CGC_CPU, "cpu", "cpu" },
	{ OMR_CGC_PIDS, "pids", "pids" },
	{ OMR_CGC_IO, "blkio", "io" },
	{ OMR_CGC_CPUACCT, "cpuacct", NULL },
};

struct omr_cgroup {
	enum omr_cgroup_version version;
	size_t n;
	char *dirs[OMR_CG_MAX_MOUNTS];
	unsigned ctl[OMR_CG_MAX_MOUNTS];
	int procs[OMR_CG_MAX_MOUNTS];
};

void omr_cgroup_host_free(struct omr_cgroup_host *h)
{
	for (size_t i = 0; i < h->nmounts; i++)
		free(h->mounts[i].path);
	free(h->why);
	memset(h, 0, sizeof(*h));
}

static unsigned v1_controllers(const char *superopts)
{
	_cleanup_free_ char *o = omr_xstrdup(superopts);
	unsigned bits = 0;
	char *save = NULL;

	for (char *w = strtok_r(o, ",", &save); w; w = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < OMR_ARRAY_SIZE(ctl_names); i++)
			if (!strcmp(w, ctl_names[i].v1))
				bits |= ctl_names[i].bit;
	return bits;
}

static unsigned v2_controllers(const char *mnt)
{
	_cleanup_free_ char *path = omr_strdup_printf("%s/cgroup.controllers", mnt);
	_cleanup_free_ char *text = NULL;
	unsigned bits = 0;
	char *save = NULL;

	if (omr_read_file_at(AT_FDCWD, path, 4096, &text, NULL, NULL) < 0)
		return 0;
	for (char *w = strtok_r(text, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
		for (size_t i = 0; i < OMR_ARRAY_SIZE(ctl_names); i++)
			if (ctl_names[i].v2 && !strcmp(w, ctl_names[i].v2))
				bits |= ctl_names[i].bit;
	/* v2's cpu controller also counts CPU time. */
	if (bits & OMR_CGC_CPU)
		bits |= OMR_CGC_CPUACCT;
	return bits;
}

/* Undoes the octal escapes of mountinfo (\040 for a blank). */
static void unescape(char *s)
{
	char *d = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d++ = *s;
		}
	}
	*d = 0;
}

static void add_mount(struct omr_cgroup_host *h, const char *path, unsigned bits)
{
	if (h->nmounts == OMR_CG_MAX_MOUNTS)
		return;
	h->mounts[h->nmounts].path = omr_xstrdup(path);
	h->mounts[h->nmounts++].controllers = bits;
	h->controllers |= bits;
}

/* Looks through mountinfo for version want; fills h when it finds every
 * required controller there, writable. */
static int detect_version(struct omr_cgroup_host *h, enum omr_cgroup_version want)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	unsigned seen = 0;

	memset(h, 0, sizeof(*h));
	while (f && getline(&line, &cap, f) > 0) {
		char *sep = strstr(line, " - "), *fields[6] = { 0 }, *save = NULL, *w;
		char fstype[32], super[512];
		unsigned bits;
		int i = 0;

		if (!sep || sscanf(sep + 3, "%31s %*s %511s", fstype, super) != 2)
			continue;
		*sep = 0;
		for (w = strtok_r(line, " ", &save); w && i < 6; w = strtok_r(NULL, " ", &save))
			fields[i++] = w;
		if (i < 5)
			continue;
		unescape(fields[4]);
		if (access(fields[4], W_OK) < 0)
			continue;
		if (want == OMR_CG_V2 && !strcmp(fstype, "cgroup2")) {
			bits = v2_controllers(fields[4]);
			if ((bits & OMR_CGC_REQUIRED) == OMR_CGC_REQUIRED) {
				add_mount(h, fields[4], bits);
				h->version = OMR_CG_V2;
				return 0;
			}
		} else if (want == OMR_CG_V1 && !strcmp(fstype, "cgroup")) {
			/* One mount per hierarchy, and each controller once
			 * (a hierarchy may be mounted twice). */
			bits = v1_controllers(super) & ~seen;
			if (bits) {
				add_mount(h, fields[4], bits);
				seen |= bits;
			}
		}
	}
	if (want == OMR_CG_V1 && (h->controllers & OMR_CGC_REQUIRED) == OMR_CGC_REQUIRED) {
		h->version = OMR_CG_V1;
		return 0;
	}
	omr_cgroup_host_free(h);
	return -1;
}

void omr_cgroup_detect(const struct omr_config *c, struct omr_cgroup_host *h)
{
	const char *want = c->jail_cgroup ? c->jail_cgroup : "auto";

	memset(h, 0, sizeof(*h));
	if (!strcmp(want, "none")) {
		h->why = omr_xstrdup("[jail] cgroup is none");
		return;
	}
	if (geteuid() != 0) {
		h->why = omr_xstrdup("not root: cannot make cgroups");
		return;
	}
	if (strcmp(want, "v1") && detect_version(h, OMR_CG_V2) == 0)
		return;
	if (strcmp(want, "v2") && detect_version(h, OMR_CG_V1) == 0)
		return;
	h->why = omr_strdup_printf("no writable cgroup %s hierarchy with the memory, cpu and "
				   "pids controllers", !strcmp(want, "auto") ? "v2 or v1" : want);
}

/* Writes s to dir/file.  Returns 0 or -errno. */
static int put(const char *dir, const char *file, const char *s)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/%s", dir, file);
	_cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return omr_write_all(fd, s, strlen(s));
}

static int putf(const char *dir, const char *file, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", v);
	return put(dir, file, buf);
}

/* v2: the parent's controllers are enabled for its children all the way
 * down from the root, each one alone so that an optional one that cannot
 * be enabled does not stop the others. */
static int v2_enable(const char *dir, unsigned bits, struct omr_err **err)
{
	for (size_t i = 0; i < OMR_ARRAY_SIZE(ctl_names); i++) {
		char what[32];
		int rc;

		if (!(bits & ctl_names[i].bit) || !ctl_names[i].v2)
			continue;
		snprintf(what, sizeof(what), "+%s", ctl_names[i].v2);
		rc = put(dir, "cgroup.subtree_control", what);
		if (rc < 0 && (ctl_names[i].bit & OMR_CGC_REQUIRED))
			return omr_err_set(err, OMR_E_UNSUPPORTED, -rc,
					   "cannot enable the %s controller in %s", ctl_names[i].v2, dir);
	}
	return 0;
}

/* mkdir -p of PARENT under mnt, enabling v2 controllers on the way. */
static int make_parent(const struct omr_config *c, const char *mnt, unsigned bits,
		       enum omr_cgroup_version v, struct omr_err **err)
{
	_cleanup_free_ char *rel = omr_xstrdup(c->jail_cgroup_parent);
	_cleanup_free_ char *dir = omr_xstrdup(mnt);
	char *save = NULL;

	if (v == OMR_CG_V2 && v2_enable(dir, bits, err) < 0)
		return -1;
	for (char *w = strtok_r(rel, "/", &save); w; w = strtok_r(NULL, "/", &save)) {
		char *next = omr_strdup_printf("%s/%s", dir, w);
		free(dir);
		dir = next;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot create cgroup %s", dir);
		if (v == OMR_CG_V2 && v2_enable(dir, bits, err) < 0)
			return -1;
	}
	return 0;
}

/* The limits, in the files of each version.  A required limit that cannot
 * be set fails the create; the I/O weight is best effort (v1's blkio
 * weight needs the BFQ or CFQ scheduler). */
static int set_limits(struct omr_cgroup *cg, size_t i, const struct omr_cgroup_limits *l,
		      struct omr_err **err)
{
	const char *d = cg->dirs[i];
	unsigned bits = cg->ctl[i];
	char buf[64];
	int rc = 0;

	if (cg->version == OMR_CG_V2) {
		if (bits & OMR_CGC_MEMORY) {
			rc = putf(d, "memory.max", (unsigned long long)l->memory_bytes);
			/* QEMU's memory never goes to swap (guest secrets), and
			 * an OOM takes the whole sandbox, never half of it. */
			if (rc == 0) {
				put(d, "memory.swap.max", "0");
				put(d, "memory.oom.group", "1");
			}
		}
		if (rc == 0 && (bits & OMR_CGC_CPU) && l->cpu_quota_us) {
			snprintf(buf, sizeof(buf), "%u %u", l->cpu_quota_us, CPU_PERIOD_US);
			rc = put(d, "cpu.max", buf);
		}
		if (rc == 0 && (bits & OMR_CGC_PIDS))
			rc = putf(d, "pids.max", l->pids);
		if (rc == 0 && (bits & OMR_CGC_IO) && l->io_weight) {
			snprintf(buf, sizeof(buf), "default %u", l->io_weight);
			if (put(d, "io.weight", buf) < 0)
				put(d, "io.bfq.weight", buf);
		}
	} else {
		if (bits & OMR_CGC_MEMORY) {
			rc = putf(d, "memory.limit_in_bytes", (unsigned long long)l->memory_bytes);
			/* Memory plus swap no larger: QEMU never swaps (where
			 * swap accounting is on). */
			if (rc == 0)
				putf(d, "memory.memsw.limit_in_bytes", (unsigned long long)l->memory_bytes);
		}
		if (rc == 0 && (bits & OMR_CGC_CPU) && l->cpu_quota_us) {
			rc = putf(d, "cpu.cfs_period_us", CPU_PERIOD_US);
			if (rc == 0)
				rc = putf(d, "cpu.cfs_quota_us", l->cpu_quota_us);
		}
		if (rc == 0 && (bits & OMR_CGC_PIDS))
			rc = putf(d, "pids.max", l->pids);
		if (rc == 0 && (bits & OMR_CGC_IO) && l->io_weight) {
			/* v1's scale is 10-1000 around 500 for v2's 1-10000
			 * around 100 (as systemd maps IOWeight). */
			unsigned long long w = (unsigned long long)l->io_weight * 5;
			putf(d, "blkio.weight", w < 10 ? 10 : w > 1000 ? 1000 : w);
		}
	}
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot set the limits of cgroup %s", d);
	return 0;
}

int omr_cgroup_create(const struct omr_config *c, const struct omr_cgroup_host *h,
		      const char *name, const struct omr_cgroup_limits *l,
		      struct omr_cgroup **out, struct omr_err **err)
{
	struct omr_cgroup *cg = omr_xcalloc(1, sizeof(*cg));

	*out = NULL;
	cg->version = h->version;
	for (size_t i = 0; i < OMR_CG_MAX_MOUNTS; i++)
		cg->procs[i] = -1;
	for (size_t i = 0; i < h->nmounts; i++) {
		const char *mnt = h->mounts[i].path;

		if (make_parent(c, mnt, h->controllers, h->version, err) < 0)
			goto fail;
		cg->dirs[cg->n] = omr_strdup_printf("%s/%s/%s", mnt, c->jail_cgroup_parent, name);
		cg->ctl[cg->n] = h->mounts[i].controllers;
		/* A leftover of a dead sandbox with this name would carry its
		 * old limits and counters: start afresh. */
		if (mkdir(cg->dirs[cg->n], 0755) < 0 &&
		    (errno != EEXIST || rmdir(cg->dirs[cg->n]) < 0 || mkdir(cg->dirs[cg->n], 0755) < 0)) {
			omr_err_set(err, OMR_E_FAIL, errno, "cannot create cgroup %s", cg->dirs[cg->n]);
			free(cg->dirs[cg->n]);
			goto fail;
		}
		cg->n++;
		if (set_limits(cg, cg->n - 1, l, err) < 0)
			goto fail;
		_cleanup_free_ char *procs = omr_strdup_printf("%s/cgroup.procs", cg->dirs[cg->n - 1]);
		cg->procs[cg->n - 1] = open(procs, O_WRONLY | O_CLOEXEC);
		if (cg->procs[cg->n - 1] < 0) {
			omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", procs);
			goto fail;
		}
	}
	*out = cg;
	return 0;
fail:
	omr_cgroup_destroy(&cg);
	return -1;
}

size_t omr_cgroup_procs_fds(const struct omr_cgroup *cg, int *fds, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; cg && i < cg->n && n < max; i++)
		if (cg->procs[i] >= 0)
			fds[n++] = cg->procs[i];
	return n;
}

/* The number after key in a "key value" file (memory.events,
 * memory.oom_control, cpu.stat), or -1. */
static int64_t keyed_value(const char *dir, const char *file, const char *key)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/%s", dir, file);
	_cleanup_free_ char *text = NULL;
	size_t klen = strlen(key);

	if (omr_read_file_at(AT_FDCWD, p, 65536, &text, NULL, NULL) < 0)
		return -1;
	for (char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, key, klen) && l[klen] == ' ')
			return strtoll(l + klen + 1, NULL, 10);
	return -1;
}

static int64_t plain_value(const char *dir, const char *file)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/%s", dir, file);
	_cleanup_free_ char *text = NULL;

	if (omr_read_file_at(AT_FDCWD, p, 256, &text, NULL, NULL) < 0)
		return -1;
	return strtoll(text, NULL, 10);
}

uint64_t omr_cgroup_oom_kills(const struct omr_cgroup *cg)
{
	for (size_t i = 0; cg && i < cg->n; i++) {
		int64_t v;
		if (!(cg->ctl[i] & OMR_CGC_MEMORY))
			continue;
		v = keyed_value(cg->dirs[i], cg->version == OMR_CG_V2 ? "memory.events"
								       : "memory.oom_control", "oom_kill");
		return v > 0 ? (uint64_t)v : 0;
	}
	return 0;
}

/* rmdir that waits (bounded) for the last processes to leave. */
static int rmdir_wait(const char *dir)
{
	uint64_t deadline = omr_now_ms() + RMDIR_WAIT_MS;

	while (rmdir(dir) < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno != EBUSY || omr_now_ms() >= deadline)
			return -errno;
		poll(NULL, 0, 10);
	}
	return 0;
}

void omr_cgroup_destroy(struct omr_cgroup **cgp)
{
	struct omr_cgroup *cg = *cgp;

	if (!cg)
		return;
	for (size_t i = 0; i < cg->n; i++) {
		if (cg->procs[i] >= 0)
			close(cg->procs[i]);
		rmdir_wait(cg->dirs[i]);
		free(cg->dirs[i]);
	}
	free(cg);
	*cgp = NULL;
}

void omr_cgroup_remove(const struct omr_config *c, const char *name)
{
	struct omr_cgroup_host h;

	omr_cgroup_detect(c, &h);
	for (size_t i = 0; i < h.nmounts; i++) {
		_cleanup_free_ char *d = omr_strdup_printf("%s/%s/%s", h.mounts[i].path,
							   c->jail_cgroup_parent, name);
		rmdir_wait(d);
	}
	omr_cgroup_host_free(&h);
}

int omr_cgroup_usage(const struct omr_config *c, const char *name, int64_t *cpu_ns,
		     int64_t *memory_bytes)
{
	struct omr_cgroup_host h;
	int found = 0;

	*cpu_ns = *memory_bytes = -1;
	omr_cgroup_detect(c, &h);
	for (size_t i = 0; i < h.nmounts; i++) {
		_cleanup_free_ char *d = omr_strdup_printf("%s/%s/%s", h.mounts[i].path,
							   c->jail_cgroup_parent, name);
		unsigned bits = h.mounts[i].controllers;
		int64_t v;

		if (access(d, F_OK) < 0)
			continue;
		found = 1;
		if (h.version == OMR_CG_V2) {
			v = keyed_value(d, "cpu.stat", "usage_usec");
			*cpu_ns = v >= 0 ? v * 1000 : -1;
			*memory_bytes = plain_value(d, "memory.current");
		} else {
			if (bits & OMR_CGC_CPUACCT)
				*cpu_ns = plain_value(d, "cpuacct.usage");
			if (bits & OMR_CGC_MEMORY)
				*memory_bytes = plain_value(d, "memory.usage_in_bytes");
		}
	}
	omr_cgroup_host_free(&h);
	return found ? 0 : -ENOENT;
}

json_t *omr_cgroup_report(const struct omr_config *c)
{
	struct omr_cgroup_host h;
	json_t *ctl = json_array(), *mounts = json_array();
	static const char *const v[] = { "none", "v1", "v2" };
	int ok;

	omr_cgroup_detect(c, &h);
	for (size_t i = 0; i < OMR_ARRAY_SIZE(ctl_names); i++) {
		const char *n = h.version == OMR_CG_V2 ? ctl_names[i].v2 : ctl_names[i].v1;
		if ((h.controllers & ctl_names[i].bit) && n)
			json_array_append_new(ctl, json_string(n));
	}
	for (size_t i = 0; i < h.nmounts; i++)
		json_array_append_new(mounts, json_string(h.mounts[i].path));
	ok = h.version != OMR_CG_NONE || c->jail_allow_unlimited;
	json_t *j = json_pack("{s:s, s:s?, s:o, s:o, s:s, s:b, s:b, s:s?}", "version", v[h.version],
			      "path", h.nmounts ? (h.version == OMR_CG_V2 ? h.mounts[0].path
									   : "/sys/fs/cgroup")
						: NULL,
			      "mounts", mounts, "controllers", ctl, "parent", c->jail_cgroup_parent,
			      "allow_unlimited", (int)c->jail_allow_unlimited, "ok", ok, "why", h.why);
	omr_cgroup_host_free(&h);
	return j;
}

/* Is the cgroup called name a leftover?  One of a sandbox whose record
 * here says stopped, or of an sbx-doctor self-test whose process is gone.
 * Names without a record here are another installation's (a test tree's):
 * not ours to judge. */
static int name_stale(const struct omr_config *c, const char *name)
{
	struct omr_sandbox sb;

	if (!strncmp(name, SELFTEST_PREFIX, strlen(SELFTEST_PREFIX))) {
		long pid = strtol(name + strlen(SELFTEST_PREFIX), NULL, 10);
		return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
	}
	return omr_id_valid(name) && omr_sandbox_load(c, name, &sb, NULL) == 0 &&
	       sb.state == OMR_SB_STOPPED;
}

int omr_cgroup_gc(const struct omr_config *c, int check_only, omr_gc_found_fn found,
		  void *user)
{
	struct omr_cgroup_host h;
	int count = 0;

	omr_cgroup_detect(c, &h);
	for (size_t i = 0; i < h.nmounts; i++) {
		_cleanup_free_ char *parent = omr_strdup_printf("%s/%s", h.mounts[i].path,
								c->jail_cgroup_parent);
		DIR *d = opendir(parent);
		struct dirent *de;

		while (d && (de = readdir(d))) {
			if (de->d_type != DT_DIR || de->d_name[0] == '.' || !name_stale(c, de->d_name))
				continue;
			_cleanup_free_ char *dir = omr_strdup_printf("%s/%s", parent, de->d_name);
			_cleanup_free_ char *what = omr_strdup_printf("cgroup %s of a stopped sandbox", dir);
			int fixed = !check_only && rmdir_wait(dir) == 0;
			count++;
			if (found)
				found(user, "stale_cgroup", de->d_name, what, fixed);
		}
		if (d)
			closedir(d);
	}
	omr_cgroup_host_free(&h);
	return count;
}
