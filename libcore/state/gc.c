/* Garbage collection of sandbox leftovers; see omnirun/gc.h. */
#include <dirent.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/state/fork.h"
#include "omnirun/state/gc.h"
#include "omnirun/state/record.h"
#include "omnirun/base/util.h"

struct gc {
	const struct omr_config *c;
	const struct omr_gc_opts *o;
	omr_gc_found_fn found;
	void *user;
	int count;
	int64_t now;
};

/* fixed: whether it was cleaned (never in check mode). */
static void report(struct gc *g, const char *kind, const char *id, const char *what, int fixed)
{
	g->count++;
	if (g->found)
		g->found(g->user, kind, id, what, fixed);
}

/* Loads id's record; returns 1 if it may be live: not stopped, or
 * unreadable (then nothing of it is touched without checking it from the
 * run dir, see gc_corrupt). */
static int record_live(struct gc *g, const char *id, struct omr_sandbox *sb)
{
	memset(sb, 0, sizeof(*sb));
	if (omr_sandbox_load(g->c, id, sb, NULL) == 0)
		return sb->state != OMR_SB_STOPPED;
	return sb->state == OMR_SB_CORRUPT;
}

/* A record that says live while nothing serves it: no monitor, and, for
 * one starting, no creator holding its directory's lock. */
static int lost(struct gc *g, const struct omr_sandbox *sb)
{
	return !strcmp(omr_sandbox_shown_state(g->c, sb), "lost");
}

/* A record nobody can read: torn down (a fresh stopped record written)
 * unless its monitor, found from the run dir, still serves it; sbx-kill
 * tears that one down. */
static void gc_corrupt(struct gc *g, struct omr_sandbox *sb)
{
	pid_t mon = omr_sandbox_find_monitor(g->c, sb->id);
	_cleanup_free_ char *what = NULL;
	int lock, fixed = 0;

	if (mon) {
		what = omr_strdup_printf("unreadable record, its monitor (pid %d) still runs: "
					 "sbx-kill %s tears it down", (int)mon, sb->id);
		report(g, "corrupt_record", sb->id, what, 0);
		return;
	}
	if (!g->o->check_only && (lock = omr_sandbox_lock(g->c, sb->id, 5000, NULL)) >= 0) {
		fixed = omr_sandbox_reap(g->c, sb, "gc", NULL) == 0;
		close(lock);
	}
	report(g, "corrupt_record", sb->id, "unreadable record, nothing runs for it", fixed);
}

/* Does sandbox id have a complete persisted image (its meta is written
 * last)? */
static int persist_image(struct gc *g, const char *id)
{
	_cleanup_free_ char *meta = omr_sandbox_state_path(g->c, id, OMR_PERSIST_DIR "/meta");

	return access(meta, F_OK) == 0;
}

/* A resume that died before its sandbox ran (the client and the monitor
 * are gone, the record says starting): the image is whole, the record
 * says persisted again. */
static void gc_interrupted_resume(struct gc *g, struct omr_sandbox *sb)
{
	int fixed = 0;

	if (!g->o->check_only) {
		_cleanup_close_ int lock = omr_sandbox_lock(g->c, sb->id, 5000, NULL);
		if (lock >= 0 && omr_sandbox_load(g->c, sb->id, sb, NULL) == 0 &&
		    sb->state == OMR_SB_STARTING) {
			sb->state = OMR_SB_PERSISTED;
			sb->monitor_pid = 0;
			sb->vmm_pid = 0;
			sb->paused_at = g->now;
			fixed = omr_sandbox_save(g->c, sb, NULL) == 0;
		}
	}
	report(g, "interrupted_resume", sb->id, "a resume died: persisted again", fixed);
}

static void gc_records(struct gc *g)
{
	struct omr_sandbox *v;
	size_t n;

	if (omr_sandbox_list(g->c, &v, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		struct omr_sandbox *sb = &v[i];
		int lock, fixed;

		if (sb->state == OMR_SB_STOPPED) {
			if (g->o->prune_days && sb->ended_at > 0 &&
			    g->now - sb->ended_at > (int64_t)g->o->prune_days * 86400) {
				fixed = 0;
				if (!g->o->check_only) {
					_cleanup_close_ int root = omr_state_sandboxes_dir(g->c, 0, NULL);
					fixed = root >= 0 && omr_rm_rf_at(root, sb->id) == 0;
				}
				report(g, "expired_record", sb->id, "stopped record past the history limit",
				       fixed);
			}
			continue;
		}
		if (sb->state == OMR_SB_CORRUPT) {
			gc_corrupt(g, sb);
			continue;
		}
		if (!lost(g, sb))
			continue;
		if (sb->state == OMR_SB_STARTING && persist_image(g, sb->id)) {
			gc_interrupted_resume(g, sb);
			continue;
		}
		if (g->o->check_only) {
			report(g, "lost_sandbox", sb->id, "record says live but nothing serves it", 0);
			continue;
		}
		/* What was read above may be stale by now (a boot that went
		 * on, a kill): decide again under the lock. */
		fixed = 0;
		lock = omr_sandbox_lock(g->c, sb->id, 5000, NULL);
		if (lock >= 0) {
			if (omr_sandbox_load(g->c, sb->id, sb, NULL) == 0)
				fixed = !lost(g, sb) ||
					omr_sandbox_reap(g->c, sb, g->o->boot ? "host_reboot" : "gc",
							 NULL) == 0;
			close(lock);
		}
		report(g, "lost_sandbox", sb->id, "record says live but nothing serves it", fixed);
	}
	free(v);
}

static void gc_dirs(struct gc *g)
{
	_cleanup_free_ char *runroot = omr_strdup_printf("%s/sandboxes", g->c->run_dir);
	struct dirent *de;
	DIR *d;
	int root;

	/* Runtime dirs of sandboxes that are not live. */
	d = opendir(runroot);
	while (d && (de = readdir(d))) {
		struct omr_sandbox sb;
		if (de->d_name[0] == '.' || record_live(g, de->d_name, &sb))
			continue;
		report(g, "stale_run_dir", de->d_name, "runtime directory of a stopped sandbox",
		       !g->o->check_only && omr_rm_rf_at(dirfd(d), de->d_name) == 0);
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
		_cleanup_free_ char *rec = omr_strdup_printf("%s/sandbox.conf", de->d_name);
		/* A create in progress holds its directory's lock. */
		if (faccessat(root, rec, F_OK, 0) == 0 || omr_sandbox_creator_alive(g->c, de->d_name))
			continue;
		report(g, "incomplete_create", de->d_name, "sandbox directory without a record",
		       !g->o->check_only && omr_rm_rf_at(root, de->d_name) == 0);
	}
	if (d)
		closedir(d);
	else
		close(root);
}

/* A fork's copies whose client is gone (crashed, killed, or the host
 * rebooted under it): nobody will start from them. */
static void gc_forks(struct gc *g)
{
	for (int run = 0; run < 2; run++) {
		_cleanup_free_ char *top = omr_strdup_printf("%s/fork", run ? g->c->run_dir
							      : g->c->state_dir);
		struct dirent *de;
		DIR *d = opendir(top);

		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			struct stat st;
			if (omr_id_valid(de->d_name) && omr_fork_in_progress(g->c, de->d_name))
				continue;
			/* Made a moment ago, its lock not taken yet. */
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    st.st_mtime > time(NULL) - 60)
				continue;
			report(g, "stale_fork", de->d_name, run ? "a fork's saved memory nobody took"
			       : "a fork's disk copies nobody took",
			       !g->o->check_only && omr_rm_rf_at(dirfd(d), de->d_name) == 0);
		}
		if (d)
			closedir(d);
	}
}

/* Deletes a link by index with one RTM_DELLINK (the net area's libnl is
 * above state/; one message does not need it).  Returns 0 or -errno. */
static int link_delete(unsigned ifindex)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = { .nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_DELLINK,
			  .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
		  .ifi = { .ifi_family = AF_UNSPEC, .ifi_index = (int)ifindex } };
	char buf[512];
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	ssize_t n;

	if (fd < 0 || send(fd, &req, sizeof(req), 0) < 0)
		return -errno;
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < (ssize_t)sizeof(*h) || h->nlmsg_type != NLMSG_ERROR)
		return -EIO;
	return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
}

/* One link of a dump: its index, name and alias ("" when it has none). */
struct gc_link {
	unsigned index;
	char name[IF_NAMESIZE];
	char alias[OMR_ID_MAX];
};

/* Fills l from one RTM_NEWLINK message; returns 0, or -1 to skip it. */
static int link_parse(const struct nlmsghdr *h, struct gc_link *l)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
	const struct rtattr *a = IFLA_RTA(ifi);

	if (h->nlmsg_type != RTM_NEWLINK || len < 0)
		return -1;
	memset(l, 0, sizeof(*l));
	l->index = (unsigned)ifi->ifi_index;
	for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		size_t n = RTA_PAYLOAD(a);
		char *dst = a->rta_type == IFLA_IFNAME ? l->name
			  : a->rta_type == IFLA_IFALIAS ? l->alias : NULL;
		size_t cap = a->rta_type == IFLA_IFNAME ? sizeof(l->name) : sizeof(l->alias);

		if (!dst)
			continue;
		n = strnlen(RTA_DATA(a), n);
		if (n >= cap)
			continue;
		memcpy(dst, RTA_DATA(a), n);
		dst[n] = 0;
	}
	return l->name[0] ? 0 : -1;
}

/* Host ends of sandbox veths ("omr..." links whose alias is a sandbox id)
 * whose sandbox is not live.  They go with the sandbox's namespace, so
 * one left means something still holds that namespace.  The links are
 * read with an RTM_GETLINK dump, which answers for the caller's network
 * namespace (sysfs answers for the one it was mounted in). */
static void gc_links(struct gc *g)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = { .nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK,
			  .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		  .ifi = { .ifi_family = AF_UNSPEC } };
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	/* A stale link is deleted after the dump: not while reading it. */
	struct gc_link stale[64];
	size_t nstale = 0;
	char buf[32768];
	bool done = false;

	if (fd < 0 || send(fd, &req, sizeof(req), 0) < 0)
		return;
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		int len = (int)n;

		if (n <= 0)
			break;
		for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			struct gc_link l;
			struct omr_sandbox sb;

			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			if (link_parse(h, &l) < 0 || strncmp(l.name, "omr", 3) ||
			    !omr_id_valid(l.alias) || record_live(g, l.alias, &sb))
				continue;
			if (nstale < sizeof(stale) / sizeof(stale[0]))
				stale[nstale++] = l;
		}
	}
	for (size_t i = 0; i < nstale; i++) {
		_cleanup_free_ char *what =
			omr_strdup_printf("network link %s of a stopped sandbox", stale[i].name);

		report(g, "stale_link", stale[i].alias, what,
		       !g->o->check_only && link_delete(stale[i].index) == 0);
	}
}

/* The sandbox id a QEMU or monitor command line names, or "". */
static void cmdline_id(const char *cmd, const char *mark, char id[OMR_ID_MAX])
{
	const char *p;
	size_t k;

	id[0] = 0;
	if (strstr(cmd, "sbx-monitor") && (p = strstr(cmd, " sb_")))
		p += 1;
	else if ((p = strstr(cmd, mark)))
		p += strlen(mark) - 3;
	else
		return;
	for (k = 0; k + 1 < OMR_ID_MAX && p[k] && p[k] != '/' && p[k] != ' ' && p[k] != ','; k++)
		id[k] = p[k];
	id[k] = 0;
}

/* Is pid's working directory state_dir/sandboxes/ID (or was it, before
 * it was removed)? */
static int cwd_is(pid_t pid, const struct omr_config *c, const char *id)
{
	_cleanup_free_ char *link = omr_strdup_printf("/proc/%d/cwd", (int)pid);
	_cleanup_free_ char *want = omr_program_realpath(omr_sandbox_state_path(c, id, NULL));
	_cleanup_free_ char *root = omr_program_realpath(omr_strdup_printf("%s/sandboxes", c->state_dir));
	_cleanup_free_ char *gone = NULL;
	char buf[4096];
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);

	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (want)
		return !strcmp(buf, want);
	/* Its directory is gone: the kernel says "PATH (deleted)". */
	gone = root ? omr_strdup_printf("%s/%s (deleted)", root, id) : NULL;
	return gone && !strcmp(buf, gone);
}

/* QEMU or monitor processes that belong to a sandbox that is not live.
 * Only our programs, run by root or the sandbox's owner, are touched (a
 * command line is anyone's to choose), and through a pidfd. */
static void gc_processes(struct gc *g)
{
	_cleanup_free_ char *mark = omr_strdup_printf("%s/sandboxes/sb_", g->c->run_dir);
	_cleanup_free_ char *qemu = omr_program_realpath(omr_qemu_find(g->c));
	_cleanup_free_ char *monitor =
		omr_program_realpath(omr_strdup_printf("%s/sbx-monitor", g->c->libexec_dir));
	DIR *d = opendir("/proc");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		_cleanup_close_ int pfd = pid > 1 ? omr_pidfd_open(pid) : -1;
		_cleanup_free_ char *cmd = NULL, *exe = NULL, *what = NULL;
		char id[OMR_ID_MAX];
		struct omr_sandbox sb = { 0 };
		long uid;

		if (pfd < 0 || !(cmd = omr_proc_cmdline(pid)))
			continue;
		cmdline_id(cmd, mark, id);
		if (!omr_id_valid(id) || record_live(g, id, &sb))
			continue;
		exe = omr_proc_exe(pid);
		uid = omr_proc_uid(pid);
		if (!exe || !((qemu && !strcmp(exe, qemu)) || (monitor && !strcmp(exe, monitor))))
			continue;
		/* A monitor of another state dir (another OmniRun on this
		 * host) is none of ours: its cwd is its sandbox's dir. */
		if (monitor && !strcmp(exe, monitor) && !cwd_is(pid, g->c, id))
			continue;
		/* A jailed QEMU runs as a uid of the jail's range. */
		if (uid != 0 && (!sb.id[0] || uid != (long)sb.owner) &&
		    !(uid >= (long)g->c->jail_uid_base &&
		      uid - (long)g->c->jail_uid_base < (long)g->c->jail_uid_count))
			continue;
		/* Still alive, so all of /proc/PID above was about it. */
		if (omr_pidfd_signal(pfd, 0) < 0)
			continue;
		what = omr_strdup_printf("process %d of a stopped sandbox", (int)pid);
		report(g, "orphan_process", id, what,
		       !g->o->check_only && omr_pidfd_signal(pfd, SIGKILL) == 0);
	}
	if (d)
		closedir(d);
}

int omr_gc_run(const struct omr_config *c, const struct omr_gc_opts *o,
	       omr_gc_found_fn found, void *user, struct omr_err **err)
{
	struct gc g = { c, o, found, user, 0, (int64_t)(omr_wall_ms() / 1000) };

	(void)err;
	gc_records(&g);
	gc_processes(&g);
	gc_links(&g);
	gc_dirs(&g);
	gc_forks(&g);
	return g.count;
}
