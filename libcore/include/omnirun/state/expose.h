/* Exposures (DESIGN.md §6 "Ingress"): ports of a sandbox's guest offered
 * at preview URLs http(s)://PORT-SANDBOXID.DOMAIN, where SANDBOXID is the
 * id without its "_" (not valid in a host name).  Kept per sandbox in
 * $state_dir/sandboxes/ID/exposures.json, rewritten atomically under the
 * sandbox's lock; the bytes travel through a forward
 * (omnirun/client/forward.h), so no network route into the guest is
 * needed. */
#ifndef OMNIRUN_STATE_EXPOSE_H
#define OMNIRUN_STATE_EXPOSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/base/ids.h"
#include "omnirun/state/config.h"

#define OMR_EXPOSE_MAX 32          /* exposures per sandbox */
#define OMR_EXPOSE_ID_PREFIX "ex_"
#define OMR_EXPOSE_ID_MAX OMR_ID_MAX

/* The port of an exposure of every port of the guest: what a sandbox
 * created through the E2B endpoint has (E2B offers all its ports at
 * getHost(port)); a port's own exposure wins over it. */
#define OMR_EXPOSE_ALL 0u

struct omr_exposure {
	char id[OMR_EXPOSE_ID_MAX]; /* ex_ + 10 base32 characters */
	unsigned port;              /* 1..65535 in the guest, or OMR_EXPOSE_ALL */
	int protected_;             /* 1: a bearer token of the sandbox's
				       owner is needed; 0: public */
	int64_t created_at;         /* seconds since the epoch */
};

/* A well-formed exposure id ("ex_" + 8..32 of [a-z2-7])? */
int omr_expose_id_valid(const char *s);

/* Exposes port (or OMR_EXPOSE_ALL) of sandbox id (live: not stopped).  A port exposed
 * already is a state error naming its exposure; past OMR_EXPOSE_MAX a
 * limit error.  *out gets the new exposure.  Returns 0 or < 0. */
int omr_expose_add(const struct omr_config *c, const char *id, unsigned port, int protect,
		   struct omr_exposure *out, struct omr_err **err);
/* Removes exposure eid of sandbox id (not_found when it has none such).
 * Returns 0 or < 0. */
int omr_expose_remove(const struct omr_config *c, const char *id, const char *eid,
		      struct omr_err **err);
/* The exposures of sandbox id, oldest first (*out malloc'ed, may be NULL
 * when *n is 0); none once it stopped.  Returns 0 or < 0. */
int omr_expose_list(const struct omr_config *c, const char *id, struct omr_exposure **out,
		    size_t *n, struct omr_err **err);
/* The exposure of port (its own, else the one of every port), or a
 * not_found error.  Returns 0 or < 0. */
int omr_expose_find(const struct omr_config *c, const char *id, unsigned port,
		    struct omr_exposure *out, struct omr_err **err);

/* The host name of port of sandbox id: "PORT-sbXXXX.DOMAIN" ("*-sbXXXX..."
 * for OMR_EXPOSE_ALL; malloc'ed),
 * and the URL "SCHEME://HOST/" of the config. */
char *omr_expose_host(const struct omr_config *c, const char *id, unsigned port);
char *omr_expose_url(const struct omr_config *c, const char *id, unsigned port);
/* {id, port, url, protected, createdAt}: what the CLI and the API show. */
json_t *omr_expose_json(const struct omr_config *c, const char *id, const struct omr_exposure *e);

/* The sandbox's exposures as a JSON array of omr_expose_json objects (the
 * shape sbx-net --json and GET /sandboxes/:id/exposures share), or NULL
 * and *err. */
json_t *omr_expose_list_json(const struct omr_config *c, const char *id, struct omr_err **err);

/* Parses a Host header value against domain (normalized, lower case):
 * "PORT-sbXXXX.DOMAIN", case-insensitive, with an optional ":PORT" and
 * trailing dot; the label must be the only one before the domain, PORT
 * 1..65535 without leading zeros, and the id well formed (its "_" may be there, as E2B's getHost() writes it).  Fills id
 * ("sb_XXXX") and *port.  Returns 0, or < 0 with a usage error for
 * anything else. */
int omr_expose_host_parse(const char *host, const char *domain, char id[OMR_ID_MAX],
			  unsigned *port, struct omr_err **err);

#endif
