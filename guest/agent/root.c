/* A template's root filesystem (DESIGN.md §5): its read-only image, found
 * by the serial the host gave its disk, under an overlay whose writable
 * half lives on the dm-crypt data disk.  So the template's bytes are
 * shared by every sandbox and read-only, and what a sandbox writes, to
 * any path, is ciphertext on the host and gone with the key.
 *
 * The agent stays the process it is (static, it needs nothing from the
 * new root): it moves the overlay onto / and chroots, the way
 * switch_root does, then reads /etc/omnirun/guest.conf from the image
 * (default user, environment, boot services).  The initramfs's few MB
 * stay in memory: the kernel cannot unmount the initial rootfs, and
 * deleting its files would only return them to the page cache. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define NEWROOT "/newroot"
#define LOWER "/run/omnirun/lower"
#define RW_TMPFS "/run/omnirun/rw"
#define GUEST_CONF "/etc/omnirun/guest.conf"
#define ROOT_WAIT_MS 3000
#define SERVICES_MAX 8
#define SERVICE_TIMEOUT_MS 60000

static char *services[SERVICES_MAX];
static int nservices;

static int mount_lower(const char *dev)
{
	const char *type = kernel_param("rootfstype");

	mkdir("/run/omnirun", 0700);
	mkdir(LOWER, 0755);
	if (!type)
		type = "ext4";
	if (mount(dev, LOWER, type, MS_RDONLY, "") < 0) {
		omr_log(OMR_LOG_ERR, "mount %s (%s) on %s: %s", dev, type, LOWER, strerror(errno));
		return -errno;
	}
	return 0;
}

/* The overlay's upper and work dirs: on the data disk when it is there,
 * else (with a warning) on a tmpfs, so the guest still runs. */
static int mount_overlay(const char *disk_mnt)
{
	_cleanup_free_ char *upper = NULL, *work = NULL, *opts = NULL;
	const char *base = disk_mnt;

	if (strcmp(agent_cfg.disk_state, "ready")) {
		omr_log(OMR_LOG_ERR, "no data disk: the root's writes go to memory");
		mkdir(RW_TMPFS, 0700);
		if (mount("tmpfs", RW_TMPFS, "tmpfs", 0, "mode=0755") < 0)
			return -errno;
		base = RW_TMPFS;
	}
	upper = omr_strdup_printf("%s/upper", base);
	work = omr_strdup_printf("%s/work", base);
	if ((mkdir(upper, 0755) < 0 && errno != EEXIST) || (mkdir(work, 0700) < 0 && errno != EEXIST))
		return -errno;
	mkdir(NEWROOT, 0755);
	opts = omr_strdup_printf("lowerdir=" LOWER ",upperdir=%s,workdir=%s", upper, work);
	if (mount("overlay", NEWROOT, "overlay", 0, opts) < 0) {
		omr_log(OMR_LOG_ERR, "mount overlay on " NEWROOT ": %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* Moves the API filesystems (with what is mounted below them, the lower
 * and the data disk under /run among it) into the new root. */
static int move_mounts(void)
{
	static const char *const m[] = { "/dev", "/proc", "/sys", "/run", "/tmp" };

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		_cleanup_free_ char *dst = omr_strdup_printf(NEWROOT "%s", m[i]);
		mkdir(dst, 0755);
		if (mount(m[i], dst, NULL, MS_MOVE, NULL) < 0) {
			omr_log(OMR_LOG_ERR, "move %s: %s", m[i], strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int switch_root(void)
{
	if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0) {
		omr_log(OMR_LOG_ERR, "switch to " NEWROOT ": %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* /etc/omnirun/guest.conf, written by sbx-template build: "user=NAME",
 * "env=K=V" (appended to the env file every command reads) and
 * "service=COMMAND" lines. */
static void read_guest_conf(void)
{
	_cleanup_fclose_ FILE *f = fopen(GUEST_CONF, "re");
	_cleanup_fclose_ FILE *env = NULL;
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "user=", 5) && line[5]) {
			agent_cfg.default_user = strdup(line + 5);
		} else if (!strncmp(line, "env=", 4) && strchr(line + 5, '=')) {
			if (!env)
				env = fopen(agent_cfg.env_file, "ae");
			if (env)
				fprintf(env, "%s\n", line + 4);
		} else if (!strncmp(line, "service=", 8) && line[8] && nservices < SERVICES_MAX) {
			services[nservices++] = strdup(line + 8);
		}
	}
	free(line);
	if (env)
		chmod(agent_cfg.env_file, 0600); /* env.c reads it only if ours alone */
}

void root_setup(const char *serial, const char *disk_mnt)
{
	_cleanup_free_ char *dev = block_by_serial(serial, ROOT_WAIT_MS);

	if (!dev) {
		omr_log(OMR_LOG_ERR, "no root image disk (serial %s): staying in the initramfs", serial);
		return;
	}
	if (mount_lower(dev) < 0 || mount_overlay(disk_mnt) < 0 || move_mounts() < 0 ||
	    switch_root() < 0)
		return;
	agent_cfg.data_dir = "/";
	read_guest_conf();
	omr_log(OMR_LOG_INFO, "root: %s under an overlay (user %s)", dev,
		agent_cfg.default_user ? agent_cfg.default_user : "root");
}

void root_services(void)
{
	for (int i = 0; i < nservices; i++) {
		uint64_t end = omr_now_ms() + SERVICE_TIMEOUT_MS;
		int st = 0;
		pid_t pid = fork(), w = 0;

		if (pid < 0) {
			omr_log(OMR_LOG_ERR, "service %s: %s", services[i], strerror(errno));
			continue;
		}
		if (pid == 0) {
			sigset_t none;
			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			setsid();
			execl("/bin/sh", "sh", "-c", services[i], (char *)NULL);
			_exit(127);
		}
		/* A service's starter forks its daemon and exits once it is ready. */
		while ((w = waitpid(pid, &st, WNOHANG)) == 0 && omr_now_ms() < end)
			usleep(20 * 1000);
		if (w == 0) {
			kill(-pid, SIGKILL);
			waitpid(pid, &st, 0);
			omr_log(OMR_LOG_ERR, "service %s: timed out", services[i]);
		} else if (w > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			omr_log(OMR_LOG_ERR, "service %s failed (status 0x%x)", services[i], st);
		} else {
			omr_log(OMR_LOG_INFO, "service %s started", services[i]);
		}
	}
}
