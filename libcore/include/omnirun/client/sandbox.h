/* Sandbox lifecycle: create and kill (DESIGN.md §4).  The record itself
 * is omnirun/state/record.h. */
#ifndef OMNIRUN_CLIENT_SANDBOX_H
#define OMNIRUN_CLIENT_SANDBOX_H

#include "omnirun/state/record.h"

/* --- lifecycle (sandbox.c) --- */

struct omr_create_opts {
	const char *template_name;   /* NULL: the config's default */
	unsigned cpus, memory_mb, disk_mb;   /* 0: template's, then config's */
	unsigned processes;          /* in the guest; 0: config default */
	unsigned timeout_s;          /* 0: config default */
	unsigned idle_timeout_s;     /* 0: config default; UINT32_MAX: none */
	int internet;                /* NAT out of the configured uplink */
	const char *const *allow;    /* host names ("*.x" too) the egress
					proxy lets through; nallow of them */
	size_t nallow;
};

/* Validates the options, spawns sbx-monitor and waits until the guest agent
 * has answered.  On failure nothing is left behind and the error message
 * ends with the tail of the console log when that helps. */
int omr_sandbox_create(const struct omr_config *c, const struct omr_create_opts *o,
		       struct omr_sandbox *out, struct omr_err **err);

/* Tears a sandbox down: asks its monitor, or kills the monitor and the VMM
 * and cleans up itself when the monitor does not answer.  Keeps the record
 * (state stopped) as history.  -ENOENT for an unknown id; 0 when it was
 * already stopped. */
int omr_sandbox_kill(const struct omr_config *c, const char *id, const char *reason,
		     struct omr_err **err);

#endif
