/* A fresh ext2 filesystem on the data disk, written by the agent itself.
 *
 * busybox mke2fs writes every inode table, and through dm-crypt that is
 * megabytes of emulated AES: half a second of a restore under TCG.  The
 * kernel needs none of it: it reads only inodes the bitmap says are in
 * use, and a new inode is zeroed in memory before it is written (ext4's
 * EXT4_STATE_NEW).  So we write what a mount reads: the superblock and
 * its sparse_super backups, the group descriptors, the bitmaps, the root
 * directory and lost+found, a few blocks per group.  Unused inodes stay
 * whatever the disk held (under dm-crypt, noise), which e2fsck would
 * call corrupt but no kernel path reads.
 *
 * Layout and features (dir_index, filetype, sparse_super; large_file), as
 * busybox's mke2fs -b 4096 -i 65536 -m 0 made them:
 * group g starts at block g * 32768; groups with a backup (0, 1 and
 * powers of 3, 5 and 7) begin with the superblock and the descriptor
 * table; then each group has its block bitmap, inode bitmap and inode
 * table.  Group 0 also holds the root's and lost+found's directory
 * blocks.  Little-endian fields are written byte by byte (put16/put32). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mkfs.h"

#define BS 4096u
#define BPG (8u * BS) /* blocks per group: one bitmap block's bits */
#define INODE_SIZE 256u
#define IPB (BS / INODE_SIZE)
#define BYTES_PER_INODE 65536u
#define DESC_SIZE 32u
#define FIRST_INO 11u
#define ROOT_INO 2u
#define LPF_INO 11u
#define MIN_LAST_GROUP 64u /* a shorter tail is left out, as mke2fs does */

static void put16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

static void set_bit(uint8_t *map, uint32_t bit)
{
	map[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static bool is_power_of(uint32_t n, uint32_t base)
{
	while (n > 1 && n % base == 0)
		n /= base;
	return n == 1;
}

static bool has_super(uint32_t g)
{
	return g <= 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7);
}

struct geom {
	uint32_t blocks, groups, ipg, itable_blocks, gdt_blocks;
};

/* Blocks a group's metadata takes from its start, and the group's size. */
static uint32_t group_meta(const struct geom *g, uint32_t grp)
{
	return (has_super(grp) ? 1 + g->gdt_blocks : 0) + 2 + g->itable_blocks;
}

static uint32_t group_blocks(const struct geom *g, uint32_t grp)
{
	return grp + 1 < g->groups ? BPG : g->blocks - grp * BPG;
}

static int geometry(uint64_t bytes, struct geom *g)
{
	uint64_t blocks = bytes / BS, inodes;

	if (blocks > UINT32_MAX)
		blocks = UINT32_MAX - BPG; /* 16 TiB: far past any sandbox disk */
	for (;;) {
		g->blocks = (uint32_t)blocks;
		g->groups = (uint32_t)((blocks + BPG - 1) / BPG);
		if (g->groups == 0)
			return -ENOSPC;
		inodes = blocks * BS / BYTES_PER_INODE;
		g->ipg = (uint32_t)((inodes + g->groups - 1) / g->groups);
		g->ipg = (g->ipg + IPB - 1) / IPB * IPB; /* whole itable blocks */
		if (g->ipg < IPB)
			g->ipg = IPB;
		if (g->ipg > BPG)
			g->ipg = BPG;
		g->itable_blocks = g->ipg / IPB;
		g->gdt_blocks = (g->groups * DESC_SIZE + BS - 1) / BS;
		/* Group 0 needs its metadata, two directory blocks and room. */
		if (g->groups == 1 && blocks < group_meta(g, 0) + 2 + 16)
			return -ENOSPC;
		if (g->groups == 1 || group_blocks(g, g->groups - 1) >=
					      group_meta(g, g->groups - 1) + MIN_LAST_GROUP)
			return 0;
		blocks = (uint64_t)(g->groups - 1) * BPG;
	}
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void fill_super(uint8_t *sb, const struct geom *g, uint32_t free_blocks,
		       uint32_t free_inodes, const uint8_t uuid[16], const uint8_t seed[16],
		       uint32_t now)
{
	put32(sb + 0, g->ipg * g->groups);   /* s_inodes_count */
	put32(sb + 4, g->blocks);            /* s_blocks_count */
	put32(sb + 12, free_blocks);         /* s_free_blocks_count */
	put32(sb + 16, free_inodes);         /* s_free_inodes_count */
	put32(sb + 24, 2);                   /* s_log_block_size: 4096 */
	put32(sb + 28, 2);                   /* s_log_cluster_size */
	put32(sb + 32, BPG);                 /* s_blocks_per_group */
	put32(sb + 36, BPG);                 /* s_clusters_per_group */
	put32(sb + 40, g->ipg);              /* s_inodes_per_group */
	put32(sb + 48, now);                 /* s_wtime */
	put16(sb + 54, 0xffff);              /* s_max_mnt_count: -1 */
	put16(sb + 56, 0xef53);              /* s_magic */
	put16(sb + 58, 1);                   /* s_state: clean */
	put16(sb + 60, 1);                   /* s_errors: continue */
	put32(sb + 64, now);                 /* s_lastcheck */
	put32(sb + 76, 1);                   /* s_rev_level: dynamic */
	put32(sb + 84, FIRST_INO);           /* s_first_ino */
	put16(sb + 88, INODE_SIZE);          /* s_inode_size */
	put32(sb + 92, 0x20);                /* compat: dir_index */
	put32(sb + 96, 0x2);                 /* incompat: filetype */
	put32(sb + 100, 0x1 | 0x2);          /* ro_compat: sparse_super, large_file */
	memcpy(sb + 104, uuid, 16);          /* s_uuid */
	memcpy(sb + 120, "omnirun-data", 12); /* s_volume_name */
	memcpy(sb + 236, seed, 16);          /* s_hash_seed */
	sb[252] = 1;                         /* s_def_hash_version: half_md4 */
	put32(sb + 264, now);                /* s_mkfs_time */
	put32(sb + 352, 0x2);                /* s_flags: unsigned directory hash */
}

static void put_inode(uint8_t *ino, uint32_t mode, uint32_t links, uint32_t block, uint32_t now)
{
	put16(ino + 0, mode);     /* i_mode */
	put32(ino + 4, BS);       /* i_size */
	put32(ino + 8, now);      /* i_atime */
	put32(ino + 12, now);     /* i_ctime */
	put32(ino + 16, now);     /* i_mtime */
	put16(ino + 26, links);   /* i_links_count */
	put32(ino + 28, BS / 512); /* i_blocks, in 512-byte units */
	put32(ino + 40, block);   /* i_block[0] */
	put16(ino + 128, 32);     /* i_extra_isize */
}

static void put_dirent(uint8_t *p, uint32_t ino, uint32_t rec_len, const char *name)
{
	size_t n = strlen(name);

	put32(p, ino);
	put16(p + 4, rec_len);
	p[6] = (uint8_t)n;
	p[7] = 2; /* a directory */
	memcpy(p + 8, name, n);
}

int omr_mkfs_ext2(int fd, uint64_t bytes, const uint8_t uuid[16], const uint8_t hash_seed[16],
		  uint32_t now)
{
	struct geom g;
	uint8_t *blk = NULL, *gdt = NULL, *sb = NULL;
	uint32_t free_blocks = 0, root_blk, lpf_blk;
	int rc = geometry(bytes, &g);

	if (rc < 0)
		return rc;
	blk = calloc(1, BS);
	sb = calloc(1, 1024);
	gdt = calloc(g.gdt_blocks, BS);
	if (!blk || !sb || !gdt) {
		rc = -ENOMEM;
		goto out;
	}
	root_blk = group_meta(&g, 0);
	lpf_blk = root_blk + 1;
	/* The descriptors and the bitmaps, group by group. */
	for (uint32_t grp = 0; grp < g.groups && rc == 0; grp++) {
		uint32_t start = grp * BPG, meta = group_meta(&g, grp), size = group_blocks(&g, grp);
		uint32_t bb = start + meta - 2 - g.itable_blocks, used = meta + (grp == 0 ? 2 : 0);
		uint32_t used_inodes = grp == 0 ? FIRST_INO : 0;
		uint8_t *d = gdt + (size_t)grp * DESC_SIZE;

		memset(blk, 0, BS);
		for (uint32_t b = 0; b < used; b++)
			set_bit(blk, b);
		for (uint32_t b = size; b < BPG; b++) /* past the end of the disk */
			set_bit(blk, b);
		rc = pwrite_all(fd, blk, BS, (uint64_t)bb * BS);
		memset(blk, 0, BS);
		for (uint32_t i = 0; i < used_inodes; i++)
			set_bit(blk, i);
		for (uint32_t i = g.ipg; i < BPG; i++) /* padding past the group's inodes */
			set_bit(blk, i);
		if (rc == 0)
			rc = pwrite_all(fd, blk, BS, (uint64_t)(bb + 1) * BS);
		put32(d + 0, bb);                      /* bg_block_bitmap */
		put32(d + 4, bb + 1);                  /* bg_inode_bitmap */
		put32(d + 8, bb + 2);                  /* bg_inode_table */
		put16(d + 12, size - used);            /* bg_free_blocks_count */
		put16(d + 14, g.ipg - used_inodes);    /* bg_free_inodes_count */
		put16(d + 16, grp == 0 ? 2 : 0);       /* bg_used_dirs_count */
		free_blocks += size - used;
	}
	if (rc < 0)
		goto out;
	/* The first inode table block: inodes 1-16, the root and lost+found. */
	memset(blk, 0, BS);
	put_inode(blk + (ROOT_INO - 1) * INODE_SIZE, 040755, 3, root_blk, now);
	put_inode(blk + (LPF_INO - 1) * INODE_SIZE, 040700, 2, lpf_blk, now);
	rc = pwrite_all(fd, blk, BS, (uint64_t)(root_blk - g.itable_blocks) * BS);
	if (rc < 0)
		goto out;
	memset(blk, 0, BS);
	put_dirent(blk, ROOT_INO, 12, ".");
	put_dirent(blk + 12, ROOT_INO, 12, "..");
	put_dirent(blk + 24, LPF_INO, BS - 24, "lost+found");
	rc = pwrite_all(fd, blk, BS, (uint64_t)root_blk * BS);
	if (rc < 0)
		goto out;
	memset(blk, 0, BS);
	put_dirent(blk, LPF_INO, 12, ".");
	put_dirent(blk + 12, ROOT_INO, BS - 12, "..");
	rc = pwrite_all(fd, blk, BS, (uint64_t)lpf_blk * BS);
	/* The superblock last, in every group that keeps a copy: a mount
	 * that finds one finds the rest written. */
	fill_super(sb, &g, free_blocks, g.ipg * g.groups - FIRST_INO, uuid, hash_seed, now);
	for (uint32_t grp = 0; grp < g.groups && rc == 0; grp++) {
		if (!has_super(grp))
			continue;
		/* The primary is 1024 bytes into block 0, a backup at its block's start. */
		uint8_t *copy = grp ? blk : blk + 1024;

		memset(blk, 0, BS);
		memcpy(copy, sb, 1024);
		put16(copy + 90, grp); /* s_block_group_nr */
		rc = pwrite_all(fd, gdt, (size_t)g.gdt_blocks * BS, ((uint64_t)grp * BPG + 1) * BS);
		if (rc == 0)
			rc = pwrite_all(fd, blk, BS, (uint64_t)grp * BPG * BS);
	}
	/* No fsync: a mount reads these blocks back through the same block
	 * device (its page cache, or the disk once written back), and a
	 * flush would cost the host an fdatasync of the disk file for a disk
	 * that dies with its guest anyway. */
out:
	free(blk);
	free(sb);
	free(gdt);
	return rc;
}
