/* Where a fork's copies wait for its children (issue 9, client/fork.c).
 * A fork has a key (a fresh id, omr_id_new) and two directories:
 *   RUN_DIR/fork/KEY/    state: the source's memory and devices (the run
 *                        dir is a tmpfs: guest memory never lands on a
 *                        disk); meta: its NIC's MAC and RAM kind; lock:
 *                        held by the forking client while it works
 *   STATE_DIR/fork/KEY/  disk-I: the source's data disk, copied once per
 *                        child (ciphertext: the guest holds the key)
 * The child's monitor takes disk-I (opens and unlinks it) and reads the
 * state; the client removes both when every child is up or has failed;
 * sbx-gc removes those whose lock nobody holds. */
#ifndef OMNIRUN_STATE_FORK_H
#define OMNIRUN_STATE_FORK_H

#include "omnirun/base/err.h"
#include "omnirun/base/ids.h"
#include "omnirun/state/config.h"

/* At most this many children per fork. */
#define OMR_FORK_MAX 16

/* The fork's directory (run: 1 the run dir's, 0 the state dir's), or a
 * file in it (file NULL: the directory).  Malloc'ed. */
char *omr_fork_path(const struct omr_config *c, int run, const char *key, const char *file);
/* A record's "fork" field: "KEY.INDEX".  omr_fork_ref_parse returns 0
 * with key and *index filled, or -1 for anything else. */
int omr_fork_ref_parse(const char *ref, char key[OMR_ID_MAX], unsigned *index);
/* Makes both directories (0700, parents too) and takes the lock; returns
 * its fd (the fork lives while it is held), or < 0 with *err. */
int omr_fork_dirs_make(const struct omr_config *c, const char *key, struct omr_err **err);
/* 1 while the client that made fork key's directories holds its lock. */
int omr_fork_in_progress(const struct omr_config *c, const char *key);
/* Removes both directories with everything in them. */
void omr_fork_dirs_remove(const struct omr_config *c, const char *key);

#endif
