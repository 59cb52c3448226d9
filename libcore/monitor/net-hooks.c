/* The monitor's side of the sandbox network (omnirun/net/net.h): made
 * before QEMU starts (its tap goes to QEMU as an fd), the guest configured
 * through its agent once it said HELLO, the DNS responder and the proxy
 * run on the monitor's event loop, the policy changed and the stats read
 * by monitor ops, the events written to events.jsonl, and all of it gone
 * at teardown. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/net/net.h"

#define EVENTS_MAX (4u << 20)
#define NET_CONFIG_TIMEOUT_MS 10000
/* The stream id of the monitor's own net_config request. */
#define OWN_GSID (MON_OWN_GSID_MIN + 1)

static void event_write(void *user, json_t *ev)
{
	struct mon *m = user;
	json_t *line = json_deep_copy(ev);
	char *s;

	if (m->events_fd < 0 || !line)
		return;
	json_object_set_new(line, "time", json_integer((json_int_t)omr_wall_ms()));
	s = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (!s)
		return;
	/* Bounded like the command history: the first EVENTS_MAX bytes. */
	if (lseek(m->events_fd, 0, SEEK_END) + (off_t)strlen(s) < (off_t)EVENTS_MAX) {
		size_t n = strlen(s);
		s[n] = '\n';
		(void)!write(m->events_fd, s, n + 1);
	}
	free(s);
}

int mon_net_open(struct mon *m, struct omr_err **err)
{
	struct omr_net_opts o = { .c = m->c, .id = m->sb.id, .guest_addr = m->sb.net_addr,
				  .internet = m->sb.net_internet, .allow = m->sb.net_allow,
				  .event = event_write, .user = m };
	struct omr_err *e = NULL;

	m->events_fd = openat(m->state_fd, "events.jsonl",
			      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (!m->sb.net_addr[0])
		return 0; /* a record from before networks: no NIC */
	if (omr_net_open(&o, &m->net, &e) == 0)
		return 0;
	/* Without the right to make namespaces (not root), an air-gapped
	 * sandbox still runs: with no NIC at all. */
	if (omr_err_kind(e) == OMR_E_DENIED && !m->sb.net_internet && !m->sb.net_allow[0]) {
		omr_log(OMR_LOG_WARN, "%s; the sandbox runs without a network device", e->msg);
		omr_err_free(&e);
		m->sb.net_addr[0] = 0;
		return 0;
	}
	if (err && !*err)
		*err = e;
	else
		omr_err_free(&e);
	return omr_err_wrap(err, "network");
}

void mon_net_own_end(void *user, uint32_t gsid, const uint8_t *p, size_t len)
{
	struct mon *m = user;
	json_t *j, *e;

	if (gsid != OWN_GSID || m->net_config_done)
		return;
	j = json_loadb((const char *)p, len, 0, NULL);
	e = json_object_get(j, "error");
	m->net_config_done = e ? -1 : 1;
	if (e)
		m->net_config_error = omr_xstrdup(json_is_string(e) ? json_string_value(e) : "?");
	json_decref(j);
	omr_loop_quit(m->loop, 0);
}

static void net_config_timeout(void *user)
{
	omr_loop_quit(((struct mon *)user)->loop, 1);
}

/* Hands the guest its network over the agent channel and waits (on the
 * loop, so that a dying QEMU or guest is seen) for the answer. */
static int configure_guest(struct mon *m, struct omr_err **err)
{
	json_t *req = omr_net_guest_request(m->net);
	char *s = json_dumps(req, JSON_COMPACT);
	uint64_t timer;
	int rc;

	json_decref(req);
	if (!s)
		abort();
	mon_router_own_request(m->router, OWN_GSID, s, strlen(s));
	free(s);
	mon_conns_kick(&m->conns);
	timer = omr_loop_add_timer(m->loop, NET_CONFIG_TIMEOUT_MS, net_config_timeout, m);
	rc = omr_loop_run(m->loop);
	omr_loop_cancel_timer(m->loop, timer);
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "cannot wait for events");
	if (m->net_config_done < 0)
		return omr_err_setx(err, OMR_E_BOOT, 0, "the guest agent could not set up its "
				    "network: %s", m->net_config_error);
	if (m->net_config_done == 0)
		return omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT, "%s", m->end_reason
				    ? "the sandbox ended while its network was set up"
				    : "the guest agent did not take its network settings in time");
	return 0;
}

int mon_net_start(struct mon *m, struct omr_err **err)
{
	if (!m->net)
		return 0;
	if (configure_guest(m, err) < 0 || omr_net_attach(m->net, m->loop, err) < 0)
		return -1;
	return 0;
}


static json_t *usage_json(const char *msg)
{
	struct omr_err *e = NULL;

	omr_err_setx(&e, OMR_E_USAGE, EINVAL, "%s", msg);
	return mon_error_json(e);
}

/* Applies {"internet"?, "allow": [...], "deny": [...]} and records it. */
static json_t *policy(struct mon *m, json_t *req)
{
	json_t *inet = json_object_get(req, "internet"), *v;
	char allow[OMR_ALLOW_MAX];
	struct omr_err *e = NULL;
	int internet = m->sb.net_internet, changed;
	size_t i;

	memcpy(allow, m->sb.net_allow, sizeof(allow));
	if (inet && !json_is_boolean(inet))
		return usage_json("\"internet\" must be true or false");
	if (inet)
		internet = json_is_true(inet);
	json_array_foreach(json_object_get(req, "allow"), i, v) {
		if (!json_is_string(v))
			return usage_json("\"allow\" must be an array of host names");
		if (omr_allow_add(allow, json_string_value(v), &e) < 0)
			return mon_error_json(e);
	}
	json_array_foreach(json_object_get(req, "deny"), i, v) {
		if (!json_is_string(v))
			return usage_json("\"deny\" must be an array of host names");
		if (omr_allow_remove(allow, json_string_value(v), &e) < 0)
			return mon_error_json(e);
	}
	changed = internet != m->sb.net_internet || strcmp(allow, m->sb.net_allow);
	if (changed) {
		_cleanup_close_ int lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
		struct omr_sandbox old = m->sb;

		if (lock < 0 || omr_net_set_policy(m->net, internet, allow, &e) < 0)
			return mon_error_json(e);
		m->sb.net_internet = internet;
		memcpy(m->sb.net_allow, allow, sizeof(allow));
		if (omr_sandbox_save(m->c, &m->sb, &e) < 0) {
			/* The record and the rules never disagree. */
			omr_net_set_policy(m->net, old.net_internet, old.net_allow, NULL);
			m->sb = old;
			return mon_error_json(e);
		}
		omr_log(OMR_LOG_INFO, "network policy: internet %s, allow '%s'",
			internet ? "on" : "off", allow);
	}
	v = omr_sandbox_network_json(&m->sb);
	json_object_set_new(v, "changed", json_boolean(changed));
	return v;
}

json_t *mon_net_request(void *user, const char *op, json_t *req)
{
	struct mon *m = user;
	struct omr_err *e = NULL;

	if (strncmp(op, "net_", 4))
		return NULL; /* not ours: the agent's */
	if (!m->net) {
		omr_err_setx(&e, OMR_E_STATE, ENOTCONN, "sandbox %s has no network", m->sb.id);
		return mon_error_json(e);
	}
	if (!strcmp(op, "net_stats"))
		return omr_net_stats(m->net);
	if (!strcmp(op, "net_policy"))
		return policy(m, req);
	omr_err_setx(&e, OMR_E_USAGE, EINVAL, "unknown op '%s'", op);
	return mon_error_json(e);
}

void mon_net_close(struct mon *m)
{
	omr_net_close(m->net);
	m->net = NULL;
	free(m->net_config_error);
	m->net_config_error = NULL;
	if (m->events_fd >= 0)
		close(m->events_fd);
	m->events_fd = -1;
}
