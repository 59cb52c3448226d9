/* The agent's ext2 writer (guest/agent/mkfs.c) on the host: each image it
 * makes must pass e2fsck -fn (over a sparse file its unwritten inode tables
 * read as zeroes, as e2fsck wants), have the geometry asked for, hold the
 * root and lost+found, and cost only a few blocks of writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mkfs.h"
#include "tap.h"

static char dir[] = "/tmp/omr-test-mkfs.XXXXXX";

/* Runs cmd (a shell line) and returns its output's first 64 KiB. */
static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	char *buf = calloc(1, 65536);
	size_t n = 0;

	if (!p || !buf) {
		*status = -1;
		return buf;
	}
	while (n < 65535) {
		size_t r = fread(buf + n, 1, 65535 - n, p);
		if (r == 0)
			break;
		n += r;
	}
	*status = pclose(p);
	return buf;
}

/* Formats a sparse file of `bytes`; returns the blocks the fs holds. */
static void one(uint64_t bytes, uint64_t want_blocks, const char *what)
{
	char path[256], cmd[512];
	uint8_t uuid[16] = { 0x6f, 0x6d, 0x6e, 0x69, 0x72, 0x75, 0x6e, 0x40,
			     0x80, 1, 2, 3, 4, 5, 6, 7 };
	struct stat st;
	int fd, rc, status;
	char *out;

	snprintf(path, sizeof(path), "%s/img", dir);
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
		ok(false, "%s: make the image: %s", what, strerror(errno));
		return;
	}
	rc = omr_mkfs_ext2(fd, bytes, uuid, (const uint8_t *)"0123456789abcdef", 1767225600);
	is_int(rc, 0, "%s: formatted", what);
	fstat(fd, &st);
	close(fd);
	/* Bitmaps, descriptors, backups and two directories: a few KiB per
	 * group, never the inode tables. */
	ok((uint64_t)st.st_blocks * 512 <= 64 * 1024 + (bytes >> 27) * 5 * 4096,
	   "%s: %lld KiB written", what, (long long)st.st_blocks / 2);
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s 2>&1", path);
	out = run(cmd, &status);
	if (!ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: e2fsck -fn passes", what))
		diag("%s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "dumpe2fs -h %s 2>/dev/null", path);
	out = run(cmd, &status);
	snprintf(cmd, sizeof(cmd), "Block count:              %llu\n",
		 (unsigned long long)want_blocks);
	if (!ok(strstr(out, cmd) != NULL, "%s: %llu blocks", what, (unsigned long long)want_blocks))
		diag("%s", out);
	ok(strstr(out, "Filesystem UUID:          6f6d6e69-7275-6e40-8001-020304050607") &&
		   strstr(out, "Reserved block count:     0\n") &&
		   strstr(out, "Block size:               4096\n") &&
		   strstr(out, "Filesystem features:      dir_index filetype sparse_super large_file\n") &&
		   strstr(out, "Directory Hash Seed:      30313233-3435-3637-3839-616263646566\n") &&
		   strstr(out, "Default directory hash:   half_md4\n"),
	   "%s: its UUID, no reserved blocks, 4 KiB blocks, busybox's features, the hash seed", what);
	free(out);
	snprintf(cmd, sizeof(cmd), "debugfs -R 'ls -l /' %s 2>/dev/null", path);
	out = run(cmd, &status);
	if (!ok(strstr(out, "lost+found") && strstr(out, " 40755 ") && strstr(out, " 40700 "),
		"%s: the root holds lost+found", what))
		diag("%s", out);
	free(out);
	unlink(path);
}

int main(void)
{
	int fd, status;
	char path[256], *out;

	out = run("command -v e2fsck dumpe2fs debugfs", &status);
	free(out);
	if (status != 0) {
		skip("e2fsprogs is not installed");
		return done_testing();
	}
	if (!mkdtemp(dir))
		return 1;
	one(1 << 20, 256, "1 MiB");
	one(64 << 20, 16384, "64 MiB, one group");
	one(512ull << 20, 131072, "512 MiB, four groups");
	/* A tail shorter than its metadata and 64 blocks is left out. */
	one((128ull << 20) + 40 * 4096, 32768, "128 MiB and 40 blocks");
	one((128ull << 20) + 4096 * 4096, 32768 + 4096, "128 MiB and 4096 blocks");
	one(10ull << 30, 2621440, "10 GiB, 80 groups, sparse_super backups");
	one((1ull << 30) + 1000, 262144, "1 GiB and a partial block");

	snprintf(path, sizeof(path), "%s/small", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	is_int(omr_mkfs_ext2(fd, 64 * 1024, (const uint8_t *)"0123456789abcdef",
			     (const uint8_t *)"0123456789abcdef", 0), -ENOSPC,
	       "64 KiB is too small: ENOSPC");
	close(fd);
	unlink(path);
	rmdir(dir);
	return done_testing();
}
