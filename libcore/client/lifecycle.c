/* Pause, resume and the lifetime of a live sandbox, asked of its monitor
 * (libcore/monitor/lifecycle.c does the work); see
 * omnirun/client/sandbox.h. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"
#include "omnirun/client/client.h"
#include "omnirun/state/fork.h"
#include "omnirun/client/sandbox.h"

/* QMP's bound, the clock's and a margin for a loaded host. */
#define LIFECYCLE_CALL_MS 20000

/* Sends req to sandbox id's monitor and waits for its END.  A sandbox
 * that ended is "not found" here, as a deleted one is to the API: there
 * is nothing left to pause, resume or extend. */
static int monitor_op_ms(const struct omr_config *c, const char *id, json_t *req, int ms,
			 json_t **out, struct omr_err **err)
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
	if (sb.state == OMR_SB_PERSISTED)
		return omr_err_setx(err, OMR_E_STATE, EALREADY, "sandbox %s is persisted: resume it "
				    "first (sbx-resume %s)", id, id);
	fd = omr_client_connect(c, id, err);
	if (fd < 0)
		return -1;
	rc = omr_client_call(fd, 1, req, ms, &ans, err);
	if (rc == 0 && out)
		*out = ans;
	else
		json_decref(ans);
	return rc;
}

static int monitor_op(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		      struct omr_err **err)
{
	return monitor_op_ms(c, id, req, LIFECYCLE_CALL_MS, out, err);
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
	struct omr_sandbox sb;

	if (out)
		*out = NULL;
	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_PERSISTED) {
		if (omr_sandbox_restart(c, id, &sb, err) < 0)
			return -1;
		if (out)
			*out = omr_sandbox_json(&sb);
		return 0;
	}
	return simple_op(c, id, "resume", out, err);
}

/* The save streams the whole guest out (QEMU's bound is 2 min), then the
 * disk is named and synced. */
#define PERSIST_CALL_MS 180000

int omr_sandbox_persist(const struct omr_config *c, const char *id, json_t **out,
			struct omr_err **err)
{
	json_t *req = json_pack("{s:s}", "op", "persist");
	struct omr_sandbox sb;
	int rc;

	if (omr_sandbox_load(c, id, &sb, err) < 0) {
		json_decref(req);
		return -1;
	}
	if (sb.state == OMR_SB_PERSISTED) {
		json_decref(req);
		return omr_err_setx(err, OMR_E_STATE, EALREADY, "sandbox %s is persisted already", id);
	}
	rc = monitor_op_ms(c, id, req, PERSIST_CALL_MS, out, err);
	json_decref(req);
	if (rc == 0) {
		/* The monitor ends once it answered: wait, so that nothing of
		 * it is left when we return. */
		_cleanup_close_ int pfd = omr_pidfd_open(sb.monitor_pid);
		if (pfd >= 0 && omr_sandbox_monitor_alive(c, &sb))
			omr_pidfd_wait(pfd, 10000);
	}
	return rc;
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

/* --- fork --- */

/* The source's save: QEMU's own bound on the migration (2 min), the disk
 * copies, and a margin. */
#define FORK_SAVE_MS 300000

int omr_sandbox_fork(const struct omr_config *c, const char *id, unsigned n,
		     void (*progress)(void *user, const char *msg), void *user,
		     struct omr_sandbox *out, struct omr_err **err)
{
	char key[OMR_ID_MAX];
	struct omr_sandbox src;
	_cleanup_close_ int lock = -1;
	json_t *req = NULL;
	unsigned made = 0;
	int rc = -1;

	if (n < 1 || n > OMR_FORK_MAX)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE, "invalid count '%u': must be between "
				    "1 and %d", n, OMR_FORK_MAX);
	if (omr_sandbox_load(c, id, &src, err) < 0)
		return -1;
	if (src.state != OMR_SB_RUNNING && src.state != OMR_SB_PAUSED)
		return omr_err_setx(err, src.state == OMR_SB_STOPPED ? OMR_E_NOT_FOUND : OMR_E_STATE,
				    src.state == OMR_SB_STOPPED ? ENOENT : EBUSY,
				    "no such live sandbox '%s' (it is %s)", id,
				    omr_sb_state_name(src.state));
	if (omr_id_new(key, err) < 0)
		return -1;
	lock = omr_fork_dirs_make(c, key, err);
	if (lock < 0)
		goto out;
	if (progress)
		progress(user, "saving the sandbox's memory and disk");
	req = json_pack("{s:s, s:s, s:I}", "op", "fork_save", "key", key, "count", (json_int_t)n);
	if (monitor_op_ms(c, id, req, FORK_SAVE_MS, NULL, err) < 0)
		goto out;
	for (made = 0; made < n; made++) {
		_cleanup_free_ char *ref = omr_strdup_printf("%s.%u", key, made);
		struct omr_create_opts o = { .template_name = src.template_name, .fork_src = &src,
					     .fork_ref = ref };
		if (progress) {
			_cleanup_free_ char *msg = omr_strdup_printf("starting copy %u of %u", made + 1, n);
			progress(user, msg);
		}
		if (omr_sandbox_create(c, &o, &out[made], err) < 0) {
			omr_err_wrap(err, "fork %u of %u", made + 1, n);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(req);
	/* All or nothing. */
	for (unsigned i = 0; rc < 0 && i < made; i++)
		omr_sandbox_kill(c, out[i].id, "killed", NULL);
	omr_fork_dirs_remove(c, key);
	return rc;
}
