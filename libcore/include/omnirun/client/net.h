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

/* sbx-net's commands, one call each. */
enum omr_net_cmd {
	OMR_NET_POLICY,     /* *out: the policy (after change) */
	OMR_NET_STATS,      /* *out: the counters */
	OMR_NET_EXPOSE,     /* *out: the exposure (omr_expose_json) */
	OMR_NET_UNEXPOSE,   /* *out: NULL */
	OMR_NET_EXPOSURES,  /* *out: an array of exposures */
	OMR_NET_FORWARD,    /* in_fd and out_fd spliced to the port; *out NULL */
};

struct omr_net_req {
	enum omr_net_cmd cmd;
	struct omr_net_change change; /* policy */
	unsigned port;                /* expose, forward */
	int protect;                  /* expose: the URL needs the owner's token */
	const char *exposure;         /* unexpose: its id */
	int in_fd, out_fd;            /* forward */
};

/* The command named name, or -1; *takes_arg: whether it takes an operand
 * (a port or an exposure id). */
int omr_net_cmd_parse(const char *name, int *takes_arg);

/* Runs req against sandbox id.  Returns 0 or < 0. */
int omr_client_net(const struct omr_config *c, const char *id, const struct omr_net_req *req,
		   json_t **out, struct omr_err **err);

#endif
