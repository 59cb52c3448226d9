/* One cgroup per command: agent_cfg.cgroup/c<N>.
 *
 * The commands' cgroup (PID 1 creates /sys/fs/cgroup/omnirun-cmds) holds
 * the shared memory.max and pids.max; each command gets a child cgroup of
 * its own, created before the fork and joined by the child before exec.
 * When the command is over, everything left in its cgroup is killed with
 * cgroup.kill (atomic against forks, unlike a process group), and the
 * directory is removed once the kernel says it is empty.  That wait never
 * blocks the poll loop: pending removals watch cgroup.events (POLLPRI on
 * every change) with a timer as a backstop.
 *
 * Without a cgroup (development mode) none of this runs: commands are
 * process groups, killed as such (proc.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define CG_FAST_MS 2000   /* wait this long for the cgroup to empty... */
#define CG_RECHECK_MS 100 /* ...checking at least this often */
#define CG_SLOW_MS 1000   /* then keep trying, slowly... */
#define CG_GIVEUP_MS 30000 /* ...until this; a later server retries */
#define CG_PROCS_MAX (1u << 20) /* bytes of cgroup.procs read: 100k+ pids */

struct cg_pending {
	char *path;
	int events; /* cgroup.events, read-only: POLLPRI on change */
	uint64_t start, next;
	bool warned;
	struct cg_pending *next_p;
};

static struct cg_pending *pending;
static unsigned long cg_seq;

/* Writes "1" to cgroup.kill; without it (kernels before 5.14) SIGKILLs
 * what cgroup.procs lists, a few rounds against forks. */
int cg_kill(const char *path)
{
	_cleanup_free_ char *kf = path_join(path, "cgroup.kill");
	_cleanup_free_ char *pf = path_join(path, "cgroup.procs");
	int rc;

	if (!kf || !pf)
		return -ENOMEM;
	rc = file_write_str(kf, "1");
	if (rc != -ENOENT)
		return rc;
	for (int round = 0; round < 8; round++) {
		_cleanup_free_ char *buf = NULL;
		bool any = false;
		rc = omr_read_file_at(AT_FDCWD, pf, CG_PROCS_MAX, &buf, NULL, NULL);
		if (rc < 0)
			return rc;
		for (char *s = buf, *end; *s; s = end) {
			long pid = strtol(s, &end, 10);
			if (end == s)
				break;
			if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
				any = true;
		}
		if (!any)
			break;
	}
	return 0;
}

/* True when processes (not zombies) are left in the cgroup or below. */
bool cg_populated(const char *path)
{
	_cleanup_free_ char *ef = path_join(path, "cgroup.events"), *buf = NULL;
	const char *p;

	if (!ef || omr_read_file_at(AT_FDCWD, ef, 4096, &buf, NULL, NULL) < 0)
		return false;
	p = strstr(buf, "populated ");
	return p && p[10] == '1';
}

/* rmdir, child cgroups first (a command running as root may make some). */
static int cg_rmdir(const char *path, int depth)
{
	DIR *d;
	struct dirent *de;

	if (rmdir(path) == 0 || errno == ENOENT)
		return 0;
	if (errno != EBUSY && errno != ENOTEMPTY)
		return -errno;
	if (depth > 16 || !(d = opendir(path)))
		return -EBUSY;
	while ((de = readdir(d))) {
		if (de->d_type != DT_DIR || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		_cleanup_free_ char *sub = path_join(path, de->d_name);
		if (sub)
			cg_rmdir(sub, depth + 1);
	}
	closedir(d);
	return rmdir(path) == 0 || errno == ENOENT ? 0 : -errno;
}

char *cg_create(void)
{
	char name[32];

	if (!agent_cfg.cgroup)
		return NULL;
	/* Skip names still taken (an earlier server's, being removed). */
	for (int tries = 0; tries < 1000; tries++) {
		snprintf(name, sizeof(name), "c%lu", ++cg_seq);
		char *path = path_join(agent_cfg.cgroup, name);
		if (!path)
			return NULL;
		if (mkdir(path, 0755) == 0)
			return path;
		int e = errno;
		free(path);
		if (e != EEXIST) {
			omr_log(OMR_LOG_ERR, "mkdir %s/%s: %s", agent_cfg.cgroup, name, strerror(e));
			return NULL;
		}
	}
	return NULL;
}

static void pending_free(struct cg_pending *c)
{
	omr_closep(&c->events);
	free(c->path);
	free(c);
}

/* Re-arms POLLPRI (kernfs notifies again only after a read). */
static void events_rearm(struct cg_pending *c)
{
	char buf[256];

	if (c->events >= 0)
		(void)!pread(c->events, buf, sizeof(buf), 0);
}

/* Tries to remove c's cgroup; true when it is gone (or given up on). */
static bool pending_check(struct cg_pending *c, uint64_t now)
{
	int rc;

	events_rearm(c);
	rc = cg_rmdir(c->path, 0);
	if (rc == 0)
		return true;
	if (rc != -EBUSY) {
		omr_log(OMR_LOG_ERR, "rmdir %s: %s", c->path, strerror(-rc));
		return true;
	}
	if (now - c->start >= CG_GIVEUP_MS) {
		omr_log(OMR_LOG_ERR, "%s still has processes after %u s; left in place", c->path,
		     CG_GIVEUP_MS / 1000);
		return true;
	}
	if (now - c->start >= CG_FAST_MS && !c->warned) {
		c->warned = true;
		omr_log(OMR_LOG_ERR, "%s still has processes after %u ms; killing again", c->path, CG_FAST_MS);
		cg_kill(c->path);
	}
	c->next = now + (c->warned ? CG_SLOW_MS : CG_RECHECK_MS);
	return false;
}

void cg_release(char *path)
{
	struct cg_pending *c;
	uint64_t now = omr_now_ms();
	int rc;

	if (!path)
		return;
	rc = cg_kill(path);
	if (rc < 0 && rc != -ENOENT)
		omr_log(OMR_LOG_ERR, "cgroup.kill %s: %s", path, strerror(-rc));
	c = calloc(1, sizeof(*c));
	if (!c) {
		cg_rmdir(path, 0);
		free(path);
		return;
	}
	c->path = path;
	c->start = now;
	{
		_cleanup_free_ char *ef = path_join(path, "cgroup.events");
		c->events = ef ? open(ef, O_RDONLY | O_CLOEXEC) : -1;
	}
	if (pending_check(c, now)) {
		pending_free(c);
		return;
	}
	c->next_p = pending;
	pending = c;
}

static void events_ready(void *obj, int tag, short rev)
{
	struct cg_pending *c = obj;

	(void)tag;
	(void)rev;
	c->next = 0; /* something changed: check in this round's tick */
}

void cgroups_poll(struct pollctx *pc)
{
	for (struct cg_pending *c = pending; c; c = c->next_p) {
		if (c->events >= 0)
			poll_add(pc, c->events, POLLPRI, events_ready, c, 0);
		poll_wake_at(pc, c->next);
	}
}

void cgroups_tick(void)
{
	uint64_t now = omr_now_ms();
	struct cg_pending **pp = &pending;

	while (*pp) {
		struct cg_pending *c = *pp;
		if (now >= c->next && pending_check(c, now)) {
			*pp = c->next_p;
			pending_free(c);
		} else {
			pp = &c->next_p;
		}
	}
}

/* Cgroups of an earlier server (PID 1 killed their processes when it
 * died): removed like those of finished commands. */
void cgroups_init(void)
{
	DIR *d;
	struct dirent *de;

	if (!agent_cfg.cgroup || !(d = opendir(agent_cfg.cgroup)))
		return;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (de->d_type != DT_DIR || n[0] != 'c' || !n[1] ||
		    strspn(n + 1, "0123456789") != strlen(n + 1))
			continue;
		char *path = path_join(agent_cfg.cgroup, n);
		if (path)
			cg_release(path);
	}
	closedir(d);
}

/* The server is exiting: give pending removals a moment, then leave. */
void cgroups_shutdown(void)
{
	uint64_t end = omr_now_ms() + 1000;

	while (pending && omr_now_ms() < end) {
		struct timespec ts = { 0, 10 * 1000000 };
		for (struct cg_pending *c = pending; c; c = c->next_p)
			c->next = 0;
		cgroups_tick();
		if (pending)
			nanosleep(&ts, NULL);
	}
	while (pending) {
		struct cg_pending *c = pending;
		pending = c->next_p;
		pending_free(c);
	}
}
