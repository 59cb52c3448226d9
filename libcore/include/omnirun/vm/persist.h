/* A persisted sandbox's image at rest (issue 9, sbx-pause --persist):
 * its memory and devices as QEMU streams them out, encrypted by the
 * monitor as they come, under a key of its own, which is kept wrapped by
 * the host key (a file, 0400, made on first use).  In the sandbox's state
 * dir, OMR_PERSIST_DIR/:
 *   key    the sandbox's key, sealed by the host key (secretbox: nonce,
 *          then the key and its MAC)
 *   state  the stream: secretstream's header, then chunks, each a 4-byte
 *          big-endian length and the sealed bytes; the last is tagged
 *          FINAL, so a truncated file is refused, never half read
 *   disk   the data disk (the guest's own ciphertext: its dm-crypt key is
 *          in the memory above)
 *   meta   the NIC's MAC and the RAM's kind, written last: a persisted
 *          image without it is incomplete */
#ifndef OMNIRUN_VM_PERSIST_H
#define OMNIRUN_VM_PERSIST_H

#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

#define OMR_PERSIST_KEY_BYTES 32

/* The host key, read, or made (0400, its directory 0700 when made) when
 * missing.  Refused when it is readable or writable by anyone but its
 * owner, or not OMR_PERSIST_KEY_BYTES long. */
int omr_persist_host_key(const struct omr_config *c, int create,
			 unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err);

/* Draws a sandbox key and writes it sealed by the host key into dirfd's
 * "key" (0600, O_EXCL); key gets it.  omr_persist_key_read opens it. */
int omr_persist_key_new(const struct omr_config *c, int dirfd,
			unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err);
int omr_persist_key_read(const struct omr_config *c, int dirfd,
			 unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err);

/* Reads in until its end (a pipe QEMU writes), at most deadline_ms from
 * now, and writes it sealed under key to out. */
int omr_persist_seal(int in, int out, const unsigned char key[OMR_PERSIST_KEY_BYTES],
		     uint64_t deadline_ms, struct omr_err **err);
/* The reverse: in (a file written by omr_persist_seal) opened into out.
 * Any chunk that does not authenticate, or an end before FINAL, fails. */
int omr_persist_open(int in, int out, const unsigned char key[OMR_PERSIST_KEY_BYTES],
		     struct omr_err **err);

#endif
