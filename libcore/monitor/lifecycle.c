/* Pause, resume and the lifetime (issue 9): the monitor stops its VMM's
 * CPUs over QMP and restarts them, sets the guest's clock after a
 * resume, and moves the sandbox's expiry.  QMP is spoken on the event
 * loop (omr_qmp_call_start), so clients are served while QEMU answers;
 * the client that asked gets its answer when the work is done. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"

/* The stream id of the monitor's own clock_set request. */
#define CLOCK_GSID (MON_OWN_GSID_MIN + 4) /* see monitor.c */

json_t *mon_error_json(struct omr_err *e)
{
	json_t *j = json_pack("{s:s, s:s}", "error", e && e->msg ? e->msg : "failed", "code",
			      omr_err_kind_info(omr_err_kind(e))->name);
	omr_err_free(&e);
	return j;
}

char *mon_meta_get(const char *text, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, n) && p[n] == '=')
			return strndup(p + n + 1, strcspn(p + n + 1, "\n"));
	return NULL;
}

/* Answers the client waiting on the pause or resume (if any). */
static void answer(struct mon *m, json_t *j)
{
	if (m->waiting) {
		m->waiting = 0;
		mon_router_answer(m->router, &m->waiter, j);
		mon_conns_kick(&m->conns);
	} else {
		json_decref(j);
	}
}

/* Writes the record under its lock. */
static int save(struct mon *m, struct omr_err **err)
{
	_cleanup_close_ int lock = omr_sandbox_lock(m->c, m->sb.id, 10000, err);

	if (lock < 0)
		return -1;
	return omr_sandbox_save(m->c, &m->sb, err);
}

/* The record as sbx-ls --json shows it, and what the resume did to the
 * clock. */
static json_t *record_json(struct mon *m)
{
	json_t *j = omr_sandbox_json(&m->sb);

	if (m->clock_error)
		json_object_set_new(j, "clock_error", json_string(m->clock_error));
	return j;
}

/* --- pause --- */

static void stopped(void *user, json_t *ret, struct omr_err *e)
{
	struct mon *m = user;
	struct omr_err *se = NULL;

	(void)ret;
	m->qmp = NULL;
	if (e) {
		omr_log(OMR_LOG_ERR, "pause: %s", e->msg);
		m->run = MON_RUN_RUNNING;
		answer(m, json_pack("{s:s, s:s}", "error", e->msg, "code",
				    omr_err_kind_info(omr_err_kind(e))->name));
		return;
	}
	m->run = MON_RUN_PAUSED;
	m->sb.state = OMR_SB_PAUSED;
	m->sb.paused_at = (int64_t)(omr_wall_ms() / 1000);
	if (save(m, &se) < 0) {
		/* The VM is paused whatever the record says; sbx-resume
		 * works from the monitor's own state. */
		omr_log(OMR_LOG_ERR, "pause: %s", se->msg);
		answer(m, mon_error_json(se));
		return;
	}
	omr_log(OMR_LOG_INFO, "sandbox %s paused%s", m->sb.id, m->waiting ? "" : " (idle)");
	answer(m, record_json(m));
}

/* Stops the VMM's CPUs; t: who to answer (NULL: idleness did it).
 * Returns what the router answers now (json_null(): later). */
json_t *mon_pause(struct mon *m, const struct mon_ticket *t)
{
	struct omr_err *e = NULL;

	if (m->run == MON_RUN_PAUSED)
		omr_err_setx(&e, OMR_E_STATE, EALREADY, "sandbox %s is paused already", m->sb.id);
	else if (m->run != MON_RUN_RUNNING)
		omr_err_setx(&e, OMR_E_STATE, EBUSY, "sandbox %s is being %s", m->sb.id,
			     m->run == MON_RUN_PAUSING ? "paused" : "resumed");
	else if (m->vmm.pid <= 0)
		omr_err_setx(&e, OMR_E_STATE, ESRCH, "sandbox %s has no VMM", m->sb.id);
	if (!e)
		m->qmp = omr_qmp_call_start(m->loop, m->qmp_path, "stop", NULL, MON_QMP_TIMEOUT_MS,
					    stopped, m, &e);
	if (e)
		return mon_error_json(e);
	m->run = MON_RUN_PAUSING;
	m->waiting = t != NULL;
	if (t)
		m->waiter = *t;
	return json_null();
}

/* --- resume --- */

static void resumed(struct mon *m)
{
	if (m->clock_timer)
		omr_loop_cancel_timer(m->loop, m->clock_timer);
	m->clock_timer = 0;
	m->run = MON_RUN_RUNNING;
	omr_log(OMR_LOG_INFO, "sandbox %s resumed%s%s", m->sb.id,
		m->clock_error ? "; guest clock not set: " : "",
		m->clock_error ? m->clock_error : "");
	answer(m, record_json(m));
}

static void clock_timeout(void *user)
{
	struct mon *m = user;

	m->clock_timer = 0;
	free(m->clock_error);
	m->clock_error = omr_xstrdup("the guest agent did not answer clock_set in time");
	resumed(m);
}

static void mon_clock_end(struct mon *m, const uint8_t *p, size_t len)
{
	json_t *j = json_loadb((const char *)p, len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));

	if (m->run == MON_RUN_RESUMING && m->clock_timer) {
		free(m->clock_error);
		m->clock_error = msg ? omr_str_escape_line(msg) : NULL;
		resumed(m);
	}
	json_decref(j);
}

/* The guest's clock stood still while it was paused: the host's time
 * goes to the agent, which sets it; the resume is answered when it did
 * (or MON_CLOCK_TIMEOUT_MS later). */
void mon_clock_sync(struct mon *m)
{
	_cleanup_free_ char *s = omr_strdup_printf("{\"op\":\"clock_set\",\"unix_ms\":%llu}",
						   (unsigned long long)omr_wall_ms());

	mon_router_own_request(m->router, CLOCK_GSID, s, strlen(s));
	mon_conns_kick(&m->conns);
}

static void set_guest_clock(struct mon *m)
{
	free(m->clock_error);
	m->clock_error = NULL;
	mon_clock_sync(m);
	m->clock_timer = omr_loop_add_timer(m->loop, MON_CLOCK_TIMEOUT_MS, clock_timeout, m);
}

static void continued(void *user, json_t *ret, struct omr_err *e)
{
	struct mon *m = user;
	struct omr_err *se = NULL;

	(void)ret;
	m->qmp = NULL;
	if (e) {
		omr_log(OMR_LOG_ERR, "resume: %s", e->msg);
		m->run = MON_RUN_PAUSED;
		answer(m, json_pack("{s:s, s:s}", "error", e->msg, "code",
				    omr_err_kind_info(omr_err_kind(e))->name));
		return;
	}
	m->sb.state = OMR_SB_RUNNING;
	m->sb.paused_at = 0;
	if (save(m, &se) < 0) {
		omr_log(OMR_LOG_ERR, "resume: %s", se->msg);
		omr_err_free(&se);
	}
	/* Idleness counts from the resume: the paused time was nobody's. */
	mon_router_touch(m->router, omr_now_ms());
	set_guest_clock(m);
}

json_t *mon_resume(struct mon *m, const struct mon_ticket *t)
{
	struct omr_err *e = NULL;

	if (m->run == MON_RUN_RUNNING)
		omr_err_setx(&e, OMR_E_STATE, EALREADY, "sandbox %s is not paused (running)",
			     m->sb.id);
	else if (m->run != MON_RUN_PAUSED)
		omr_err_setx(&e, OMR_E_STATE, EBUSY, "sandbox %s is being %s", m->sb.id,
			     m->run == MON_RUN_PAUSING ? "paused" : "resumed");
	if (!e)
		m->qmp = omr_qmp_call_start(m->loop, m->qmp_path, "cont", NULL, MON_QMP_TIMEOUT_MS,
					    continued, m, &e);
	if (e)
		return mon_error_json(e);
	m->run = MON_RUN_RESUMING;
	m->waiting = t != NULL;
	if (t)
		m->waiter = *t;
	return json_null();
}

/* --- the lifetime --- */

/* {"seconds": N}: the sandbox ends N seconds from now (1 to the
 * config's max_timeout), paused or not. */
static json_t *set_timeout(struct mon *m, json_t *req)
{
	json_t *v = json_object_get(req, "seconds");
	struct omr_err *e = NULL;
	int64_t old_exp = m->sb.expires_at;
	unsigned old_to = m->sb.timeout_s;
	json_int_t n = 0;

	if (!json_is_integer(v))
		omr_err_setx(&e, OMR_E_USAGE, EINVAL, "\"seconds\" must be an integer");
	else if ((n = json_integer_value(v)) < 1 || n > (json_int_t)m->c->max_timeout_s)
		omr_err_setx(&e, OMR_E_USAGE, ERANGE, "invalid timeout '%lld': must be between 1 "
			     "and %u s (max_timeout)", (long long)n, m->c->max_timeout_s);
	if (e)
		return mon_error_json(e);
	m->sb.expires_at = (int64_t)(omr_wall_ms() / 1000) + n;
	/* timeout stays the whole lifetime, as at create. */
	m->sb.timeout_s = (unsigned)(m->sb.expires_at - m->sb.created_at);
	if (save(m, &e) < 0) {
		m->sb.expires_at = old_exp;
		m->sb.timeout_s = old_to;
		return mon_error_json(e);
	}
	omr_log(OMR_LOG_INFO, "sandbox %s: lifetime set to %lld s from now", m->sb.id, (long long)n);
	mon_lifetime_reschedule(m);
	return record_json(m);
}

/* --- the router's hook --- */

json_t *mon_request(void *user, const char *op, json_t *req, const struct mon_ticket *t)
{
	struct mon *m = user;
	struct omr_err *e = NULL;

	if (!strcmp(op, "pause"))
		return mon_pause(m, t);
	if (!strcmp(op, "resume"))
		return mon_resume(m, t);
	if (!strcmp(op, "set_timeout"))
		return set_timeout(m, req);
	if (!strcmp(op, "pool_claim"))
		return mon_pool_claim(m, req, t);
	if (!strcmp(op, "fork_save"))
		return mon_fork_save(m, req);
	if (!strcmp(op, "persist"))
		return mon_persist(m);
	if (!strncmp(op, "net_", 4))
		return mon_net_request(user, op, req);
	if (m->run == MON_RUN_RUNNING)
		return NULL; /* the agent's */
	/* A frozen guest would not answer: say so instead of hanging the
	 * caller.  Resuming is the caller's choice (E2B's too), never a
	 * side effect of a command. */
	omr_err_setx(&e, OMR_E_STATE, EAGAIN, "sandbox %s is %s: resume it first (sbx-resume %s)",
		     m->sb.id, m->run == MON_RUN_RESUMING ? "being resumed" : "paused", m->sb.id);
	return mon_error_json(e);
}

void mon_own_end(void *user, uint32_t gsid, const uint8_t *p, size_t len)
{
	struct mon *m = user;

	if (gsid == CLOCK_GSID)
		mon_clock_end(m, p, len);
	else
		mon_net_own_end(user, gsid, p, len);
}

void mon_lifecycle_close(struct mon *m)
{
	omr_qmp_call_cancel(m->qmp);
	m->qmp = NULL;
	if (m->clock_timer && m->loop)
		omr_loop_cancel_timer(m->loop, m->clock_timer);
	m->clock_timer = 0;
	free(m->clock_error);
	m->clock_error = NULL;
}
