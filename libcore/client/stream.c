/* The client end of a stream; see omnirun/stream.h. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/base/proto.h"
#include "omnirun/client/stream.h"
#include "omnirun/base/util.h"

void omr_stream_init(struct omr_stream *s, int fd, uint32_t sid)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->sid = sid;
	s->in_fd = -1;
	s->in_channel = OMR_CH_STDIN;
	for (int i = 0; i < 4; i++)
		s->out_fd[i] = -1;
	s->sig_fd = -1;
	s->tty_fd = -1;
	s->max_in = UINT64_MAX;
}

void omr_stream_free(struct omr_stream *s)
{
	json_decref(s->end);
	s->end = NULL;
}

static int send_window(struct omr_stream *s, uint32_t n)
{
	uint8_t b[OMR_WINDOW_LEN];

	omr_window_pack(n, b);
	return omr_frame_send(s->fd, OMR_F_WINDOW, 0, s->sid, b, sizeof(b));
}

static int send_resize(struct omr_stream *s)
{
	struct winsize ws;
	json_t *j;
	int rc;

	if (s->tty_fd < 0 || ioctl(s->tty_fd, TIOCGWINSZ, &ws) < 0)
		return 0;
	j = json_pack("{s:i, s:i}", "rows", ws.ws_row, "cols", ws.ws_col);
	rc = omr_client_send_json(s->fd, OMR_F_RESIZE, s->sid, j, NULL);
	json_decref(j);
	return rc;
}

struct sig_state {
	uint64_t int_ms;   /* when SIGINT was last forwarded (0: never) */
	int unanswered;    /* forwarded, and no frame came back since */
};

/* Forwards signals to the stream's other end.  The user may insist: a
 * second SIGINT within 2 s, or any signal while an earlier one got nothing
 * back (the sandbox may be stuck), is not forwarded but ends the stream
 * here.  Returns 0, 1 when the user insists, < 0 when the connection is
 * lost. */
static int forward_signals(struct omr_stream *s, struct sig_state *st)
{
	struct signalfd_siginfo si;

	while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		uint64_t now = omr_now_ms();

		if (si.ssi_signo == SIGWINCH) {
			send_resize(s);
			continue;
		}
		if (st->unanswered ||
		    (si.ssi_signo == SIGINT && st->int_ms && now - st->int_ms < 2000))
			return 1;
		json_t *j = json_pack("{s:i}", "signal", (int)si.ssi_signo);
		int rc = omr_client_send_json(s->fd, OMR_F_SIGNAL, s->sid, j, NULL);
		json_decref(j);
		if (rc < 0)
			return rc;
		st->unanswered = 1;
		if (si.ssi_signo == SIGINT)
			st->int_ms = now;
	}
	return 0;
}

/* Sends up to `credit` bytes of input.  Returns 0, or < 0 with *err. */
static int pump_input(struct omr_stream *s, uint64_t *credit, struct omr_err **err)
{
	uint8_t buf[OMR_DATA_CHUNK];
	size_t want = *credit < sizeof(buf) ? (size_t)*credit : sizeof(buf);
	ssize_t n;
	int rc;

	do
		n = read(s->in_fd, buf, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot read input");
	if (n == 0) {
		rc = omr_frame_send(s->fd, OMR_F_EOF, s->in_channel, s->sid, NULL, 0);
		s->in_fd = -1;
		return rc < 0 ? omr_err_setx(err, OMR_E_STATE, ENOTCONN, "connection to the sandbox lost") : 0;
	}
	rc = omr_frame_send(s->fd, OMR_F_DATA, s->in_channel, s->sid, buf, (size_t)n);
	if (rc < 0)
		return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "connection to the sandbox lost");
	*credit -= (uint64_t)n;
	s->bytes_out += (uint64_t)n;
	return 0;
}

static int on_frame(struct omr_stream *s, const struct omr_frame_hdr *h, uint8_t *p,
		    uint64_t *credit, struct omr_err **err)
{
	json_t *j;
	int rc;

	switch (h->type) {
	case OMR_F_DATA:
		if (h->len > s->max_in - s->bytes_in)
			return omr_err_setx(err, OMR_E_TOO_LARGE, EFBIG,
					    "the sandbox sent more than %llu bytes",
					    (unsigned long long)s->max_in);
		if (s->on_data && s->on_data(s->user, h->flags, h->len, err) < 0)
			return -1;
		if (h->flags < 4 && s->out_fd[h->flags] >= 0) {
			rc = omr_write_all(s->out_fd[h->flags], p, h->len);
			if (rc < 0)
				return omr_err_set(err, OMR_E_FAIL, -rc, "cannot write output");
		}
		s->bytes_in += h->len;
		/* Credit goes back only once the bytes are written out. */
		if (h->len && send_window(s, h->len) < 0)
			return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "connection to the sandbox lost");
		return 0;
	case OMR_F_WINDOW:
		*credit += omr_window_unpack(p, h->len);
		return 0;
	case OMR_F_REPLY:
		if (!s->on_reply)
			return 0;
		j = json_loadb((const char *)p, h->len, 0, NULL);
		rc = j ? s->on_reply(s->user, j) : 0;
		json_decref(j);
		return rc < 0 ? omr_err_set(err, OMR_E_FAIL, -rc, "aborted") : 0;
	case OMR_F_END:
		if (omr_client_end_parse(p, h->len, &s->end, err) < 0)
			return -1;
		return 1;
	default:
		return 0; /* EOF of output channels needs nothing */
	}
}

int omr_stream_run(struct omr_stream *s, json_t *req, struct omr_err **err)
{
	uint64_t credit = OMR_WINDOW_INIT;
	uint64_t deadline = s->timeout_ms > 0 ? omr_now_ms() + (uint64_t)s->timeout_ms : 0;
	uint64_t last = omr_now_ms();
	struct sig_state sig = { 0, 0 };
	int rc;

	if (omr_client_send_json(s->fd, OMR_F_REQ, s->sid, req, err) < 0)
		return -1;
	if (s->tty_fd >= 0)
		send_resize(s);
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = s->fd, .events = POLLIN },
			{ .fd = credit ? s->in_fd : -1, .events = POLLIN },
			{ .fd = s->sig_fd, .events = POLLIN },
		};
		int timeout = -1;
		uint64_t now = omr_now_ms();

		if (deadline) {
			if (now >= deadline)
				return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT, "no answer from the sandbox in time");
			timeout = (int)(deadline - now);
		}
		if (s->idle_timeout_ms > 0) {
			uint64_t idle_end = last + (uint64_t)s->idle_timeout_ms;
			if (now >= idle_end)
				return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT,
						    "the sandbox sent nothing for %d s",
						    s->idle_timeout_ms / 1000);
			if (timeout < 0 || idle_end - now < (uint64_t)timeout)
				timeout = (int)(idle_end - now);
		}
		if (poll(p, 3, timeout) < 0 && errno != EINTR)
			return omr_err_set(err, OMR_E_FAIL, errno, "poll");
		if (p[2].revents && (rc = forward_signals(s, &sig)) != 0)
			return rc > 0 ? omr_err_setx(err, OMR_E_FAIL, EINTR, "interrupted")
				      : omr_err_setx(err, OMR_E_STATE, ENOTCONN, "connection to the sandbox lost");
		if (p[1].revents && s->in_fd >= 0) {
			if (pump_input(s, &credit, err) < 0)
				return -1;
			last = omr_now_ms();
		}
		if (p[0].revents) {
			struct omr_frame_hdr h;
			_cleanup_free_ uint8_t *payload = NULL;

			rc = omr_frame_recv(s->fd, &h, &payload);
			if (rc < 0)
				return omr_err_set(err, OMR_E_STATE, ENOTCONN,
						   "connection to the sandbox lost (it stopped?)");
			/* An END on stream 0 is about the connection (too many). */
			if (h.stream != s->sid && !(h.stream == 0 && h.type == OMR_F_END))
				continue;
			sig.unanswered = 0;
			last = omr_now_ms();
			rc = on_frame(s, &h, payload, &credit, err);
			if (rc < 0)
				return rc;
			if (rc == 1)
				return 0;
		}
	}
}
