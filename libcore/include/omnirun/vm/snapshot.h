/* Template snapshots (issue 9): the template booted once with its RAM in a
 * file, stopped once its agent answered, and its device state saved with
 * the shared RAM left out.  A sandbox starts as a copy-on-write clone of
 * that RAM file plus the device state, in tens of milliseconds instead of
 * a cold boot's seconds.
 *
 * Under $state_dir/templates/NAME/snapshot/:
 *   ram             the guest's memory (0444: no QEMU ever writes it)
 *   state           the device state (QEMU's migration stream)
 *   snapshot.conf   what it needs to fit: the QEMU binary and version, the
 *                   kernel and initrd (which holds the agent), vCPUs,
 *                   memory, disk, accelerator, and the state's SHA-256.
 * A snapshot that does not match what would run now is refused whole
 * (the sandbox boots cold), never half used. */
#ifndef OMNIRUN_SNAPSHOT_H
#define OMNIRUN_SNAPSHOT_H

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"
#include "omnirun/vm/accel.h"
#include "omnirun/vm/template.h"

struct omr_snapshot {
	char *dir;             /* absolute path of snapshot/ */
	char *ram, *state;     /* absolute paths of its files */
	unsigned cpus, memory_mb, disk_mb;
	char *qemu_version;    /* "QEMU emulator version ..." */
	char *accel;           /* "tcg" or "kvm" */
	long long made_ms;     /* how long saving it took */
};

/* 1 when the QEMU whose "--version" line is version can clone from a
 * read-only RAM file (8.2 and later), else 0. */
int omr_snapshot_qemu_ok(const char *version);

/* Boots template name once and saves its snapshot, replacing an older
 * one only when the new one is whole.  OMR_E_UNSUPPORTED with a QEMU
 * older than 8.2. */
int omr_snapshot_make(const struct omr_config *c, const char *name, omr_progress_fn progress,
		      void *user, struct omr_err **err);

/* Loads t's snapshot and checks it against what would run now (the
 * configured QEMU, t's kernel and initrd, the accelerator accel, and
 * cpus / memory_mb / disk_mb when not 0).  Returns 1 and *out when it
 * fits, 0 and *why (malloc'ed) when there is none or it does not. */
int omr_snapshot_find(const struct omr_config *c, const struct omr_template *t,
		      const char *accel, unsigned cpus, unsigned memory_mb, unsigned disk_mb,
		      struct omr_snapshot **out, char **why);
void omr_snapshot_free(struct omr_snapshot *s);

/* Removes t's snapshot (running clones keep their mapping). */
int omr_snapshot_remove(const struct omr_config *c, const char *name, struct omr_err **err);

/* The kernel command line every boot of t gets: the sandbox's id and
 * hostname, and "omnirun.disk=premap" when disk is 0 (a template being
 * saved: its placeholder disk is mapped through dm-crypt under a throwaway
 * key and suspended, no filesystem; a clone rekeys it before use). */
char *omr_vm_kernel_cmdline(const struct omr_config *c, const struct omr_template *t,
			    enum omr_accel accel, const char *id, int disk);

#endif
