/* Sandbox lifecycle: create and kill (DESIGN.md §4).  The record itself
 * is omnirun/state/record.h. */
#ifndef OMNIRUN_CLIENT_SANDBOX_H
#define OMNIRUN_CLIENT_SANDBOX_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/state/record.h"

/* --- lifecycle (sandbox.c) --- */

struct omr_create_opts {
	const char *template_name;   /* NULL: the config's default */
	unsigned cpus, memory_mb, disk_mb;   /* 0: template's, then config's */
	unsigned processes;          /* in the guest; 0: config default */
	unsigned timeout_s;          /* 0: config default */
	unsigned idle_timeout_s;     /* 0: config default; UINT32_MAX: none */
	int internet;                /* NAT out of the configured uplink */
	const char *idle_action;     /* kill | pause; NULL: the config's */
	const char *const *allow;    /* host names ("*.x" too) the egress
					proxy lets through; nallow of them */
	size_t nallow;
	/* A fork's child (omr_sandbox_fork): everything above comes from
	 * the source's record instead, and the child starts from the copy
	 * fork_ref ("KEY.INDEX") names. */
	const struct omr_sandbox *fork_src;
	const char *fork_ref;
	/* A sandbox for the template's warm pool (omnirun/client/pool.h):
	 * the template's shape, air-gapped, no idle timeout, the longest
	 * lifetime, claimed by nobody.  Without it, a create takes a
	 * pooled sandbox when one fits. */
	int pool;
};

/* Validates the options, spawns sbx-monitor and waits until the guest agent
 * has answered.  On failure nothing is left behind and the error message
 * ends with the tail of the console log when that helps. */
int omr_sandbox_create(const struct omr_config *c, const struct omr_create_opts *o,
		       struct omr_sandbox *out, struct omr_err **err);

/* Starts a persisted sandbox again (sbx-resume does, through
 * omr_sandbox_resume): its memory, processes and files as they were.
 * Fails with the image kept (state persisted) when it cannot. */
int omr_sandbox_restart(const struct omr_config *c, const char *id, struct omr_sandbox *out,
			struct omr_err **err);

/* Forks a running (or paused) sandbox: n (1 to OMR_FORK_MAX) new ones
 * with its memory, processes and disk as they are now, each with a fresh
 * identity (id, hostname, RNG reseeded, clock, address), its limits,
 * template and network policy.  The source goes on.  All or nothing:
 * when one child cannot start, those that did are killed.  out gets n
 * records.  progress (may be NULL) hears each step. */
int omr_sandbox_fork(const struct omr_config *c, const char *id, unsigned n,
		     void (*progress)(void *user, const char *msg), void *user,
		     struct omr_sandbox *out, struct omr_err **err);

/* Tears a sandbox down: asks its monitor, or kills the monitor and the VMM
 * and cleans up itself when the monitor does not answer.  Keeps the record
 * (state stopped) as history.  -ENOENT for an unknown id; 0 when it was
 * already stopped. */
int omr_sandbox_kill(const struct omr_config *c, const char *id, const char *reason,
		     struct omr_err **err);

/* --- a live sandbox's lifecycle (lifecycle.c): asked of its monitor --- */

/* Stops the VM's CPUs (it keeps its memory; state "paused"), or restarts
 * them and sets the guest's clock to the host's.  *out (if not NULL)
 * gets the record as sbx-ls --json shows it, with "clock_error" when the
 * guest clock could not be set.  Errors: not_found for an unknown or
 * stopped sandbox, state for pausing a paused one or resuming a running
 * one.  Returns 0 or < 0. */
int omr_sandbox_pause(const struct omr_config *c, const char *id, json_t **out,
		      struct omr_err **err);
int omr_sandbox_resume(const struct omr_config *c, const char *id, json_t **out,
		       struct omr_err **err);
/* Saves a running or paused sandbox to its state dir, encrypted, and
 * stops it (no VMM, no monitor: state "persisted"); omr_sandbox_resume
 * starts it again, also after a reboot. */
int omr_sandbox_persist(const struct omr_config *c, const char *id, json_t **out,
			struct omr_err **err);
/* The sandbox ends seconds from now (1 to the config's max_timeout:
 * longer or shorter than before), paused or not; end reason "timeout".
 * *out as above.  Returns 0 or < 0. */
int omr_sandbox_set_timeout(const struct omr_config *c, const char *id, uint64_t seconds,
			    json_t **out, struct omr_err **err);

#endif
