/* The warm pool (issue 9): `[pool] NAME = N` in the config keeps N
 * sandboxes of template NAME started (restored from its snapshot where
 * one fits, else booted cold, each with its own identity) and claimed
 * by nobody: air-gapped, no idle timeout, the longest lifetime.  A
 * create of that template with the pool's shape (the template's
 * defaults) takes one in milliseconds instead of a boot; its monitor
 * gives it the create's lifetime, idle rule, network policy and owner
 * (op pool_claim).  Pooled sandboxes count against no API user until
 * claimed.  A filler refills a pool in the background after a create
 * of its template, one at a time per template.
 *
 *   $state_dir/pool/NAME.lock    held by the filler of NAME
 *   $state_dir/pool/NAME.log     the background filler's output
 *   $state_dir/pool/NAME.status  the last failure of NAME's pool
 *                                (JSON; gone once a fill succeeds) */
#ifndef OMNIRUN_CLIENT_POOL_H
#define OMNIRUN_CLIENT_POOL_H

#include <jansson.h>

#include "omnirun/state/record.h"

/* Takes a pooled sandbox that has want's template, shape (cpus, memory,
 * disk, processes) and accelerator, and gives it want's lifetime, idle
 * timeout and action and network policy.  Returns 1 with *out, or 0
 * when none could be taken (the create then boots one): a pooled
 * sandbox whose claim failed for another reason than a concurrent claim
 * is killed, and the pool's status says why.  Starts the background
 * filler when the pool is short. */
int omr_pool_claim(const struct omr_config *c, const struct omr_sandbox *want,
		   struct omr_sandbox *out);

/* Fills the pool of template name up to its configured size (and trims
 * one that is larger: the size went down), one create at a time.  wait:
 * wait for a filler at work (else return 0 within a second, *made 0).
 * progress (may be NULL) hears each sandbox started.  A failure stops
 * the fill, leaves nothing of the create that failed and is written to
 * the pool's status.  Returns 0 or < 0 (not_found: no [pool] for name). */
int omr_pool_fill(const struct omr_config *c, const char *name, int wait,
		  void (*progress)(void *user, const char *msg), void *user, unsigned *made,
		  struct omr_err **err);

/* Kills the sandboxes waiting in name's pool (NULL: in every pool),
 * after any filler at work is done.  *killed gets how many.  Returns 0
 * or < 0. */
int omr_pool_drain(const struct omr_config *c, const char *name, unsigned *killed,
		   struct omr_err **err);

/* The pools as an array of {template, size, ready, starting, sandboxes:
 * [ids], filling, last_error, last_error_at}: every pool in the config,
 * and every template that still has pooled sandboxes.  Returns a new
 * reference, or NULL with *err. */
json_t *omr_pool_json(const struct omr_config *c, struct omr_err **err);

/* Starts a filler for name's pool in the background (sbx-monitor
 * --fill-pool NAME, detached, its output appended to the pool's log),
 * unless one is at work or the last fill failed less than a minute ago. */
void omr_pool_refill_background(const struct omr_config *c, const char *name);

#endif
