/* sbx-gc: reconcile records with what really runs, and prove that
 * teardown left nothing behind. */
#ifndef OMNIRUN_GC_H
#define OMNIRUN_GC_H

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

/* Called for each leftover: kind is "lost_sandbox", "corrupt_record",
 * "stale_run_dir", "orphan_process", "stale_link" (the host end of a
 * sandbox's veth), "incomplete_create", "expired_record",
 * "interrupted_resume" (a persisted sandbox whose resume died: persisted
 * again), "stale_fork" or (from
 * omr_cgroup_gc) "stale_cgroup"; what says what exactly; fixed whether
 * it was cleaned (never in check mode). */
typedef void (*omr_gc_found_fn)(void *user, const char *kind, const char *id,
				const char *what, int fixed);

struct omr_gc_opts {
	int check_only;        /* report, change nothing */
	unsigned prune_days;   /* also remove stopped records older (0: keep) */
	int boot;              /* the host just started: every sandbox that was
				  live died with it (end reason host_reboot);
				  persisted ones stay resumable */
};

/* Returns the number of leftovers found (>= 0; in check mode none were
 * touched, else all were cleaned), or < 0 on error. */
int omr_gc_run(const struct omr_config *c, const struct omr_gc_opts *o,
	       omr_gc_found_fn found, void *user, struct omr_err **err);

#endif
