/* Pause, resume and the lifetime of a live sandbox, asked of its monitor
 * (libcore/monitor/lifecycle.c does the work); see
 * omnirun/client/sandbox.h. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/sandbox.h"

/* QMP's bound, the clock's and a margin for a loaded host. */
#define LIFECYCLE_CALL_MS 20000

/* Sends req to sandbox id's monitor and waits for its END.  A sandbox
 * that ended is "not found" here, as a deleted one is to the API: there
 * is nothing left to pause, resume or extend. */
static int monitor_op(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		      struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	struct omr_sandbox sb;
	json_t *ans = NULL;
	int rc;

	if (out)
		*out = NULL;
	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such live sandbox '%s' (it "
				    "stopped: %s)", id, sb.end_reason);
	fd = omr_client_connect(c, id, err);
	if (fd < 0)
		return -1;
	rc = omr_client_call(fd, 1, req, LIFECYCLE_CALL_MS, &ans, err);
	if (rc == 0 && out)
		*out = ans;
	else
		json_decref(ans);
	return rc;
}

static int simple_op(const struct omr_config *c, const char *id, const char *op, json_t **out,
		     struct omr_err **err)
{
	json_t *req = json_pack("{s:s}", "op", op);
	int rc = monitor_op(c, id, req, out, err);

	json_decref(req);
	return rc;
}

int omr_sandbox_pause(const struct omr_config *c, const char *id, json_t **out,
		      struct omr_err **err)
{
	return simple_op(c, id, "pause", out, err);
}

int omr_sandbox_resume(const struct omr_config *c, const char *id, json_t **out,
		       struct omr_err **err)
{
	return simple_op(c, id, "resume", out, err);
}

int omr_sandbox_set_timeout(const struct omr_config *c, const char *id, uint64_t seconds,
			    json_t **out, struct omr_err **err)
{
	json_t *req;
	int rc;

	/* The monitor checks it too; this says it before any connection. */
	if (seconds < 1 || seconds > c->max_timeout_s)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE, "invalid timeout '%llu': must be "
				    "between 1 and %u s (max_timeout)", (unsigned long long)seconds,
				    c->max_timeout_s);
	req = json_pack("{s:s, s:I}", "op", "set_timeout", "seconds", (json_int_t)seconds);
	rc = monitor_op(c, id, req, out, err);
	json_decref(req);
	return rc;
}
