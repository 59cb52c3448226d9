/* A sandbox's network policy and stats over monitor.sock, its exposures
 * and port forwards; see omnirun/client/net.h. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/forward.h"
#include "omnirun/client/net.h"
#include "omnirun/state/expose.h"
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

static const struct {
	const char *name;
	enum omr_net_cmd cmd;
	int takes_arg;
} net_cmds[] = {
	{ "policy", OMR_NET_POLICY, 0 },       { "stats", OMR_NET_STATS, 0 },
	{ "expose", OMR_NET_EXPOSE, 1 },       { "unexpose", OMR_NET_UNEXPOSE, 1 },
	{ "exposures", OMR_NET_EXPOSURES, 0 }, { "forward", OMR_NET_FORWARD, 1 },
};

int omr_net_cmd_parse(const char *name, int *takes_arg)
{
	for (size_t i = 0; i < sizeof(net_cmds) / sizeof(net_cmds[0]); i++)
		if (!strcmp(net_cmds[i].name, name)) {
			*takes_arg = net_cmds[i].takes_arg;
			return (int)net_cmds[i].cmd;
		}
	return -1;
}

int omr_client_net(const struct omr_config *c, const char *id, const struct omr_net_req *req,
		   json_t **out, struct omr_err **err)
{
	struct omr_exposure e;
	int fd, rc;

	*out = NULL;
	switch (req->cmd) {
	case OMR_NET_POLICY:
		return omr_client_net_policy(c, id, &req->change, out, err);
	case OMR_NET_STATS:
		return omr_client_net_stats(c, id, out, err);
	case OMR_NET_EXPOSE:
		if (omr_expose_add(c, id, req->port, req->protect, &e, err) < 0)
			return -1;
		*out = omr_expose_json(c, id, &e);
		return 0;
	case OMR_NET_UNEXPOSE:
		return omr_expose_remove(c, id, req->exposure, err);
	case OMR_NET_EXPOSURES:
		return (*out = omr_expose_list_json(c, id, err)) ? 0 : -1;
	case OMR_NET_FORWARD:
		if ((fd = omr_forward_open(c, id, req->port, err)) < 0)
			return -1;
		rc = omr_forward_splice(fd, req->in_fd, req->out_fd, 0, err);
		close(fd);
		return rc;
	}
	return omr_err_setx(err, OMR_E_USAGE, EINVAL, "unknown network command");
}
