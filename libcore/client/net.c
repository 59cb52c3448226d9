/* A sandbox's network policy and stats over monitor.sock; see
 * omnirun/client/net.h. */
#include <errno.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/net.h"
#include "omnirun/state/netconf.h"

#define NET_CALL_TIMEOUT_MS 30000

static int call(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		struct omr_err **err)
{
	_cleanup_close_ int fd = omr_client_connect(c, id, err);
	int rc;

	if (fd < 0) {
		json_decref(req);
		return -1;
	}
	rc = omr_client_call(fd, 1, req, NET_CALL_TIMEOUT_MS, out, err);
	json_decref(req);
	return rc;
}

static json_t *names(const char *const *v, size_t n, struct omr_err **err)
{
	json_t *a = json_array();
	char out[OMR_HOST_MAX];

	for (size_t i = 0; i < n; i++) {
		if (omr_host_normalize(v[i], 1, out, err) < 0) {
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, json_string(out));
	}
	return a;
}

int omr_client_net_policy(const struct omr_config *c, const char *id,
			  const struct omr_net_change *ch, json_t **out, struct omr_err **err)
{
	json_t *allow = names(ch->allow, ch->nallow, err), *deny = NULL, *req;

	*out = NULL;
	if (!allow || !(deny = names(ch->deny, ch->ndeny, err))) {
		json_decref(allow);
		return -1;
	}
	req = json_pack("{s:s, s:o, s:o}", "op", "net_policy", "allow", allow, "deny", deny);
	if (ch->internet >= 0)
		json_object_set_new(req, "internet", json_boolean(ch->internet));
	return call(c, id, req, out, err);
}

int omr_client_net_stats(const struct omr_config *c, const char *id, json_t **out,
			 struct omr_err **err)
{
	*out = NULL;
	return call(c, id, json_pack("{s:s}", "op", "net_stats"), out, err);
}
