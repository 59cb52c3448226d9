/* mkfs.c: the data disk's ext2, written without mke2fs.  Kept apart from
 * agent.h so that tests/unit/test-mkfs.c builds it alone on the host. */
#ifndef OMNIRUN_AGENT_MKFS_H
#define OMNIRUN_AGENT_MKFS_H

#include <stdint.h>

/* Writes an ext2 filesystem (4 KiB blocks, an inode per 64 KiB, no
 * reserved blocks, dir_index, filetype, sparse_super; a root directory and
 * lost+found) over the first bytes of fd, leaving unused inode tables
 * unwritten (buffered writes: no fsync).  uuid names it, hash_seed seeds
 * its directory hashes; now is every time in it.  -ENOSPC when bytes
 * cannot hold one, else 0 or a negative errno. */
int omr_mkfs_ext2(int fd, uint64_t bytes, const uint8_t uuid[16], const uint8_t hash_seed[16],
		  uint32_t now);

#endif
