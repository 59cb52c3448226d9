/* The REST API (DESIGN.md §7, doc/openapi.yaml), served by sbx-shim on
 * libmicrohttpd: routes, authentication by token, per-user ownership and
 * limits.  Routes live in one table (api-internal.h) that other areas'
 * routes join. */
#ifndef OMNIRUN_API_H
#define OMNIRUN_API_H

#include <jansson.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

struct omr_api;

/* Starts serving on listen ("ADDR:PORT", IPv4 or [IPv6]; NULL: the
 * config's [api] listen), with TLS when the config names a certificate
 * and a key.  Requests are served on threads of their own until
 * omr_api_stop.  Returns 0 or < 0. */
int omr_api_start(const struct omr_config *c, const char *listen, struct omr_api **out,
		  struct omr_err **err);
/* Starts the E2B-compatible listener (doc/e2b.md) on listen (NULL: the
 * config's [e2b] listen, which must then be set): E2B's REST routes and
 * envd's, mapped onto OmniRun's sandboxes with the same accounts,
 * limits and audit.  Stop it with omr_api_stop.  Returns 0 or < 0. */
int omr_api_start_e2b(const struct omr_config *c, const char *listen, struct omr_api **out,
		      struct omr_err **err);
/* The port actually bound (for "ADDR:0"). */
unsigned omr_api_port(const struct omr_api *a);
/* Stops accepting, finishes nothing more, frees. */
void omr_api_stop(struct omr_api *a);

/* The route table: [{method, path}] with paths in OpenAPI form
 * (/sandboxes/{id}), in the order they are matched (new ref). */
json_t *omr_api_routes(void);

/* The OpenAPI document served at /openapi.json (doc/openapi.yaml, built
 * in), as JSON text. */
extern const char omr_api_openapi_json[];

#endif
