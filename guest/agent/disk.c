/* The data disk: dm-crypt under a key that exists only in this guest.
 *
 * The host hands us a scratch disk it has already unlinked; we draw a
 * random 512-bit key, map the disk through dm-crypt (aes-xts-plain64) with
 * the device-mapper ioctls, format it (mkfs.c) and mount it at /data.  The
 * key is never written anywhere and is wiped from our memory once the
 * kernel has it, so when the guest dies the ciphertext on the host is
 * unreadable (crypto-shred).  Any failure leaves the guest running without /data. */
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
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "mkfs.h"
#include "omnirun/base/cleanup.h"

#define DM_NAME "omnirun-data"
#define DM_CONTROL "/dev/mapper/control"
#define DM_DEVICE "/dev/mapper/" DM_NAME
#define KEY_BYTES 64 /* AES-256 in XTS mode takes two 256-bit keys */
#define DISK_WAIT_MS 2000
#define DATA_SERIAL "omnirun-data"

/* Set by disk_premap in a template booted for its snapshot, and so in
 * every clone's memory: the mapping exists, suspended, keyed with a
 * throwaway key; a clone's disk_prepare rekeys it instead of creating one
 * (which costs a restore ~0.1 s under TCG: the target's first setup). */
static bool premapped;

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

/* Draws a fresh key and appends it to buf in hex (2 * KEY_BYTES chars);
 * the binary key is wiped. */
static int key_hex(char *buf, size_t cap)
{
	uint8_t key[KEY_BYTES];
	size_t n = strlen(buf);

	if (cap < n + 2 * KEY_BYTES + 1)
		return -ENOBUFS;
	for (size_t got = 0; got < sizeof(key);) {
		ssize_t r = getrandom(key + got, sizeof(key) - got, 0);
		if (r < 0 && errno != EINTR)
			return -errno;
		got += r > 0 ? (size_t)r : 0;
	}
	for (size_t i = 0; i < sizeof(key); i++)
		snprintf(buf + n + 2 * i, 3, "%02x", key[i]);
	explicit_bzero(key, sizeof(key));
	return 0;
}

/* Loads "0 sectors crypt aes-xts-plain64 KEY 0 dev 0" into the mapping. */
static int dm_load_table(int ctl, const char *dev, uint64_t sectors)
{
	char params[2 * KEY_BYTES + 256] = "aes-xts-plain64 ";
	size_t plen, size, n;
	struct dm_ioctl *io;
	struct dm_target_spec *spec;
	int rc = key_hex(params, sizeof(params));

	if (rc < 0)
		return rc;
	n = strlen(params);
	snprintf(params + n, sizeof(params) - n, " 0 %s 0", dev);

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

/* DM_DEV_SUSPEND on the mapping: suspend, or without it resume. */
static int dm_suspend(int ctl, bool suspend)
{
	struct dm_ioctl io;

	dm_init(&io, sizeof(io));
	io.flags = suspend ? DM_SUSPEND_FLAG : 0;
	return ioctl(ctl, DM_DEV_SUSPEND, &io) < 0 ? -errno : 0;
}

static void dm_remove(int ctl)
{
	struct dm_ioctl io;

	dm_init(&io, sizeof(io));
	ioctl(ctl, DM_DEV_REMOVE, &io);
}

/* Maps dev (bytes long) under a fresh key and activates the mapping; its
 * node is made where no udev made one.  Nothing is left on failure. */
static int dm_map(int ctl, const char *dev, uint64_t bytes)
{
	struct dm_ioctl io;
	struct stat st;
	int rc;

	dm_init(&io, sizeof(io));
	if (ioctl(ctl, DM_DEV_CREATE, &io) < 0)
		return -errno;
	rc = dm_load_table(ctl, dev, bytes / 512);
	if (rc == 0)
		rc = dm_suspend(ctl, false); /* resume: the loaded table goes live */
	if (rc == 0 && stat(DM_DEVICE, &st) < 0 &&
	    mknod(DM_DEVICE, S_IFBLK | 0600, (dev_t)io.dev) < 0)
		rc = -errno;
	if (rc < 0)
		dm_remove(ctl);
	return rc;
}

/* The mapping a template made (disk_premap) gets a key of its own: dm-crypt
 * takes "key set KEY" while suspended; then it resumes.  The template
 * never wrote through its throwaway key.  On failure the mapping is gone. */
static int dm_rekey(int ctl)
{
	char msg[2 * KEY_BYTES + 16] = "key set ";
	size_t size = (sizeof(struct dm_ioctl) + sizeof(struct dm_target_msg) + sizeof(msg) + 7) &
		      ~(size_t)7;
	_cleanup_free_ struct dm_ioctl *io = calloc(1, size);
	struct dm_target_msg *tm;
	int rc;

	if (!io)
		return -ENOMEM;
	dm_init(io, size);
	rc = ioctl(ctl, DM_DEV_STATUS, io) < 0 ? -errno
	     : !(io->flags & DM_SUSPEND_FLAG) ? -EBUSY : key_hex(msg, sizeof(msg));
	if (rc == 0) {
		dm_init(io, size);
		io->flags = DM_SECURE_DATA_FLAG;
		tm = (struct dm_target_msg *)(void *)((char *)io + sizeof(*io));
		memcpy(tm->message, msg, strlen(msg) + 1);
		if (ioctl(ctl, DM_TARGET_MSG, io) < 0)
			rc = -errno;
	}
	explicit_bzero(msg, sizeof(msg));
	explicit_bzero(io, size);
	if (rc == 0)
		rc = dm_suspend(ctl, false);
	if (rc < 0)
		dm_remove(ctl);
	return rc;
}

/* dev's size, which must be at least 1 MiB. */
static int disk_bytes(const char *dev, uint64_t *bytes)
{
	_cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || ioctl(fd, BLKGETSIZE64, bytes) < 0)
		return -errno;
	return *bytes < (1u << 20) ? -ENOSPC : 0;
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

/* Our own ext2 (mkfs.c) under a random UUID and hash seed: mke2fs would
 * write every inode table through dm-crypt. */
static int format_data(uint64_t bytes)
{
	_cleanup_close_ int fd = open(DM_DEVICE, O_RDWR | O_CLOEXEC);
	uint8_t rnd[32]; /* the UUID, then the directory hash seed */

	if (fd < 0)
		return -errno;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EIO;
	rnd[6] = (uint8_t)((rnd[6] & 0x0f) | 0x40); /* a version 4 UUID */
	rnd[8] = (uint8_t)((rnd[8] & 0x3f) | 0x80);
	return omr_mkfs_ext2(fd, bytes, rnd, rnd + 16, (uint32_t)time(NULL));
}

static int disk_prepare(const char *dev)
{
	_cleanup_close_ int ctl = dm_control();
	uint64_t bytes = 0, t0 = omr_now_ms(), t1, t2;
	int rc = ctl < 0 ? -errno : disk_bytes(dev, &bytes);

	if (rc < 0)
		return rc;
	/* A clone of a template that mapped the disk already: rekey it. */
	if (premapped && (rc = dm_rekey(ctl)) < 0)
		omr_log(OMR_LOG_WARN, "rekeying the premapped disk: %s; mapping it anew",
			strerror(-rc));
	if (!premapped || rc < 0)
		rc = dm_map(ctl, dev, bytes);
	premapped = false;
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "dm-crypt on %s: %s", dev, strerror(-rc));
		return rc;
	}
	t1 = omr_now_ms();
	rc = format_data(bytes);
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "formatting %s: %s", DM_DEVICE, strerror(-rc));
		return rc;
	}
	t2 = omr_now_ms();
	omr_mkdir_p(agent_cfg.data_dir, 0755, NULL);
	/* The ext4 driver mounts the ext2 that mkfs.c makes. */
	if (mount(DM_DEVICE, agent_cfg.data_dir, "ext4", MS_NOSUID | MS_NODEV, "") < 0) {
		omr_log(OMR_LOG_ERR, "mount %s: %s", agent_cfg.data_dir, strerror(errno));
		return -errno;
	}
	chmod(agent_cfg.data_dir, 01777); /* like /tmp: any user may write */
	omr_log(OMR_LOG_INFO, "data disk: dm-crypt %llu ms, format %llu ms, mount %llu ms",
		(unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1),
		(unsigned long long)(omr_now_ms() - t2));
	return 0;
}

/* In a template booted for its snapshot (omnirun.disk=premap): map the
 * placeholder disk (it reads zeroes and drops writes) under a throwaway key
 * and suspend the mapping, so that clones only rekey it.  Nothing is
 * written through it.  A failure leaves clones to map the disk anew. */
static void disk_premap(const char *dev)
{
	_cleanup_close_ int ctl = dm_control();
	uint64_t bytes = 0;
	int rc = ctl < 0 ? -errno : disk_bytes(dev, &bytes);

	if (rc == 0 && (rc = dm_map(ctl, dev, bytes)) == 0 && (rc = dm_suspend(ctl, true)) < 0)
		dm_remove(ctl);
	if (rc < 0) {
		omr_log(OMR_LOG_WARN, "premapping %s: %s", dev, strerror(-rc));
		return;
	}
	premapped = true;
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
	bool premap = dev && !strcmp(dev, "premap");

	if (!dev || premap)
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
	if (premap) {
		disk_premap(dev);
		return;
	}
	agent_cfg.disk_state = disk_prepare(dev) == 0 ? "ready" : "failed";
}
