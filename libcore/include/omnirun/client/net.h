/* A running sandbox's network, through its monitor (sbx-net, the shim):
 * the policy, shown or changed atomically, and the stats. */
#ifndef OMNIRUN_CLIENT_NET_H
#define OMNIRUN_CLIENT_NET_H

#include <jansson.h>
#include <stddef.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

struct omr_net_change {
	int internet;                  /* 1 on, 0 off, -1 as it is */
	const char *const *allow;      /* names to add (nallow) */
	size_t nallow;
	const char *const *deny;       /* names to remove (ndeny) */
	size_t ndeny;
};

/* Applies ch (nothing to change: just shows) and fills *out with the
 * sandbox's network: {address, gateway, prefix, internet, allow[], mode,
 * changed}.  Names are checked here first (a usage error names the bad
 * one).  Returns 0 or < 0. */
int omr_client_net_policy(const struct omr_config *c, const char *id,
			  const struct omr_net_change *ch, json_t **out, struct omr_err **err);

/* The sandbox's network counters (see omr_net_stats in omnirun/net/net.h
 * for the shape).  Returns 0 or < 0. */
int omr_client_net_stats(const struct omr_config *c, const char *id, json_t **out,
			 struct omr_err **err);

#endif
