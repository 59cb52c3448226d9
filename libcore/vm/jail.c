/* The VMM jail; see omnirun/vm/jail.h and doc/jail.md.
 *
 * Order of operations (HOSTS.md has what the prototype learnt):
 *   parent: claim a uid, make the cgroup, listen on the sockets, open
 *           /dev/kmsg, build the seccomp program and the mount plan, then
 *           unshare(CLONE_NEWPID) so that the next two forks land in a new
 *           pid namespace: the init (PID 1), then QEMU's child (PID 2);
 *           setns back at once.
 *   child:  PDEATHSIG; join the cgroup; unshare mount, ipc, uts, net and
 *           cgroup namespaces; make / rprivate (systemd hosts share it);
 *           mount a tmpfs root (nosuid, nodev, noexec) and bind into it
 *           read-only only what QEMU opens; pivot_root; detach the old
 *           root; remount the new one read-only; put the passed fds in
 *           place and close the rest; RLIMIT_CORE 0; drop the bounding
 *           set; setgroups, setresgid, setresuid; capset(0); PDEATHSIG
 *           again (setresuid clears it); no_new_privs; the filter;
 *           execve with an environment of one fixed line: glibc's
 *           malloc in one arena (each thread's arena of its own cost an
 *           idle QEMU megabytes of private memory, measured in bench/density).
 * Between fork and exec the child only makes system calls on what the
 * parent prepared (the monitor may have threads).  A failure is reported
 * through a CLOEXEC pipe as (step, errno), which EOF at exec ends. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/accel.h"
#include "omnirun/vm/cgroup.h"
#include "omnirun/state/record.h"
#include "omnirun/vm/jail.h"
#include "omnirun/vm/template.h"

#define KEEP_MAX 8
#define FD_MAX (3 + KEEP_MAX + 4)
#define STEP_MAX 48
/* QEMU's own threads beyond vCPUs and the I/O pool: main loop, RCU,
 * signal and timer helpers, with room to spare. */
#define VMM_THREADS_BASE 16
#define SELFTEST_TIMEOUT_MS 30000
#define SELFTEST_PREFIX "selftest-"
#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWCGROUP)

struct omr_jail {
	char *name;                 /* sandbox id (or the self-test's name) */
	pid_t vmm_pid;
	pid_t init_pid;
	uid_t uid;                  /* 0 when not jailed */
	int uid_lock;               /* flock held while the sandbox lives */
	int kmsg;                   /* /dev/kmsg from spawn time on, or -1 */
	int seccomp_log;            /* [jail] seccomp = log */
	struct omr_cgroup *cg;
	uint64_t memory_limit;
	const struct omr_seccomp_list *list;
};

/* ---- the plan the child carries out ------------------------------------ */

enum step_kind { S_MKDIR, S_FILE, S_SYMLINK, S_BIND };

struct step {
	enum step_kind kind;
	const char *src;            /* bind source or symlink target */
	const char *dst;            /* absolute path under the new root's mount */
	unsigned long flags;        /* extra flags of a bind's read-only remount */
};

/* Where the child was when it failed (for the parent's message). */
enum child_stage {
	C_CGROUP = 1, C_UNSHARE, C_PRIVATE, C_TMPFS, C_STEP, C_PIVOT, C_ROOT_RO, C_FDS,
	C_RLIMIT, C_CAPS, C_GROUPS, C_GID, C_UID, C_NNP, C_SECCOMP, C_EXEC,
};

static const char *const stage_names[] = {
	[C_CGROUP] = "join the cgroup", [C_UNSHARE] = "make namespaces",
	[C_PRIVATE] = "make / private", [C_TMPFS] = "mount the root tmpfs",
	[C_STEP] = "build the root", [C_PIVOT] = "pivot_root",
	[C_ROOT_RO] = "make the root read-only", [C_FDS] = "pass the fds",
	[C_RLIMIT] = "set RLIMIT_CORE", [C_CAPS] = "drop capabilities",
	[C_GROUPS] = "set the groups", [C_GID] = "set the gid", [C_UID] = "set the uid",
	[C_NNP] = "set no_new_privs", [C_SECCOMP] = "install the seccomp filter",
	[C_EXEC] = "run QEMU",
};

struct report {
	int stage, err, step;
};

struct plan {
	int jailed;
	const char *root;                 /* mount point of the new root */
	struct step steps[STEP_MAX];
	size_t nsteps;
	int cg_fds[OMR_CG_MAX_MOUNTS];
	size_t ncg;
	int from[FD_MAX], to[FD_MAX];
	size_t nfd;
	int errfd;
	uid_t uid;
	gid_t gid, groups[1];
	size_t ngroups;
	int last_cap;
	const struct sock_fprog *filter;  /* NULL: none */
	const char *exec_path;
	char *const *argv;
	unsigned long arg_start, arg_end;  /* our command line's memory */
};

static _Noreturn void child_fail(const struct plan *p, int stage, int step)
{
	struct report r = { stage, errno, step };

	(void)!write(p->errfd, &r, sizeof(r));
	_exit(127);
}

static void child_signals(void)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t none;

	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &dfl, NULL); /* fails harmlessly for 32, 33 */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Every source first moves above every target, so that no dup2 clobbers
 * a source not yet moved; then nothing else survives exec. */
static int child_fds(struct plan *p)
{
	int fd;

	if ((fd = fcntl(p->errfd, F_DUPFD_CLOEXEC, 64)) < 0)
		return -1;
	p->errfd = fd;
	for (size_t i = 0; i < p->nfd; i++)
		if ((p->from[i] = fcntl(p->from[i], F_DUPFD_CLOEXEC, 64)) < 0)
			return -1;
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	for (size_t i = 0; i < p->nfd; i++)
		if (dup2(p->from[i], p->to[i]) < 0)
			return -1;
	return 0;
}

static void child_root(const struct plan *p)
{
	if (unshare(NS_FLAGS) < 0)
		child_fail(p, C_UNSHARE, -1);
	/* Else our mounts would propagate to the host (systemd makes /
	 * shared). */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(p, C_PRIVATE, -1);
	if (mount("omnirun-jail", p->root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "mode=0755,size=256k,nr_inodes=256") < 0)
		child_fail(p, C_TMPFS, -1);
	for (size_t i = 0; i < p->nsteps; i++) {
		const struct step *s = &p->steps[i];
		int fd, rc = 0;

		switch (s->kind) {
		case S_MKDIR:
			rc = mkdir(s->dst, 0755);
			break;
		case S_FILE:
			fd = open(s->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
			rc = fd < 0 ? -1 : close(fd);
			break;
		case S_SYMLINK:
			rc = symlink(s->src, s->dst);
			break;
		case S_BIND:
			rc = mount(s->src, s->dst, NULL, MS_BIND, NULL);
			if (rc == 0)
				rc = mount(NULL, s->dst, NULL,
					   MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | s->flags, NULL);
			break;
		}
		if (rc < 0)
			child_fail(p, C_STEP, (int)i);
	}
	/* pivot_root(".", "."): the old root ends up on top of the new one
	 * and is detached at once; no directory for it is needed. */
	if (chdir(p->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		child_fail(p, C_PIVOT, -1);
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		child_fail(p, C_ROOT_RO, -1);
	sethostname("omnirun", 7);
}

static void drop_privileges(const struct plan *p)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };

	for (int cap = 0; cap <= p->last_cap; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			child_fail(p, C_CAPS, -1);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (setgroups(p->ngroups, p->groups) < 0)
		child_fail(p, C_GROUPS, -1);
	if (setresgid(p->gid, p->gid, p->gid) < 0)
		child_fail(p, C_GID, -1);
	if (setresuid(p->uid, p->uid, p->uid) < 0)
		child_fail(p, C_UID, -1);
	/* setresuid to non-zero ids cleared them already; make sure. */
	if (syscall(SYS_capset, &hdr, data) < 0)
		child_fail(p, C_CAPS, -1);
	/* setresuid cleared the parent-death signal. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(p, C_NNP, -1);
}

static _Noreturn void child_main(struct plan *p)
{
	static char *const env[] = { "MALLOC_ARENA_MAX=1", NULL };
	const struct rlimit no_core = { 0, 0 };

	/* If the monitor dies, QEMU dies with it rather than run on. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	child_signals();
	/* Before anything is allocated, so that all of QEMU is charged. */
	for (size_t i = 0; i < p->ncg; i++)
		if (write(p->cg_fds[i], "0", 1) != 1)
			child_fail(p, C_CGROUP, -1);
	if (!p->jailed) {
		if (child_fds(p) < 0)
			child_fail(p, C_FDS, -1);
		execvp(p->argv[0], p->argv);
		child_fail(p, C_EXEC, -1);
	}
	child_root(p);
	if (child_fds(p) < 0)
		child_fail(p, C_FDS, -1);
	if (setrlimit(RLIMIT_CORE, &no_core) < 0)
		child_fail(p, C_RLIMIT, -1);
	drop_privileges(p);
	if (p->filter && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p->filter) < 0)
		child_fail(p, C_SECCOMP, -1);
	execve(p->exec_path, p->argv, env);
	child_fail(p, C_EXEC, -1);
}

/* PID 1 of the jail's pid namespace.  It holds nothing (every fd closed
 * but the lifeline), runs as the sandbox's uid without capabilities and
 * in seccomp strict mode (read, write, exit), and exits when QEMU, which
 * holds the lifeline's other end, is gone.  Its exit ends the namespace,
 * which kills anything QEMU could have left in it. */
static _Noreturn void init_main(int lifeline, const struct plan *p)
{
	static const char name[] = "omnirun-init";
	char b;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (lifeline != 0 && dup2(lifeline, 0) < 0)
		_exit(127);
	close_range(1, ~0U, 0);
	/* A fork of the monitor, it would show the monitor's command line
	 * (and look like a second monitor to ps, pgrep and sbx-gc): its own
	 * name in the same memory, the rest zeroed. */
	prctl(PR_SET_NAME, name, 0, 0, 0);
	if (p->arg_end > p->arg_start + sizeof(name)) {
		memset((void *)p->arg_start, 0, p->arg_end - p->arg_start);
		memcpy((void *)p->arg_start, name, sizeof(name));
	}
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	for (int cap = 0; cap <= p->last_cap; cap++)
		prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	if (setgroups(0, NULL) < 0 || setresgid(p->gid, p->gid, p->gid) < 0 ||
	    setresuid(p->uid, p->uid, p->uid) < 0)
		_exit(127);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) < 0)
		_exit(127);
	while (read(0, &b, 1) != 0 && errno == EINTR)
		;
	syscall(SYS_exit, 0); /* exit_group is not allowed in strict mode */
	_exit(0);
}

/* ---- uids ---------------------------------------------------------------- */

static char *uid_dir(const struct omr_config *c)
{
	return omr_strdup_printf("%s/jail", c->run_dir);
}

/* Starts at a place derived from owner, so that a uid just given back is
 * not the next one handed out. */
int omr_jail_uid_claim(const struct omr_config *c, const char *owner, uid_t *uid,
		       struct omr_err **err)
{
	_cleanup_free_ char *dir = uid_dir(c);
	_cleanup_close_ int dfd = -1;
	uint32_t h = 2166136261u;

	if (omr_mkdir_p(dir, 0700, err) < 0)
		return -1;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s", dir);
	for (const char *s = owner; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	for (unsigned i = 0; i < c->jail_uid_count; i++) {
		unsigned n = (h + i) % c->jail_uid_count;
		char name[32];
		int fd;

		snprintf(name, sizeof(name), "uid-%u", n);
		fd = openat(dfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot open %s/%s", dir, name);
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* Who holds it, for people reading the directory. */
			if (ftruncate(fd, 0) == 0)
				(void)!pwrite(fd, owner, strlen(owner), 0);
			*uid = c->jail_uid_base + n;
			return fd;
		}
		close(fd);
		if (errno != EWOULDBLOCK)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot lock %s/%s", dir, name);
	}
	return omr_err_setx(err, OMR_E_LIMIT, EUSERS, "every jail uid is taken: [jail] uid_count "
			    "is %u, and that many sandboxes are live", c->jail_uid_count);
}

unsigned omr_jail_uids_taken(const struct omr_config *c)
{
	_cleanup_free_ char *dir = uid_dir(c);
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned taken = 0, n;
	char end;

	while (d && (de = readdir(d))) {
		if (sscanf(de->d_name, "uid-%u%c", &n, &end) != 1 || n >= c->jail_uid_count)
			continue;
		_cleanup_close_ int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
			taken++;
	}
	if (d)
		closedir(d);
	return taken;
}

/* ---- what QEMU is ---------------------------------------------------------- */

/* `qemu --version`, cached in run_dir for as long as the binary is the
 * same file: it runs on every create. */
static char *qemu_version(const struct omr_config *c, const char *qemu)
{
	_cleanup_free_ char *cache = omr_strdup_printf("%s/qemu-version", c->run_dir);
	_cleanup_free_ char *text = NULL, *key = NULL;
	struct omr_err *e = NULL;
	struct stat st, cst;
	char *ver = NULL;

	if (stat(qemu, &st) < 0)
		return NULL;
	key = omr_strdup_printf("%s %llu:%llu:%lld:%lld\n", qemu, (unsigned long long)st.st_dev,
				(unsigned long long)st.st_ino, (long long)st.st_size,
				(long long)st.st_mtime);
	/* Trusted only when it is root's own, unshared file. */
	if (lstat(cache, &cst) == 0 && S_ISREG(cst.st_mode) && cst.st_uid == geteuid() &&
	    !(cst.st_mode & 022) &&
	    omr_read_file_at(AT_FDCWD, cache, 4096, &text, NULL, NULL) == 0 &&
	    !strncmp(text, key, strlen(key)) && text[strlen(key)]) {
		ver = omr_xstrdup(text + strlen(key));
		ver[strcspn(ver, "\n")] = 0;
		return ver;
	}
	if (omr_qemu_version(qemu, &ver, &e) < 0) {
		omr_err_free(&e);
		return NULL;
	}
	_cleanup_free_ char *body = omr_strdup_printf("%s%s\n", key, ver);
	_cleanup_close_ int rd = open(c->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rd >= 0)
		omr_write_file_atomic_at(rd, "qemu-version", body, strlen(body), 0644, &e);
	omr_err_free(&e);
	return ver;
}

/* ---- sockets ------------------------------------------------------------- */

static int listen_unix(const char *path, struct omr_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "socket path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create socket");
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot bind %s", path);
	if (chmod(path, 0600) < 0 || listen(fd, 8) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot listen on %s", path);
	return omr_steal_fd(fd);
}

/* ---- building the plan --------------------------------------------------- */

/* Strings the plan points to, freed after the spawn. */
struct pool {
	char *s[STEP_MAX * 2 + 8];
	size_t n;
};

static const char *keep(struct pool *pl, char *s)
{
	if (pl->n == OMR_ARRAY_SIZE(pl->s))
		abort(); /* a bug in the plan: bounded by STEP_MAX */
	return pl->s[pl->n++] = s;
}

static void pool_free(struct pool *pl)
{
	for (size_t i = 0; i < pl->n; i++)
		free(pl->s[i]);
	pl->n = 0;
}

static int add_step(struct plan *p, struct pool *pl, enum step_kind k, const char *src,
		    const char *rel, unsigned long flags, struct omr_err **err)
{
	if (p->nsteps == STEP_MAX)
		return omr_err_setx(err, OMR_E_FAIL, E2BIG, "the jail's root is too large");
	p->steps[p->nsteps++] = (struct step){
		k, src ? keep(pl, omr_xstrdup(src)) : NULL,
		keep(pl, omr_strdup_printf("%s%s", p->root, rel)), flags,
	};
	return 0;
}

/* mkdir of every directory above abs (absolute, in the jail) not made
 * yet. */
static int add_parents(struct plan *p, struct pool *pl, const char *abs, struct omr_err **err)
{
	_cleanup_free_ char *d = omr_xstrdup(abs);

	for (char *s = strchr(d + 1, '/'); s; s = strchr(s + 1, '/')) {
		int made = 0;
		*s = 0;
		for (size_t i = 0; i < p->nsteps && !made; i++) {
			const char *dst = p->steps[i].dst + strlen(p->root);
			made = (p->steps[i].kind == S_MKDIR || p->steps[i].kind == S_BIND) &&
			       !strcmp(dst, d);
		}
		if (!made && add_step(p, pl, S_MKDIR, NULL, d, 0, err) < 0)
			return -1;
		*s = '/';
	}
	return 0;
}

/* A host file or directory bound read-only at the same path in the jail. */
static int add_bind(struct plan *p, struct pool *pl, const char *host, const char *in_jail,
		    unsigned long flags, struct omr_err **err)
{
	struct stat st;

	if (stat(host, &st) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "jail: cannot use %s", host);
	if (add_parents(p, pl, in_jail, err) < 0 ||
	    add_step(p, pl, S_ISDIR(st.st_mode) ? S_MKDIR : S_FILE, NULL, in_jail, 0, err) < 0)
		return -1;
	return add_step(p, pl, S_BIND, host, in_jail, flags, err);
}

/* /lib, /lib64: links where /usr is merged (Debian 12), bound otherwise.
 * The ELF interpreter is looked up there, in the new root. */
static int add_lib_links(struct plan *p, struct pool *pl, struct omr_err **err)
{
	static const char *const names[] = { "/lib", "/lib64" };

	for (size_t i = 0; i < OMR_ARRAY_SIZE(names); i++) {
		char target[256];
		ssize_t n = readlink(names[i], target, sizeof(target) - 1);
		struct stat st;

		if (n > 0) {
			target[n] = 0;
			if (add_step(p, pl, S_SYMLINK, target, names[i], 0, err) < 0)
				return -1;
		} else if (stat(names[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (add_bind(p, pl, names[i], names[i], MS_NODEV, err) < 0)
				return -1;
		}
	}
	return 0;
}

struct jail_args {
	const char *name;        /* sandbox id or the self-test's name */
	const char *dir;         /* its runtime dir: the root's mount point
				    goes in it, and kernel and initrd appear
				    there in the jail (what sbx-gc matches) */
	unsigned cpus, memory_mb;
	enum omr_accel accel;
};

/* The root QEMU sees: /usr, the lib links, QEMU's own directory when it
 * is not under /usr, the kernel, initrd and firmware, /dev/kvm under
 * KVM. */
static int plan_root(struct plan *p, struct pool *pl, const struct jail_args *a,
		     const char *qemu, struct omr_vmm_spec *js, const struct omr_vmm_spec *spec,
		     struct omr_err **err)
{
	_cleanup_free_ char *qdir = omr_xstrdup(qemu);
	struct stat st;

	p->root = keep(pl, omr_strdup_printf("%s/jail", a->dir));
	if (mkdir(p->root, 0700) < 0 && errno != EEXIST)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s", p->root);
	if (add_bind(p, pl, "/usr", "/usr", MS_NODEV, err) < 0 || add_lib_links(p, pl, err) < 0)
		return -1;
	*strrchr(qdir, '/') = 0;
	/* A QEMU outside /usr (an /opt install, a build tree) finds its
	 * firmware relative to its binary (../share/qemu): bind the whole
	 * prefix, not just bin/. */
	if (strncmp(qdir, "/usr/", 5) && strrchr(qdir, '/') != qdir &&
	    !strcmp(strrchr(qdir, '/'), "/bin"))
		*strrchr(qdir, '/') = 0;
	if (strncmp(qdir, "/usr/", 5) && add_bind(p, pl, qdir, qdir, MS_NODEV, err) < 0)
		return -1;
	js->kernel = keep(pl, omr_strdup_printf("%s/kernel", a->dir));
	js->initrd = keep(pl, omr_strdup_printf("%s/initrd", a->dir));
	if (add_bind(p, pl, spec->kernel, js->kernel, MS_NODEV | MS_NOEXEC, err) < 0 ||
	    add_bind(p, pl, spec->initrd, js->initrd, MS_NODEV | MS_NOEXEC, err) < 0)
		return -1;
	/* The firmware, wherever it is (it may be neither under /usr nor
	 * under QEMU's prefix). */
	if (spec->firmware) {
		js->firmware = keep(pl, omr_strdup_printf("%s/firmware", a->dir));
		if (add_bind(p, pl, spec->firmware, js->firmware, MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
	}
	/* A clone's view of its template's RAM file: a bind mount that is
	 * read-only like every bind here, so that even a QEMU that asked
	 * for write access could not change what other clones map. */
	if (spec->mem_path) {
		if (spec->mem_shared)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "jail: a shared RAM file "
					    "(a template being saved) is never jailed");
		js->mem_path = keep(pl, omr_strdup_printf("%s/ram", a->dir));
		if (add_bind(p, pl, spec->mem_path, js->mem_path, MS_NODEV | MS_NOEXEC, err) < 0)
			return -1;
	}
	if (a->accel == OMR_ACCEL_KVM) {
		/* A device node: no nodev on this one mount. */
		if (add_bind(p, pl, "/dev/kvm", "/dev/kvm", MS_NOEXEC, err) < 0 ||
		    stat("/dev/kvm", &st) < 0)
			return -1;
		/* The one supplementary group a jail may have: /dev/kvm's,
		 * unless anyone may open it anyway. */
		if (st.st_gid != 0 && (st.st_mode & (S_IROTH | S_IWOTH)) != (S_IROTH | S_IWOTH)) {
			p->groups[0] = st.st_gid;
			p->ngroups = 1;
		}
	}
	return 0;
}

/* Where our command line is in memory (/proc/self/stat fields 48 and
 * 49), so that the init can put its own there. */
static void arg_area(unsigned long *start, unsigned long *end)
{
	_cleanup_free_ char *text = NULL;
	char *p, *save = NULL;
	int field = 3;

	*start = *end = 0;
	if (omr_read_file_at(AT_FDCWD, "/proc/self/stat", 4096, &text, NULL, NULL) < 0 ||
	    !(p = strrchr(text, ')')))
		return;
	for (char *w = strtok_r(p + 1, " ", &save); w; w = strtok_r(NULL, " ", &save), field++) {
		if (field == 48)
			*start = strtoul(w, NULL, 10);
		else if (field == 49)
			*end = strtoul(w, NULL, 10);
	}
	if (*end <= *start)
		*start = *end = 0;
}

static int last_cap(void)
{
	_cleanup_free_ char *text = NULL;

	if (omr_read_file_at(AT_FDCWD, "/proc/sys/kernel/cap_last_cap", 32, &text, NULL, NULL) == 0)
		return atoi(text);
	return CAP_LAST_CAP;
}

/* ---- /dev/kmsg: why a jailed QEMU died ------------------------------------ */

static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Calls the kernel logged for pid as seccomp actions (audit type=1326)
 * since spawn: the one that killed it in *killed (-1: none), up to max
 * that were only logged (seccomp = log) in logged, each once.  Returns
 * how many were logged. */
static size_t kmsg_seccomp(int fd, pid_t pid, int *killed, int *logged, size_t max)
{
	char rec[2048], want[32];
	size_t n = 0;

	*killed = -1;
	snprintf(want, sizeof(want), " pid=%d ", (int)pid);
	for (int i = 0; fd >= 0 && i < 100000; i++) {
		ssize_t r = read(fd, rec, sizeof(rec) - 1);
		const char *s, *code;
		int nr;

		if (r < 0 && errno == EPIPE)
			continue; /* records were overwritten: read on */
		if (r <= 0)
			break;
		rec[r] = 0;
		if (!strstr(rec, "type=1326") || !strstr(rec, want) || !(s = strstr(rec, " syscall=")))
			continue;
		nr = atoi(s + 9);
		/* SECCOMP_RET_KILL_PROCESS; a logged call is 0x7ffc0000. */
		code = strstr(rec, " code=");
		if (code && !strncmp(code + 6, "0x80000000", 10)) {
			*killed = nr;
			continue;
		}
		for (size_t k = 0; k < n; k++)
			if (logged[k] == nr)
				goto next;
		if (n < max)
			logged[n++] = nr;
next:;
	}
	return n;
}

/* ---- spawn ----------------------------------------------------------------- */

static void limits_for(const struct omr_config *c, const struct jail_args *a,
		       struct omr_cgroup_limits *l)
{
	uint64_t mb = (uint64_t)a->memory_mb + c->jail_memory_overhead_mb;

	/* Under TCG the translation cache is QEMU's memory too. */
	if (a->accel == OMR_ACCEL_TCG)
		mb += c->tb_size_mb;
	l->memory_bytes = mb << 20;
	l->cpu_quota_us = a->cpus * c->jail_cpu_quota_pct * 1000;
	l->pids = a->cpus + c->jail_vmm_threads + VMM_THREADS_BASE;
	l->io_weight = c->jail_io_weight;
}

static void jail_free(struct omr_jail *j)
{
	if (!j)
		return;
	omr_cgroup_destroy(&j->cg);
	if (j->uid_lock >= 0)
		close(j->uid_lock);
	if (j->kmsg >= 0)
		close(j->kmsg);
	free(j->name);
	free(j);
}

static int cgroup_setup(const struct omr_config *c, const struct jail_args *a,
			struct omr_jail *j, struct omr_err **err)
{
	struct omr_cgroup_host h;
	struct omr_cgroup_limits l;
	int rc = 0;

	omr_cgroup_detect(c, &h);
	limits_for(c, a, &l);
	j->memory_limit = l.memory_bytes;
	if (h.version == OMR_CG_NONE) {
		if (strcmp(c->jail_cgroup, "none") && !c->jail_allow_unlimited)
			rc = omr_err_setx(err, OMR_E_UNSUPPORTED, ENOTSUP,
					  "no host limits for the sandbox: %s (set [jail] "
					  "allow_unlimited = true to run without them)", h.why);
		else if (strcmp(c->jail_cgroup, "none"))
			omr_log(OMR_LOG_WARN, "sandbox %s runs without host limits: %s", a->name, h.why);
	} else {
		rc = omr_cgroup_create(c, &h, a->name, &l, &j->cg, err);
	}
	omr_cgroup_host_free(&h);
	return rc;
}

/* Forks the init and QEMU's child into a new pid namespace; returns
 * QEMU's pid, or < 0 with errno. */
static pid_t fork_jailed(struct plan *p, struct omr_jail *j, int lifeline[2])
{
	_cleanup_close_ int self_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	pid_t pid = -1;
	int e = 0;

	if (self_ns < 0 || unshare(CLONE_NEWPID) < 0)
		return -1;
	j->init_pid = fork();
	if (j->init_pid == 0) {
		close(lifeline[1]);
		init_main(lifeline[0], p);
	}
	if (j->init_pid > 0) {
		pid = fork();
		if (pid == 0)
			child_main(p);
		e = errno;
	} else {
		e = errno;
	}
	/* Later forks of ours stay in our own namespace. */
	if (setns(self_ns, CLONE_NEWPID) < 0)
		abort(); /* cannot happen: it is our own namespace */
	errno = e;
	return pid;
}

static pid_t jail_spawn(const struct omr_config *c, const struct jail_args *a,
			const struct omr_vmm_spec *spec, int out_fd, const int *keep_from,
			const int *keep_to, size_t nkeep, struct omr_jail **out,
			struct omr_err **err)
{
	struct omr_jail *j = omr_xcalloc(1, sizeof(*j));
	struct plan *p = omr_xcalloc(1, sizeof(*p));
	struct omr_vmm_spec js = *spec;
	struct pool pl = { .n = 0 };
	struct sock_fprog filter = { 0 };
	_cleanup_free_ char *qemu = NULL, *version = NULL;
	_cleanup_close_ int null_fd = -1, agent = -1, qmp = -1, bench = -1;
	int errpipe[2] = { -1, -1 }, lifeline[2] = { -1, -1 }, next = 3, exact = 0;
	char **argv = NULL;
	pid_t pid = -1;

	*out = NULL;
	j->name = omr_xstrdup(a->name);
	j->uid_lock = j->kmsg = -1;
	j->vmm_pid = j->init_pid = -1;
	if (nkeep > KEEP_MAX) {
		omr_err_setx(err, OMR_E_FAIL, E2BIG, "too many fds for QEMU");
		goto fail;
	}
	if (cgroup_setup(c, a, j, err) < 0)
		goto fail;
	p->ncg = omr_cgroup_procs_fds(j->cg, p->cg_fds, OMR_CG_MAX_MOUNTS);
	p->jailed = c->jail_enable;
	if (p->jailed) {
		char *found = omr_qemu_find(c);
		qemu = found ? realpath(found, NULL) : NULL;
		free(found);
		if (!qemu) {
			omr_err_setx(err, OMR_E_FAIL, ENOENT, "QEMU (%s) not found", c->qemu);
			goto fail;
		}
		j->uid_lock = omr_jail_uid_claim(c, a->name, &j->uid, err);
		if (j->uid_lock < 0)
			goto fail;
		p->uid = j->uid;
		p->gid = (gid_t)j->uid;
		p->last_cap = last_cap();
		arg_area(&p->arg_start, &p->arg_end);
		if (strcmp(c->jail_seccomp, "off")) {
			version = qemu_version(c, qemu);
			j->list = omr_seccomp_list_for(version, &exact);
			if (!exact)
				omr_log(OMR_LOG_WARN, "no seccomp list made for %s: using QEMU %s's",
					version ? version : "this QEMU", j->list->qemu);
			if (omr_seccomp_build(j->list, c->jail_seccomp, qemu, &filter, err) < 0)
				goto fail;
			p->filter = &filter;
			j->seccomp_log = !strcmp(c->jail_seccomp, "log");
			j->kmsg = kmsg_open();
		}
		js.qemu = qemu;
		p->exec_path = qemu;
		if (plan_root(p, &pl, a, qemu, &js, spec, err) < 0)
			goto fail;
	}
	js.thread_pool_max = c->jail_vmm_threads;

	/* The fds QEMU gets: 0-2, the caller's, then ours above them. */
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0 || pipe2(errpipe, O_CLOEXEC) < 0 ||
	    (p->jailed && pipe2(lifeline, O_CLOEXEC) < 0)) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot prepare QEMU's fds");
		goto fail;
	}
	p->from[0] = null_fd, p->to[0] = 0;
	p->from[1] = out_fd >= 0 ? out_fd : 1, p->to[1] = 1;
	p->from[2] = out_fd >= 0 ? out_fd : 2, p->to[2] = 2;
	p->nfd = 3;
	for (size_t i = 0; i < nkeep; i++, p->nfd++) {
		p->from[p->nfd] = keep_from[i];
		p->to[p->nfd] = keep_to[i];
		if (keep_to[i] >= next)
			next = keep_to[i] + 1;
	}
	if ((agent = listen_unix(spec->agent_sock, err)) < 0 ||
	    (qmp = listen_unix(spec->qmp_sock, err)) < 0 ||
	    (spec->bench_sock && (bench = listen_unix(spec->bench_sock, err)) < 0))
		goto fail;
	p->from[p->nfd] = agent, p->to[p->nfd++] = js.agent_fd = next++;
	p->from[p->nfd] = qmp, p->to[p->nfd++] = js.qmp_fd = next++;
	if (bench >= 0)
		p->from[p->nfd] = bench, p->to[p->nfd++] = js.bench_fd = next++;
	if (p->jailed)
		p->from[p->nfd] = lifeline[1], p->to[p->nfd++] = next++;
	p->errfd = errpipe[1];
	argv = omr_vmm_argv(&js);
	p->argv = argv;

	if (p->jailed) {
		pid = fork_jailed(p, j, lifeline);
	} else {
		pid = fork();
		if (pid == 0)
			child_main(p);
	}
	if (pid < 0) {
		omr_err_set(err, OMR_E_FAIL, errno, "cannot start QEMU");
		goto fail;
	}
	j->vmm_pid = pid;
	close(errpipe[1]);
	errpipe[1] = -1;
	{
		struct report r;
		ssize_t n;

		do
			n = read(errpipe[0], &r, sizeof(r));
		while (n < 0 && errno == EINTR);
		if (n == (ssize_t)sizeof(r)) {
			const char *stage = r.stage > 0 && r.stage < (int)OMR_ARRAY_SIZE(stage_names)
					    ? stage_names[r.stage] : "start";
			if (r.stage == C_STEP && r.step >= 0 && r.step < (int)p->nsteps)
				omr_err_set(err, OMR_E_FAIL, r.err, "jail: cannot %s (%s)", stage,
					    p->steps[r.step].dst + strlen(p->root));
			else
				omr_err_set(err, OMR_E_FAIL, r.err, "jail: cannot %s", stage);
			goto fail;
		}
	}
	*out = omr_steal_ptr(j);
	goto done;
fail:
	if (pid > 0)
		omr_killp(&pid);
	if (j->init_pid > 0)
		omr_killp(&j->init_pid);
	pid = -1;
	jail_free(j);
done:
	for (int i = 0; i < 2; i++) {
		if (errpipe[i] >= 0)
			close(errpipe[i]);
		if (lifeline[i] >= 0)
			close(lifeline[i]);
	}
	omr_argv_free(argv);
	free(filter.filter);
	pool_free(&pl);
	free(p);
	return pid;
}

pid_t omr_jail_spawn(const struct omr_vmm_spec *s, const int *keep_from, const int *keep_to,
		     size_t nkeep, struct omr_jail **out, struct omr_err **err)
{
	_cleanup_free_ char *dir = omr_sandbox_run_path(s->config, s->sandbox_id, NULL);
	const struct jail_args a = {
		.name = s->sandbox_id, .dir = dir, .cpus = s->cpus, .memory_mb = s->memory_mb,
		.accel = s->accel,
	};

	return jail_spawn(s->config, &a, s, s->console_fd, keep_from, keep_to, nkeep, out, err);
}

/* ---- release --------------------------------------------------------------- */

/* Why QEMU died, from evidence rather than its wait status (a monitor
 * that kills a dying QEMU never sees it): the kernel's seccomp record for
 * its pid, the cgroup's OOM counter. */
static const char *explain(struct omr_jail *j, int status)
{
	int killed, logged[16];
	size_t n = kmsg_seccomp(j->kmsg, j->vmm_pid, &killed, logged, OMR_ARRAY_SIZE(logged));

	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *name = omr_seccomp_name(logged[i]);
		omr_log(OMR_LOG_WARN, "sandbox %s: QEMU made system call %d (%s), which is not in "
			"the allow-list (seccomp = log)", j->name, logged[i], name ? name : "?");
	}
	if (killed >= 0) {
		_cleanup_free_ char *name = omr_seccomp_name(killed);
		int listed = j->list && name && omr_seccomp_listed(j->list, name);
		omr_log(OMR_LOG_ERR, "sandbox %s: QEMU was killed by seccomp at system call %d (%s), "
			"%s", j->name, killed, name ? name : "?",
			listed ? "which QEMU's own -sandbox denies"
			       : "which is not in the jail's allow-list");
		return "seccomp";
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
		omr_log(OMR_LOG_ERR, "sandbox %s: QEMU was killed by seccomp (SIGSYS); the kernel "
			"log names no call (see the audit log)", j->name);
		return "seccomp";
	}
	if (omr_cgroup_oom_kills(j->cg)) {
		omr_log(OMR_LOG_ERR, "sandbox %s: QEMU was killed by the OOM killer: the sandbox "
			"went over its host memory limit of %llu MB", j->name,
			(unsigned long long)(j->memory_limit >> 20));
		return "oom";
	}
	return NULL;
}

const char *omr_jail_release(struct omr_jail **jp, int vmm_status)
{
	struct omr_jail *j = *jp;
	const char *why;

	if (!j)
		return NULL;
	why = explain(j, vmm_status);
	jail_free(j);
	*jp = NULL;
	return why;
}

/* ---- sbx-doctor ------------------------------------------------------------ */

/* Boots the default template's kernel in a jail, with an init that does
 * not exist: the kernel panics and, with panic=-1 and -no-reboot, QEMU
 * exits 0.  That runs QEMU's whole start, a guest, and its exit under the
 * filter, the namespaces and the uid.  Returns the time taken, or < 0
 * with *why. */
static long long selftest(const struct omr_config *c, char **why)
{
	_cleanup_free_ char *name = omr_strdup_printf(SELFTEST_PREFIX "%d", (int)getpid());
	_cleanup_free_ char *dir = omr_strdup_printf("%s/%s", c->run_dir, name);
	_cleanup_free_ char *agent = omr_strdup_printf("%s/agent.sock", dir);
	_cleanup_free_ char *qmp = omr_strdup_printf("%s/qmp.sock", dir);
	_cleanup_close_ int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct omr_template *t = NULL;
	struct omr_jail *j = NULL;
	struct omr_err *e = NULL;
	enum omr_accel accel;
	const char *reason;
	long long ms = -1;
	uint64_t t0;
	pid_t pid;
	int status = 0;

	*why = NULL;
	if (omr_accel_resolve(c, &accel, &reason, &e) < 0 ||
	    omr_template_load(c, c->default_template, &t, &e) < 0) {
		*why = omr_strdup_printf("skipped: %s", e->msg);
		omr_err_free(&e);
		return -1;
	}
	/* The TSC hint the monitor gives TCG guests: without it a busy host
	 * can hang the guest's calibration. */
	unsigned khz = accel == OMR_ACCEL_TCG ? omr_tcg_tsc_khz(c) : 0;
	_cleanup_free_ char *tsc = khz ? omr_strdup_printf("tsc_early_khz=%u ", khz)
				       : omr_xstrdup("");
	_cleanup_free_ char *cmdline = omr_strdup_printf(
		"console=ttyS0 quiet panic=-1 reboot=t tsc=reliable %srdinit=/omnirun-selftest", tsc);
	_cleanup_free_ char *firmware = omr_vmm_firmware(c->qemu);
	const struct omr_vmm_spec spec = {
		.qemu = c->qemu, .accel = accel, .tb_size_mb = c->tb_size_mb, .cpus = 1,
		.memory_mb = 128, .kernel = t->kernel, .initrd = t->initrd, .cmdline = cmdline,
		.firmware = firmware,
		.agent_sock = agent, .qmp_sock = qmp, .disk_fd = -1, .tap_fd = -1,
	};
	const struct jail_args a = { .name = name, .dir = dir, .cpus = 1, .memory_mb = 128,
				     .accel = accel };
	if (omr_mkdir_p(dir, 0700, &e) < 0) {
		*why = omr_xstrdup(e->msg);
		goto out;
	}
	t0 = omr_now_ms();
	pid = jail_spawn(c, &a, &spec, null_fd, NULL, NULL, 0, &j, &e);
	if (pid < 0) {
		*why = omr_xstrdup(e->msg);
		goto out;
	}
	{
		_cleanup_close_ int pfd = omr_pidfd_open(pid);
		if (pfd < 0 || !omr_pidfd_wait(pfd, SELFTEST_TIMEOUT_MS)) {
			kill(pid, SIGKILL);
			*why = omr_strdup_printf("the test guest did not end within %d s",
						 SELFTEST_TIMEOUT_MS / 1000);
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	ms = (long long)(omr_now_ms() - t0);
	if (*why) {
		ms = -1;
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		int killed, logged[1];
		_cleanup_free_ char *sc = NULL;

		kmsg_seccomp(j->kmsg, pid, &killed, logged, 1);
		sc = killed >= 0 ? omr_seccomp_name(killed) : NULL;
		*why = WIFSIGNALED(status)
		       ? omr_strdup_printf("QEMU was killed by signal %d%s%s", WTERMSIG(status),
					   sc ? " at system call " : "", sc ? sc : "")
		       : omr_strdup_printf("QEMU exited with status %d", WEXITSTATUS(status));
		ms = -1;
	}
	if (j && j->init_pid > 0)
		waitpid(j->init_pid, NULL, 0);
	omr_jail_release(&j, 0);
out:
	omr_err_free(&e);
	omr_template_free(t);
	omr_rm_rf_at(AT_FDCWD, dir);
	return ms;
}

static json_t *namespaces(void)
{
	static const char *const ns[] = { "mnt", "pid", "ipc", "uts", "net", "cgroup" };
	json_t *a = json_array();

	for (size_t i = 0; i < OMR_ARRAY_SIZE(ns); i++) {
		_cleanup_free_ char *p = omr_strdup_printf("/proc/self/ns/%s", ns[i]);
		if (access(p, F_OK) == 0)
			json_array_append_new(a, json_string(ns[i]));
	}
	return a;
}

json_t *omr_jail_report(const struct omr_config *c)
{
	_cleanup_free_ char *found = omr_qemu_find(c);
	_cleanup_free_ char *qemu = found ? realpath(found, NULL) : NULL;
	_cleanup_free_ char *version = qemu ? qemu_version(c, qemu) : NULL;
	_cleanup_free_ char *why = NULL;
	const struct omr_seccomp_list *l;
	long long ms = -1;
	int exact = 0;

	l = omr_seccomp_list_for(version, &exact);
	if (!c->jail_enable)
		why = omr_xstrdup("skipped: [jail] enable is false");
	else if (geteuid() != 0)
		why = omr_xstrdup("skipped: not root");
	else
		ms = selftest(c, &why);
	return json_pack("{s:b, s:I, s:I, s:I, s:o, s:{s:s, s:s, s:s?, s:s, s:b, s:I}, "
			 "s:{s:b, s:I, s:s?}}",
			 "enabled", (int)c->jail_enable, "uid_base", (json_int_t)c->jail_uid_base,
			 "uid_count", (json_int_t)c->jail_uid_count, "uids_free",
			 (json_int_t)(c->jail_uid_count - omr_jail_uids_taken(c)), "namespaces", namespaces(),
			 "seccomp", "mode", c->jail_seccomp, "libseccomp", omr_seccomp_lib_version(),
			 "qemu", version, "list", l->qemu, "exact", exact, "calls",
			 (json_int_t)omr_seccomp_list_len(l),
			 "self_test", "ok", ms >= 0, "ms", (json_int_t)ms, "why", why);
}
