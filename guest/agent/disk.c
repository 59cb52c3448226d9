/* The data disk: dm-crypt under a key that exists only in this guest.
 *
 * The host hands us a scratch disk it has already unlinked; we draw a
 * random 512-bit key, map the disk through dm-crypt (aes-xts-plain64) with
 * the device-mapper ioctls, format and mount it at /data.  The key is never
 * written anywhere and is wiped from our memory once the kernel has it, so
 * when the guest dies the ciphertext on the host is unreadable
 * (crypto-shred).  Any failure leaves the guest running without /data. */
#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define DM_NAME "omnirun-data"
#define DM_CONTROL "/dev/mapper/control"
#define DM_DEVICE "/dev/mapper/" DM_NAME
#define KEY_BYTES 64 /* AES-256 in XTS mode takes two 256-bit keys */
#define DISK_WAIT_MS 2000
#define DATA_SERIAL "omnirun-data"

static void dm_init(struct dm_ioctl *io, size_t size)
{
	memset(io, 0, size);
	io->version[0] = 4; /* any 4.x kernel interface */
	io->data_size = (uint32_t)size;
	io->data_start = sizeof(*io);
	snprintf(io->name, sizeof(io->name), "%s", DM_NAME);
}

static int dm_control(void)
{
	int fd = open(DM_CONTROL, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		/* devtmpfs names it mapper/control; make it if it did not. */
		mkdir("/dev/mapper", 0755);
		if (mknod(DM_CONTROL, S_IFCHR | 0600, makedev(10, 236)) == 0)
			fd = open(DM_CONTROL, O_RDWR | O_CLOEXEC);
	}
	return fd;
}

/* Loads "0 sectors crypt aes-xts-plain64 KEY 0 dev 0" into the mapping. */
static int dm_load_table(int ctl, const char *dev, uint64_t sectors)
{
	uint8_t key[KEY_BYTES];
	char params[2 * KEY_BYTES + 256];
	size_t plen, size;
	struct dm_ioctl *io;
	struct dm_target_spec *spec;
	int rc = 0, n;

	for (size_t got = 0; got < sizeof(key);) {
		ssize_t r = getrandom(key + got, sizeof(key) - got, 0);
		if (r < 0 && errno != EINTR)
			return -errno;
		got += r > 0 ? (size_t)r : 0;
	}
	n = snprintf(params, sizeof(params), "aes-xts-plain64 ");
	for (size_t i = 0; i < sizeof(key); i++)
		n += snprintf(params + n, sizeof(params) - (size_t)n, "%02x", key[i]);
	snprintf(params + n, sizeof(params) - (size_t)n, " 0 %s 0", dev);
	explicit_bzero(key, sizeof(key));

	plen = (strlen(params) + 1 + 7) & ~(size_t)7;
	size = sizeof(*io) + sizeof(*spec) + plen;
	io = calloc(1, size);
	if (!io) {
		explicit_bzero(params, sizeof(params));
		return -ENOMEM;
	}
	dm_init(io, size);
	io->target_count = 1;
	io->flags = DM_SECURE_DATA_FLAG; /* the kernel wipes its copy of the ioctl */
	spec = (struct dm_target_spec *)(void *)((char *)io + sizeof(*io));
	spec->sector_start = 0;
	spec->length = sectors;
	spec->next = (uint32_t)(sizeof(*spec) + plen);
	snprintf(spec->target_type, sizeof(spec->target_type), "crypt");
	memcpy(spec + 1, params, strlen(params) + 1);
	if (ioctl(ctl, DM_TABLE_LOAD, io) < 0)
		rc = -errno;
	explicit_bzero(params, sizeof(params));
	explicit_bzero(io, size);
	free(io);
	return rc;
}

/* Creates and activates the mapping; *devno gets its device number. */
static int dm_create(const char *dev, uint64_t sectors, dev_t *devno)
{
	_cleanup_close_ int ctl = dm_control();
	struct dm_ioctl io;
	int rc;

	if (ctl < 0)
		return -errno;
	dm_init(&io, sizeof(io));
	if (ioctl(ctl, DM_DEV_CREATE, &io) < 0)
		return -errno;
	*devno = (dev_t)io.dev;
	rc = dm_load_table(ctl, dev, sectors);
	if (rc == 0) {
		dm_init(&io, sizeof(io)); /* SUSPEND without the flag resumes */
		if (ioctl(ctl, DM_DEV_SUSPEND, &io) < 0)
			rc = -errno;
	}
	if (rc < 0) {
		dm_init(&io, sizeof(io));
		ioctl(ctl, DM_DEV_REMOVE, &io);
	}
	return rc;
}

/* True when dev (or a partition of it) is mounted or is the root. */
static bool disk_in_use(const char *dev)
{
	_cleanup_free_ char *buf = NULL, *cmd = NULL, *kargs = NULL;
	const char *root;
	size_t l = strlen(dev);

	if (omr_read_file_at(AT_FDCWD, "/proc/cmdline", 65536, &kargs, NULL, NULL) == 0 &&
	    (cmd = omr_strdup_printf(" %s", kargs)) && (root = strstr(cmd, " root=")) &&
	    !strncmp(root + 6, dev, l))
		return true;
	if (omr_read_file_at(AT_FDCWD, "/proc/mounts", 1 << 20, &buf, NULL, NULL) < 0)
		return false;
	for (char *line = buf; line; line = strchr(line, '\n')) {
		line += *line == '\n';
		if (!strncmp(line, dev, l) && (line[l] == ' ' || (line[l] >= '0' && line[l] <= '9')))
			return true;
	}
	return false;
}

static int run_mke2fs(void)
{
	/* 4 KiB blocks: busybox's default of 1 KiB is slow and limits files. */
	char *const argv[] = { "mke2fs", "-q", "-F", "-b", "4096", "-m", "0",
			       "-i", "65536", DM_DEVICE, NULL };
	char *const bb[] = { "busybox", "mke2fs", "-q", "-F", "-b", "4096", "-m", "0",
			     "-i", "65536", DM_DEVICE, NULL };
	int st;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* busybox's mke2fs ignores -q: keep its chatter off the console. */
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (null >= 0)
			dup2(null, 1);
		execvp(argv[0], argv);
		execv("/bin/busybox", bb);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int disk_prepare(const char *dev)
{
	_cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
	uint64_t bytes = 0;
	struct stat st;
	dev_t devno = 0;
	int rc;

	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0)
		return -errno;
	if (bytes < (1u << 20))
		return -ENOSPC;
	rc = dm_create(dev, bytes / 512, &devno);
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "dm-crypt on %s: %s", dev, strerror(-rc));
		return rc;
	}
	/* Without udev nobody makes /dev/mapper/NAME. */
	if (stat(DM_DEVICE, &st) < 0 && mknod(DM_DEVICE, S_IFBLK | 0600, devno) < 0)
		return -errno;
	rc = run_mke2fs();
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "mke2fs %s failed", DM_DEVICE);
		return rc;
	}
	omr_mkdir_p(agent_cfg.data_dir, 0755, NULL);
	/* The ext4 driver mounts the ext2 that busybox makes. */
	if (mount(DM_DEVICE, agent_cfg.data_dir, "ext4", MS_NOSUID | MS_NODEV, "") < 0) {
		omr_log(OMR_LOG_ERR, "mount %s: %s", agent_cfg.data_dir, strerror(errno));
		return -errno;
	}
	chmod(agent_cfg.data_dir, 01777); /* like /tmp: any user may write */
	return 0;
}

void disk_setup(void)
{
	disk_setup_dev(kernel_param("disk"));
}

void disk_setup_dev(const char *dev)
{
	_cleanup_free_ char *by_serial = NULL;
	struct stat st;
	uint64_t end = omr_now_ms() + DISK_WAIT_MS;

	agent_cfg.disk_state = "none";
	/* With a second disk (a template's image) the order of the virtio
	 * devices is not the order of /dev/vdX: the host names the data disk. */
	if (!dev && kernel_param("root"))
		dev = by_serial = block_by_serial(DATA_SERIAL, DISK_WAIT_MS);
	if (!dev)
		dev = "/dev/vda";
	if (!strcmp(dev, "none"))
		return;
	/* Module loading probes devices asynchronously. */
	while ((stat(dev, &st) < 0 || !S_ISBLK(st.st_mode)) && omr_now_ms() < end)
		usleep(20 * 1000);
	if (stat(dev, &st) < 0 || !S_ISBLK(st.st_mode)) {
		omr_log(OMR_LOG_INFO, "no data disk at %s", dev);
		return;
	}
	if (disk_in_use(dev)) {
		omr_log(OMR_LOG_INFO, "%s is in use, not touching it", dev);
		return;
	}
	agent_cfg.disk_state = disk_prepare(dev) == 0 ? "ready" : "failed";
}
