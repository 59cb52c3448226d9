/* A pooled sandbox's claim (issue 9, the warm pool): the monitor of a
 * sandbox that waits in its template's pool hands it to the create that
 * asked, with that create's lifetime, idle rule and network policy, and
 * the client's uid as its owner.  The monitor is the one place a claim
 * is decided: its loop runs one request at a time, so two creates never
 * get the same sandbox. */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/net/net.h"

/* An optional integer member between min and max: 0 (absent or set) or
 * < 0 with *err. */
static int get_uint(json_t *req, const char *key, uint64_t min, uint64_t max, unsigned *out,
		    struct omr_err **err)
{
	json_t *v = json_object_get(req, key);
	json_int_t n;

	if (!v)
		return 0;
	n = json_is_integer(v) ? json_integer_value(v) : -1;
	if (n < (json_int_t)min || (uint64_t)n > max)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE, "\"%s\" must be an integer between "
				    "%llu and %llu", key, (unsigned long long)min,
				    (unsigned long long)max);
	*out = (unsigned)n;
	return 0;
}

/* What the claim asks of the sandbox, checked as a create checks it:
 * {"timeout", "idle_timeout", "idle_action", "internet", "allow": [...]},
 * each optional (absent: as it is). */
static int read_claim(struct mon *m, json_t *req, struct omr_sandbox *sb, struct omr_err **err)
{
	json_t *act = json_object_get(req, "idle_action"), *inet = json_object_get(req, "internet");
	json_t *allow = json_object_get(req, "allow"), *v;
	unsigned timeout = 0;
	size_t i;

	if (get_uint(req, "timeout", 1, m->c->max_timeout_s, &timeout, err) < 0 ||
	    get_uint(req, "idle_timeout", 0, UINT32_MAX - 1, &sb->idle_timeout_s, err) < 0)
		return -1;
	if (act && (!json_is_string(act) || !*json_string_value(act) ||
		    !omr_idle_action_valid(json_string_value(act))))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "\"idle_action\" must be kill or pause");
	if (act)
		omr_strlcpy(sb->idle_action, json_string_value(act), sizeof(sb->idle_action));
	if (inet && !json_is_boolean(inet))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "\"internet\" must be true or false");
	if (inet)
		sb->net_internet = json_is_true(inet);
	if (allow && !json_is_array(allow))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "\"allow\" must be an array of names");
	json_array_foreach(allow, i, v) {
		if (!json_is_string(v))
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "\"allow\" must be an array of "
					    "names");
		if (omr_allow_add(sb->net_allow, json_string_value(v), err) < 0)
			return -1;
	}
	/* The lifetime counts from the claim: the sandbox is the caller's
	 * from now on, and created now as far as anyone can tell. */
	sb->created_at = (int64_t)(omr_wall_ms() / 1000);
	if (timeout) {
		sb->timeout_s = timeout;
		sb->expires_at = sb->created_at + timeout;
	} else {
		sb->timeout_s = sb->expires_at > sb->created_at
				? (unsigned)(sb->expires_at - sb->created_at) : 1;
	}
	return 0;
}

json_t *mon_pool_claim(struct mon *m, json_t *req, const struct mon_ticket *t)
{
	struct omr_sandbox sb = m->sb;
	_cleanup_close_ int lock = -1;
	struct omr_err *e = NULL;
	int policy = 0;

	if (!omr_sandbox_pooled(&m->sb))
		return omr_err_setx(&e, OMR_E_STATE, EALREADY, "sandbox %s is not in a pool "
				    "(claimed already)", m->sb.id), mon_error_json(e);
	if (m->run != MON_RUN_RUNNING)
		return omr_err_setx(&e, OMR_E_STATE, EBUSY, "pooled sandbox %s is not running",
				    m->sb.id), mon_error_json(e);
	if (read_claim(m, req, &sb, &e) < 0)
		return mon_error_json(e);
	lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
	if (lock < 0)
		return mon_error_json(e);
	policy = sb.net_internet != m->sb.net_internet || strcmp(sb.net_allow, m->sb.net_allow);
	if (policy && !m->net)
		return omr_err_setx(&e, OMR_E_STATE, ENOTCONN, "pooled sandbox %s has no network "
				    "for that policy", m->sb.id), mon_error_json(e);
	if (policy && omr_net_set_policy(m->net, sb.net_internet, sb.net_allow, &e) < 0)
		return mon_error_json(e);
	omr_strlcpy(sb.pool, "claimed", sizeof(sb.pool));
	sb.owner = mon_router_client_uid(m->router, t->ci);
	if (omr_sandbox_save(m->c, &sb, &e) < 0) {
		/* Still in the pool, as the record says: rules included. */
		if (policy)
			omr_net_set_policy(m->net, m->sb.net_internet, m->sb.net_allow, NULL);
		return mon_error_json(e);
	}
	m->sb = sb;
	/* Besides root, the one uid served from now on. */
	m->conns.owner = sb.owner;
	/* Idleness and the lifetime count from the claim; the guest's
	 * clock is set again (a pooled guest may have waited for hours). */
	mon_router_touch(m->router, omr_now_ms());
	mon_lifetime_reschedule(m);
	mon_clock_sync(m);
	omr_log(OMR_LOG_INFO, "sandbox %s claimed from the pool of %s by uid %u: %u s, idle %u s, "
		"internet %s, allow '%s'", sb.id, sb.template_name, (unsigned)sb.owner, sb.timeout_s,
		sb.idle_timeout_s, sb.net_internet ? "on" : "off", sb.net_allow);
	return omr_sandbox_json(&m->sb);
}
