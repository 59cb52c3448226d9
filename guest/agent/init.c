/* PID 1: bring the guest up, then supervise the server.
 *
 * PID 1 must never exit or crash (the kernel would panic), so this part
 * stays small, uses libc only and never parses host input: everything the
 * host sends is handled by the server, a child that may die and be
 * restarted. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define MODULES_FILE "/etc/omnirun/modules"
#define CMDS_CGROUP "/sys/fs/cgroup/omnirun-cmds"
#define CMDS_PIDS_MAX 4096
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STABLE_MS 10000

static void mount_basics(void)
{
	static const struct {
		const char *src, *dst, *type;
		unsigned long flags;
		const char *data;
	} m[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
		{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,gid=5,ptmxmode=0666" },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
		{ "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
		{ "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		mkdir(m[i].dst, 0755);
		/* EBUSY: the kernel mounted it already (devtmpfs automount). */
		if (mount(m[i].src, m[i].dst, m[i].type, m[i].flags, m[i].data) < 0 &&
		    errno != EBUSY)
			omr_log(OMR_LOG_ERR, "mount %s: %s", m[i].dst, strerror(errno));
	}
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		(void)!symlink(links[i][0], links[i][1]);
}

/* The kernel gives init /dev/console as 0-2 only if it existed before
 * /dev was mounted. */
static void open_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY);

	if (fd < 0)
		fd = open("/dev/null", O_RDWR);
	for (int i = 0; i < 3 && fd >= 0; i++)
		if (fcntl(i, F_GETFD) < 0)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
}

/* The guest has no log but the kernel's: lines go to /dev/kmsg (or, if
 * that fails, the console). */
static void log_to_kmsg(void)
{
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		fd = open("/dev/console", O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0)
		omr_log_kmsg(fd);
}

static void load_modules(void)
{
	FILE *f = fopen(MODULES_FILE, "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f) {
		if (errno != ENOENT)
			omr_log(OMR_LOG_ERR, "%s: %s", MODULES_FILE, strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\r\n")] = 0;
		if (!line[0] || line[0] == '#')
			continue;
		int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			omr_log(OMR_LOG_ERR, "module %s: %s", line, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			omr_log(OMR_LOG_ERR, "module %s: %s", line, strerror(errno));
		close(fd);
	}
	free(line);
	fclose(f);
}

/* Commands run below their own cgroup so that a fork bomb or a memory
 * hog starves itself, not the agent: memory.max leaves a reserve of
 * max(64 MiB, 25%) to the kernel and the agent, enough for the cgroup's
 * OOM killer to act before the global one in a 256 MB guest.  pids.max
 * is 4096 but at most 3/4 of kernel.threads-max (which the kernel sizes
 * by memory: about 1660 in a 256 MB guest), so that a fork bomb leaves
 * the agent able to fork; omnirun.pids= (the sandbox's process limit)
 * lowers it.  Each command gets a child cgroup (cgroup.c);
 * the limits here cap them all together. */
static void cgroup_setup(void)
{
	_cleanup_free_ char *mi = NULL, *tm = NULL;
	char buf[32];
	long long total_kb = -1, total, reserve, pids = CMDS_PIDS_MAX, tmax = -1;
	const char *p;

	if (file_write_str("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids") < 0) {
		omr_log(OMR_LOG_ERR, "cgroup controllers: %s", strerror(errno));
		return;
	}
	if (mkdir(CMDS_CGROUP, 0755) < 0 && errno != EEXIST) {
		omr_log(OMR_LOG_ERR, "mkdir %s: %s", CMDS_CGROUP, strerror(errno));
		return;
	}
	if (omr_read_file_at(AT_FDCWD, "/proc/meminfo", 65536, &mi, NULL, NULL) == 0 &&
	    (p = strstr(mi, "MemTotal:")))
		sscanf(p + 9, "%lld", &total_kb);
	if (total_kb > 0) {
		total = total_kb * 1024;
		reserve = total / 4 > 64ll << 20 ? total / 4 : 64ll << 20;
		if (total > reserve) {
			snprintf(buf, sizeof(buf), "%lld", total - reserve);
			if (file_write_str(CMDS_CGROUP "/memory.max", buf) < 0)
				omr_log(OMR_LOG_ERR, "memory.max: %s", strerror(errno));
		}
	}
	if (omr_read_file_at(AT_FDCWD, "/proc/sys/kernel/threads-max", 64, &tm, NULL, NULL) == 0 &&
	    sscanf(tm, "%lld", &tmax) == 1 && tmax > 0 && tmax / 4 * 3 < pids)
		pids = tmax / 4 * 3;
	/* The sandbox's own limit (sbx-create --processes), if lower. */
	if ((p = kernel_param("pids")) && sscanf(p, "%lld", &tmax) == 1 && tmax > 0 && tmax < pids)
		pids = tmax;
	snprintf(buf, sizeof(buf), "%lld", pids);
	if (file_write_str(CMDS_CGROUP "/pids.max", buf) < 0)
		omr_log(OMR_LOG_ERR, "pids.max: %s", strerror(errno));
	agent_cfg.cgroup = CMDS_CGROUP;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Reaps what is there; returns false once there are no children left. */
static bool reap_all(void)
{
	pid_t pid;

	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
		;
	return !(pid < 0 && errno == ECHILD);
}

static _Noreturn void power_off(void)
{
	static const char *const mnts[] = { "/data", "/sys/fs/cgroup", "/run", "/tmp",
					    "/dev/shm", "/dev/pts" };

	omr_log(OMR_LOG_INFO, "powering off");
	kill(-1, SIGTERM);
	for (int i = 0; i < 100 && reap_all(); i++)
		sleep_ms(20);
	kill(-1, SIGKILL);
	for (int i = 0; i < 50 && reap_all(); i++)
		sleep_ms(20);
	sync();
	for (size_t i = 0; i < sizeof(mnts) / sizeof(mnts[0]); i++)
		if (umount2(mnts[i], 0) < 0 && errno != EINVAL && errno != ENOENT)
			umount2(mnts[i], MNT_DETACH);
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static pid_t start_server(void)
{
	sigset_t none;
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	_exit(server_run(&agent_hooks, CONN_VIRTIO, -1, OMR_AGENT_PORT));
}

static void supervise(void)
{
	uint64_t restart_at = 0, started = 0, backoff = 0;
	pid_t server = -1, pid;
	sigset_t set;
	int st;

	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGPWR };

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	reboot(RB_DISABLE_CAD); /* Ctrl-Alt-Del becomes SIGINT */
	for (;;) {
		uint64_t now = omr_now_ms(), wait = 1000;
		struct timespec ts;
		int sig;

		if (server < 0 && now >= restart_at) {
			server = start_server();
			started = now;
			if (server < 0) {
				omr_log(OMR_LOG_ERR, "cannot start the server: %s", strerror(errno));
				restart_at = now + BACKOFF_MAX_MS;
			}
		}
		if (server < 0 && restart_at - now < wait)
			wait = restart_at - now;
		ts.tv_sec = (time_t)(wait / 1000);
		ts.tv_nsec = (long)(wait % 1000) * 1000000;
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT || sig == SIGUSR1 || sig == SIGUSR2 ||
		    sig == SIGPWR)
			power_off();
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			if (pid != server)
				continue; /* an orphan we inherited */
			now = omr_now_ms();
			backoff = now - started > STABLE_MS || !backoff ? BACKOFF_MIN_MS
									 : backoff * 2;
			if (backoff > BACKOFF_MAX_MS)
				backoff = BACKOFF_MAX_MS;
			omr_log(OMR_LOG_ERR, "server exited (status 0x%x); restarting in %llu ms", st,
			     (unsigned long long)backoff);
			restart_at = now + backoff;
			server = -1;
			/* Its commands are unreachable now: stop them. */
			if (agent_cfg.cgroup && file_write_str(CMDS_CGROUP "/cgroup.kill", "1") < 0)
				omr_log(OMR_LOG_ERR, "cgroup.kill: %s", strerror(errno));
		}
	}
}

void init_main(void)
{
	const char *host, *root;

	umask(022);
	setenv("PATH", AGENT_PATH_DEFAULT, 1);
	setenv("HOME", "/", 1);
	agent_cfg.pid1 = true;
	mount_basics();
	open_console();
	log_to_kmsg();
	cfg_read_kernel_params();
	host = kernel_param("hostname");
	if (host && sethostname(host, strlen(host)) < 0)
		omr_log(OMR_LOG_ERR, "hostname: %s", strerror(errno));
	if (file_write_str("/proc/self/oom_score_adj", "-1000") < 0)
		omr_log(OMR_LOG_ERR, "oom_score_adj: %s", strerror(errno));
	load_modules();
	root = kernel_param("root");
	if (root)
		agent_cfg.data_dir = "/run/omnirun/disk"; /* the overlay's upper half */
	disk_setup();
	if (root)
		root_setup(root, agent_cfg.data_dir);
	cgroup_setup();
	net_setup();
	root_services();
	omr_log(OMR_LOG_INFO, "%s up (disk %s)", AGENT_VERSION, agent_cfg.disk_state);
	supervise();
	for (;;) /* not reached; PID 1 must never return */
		pause();
}
