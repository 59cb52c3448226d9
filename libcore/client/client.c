/* Client side of monitor.sock; see omnirun/client.h. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/base/proto.h"
#include "omnirun/state/record.h"
#include "omnirun/base/util.h"

int omr_client_connect(const struct omr_config *c, const char *id, struct omr_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct omr_sandbox sb;

	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED)
		return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "sandbox %s is not running (stopped: %s)",
				   id, sb.end_reason);
	path = omr_sandbox_run_path(c, id, "monitor.sock");
	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "socket path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED) {
			if (!strcmp(omr_sandbox_shown_state(c, &sb), "lost"))
				return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "sandbox %s is lost: its "
						    "monitor is gone (sbx-gc cleans it up)", id);
			return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "sandbox %s is not running (%s)",
					    id, omr_sb_state_name(sb.state));
		}
		return omr_err_set(err, OMR_E_STATE, errno, "cannot connect to sandbox %s", id);
	}
	return omr_steal_fd(fd);
}

int omr_client_end_parse(const uint8_t *p, size_t len, json_t **out, struct omr_err **err)
{
	json_t *j = json_loadb((const char *)p, len, 0, NULL);
	const char *msg;

	*out = NULL;
	if (!json_is_object(j)) {
		json_decref(j);
		return omr_err_setx(err, OMR_E_FAIL, EPROTO, "malformed answer from the sandbox");
	}
	msg = json_string_value(json_object_get(j, "error"));
	if (msg) {
		const char *code = json_string_value(json_object_get(j, "code"));
		/* The guest's words: one line, whatever they hold. */
		_cleanup_free_ char *line = omr_str_escape_line(msg);
		int rc = omr_err_setx(err, omr_err_kind_from_code(code), omr_proto_errno(code),
				      "%s", line);
		json_decref(j);
		return rc;
	}
	*out = j;
	return 0;
}

/* A send failed because the monitor closed the connection: it says why
 * on stream 0 before it does (too many connections), and that is what
 * the user reads, never "Broken pipe". */
static int send_refused(int fd, int rc, struct omr_err **err)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct omr_frame_hdr h;
	_cleanup_free_ uint8_t *payload = NULL;
	json_t *j = NULL;

	if (rc != -EPIPE && rc != -ECONNRESET)
		return omr_err_set(err, OMR_E_STATE, -rc, "cannot send to the monitor");
	if (poll(&p, 1, 1000) == 1 && omr_frame_recv(fd, &h, &payload) == 0 &&
	    h.type == OMR_F_END && h.stream == 0 && omr_client_end_parse(payload, h.len, &j, err) < 0)
		return -1;
	json_decref(j);
	return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "the sandbox's monitor closed the connection");
}

int omr_client_send_json(int fd, uint8_t type, uint32_t sid, json_t *j, struct omr_err **err)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_COMPACT);
	int rc;

	if (!s)
		return omr_err_set(err, OMR_E_FAIL, ENOMEM, "cannot encode request");
	rc = omr_frame_send(fd, type, 0, sid, s, strlen(s));
	return rc < 0 ? send_refused(fd, rc, err) : 0;
}

int omr_client_call(int fd, uint32_t sid, json_t *req, int timeout_ms, json_t **out,
		    struct omr_err **err)
{
	uint64_t deadline = timeout_ms > 0 ? omr_now_ms() + (uint64_t)timeout_ms : 0;

	*out = NULL;
	if (omr_client_send_json(fd, OMR_F_REQ, sid, req, err) < 0)
		return -1;
	for (;;) {
		struct omr_frame_hdr h;
		_cleanup_free_ uint8_t *p = NULL;
		int rc;

		if (deadline) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			uint64_t now = omr_now_ms();
			if (now >= deadline ||
			    poll(&pfd, 1, (int)(deadline - now)) == 0)
				return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT, "no answer from the sandbox");
		}
		rc = omr_frame_recv(fd, &h, &p);
		if (rc < 0)
			return omr_err_set(err, OMR_E_STATE, rc == -EPIPE || rc == -ECONNRESET ? ENOTCONN : -rc,
					   "connection to the sandbox lost");
		/* An END on stream 0 is about the connection (too many). */
		if (h.type != OMR_F_END || (h.stream != sid && h.stream != 0))
			continue;
		return omr_client_end_parse(p, h.len, out, err);
	}
}
