/* Unit tests for libcore/state/config.c (TAP). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/state/config.h"
#include "omnirun/base/util.h"

#include "tap.h"

static char dir[] = "/tmp/omr-test-config.XXXXXX";

static const char *const env_vars[] = {
	"OMNIRUN_CONF", "OMNIRUN_STATE_DIR", "OMNIRUN_RUN_DIR", "OMNIRUN_CACHE_DIR",
	"OMNIRUN_LIBEXEC_DIR", "OMNIRUN_RECIPES_DIR", "OMNIRUN_ACCEL", "OMNIRUN_HOST_KEY",
};

static void clear_env(void)
{
	for (size_t i = 0; i < OMR_ARRAY_SIZE(env_vars); i++)
		unsetenv(env_vars[i]);
}

/* Writes text to a fresh conf file and points OMNIRUN_CONF at it. */
static void use_conf(const char *text)
{
	static int n;
	char *path = omr_strdup_printf("%s/c%d.conf", dir, n++);
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(99);
	}
	setenv("OMNIRUN_CONF", path, 1);
	free(path);
}

/* Loads expecting failure; returns 1 if the message contains every want. */
static int fails_with(const char *want1, const char *want2)
{
	struct omr_config *c = NULL;
	struct omr_err *err = NULL;
	int r = omr_config_load(&c, &err);
	int good = r < 0 && !c && err && strstr(err->msg, want1) && (!want2 || strstr(err->msg, want2));

	if (!good)
		fprintf(stderr, "# r=%d msg=%s\n", r, err ? err->msg : "(none)");
	omr_config_free(c);
	omr_err_free(&err);
	return good;
}

static void check_defaults(const struct omr_config *c)
{
	ok(!strcmp(c->state_dir, "/var/lib/omnirun") && !strcmp(c->run_dir, "/run/omnirun") &&
	   !strcmp(c->cache_dir, "/var/cache/omnirun"), "default directories");
	ok(!strcmp(c->qemu, "qemu-system-x86_64") && !strcmp(c->accel, "auto"),
	   "default qemu and accel");
	is_str(c->default_template, "tiny", "default template is tiny");
	ok(c->default_cpus == 2 && c->max_cpus == 8 && c->default_memory_mb == 4096 &&
	   c->max_memory_mb == 16384 && c->default_disk_mb == 10240 && c->max_disk_mb == 51200 &&
	   c->default_processes == 256 && c->max_processes == 1024,
	   "default sandbox sizes and maxima (2/8 vCPUs, 4/16 GiB, 10/50 GiB, 256/1024)");
	ok(c->jail_enable && c->jail_uid_base > 0 && c->jail_uid_count > 0 &&
	   !strcmp(c->jail_cgroup, "auto") && !strcmp(c->jail_seccomp, "kill") &&
	   !c->jail_allow_unlimited, "the jail is on by default, with cgroups and seccomp");
	ok(c->libexec_dir && c->libexec_dir[0] == '/' && c->recipes_dir && c->recipes_dir[0] == '/',
	   "libexec and recipes dirs are absolute");
}

int main(void)
{
	struct omr_config *c = NULL;
	struct omr_err *err = NULL;
	int r;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 99;
	}
	clear_env();

	/* No file at all. */
	if (access(OMR_DEFAULT_CONF, F_OK) == 0) {
		skip("defaults without a file: " OMR_DEFAULT_CONF " exists on this host");
	} else {
		r = omr_config_load(&c, &err);
		ok(r == 0 && c && c->conf_path == NULL, "loads without any file");
		if (c)
			check_defaults(c);
		omr_config_free(c);
		c = NULL;
		omr_err_free(&err);
	}

	/* An empty OMNIRUN_CONF file: defaults, and the path recorded. */
	use_conf("");
	r = omr_config_load(&c, &err);
	ok(r == 0 && c && c->conf_path && strstr(c->conf_path, dir), "empty OMNIRUN_CONF loads");
	if (c)
		check_defaults(c);
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);

	/* Values from the file. */
	use_conf("; a comment\n"
		 "[paths]\nstate_dir = /srv/omr\nrun_dir=/run/omr\ncache_dir=/srv/cache\n"
		 "libexec_dir=/opt/omr/libexec\nrecipes_dir=/opt/omr/recipes\n"
		 "[vmm]\nqemu=/opt/qemu/bin/qemu-system-x86_64\naccel=tcg\ntcg_tb_size_mb=128\n"
		 "boot_timeout=30\nconsole_log_max=65536\n"
		 "[sandbox]\ntemplate=python\ncpus=2\nmax_cpus=8\nmemory_mb=512\n"
		 "max_memory_mb=8192\ndisk_mb=1024\nmax_disk_mb=4096\ntimeout=600\n"
		 "max_timeout=7200\nidle_timeout=0\nmax_sandboxes=10\nidle_action=pause\n");
	r = omr_config_load(&c, &err);
	ok(r == 0 && c, "full file loads%s%s", err ? ": " : "", err ? err->msg : "");
	if (c) {
		ok(!strcmp(c->state_dir, "/srv/omr") && !strcmp(c->run_dir, "/run/omr") &&
		   !strcmp(c->cache_dir, "/srv/cache") && !strcmp(c->libexec_dir, "/opt/omr/libexec") &&
		   !strcmp(c->recipes_dir, "/opt/omr/recipes"), "[paths] read");
		ok(!strcmp(c->qemu, "/opt/qemu/bin/qemu-system-x86_64") && !strcmp(c->accel, "tcg") &&
		   c->tb_size_mb == 128 && c->boot_timeout_s == 30 && c->console_log_max == 65536,
		   "[vmm] read");
		ok(!strcmp(c->default_template, "python") && c->default_cpus == 2 && c->max_cpus == 8 &&
		   c->default_memory_mb == 512 && c->max_memory_mb == 8192 &&
		   c->default_disk_mb == 1024 && c->max_disk_mb == 4096 &&
		   c->default_timeout_s == 600 && c->max_timeout_s == 7200 &&
		   c->idle_timeout_s == 0 && c->max_sandboxes == 10 &&
		   !strcmp(c->idle_action, "pause"), "[sandbox] read");
	}
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);

	/* The environment beats the file. */
	setenv("OMNIRUN_STATE_DIR", "/tmp/env-state", 1);
	setenv("OMNIRUN_RUN_DIR", "/tmp/env-run", 1);
	setenv("OMNIRUN_CACHE_DIR", "/tmp/env-cache", 1);
	setenv("OMNIRUN_LIBEXEC_DIR", "/tmp/env-libexec", 1);
	setenv("OMNIRUN_RECIPES_DIR", "/tmp/env-recipes", 1);
	setenv("OMNIRUN_ACCEL", "kvm", 1);
	r = omr_config_load(&c, &err);
	ok(r == 0 && c && !strcmp(c->state_dir, "/tmp/env-state") &&
	   !strcmp(c->run_dir, "/tmp/env-run") && !strcmp(c->cache_dir, "/tmp/env-cache") &&
	   !strcmp(c->libexec_dir, "/tmp/env-libexec") &&
	   !strcmp(c->recipes_dir, "/tmp/env-recipes") && !strcmp(c->accel, "kvm"),
	   "environment overrides the file");
	ok(c && c->default_memory_mb == 512, "the rest of the file still applies");
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);
	setenv("OMNIRUN_STATE_DIR", "", 1);
	r = omr_config_load(&c, &err);
	ok(r == 0 && c && !strcmp(c->state_dir, "/srv/omr"), "an empty variable is ignored");
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);
	setenv("OMNIRUN_ACCEL", "warp", 1);
	ok(fails_with("vmm.accel must be auto, kvm or tcg", "warp"), "bad OMNIRUN_ACCEL rejected");
	clear_env();

	/* A named file that does not exist is an error; the default one is not. */
	setenv("OMNIRUN_CONF", "/nonexistent/omnirun.conf", 1);
	ok(fails_with("cannot read /nonexistent/omnirun.conf", NULL), "missing OMNIRUN_CONF rejected");

	/* Bad values and unknown keys, each named in the message. */
	use_conf("[sandbox]\nmemory_mb = lots\n");
	ok(fails_with("sandbox.memory_mb", "not a number"), "non-numeric value rejected");
	use_conf("[sandbox]\ncpus=0\n");
	ok(fails_with("sandbox.cpus", "between 1 and 64"), "zero cpus rejected");
	use_conf("[sandbox]\ncpus=-1\n");
	ok(fails_with("sandbox.cpus", NULL), "negative number rejected");
	use_conf("[sandbox]\ncpus=99999999999999999999999\n");
	ok(fails_with("sandbox.cpus", NULL), "overflowing number rejected");
	use_conf("[sandbox]\ncpus=2x\n");
	ok(fails_with("sandbox.cpus", "not a number"), "trailing garbage rejected");
	use_conf("[vmm]\nconsole_log_max=10\n");
	ok(fails_with("vmm.console_log_max", NULL), "console_log_max below its minimum rejected");
	use_conf("[vmm]\naccel=fast\n");
	ok(fails_with("vmm.accel must be auto, kvm or tcg", "fast"), "bad accel rejected");
	use_conf("[sandbox]\nidle_action=persist\n[paths]\nhost_key=/k/host.key\n");
	{
		struct omr_config *pc = NULL;
		ok(omr_config_load(&pc, NULL) == 0 && !strcmp(pc->idle_action, "persist") &&
			   !strcmp(pc->host_key, "/k/host.key"),
		   "idle_action persist and [paths] host_key are taken");
		omr_config_free(pc);
	}
	use_conf("[sandbox]\nidle_action=nap\n");
	ok(fails_with("invalid idle action 'nap'", NULL), "an unknown idle_action refused");
	use_conf("[vmm]\nturbo=1\n");
	ok(fails_with("unknown setting [vmm] turbo", NULL), "unknown key rejected");
	use_conf("[nosuch]\nstate_dir=/x\n");
	ok(fails_with("unknown setting [nosuch] state_dir", NULL), "key in unknown section rejected");
	use_conf("state_dir=/x\n");
	ok(fails_with("unknown setting [] state_dir", NULL), "key outside any section rejected");
	use_conf("[paths]\nthis line has no equals sign\n");
	ok(fails_with("syntax error", NULL), "syntax error rejected");
	use_conf("[sandbox]\ncpus=8\nmax_cpus=4\n");
	ok(fails_with("exceeds its maximum", NULL), "default above maximum rejected");
	use_conf("[jail]\nenable=false\nuid_base=100000\nuid_count=10\ncgroup=v1\n"
		 "cgroup_parent=a/b.slice\nallow_unlimited=yes\nseccomp=log\n"
		 "memory_overhead_mb=0\ncpu_quota_percent=50\n"
		 "[sandbox]\nprocesses=100\nmax_processes=200\n");
	if (omr_config_load(&c, &err) < 0) {
		ok(0, "[jail] read: %s", err->msg);
		omr_err_free(&err);
	} else {
		ok(!c->jail_enable && c->jail_uid_base == 100000 && c->jail_uid_count == 10 &&
		   !strcmp(c->jail_cgroup, "v1") && !strcmp(c->jail_cgroup_parent, "a/b.slice") &&
		   c->jail_allow_unlimited && !strcmp(c->jail_seccomp, "log") &&
		   c->jail_memory_overhead_mb == 0 &&
		   c->jail_cpu_quota_pct == 50 && c->default_processes == 100 &&
		   c->max_processes == 200, "[jail] read");
		omr_config_free(c);
		c = NULL;
	}
	use_conf("[jail]\nuid_base=0\n");
	ok(fails_with("jail.uid_base", "between 1 and"), "uid 0 is never a jail's");
	use_conf("[jail]\nuid_base=4294967290\nuid_count=100\n");
	ok(fails_with("past the last uid", NULL), "a range past the last uid rejected");
	use_conf("[jail]\nenable=maybe\n");
	ok(fails_with("jail.enable must be true or false", NULL), "a bad boolean rejected");
	use_conf("[jail]\ncgroup=v3\n");
	ok(fails_with("jail.cgroup must be", NULL), "a bad cgroup version rejected");
	use_conf("[jail]\ncgroup_parent=../escape\n");
	ok(fails_with("cgroup_parent", NULL), "a cgroup parent leaving the hierarchy rejected");
	use_conf("[jail]\nseccomp=maybe\n");
	ok(fails_with("jail.seccomp must be", NULL), "a bad seccomp mode rejected");
	use_conf("[sandbox]\nprocesses=2000\nmax_processes=1000\n");
	ok(fails_with("exceeds its maximum", NULL), "processes above their maximum rejected");
	/* [e2b]: off by default, base -> playground; the map is read and
	 * checked. */
	use_conf("");
	if (omr_config_load(&c, &err) == 0) {
		char *t = omr_config_e2b_template(c, "base");
		ok(!c->e2b_listen && t && !strcmp(t, "playground") &&
		   !omr_config_e2b_template(c, "tiny"), "[e2b] is off, base is playground by default");
		free(t);
	} else {
		ok(0, "[e2b] defaults: %s", err->msg);
	}
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);
	use_conf("[e2b]\nlisten=127.0.0.1:3000\ntemplates=base=tiny,code-interpreter-v1=python\n");
	if (omr_config_load(&c, &err) == 0) {
		char *a = omr_config_e2b_template(c, "base"), *b = omr_config_e2b_template(c, "code-interpreter-v1");
		ok(!strcmp(c->e2b_listen, "127.0.0.1:3000") && a && !strcmp(a, "tiny") && b &&
		   !strcmp(b, "python") && !omr_config_e2b_template(c, "bas"), "[e2b] listen and templates read");
		free(a);
		free(b);
	} else {
		ok(0, "[e2b] read: %s", err->msg);
	}
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);
	use_conf("[e2b]\ntemplates=base:tiny\n");
	ok(fails_with("e2b.templates must be", NULL), "an [e2b] templates without NAME=TEMPLATE rejected");
	use_conf("[e2b]\ntemplates=base=tiny,=x\n");
	ok(fails_with("e2b.templates must be", NULL), "an [e2b] template without a name rejected");
	/* [pool]: template name = size, bounded. */
	use_conf("[pool]\ntiny=2\npython = 0\ntiny = 3\n");
	if (omr_config_load(&c, &err) == 0) {
		ok(c->npool == 2 && omr_config_pool_size(c, "tiny") == 3 &&
		   omr_config_pool_size(c, "python") == 0 && omr_config_pool_size(c, "rust") == 0,
		   "[pool] sizes read, the last one of a name stands");
	} else {
		ok(0, "[pool] read: %s", err->msg);
	}
	omr_config_free(c);
	c = NULL;
	omr_err_free(&err);
	use_conf("[pool]\nTiny=1\n");
	ok(fails_with("not a template name", NULL), "a [pool] name that is no template name rejected");
	use_conf("[pool]\n../x=1\n");
	ok(fails_with("not a template name", NULL), "a [pool] name with a path rejected");
	use_conf("[pool]\ntiny=65\n");
	ok(fails_with("pool.tiny", NULL), "a [pool] size past 64 rejected");
	use_conf("[sandbox]\nmax_sandboxes=4\n[pool]\ntiny=3\npython=2\n");
	ok(fails_with("more than sandbox.max_sandboxes", NULL), "[pool] sizes past max_sandboxes rejected");
	use_conf("[sandbox]\ncpus=lots\n");
	{
		const char *path = getenv("OMNIRUN_CONF");
		ok(fails_with(path, NULL), "error names the file");
	}

	omr_rm_rf_at(AT_FDCWD, dir);
	return done_testing();
}
