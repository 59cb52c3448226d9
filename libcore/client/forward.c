/* Port forwards over monitor.sock; see omnirun/client/forward.h. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/io.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/util.h"
#include "omnirun/client/client.h"
#include "omnirun/client/forward.h"

int omr_forward_open(const struct omr_config *c, const char *id, unsigned port,
		     struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	uint64_t deadline = omr_now_ms() + OMR_FORWARD_OPEN_TIMEOUT_MS;
	json_t *req;
	int rc;

	if (port < 1 || port > 65535)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "port %u is not in 1..65535", port);
	fd = omr_client_connect(c, id, err);
	if (fd < 0)
		return -1;
	req = json_pack("{s:s, s:i}", "op", "forward", "port", (int)port);
	rc = omr_client_send_json(fd, OMR_F_REQ, 1, req, err);
	json_decref(req);
	if (rc < 0)
		return -1;
	/* Frames are read exactly (header, then payload): after the REPLY
	 * the next byte on fd is the guest's. */
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		_cleanup_free_ uint8_t *p = NULL;
		struct omr_frame_hdr h;
		uint64_t now = omr_now_ms();
		json_t *end = NULL;

		if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) == 0)
			return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT,
					    "port %u of sandbox %s did not accept in time", port, id);
		rc = omr_frame_recv(fd, &h, &p);
		if (rc < 0)
			return omr_err_set(err, OMR_E_STATE, rc == -EPIPE ? ENOTCONN : -rc,
					   "connection to sandbox %s lost", id);
		if (h.type == OMR_F_REPLY && h.stream == 1)
			return omr_steal_fd(fd);
		if (h.type != OMR_F_END || (h.stream != 1 && h.stream != 0))
			continue;
		if (omr_client_end_parse(p, h.len, &end, err) < 0)
			return omr_err_wrap(err, "port %u of sandbox %s", port, id);
		json_decref(end);
		return omr_err_setx(err, OMR_E_FAIL, EPROTO, "the forward ended before it connected");
	}
}

/* One direction of a splice. */
struct dir {
	int from, to;
	bool done;
};

static int move(struct dir *d, bool to_socket, struct omr_err **err)
{
	char buf[64 * 1024];
	ssize_t n = read(d->from, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "forward: cannot read");
	if (n == 0) {
		d->done = true;
		if (to_socket)
			shutdown(d->to, SHUT_WR);
		return 0;
	}
	int rc = omr_write_all(d->to, buf, (size_t)n);
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "forward: cannot write");
	return 0;
}

int omr_forward_splice(int fd, int in, int out, int timeout_ms, struct omr_err **err)
{
	struct dir up = { in, fd, in < 0 }, down = { fd, out, false };

	if (up.done)
		shutdown(fd, SHUT_WR);
	while (!down.done) {
		struct pollfd p[2] = { { .fd = up.done ? -1 : in, .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };
		int n = poll(p, 2, timeout_ms > 0 ? timeout_ms : -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "forward: poll");
		if (n == 0)
			return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT,
					    "forward: nothing moved for %d ms", timeout_ms);
		if (p[0].revents && move(&up, true, err) < 0)
			return -1;
		if (p[1].revents && move(&down, false, err) < 0)
			return -1;
	}
	return 0;
}
