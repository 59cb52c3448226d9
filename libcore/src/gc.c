/* Garbage collection of sandbox leftovers; see omnirun/gc.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/cleanup.h"
#include "omnirun/gc.h"
#include "omnirun/sandbox.h"
#include "omnirun/util.h"

#define INCOMPLETE_AGE_S 120

struct gc {
	const struct omr_config *c;
	const struct omr_gc_opts *o;
	omr_gc_found_fn found;
	void *user;
	int count;
};

static void report(struct gc *g, const char *kind, const char *id, const char *what)
{
	g->count++;
	if (g->found)
		g->found(g->user, kind, id, what);
}

/* Is this id's record live (not stopped)? */
static int record_live(struct gc *g, const char *id)
{
	struct omr_sandbox sb;
	struct omr_err *e = NULL;
	int live;

	if (omr_sandbox_load(g->c, id, &sb, &e) < 0) {
		omr_err_free(&e);
		return 0;
	}
	live = sb.state != OMR_SB_STOPPED;
	return live;
}

static void gc_records(struct gc *g)
{
	struct omr_sandbox *v;
	size_t n;
	int64_t now = (int64_t)(omr_wall_ms() / 1000);

	if (omr_sandbox_list(g->c, &v, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct omr_sandbox *sb = &v[i];
		struct omr_err *e = NULL;
		int lock;

		if (sb->state == OMR_SB_STOPPED) {
			if (g->o->prune_days && sb->ended_at > 0 &&
			    now - sb->ended_at > (int64_t)g->o->prune_days * 86400) {
				report(g, "expired_record", sb->id, "stopped record past the history limit");
				if (!g->o->check_only) {
					_cleanup_close_ int root = omr_state_sandboxes_dir(g->c, 0, NULL);
					if (root >= 0)
						omr_rm_rf_at(root, sb->id);
				}
			}
			continue;
		}
		if (omr_sandbox_monitor_alive(sb))
			continue;
		/* A create in progress holds no monitor yet: only records
		 * older than the boot window count. */
		if (sb->state == OMR_SB_STARTING &&
		    now - sb->created_at < (int64_t)g->c->boot_timeout_s + 60)
			continue;
		report(g, "lost_sandbox", sb->id, "record says running but its monitor is gone");
		if (g->o->check_only)
			continue;
		lock = omr_sandbox_lock(g->c, sb->id, 5000, &e);
		if (lock >= 0) {
			omr_sandbox_reap(g->c, sb, "gc", &e);
			close(lock);
		}
		omr_err_free(&e);
	}
	free(v);
}

static void gc_dirs(struct gc *g)
{
	_cleanup_free_ char *runroot = omr_strdup_printf("%s/sandboxes", g->c->run_dir);
	int64_t now = (int64_t)(omr_wall_ms() / 1000);
	struct dirent *de;
	DIR *d;
	int root;

	/* Runtime dirs of sandboxes that are not live. */
	d = opendir(runroot);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || record_live(g, de->d_name))
			continue;
		report(g, "stale_run_dir", de->d_name, "runtime directory of a stopped sandbox");
		if (!g->o->check_only)
			omr_rm_rf_at(dirfd(d), de->d_name);
	}
	if (d)
		closedir(d);

	/* State dirs without a record: a create that crashed before writing. */
	root = omr_state_sandboxes_dir(g->c, 0, NULL);
	if (root < 0)
		return;
	d = fdopendir(root);
	while (d && (de = readdir(d))) {
		struct stat st;
		if (!omr_id_valid(de->d_name) || fstatat(root, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (faccessat(root, de->d_name, F_OK, 0) == 0) {
			_cleanup_free_ char *rec = omr_strdup_printf("%s/sandbox.conf", de->d_name);
			if (faccessat(root, rec, F_OK, 0) == 0 || now - st.st_mtime < INCOMPLETE_AGE_S)
				continue;
		}
		report(g, "incomplete_create", de->d_name, "sandbox directory without a record");
		if (!g->o->check_only)
			omr_rm_rf_at(root, de->d_name);
	}
	if (d)
		closedir(d);
	else
		close(root);
}

/* QEMU or monitor processes that belong to a sandbox that is not live. */
static void gc_processes(struct gc *g)
{
	_cleanup_free_ char *mark = omr_strdup_printf("%s/sandboxes/sb_", g->c->run_dir);
	DIR *d = opendir("/proc");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *cmd = NULL;
		char id[OMR_ID_MAX] = { 0 };
		size_t len, k;
		char *p;
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid <= 1)
			continue;
		path = omr_strdup_printf("/proc/%d/cmdline", (int)pid);
		if (omr_read_file_at(AT_FDCWD, path, 65536, &cmd, &len, NULL) < 0)
			continue;
		for (size_t i = 0; i < len; i++)
			if (!cmd[i])
				cmd[i] = ' ';
		if (strstr(cmd, "sbx-monitor") && (p = strstr(cmd, " sb_")))
			p += 1;
		else if ((p = strstr(cmd, mark)))
			p += strlen(mark) - 3;
		else
			continue;
		for (k = 0; k + 1 < sizeof(id) && p[k] && p[k] != '/' && p[k] != ' ' && p[k] != ','; k++)
			id[k] = p[k];
		if (!omr_id_valid(id) || record_live(g, id))
			continue;
		_cleanup_free_ char *what = omr_strdup_printf("process %d of a stopped sandbox", (int)pid);
		report(g, "orphan_process", id, what);
		if (!g->o->check_only)
			kill(pid, SIGKILL);
	}
	if (d)
		closedir(d);
}

int omr_gc_run(const struct omr_config *c, const struct omr_gc_opts *o,
	       omr_gc_found_fn found, void *user, struct omr_err **err)
{
	struct gc g = { c, o, found, user, 0 };

	(void)err;
	gc_records(&g);
	gc_processes(&g);
	gc_dirs(&g);
	return g.count;
}
