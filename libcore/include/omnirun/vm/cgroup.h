/* Host-side limits per sandbox: a cgroup of its own for its QEMU, with
 * memory, CPU, pids and I/O weight (DESIGN.md §4, doc/jail.md).
 *
 * cgroup v2 first (Debian 12 and 13 with systemd), v1 where the host
 * mounts only that (each controller its own hierarchy), none when neither
 * is writable: then [jail] allow_unlimited decides whether sandboxes run
 * without host limits.  Each sandbox's cgroup is PARENT/ID under every
 * hierarchy used, PARENT being [jail] cgroup_parent. */
#ifndef OMNIRUN_VM_CGROUP_H
#define OMNIRUN_VM_CGROUP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"
#include "omnirun/state/gc.h"

enum omr_cgroup_version { OMR_CG_NONE = 0, OMR_CG_V1, OMR_CG_V2 };

/* The controllers OmniRun uses; the first three are required. */
enum {
	OMR_CGC_MEMORY = 1u << 0,
	OMR_CGC_CPU = 1u << 1,
	OMR_CGC_PIDS = 1u << 2,
	OMR_CGC_IO = 1u << 3,      /* v2 io, v1 blkio: the weight */
	OMR_CGC_CPUACCT = 1u << 4, /* v1 only: CPU time (v2's cpu has it) */
};
#define OMR_CGC_REQUIRED (OMR_CGC_MEMORY | OMR_CGC_CPU | OMR_CGC_PIDS)
#define OMR_CG_MAX_MOUNTS 5

/* What the host offers, as [jail] cgroup asks for it. */
struct omr_cgroup_host {
	enum omr_cgroup_version version;
	unsigned controllers;          /* OMR_CGC_* usable */
	size_t nmounts;                /* v2: 1; v1: one per hierarchy used */
	struct {
		char *path;            /* mount point */
		unsigned controllers;  /* the ones it carries that we use */
	} mounts[OMR_CG_MAX_MOUNTS];
	char *why;                     /* version NONE: why (malloc'ed) */
};

/* Finds the hierarchy to use ([jail] cgroup: auto, v2, v1 or none).
 * Never fails: version NONE says so, with why.  Free with
 * omr_cgroup_host_free. */
void omr_cgroup_detect(const struct omr_config *c, struct omr_cgroup_host *h);
void omr_cgroup_host_free(struct omr_cgroup_host *h);

struct omr_cgroup_limits {
	uint64_t memory_bytes;   /* past it the kernel OOM-kills in the
				    cgroup (v2: the whole cgroup) */
	unsigned cpu_quota_us;   /* per 100 ms period; 0: no quota */
	unsigned pids;
	unsigned io_weight;      /* 1-10000, v2's scale */
};

/* One sandbox's cgroup (opaque). */
struct omr_cgroup;

/* Makes PARENT/name under every hierarchy of h with limits l.  Returns 0,
 * or < 0 with *err (*out stays NULL). */
int omr_cgroup_create(const struct omr_config *c, const struct omr_cgroup_host *h,
		      const char *name, const struct omr_cgroup_limits *l,
		      struct omr_cgroup **out, struct omr_err **err);
/* The cgroup.procs files opened for writing (O_CLOEXEC): a child joins by
 * writing "0" to each, which needs no allocation between fork and exec.
 * Returns how many (at most max). */
size_t omr_cgroup_procs_fds(const struct omr_cgroup *cg, int *fds, size_t max);
/* How many times the kernel's OOM killer acted in it (0 if unknown). */
uint64_t omr_cgroup_oom_kills(const struct omr_cgroup *cg);
/* Removes it once its processes are gone (waits a little for them) and
 * frees it; *cg becomes NULL. */
void omr_cgroup_destroy(struct omr_cgroup **cg);

/* Removes PARENT/name under every hierarchy (after its processes are
 * gone: waits a little for them), when a monitor could not. */
void omr_cgroup_remove(const struct omr_config *c, const char *name);

/* CPU time (ns) and memory (bytes) of PARENT/name; -1 where unknown.
 * Returns 0 when the cgroup exists, < 0 otherwise. */
int omr_cgroup_usage(const struct omr_config *c, const char *name, int64_t *cpu_ns,
		     int64_t *memory_bytes);

/* What sbx-doctor shows: version, mount, controllers, parent, whether
 * sandboxes can start (new reference). */
json_t *omr_cgroup_report(const struct omr_config *c);

/* Cgroups under PARENT whose sandbox is not live (a monitor killed before
 * its teardown): reported as "stale_cgroup" and removed unless check_only.
 * Returns how many were found. */
int omr_cgroup_gc(const struct omr_config *c, int check_only, omr_gc_found_fn found,
		  void *user);

#endif
