/* op "forward": connects to 127.0.0.1:PORT inside the guest and splices
 * the connection onto the stream: DATA 0 from the host is written to it,
 * what it sends goes to the host as DATA 1, under the host's credit.
 * Half-closes travel both ways (EOF 0 -> shutdown(SHUT_WR), the
 * connection's EOF -> EOF 1); END once both directions are closed.  This
 * is how exposures reach a guest that has no network route in: the bytes
 * ride the agent channel, never a network. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

struct fwd_stream {
	struct stream s;
	int fd;
	int port;
	bool connecting;
	uint8_t *in;      /* host -> guest bytes not yet written: at most one
			     window, the credit we gave */
	size_t in_len;
	bool in_eof;      /* the host sent EOF 0 */
	bool wr_shut;     /* our write side is closed */
	bool rd_eof;      /* the connection's EOF, EOF 1 sent */
	uint64_t bytes_in, bytes_out;
};

static uint8_t iobuf[OMR_DATA_CHUNK];

static void fwd_fail(struct fwd_stream *fs, int e, const char *what)
{
	stream_end(&fs->s, error_json(e, NULL, "%s 127.0.0.1:%d: %s", what, fs->port, strerror(e)));
}

/* Nothing more can come from the host: what it sent is written or
 * dropped, and the guest's peer sees EOF. */
static void fwd_shut_write(struct fwd_stream *fs)
{
	if (fs->wr_shut)
		return;
	fs->wr_shut = true;
	if (fs->fd >= 0)
		shutdown(fs->fd, SHUT_WR);
}

static void fwd_maybe_end(struct fwd_stream *fs)
{
	if (fs->rd_eof && fs->wr_shut)
		stream_end(&fs->s, json_pack("{s:I, s:I}", "bytes_in", (json_int_t)fs->bytes_in,
					     "bytes_out", (json_int_t)fs->bytes_out));
}

static void fwd_flush_in(struct fwd_stream *fs)
{
	while (fs->in_len > 0 && !fs->wr_shut) {
		ssize_t w = send(fs->fd, fs->in, fs->in_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			/* The guest's side closed its reading end: the rest
			 * is dropped, the host gets its credit back. */
			send_window(fs->s.id, fs->in_len);
			fs->in_len = 0;
			fs->wr_shut = true;
			break;
		}
		memmove(fs->in, fs->in + w, fs->in_len - (size_t)w);
		fs->in_len -= (size_t)w;
		fs->bytes_in += (size_t)w;
		send_window(fs->s.id, (size_t)w);
	}
	if (fs->in_len == 0 && fs->in_eof)
		fwd_shut_write(fs);
	fwd_maybe_end(fs);
}

static void fwd_data(struct fwd_stream *fs, const uint8_t *d, size_t n)
{
	size_t room;

	if (fs->wr_shut || fs->in_eof) {
		send_window(fs->s.id, n);
		return;
	}
	if (!fs->in)
		fs->in = omr_xmalloc(OMR_WINDOW_INIT);
	room = OMR_WINDOW_INIT - fs->in_len;
	if (n > room) {
		omr_log(OMR_LOG_INFO, "stream %u: forward beyond credit, %zu bytes dropped", fs->s.id,
			n - room);
		send_window(fs->s.id, n - room);
		n = room;
	}
	memcpy(fs->in + fs->in_len, d, n);
	fs->in_len += n;
	if (!fs->connecting)
		fwd_flush_in(fs);
}

static void fwd_frame(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct fwd_stream *fs = container_of(s, struct fwd_stream, s);

	if (h->flags != OMR_CH_STDIN) {
		if (h->type == OMR_F_DATA)
			send_window(s->id, h->len);
		return;
	}
	if (h->type == OMR_F_DATA) {
		fwd_data(fs, p, h->len);
	} else if (h->type == OMR_F_EOF) {
		fs->in_eof = true;
		if (!fs->connecting)
			fwd_flush_in(fs);
	}
}

static void fwd_connected(struct fwd_stream *fs)
{
	int e = 0;
	socklen_t len = sizeof(e);

	if (getsockopt(fs->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e) {
		fwd_fail(fs, e, "cannot connect to");
		return;
	}
	fs->connecting = false;
	send_json(OMR_F_REPLY, fs->s.id, json_pack("{s:b}", "connected", 1));
	fwd_flush_in(fs);
}

static void fwd_read(struct fwd_stream *fs)
{
	size_t max = fs->s.credit < sizeof(iobuf) ? (size_t)fs->s.credit : sizeof(iobuf);
	ssize_t n = recv(fs->fd, iobuf, max, MSG_DONTWAIT);

	if (n > 0) {
		send_frame(OMR_F_DATA, OMR_CH_STDOUT, fs->s.id, iobuf, (size_t)n);
		fs->s.credit -= (size_t)n;
		fs->bytes_out += (size_t)n;
	} else if (n == 0) {
		fs->rd_eof = true;
		send_frame(OMR_F_EOF, OMR_CH_STDOUT, fs->s.id, NULL, 0);
		fwd_maybe_end(fs);
	} else if (errno != EAGAIN && errno != EINTR) {
		fwd_fail(fs, errno, "connection to");
	}
}

static void fwd_ready(void *obj, int tag, short rev)
{
	struct fwd_stream *fs = obj;

	(void)tag;
	if (fs->s.dead)
		return;
	if (fs->connecting) {
		fwd_connected(fs);
		return;
	}
	if ((rev & POLLOUT) && fs->in_len > 0)
		fwd_flush_in(fs);
	if (!fs->s.dead && !fs->rd_eof && (rev & (POLLIN | POLLHUP | POLLERR)) && fs->s.credit > 0)
		fwd_read(fs);
}

static void fwd_poll(struct stream *s, struct pollctx *pc)
{
	struct fwd_stream *fs = container_of(s, struct fwd_stream, s);
	short ev = 0;

	if (fs->connecting) {
		poll_add(pc, fs->fd, POLLOUT, fwd_ready, fs, 0);
		return;
	}
	if (!fs->rd_eof && s->credit > 0 && conn_can_produce())
		ev |= POLLIN;
	if (fs->in_len > 0 && !fs->wr_shut)
		ev |= POLLOUT;
	if (ev)
		poll_add(pc, fs->fd, ev, fwd_ready, fs, 0);
}

static void fwd_destroy(struct stream *s, bool conn_lost)
{
	struct fwd_stream *fs = container_of(s, struct fwd_stream, s);

	(void)conn_lost;
	omr_closep(&fs->fd);
	free(fs->in);
}

/* SIGNAL {} (or any signal: there is no process) is the default: the
 * stream ends "cancelled" and destroy() closes the connection. */
static const struct stream_ops fwd_ops = {
	.frame = fwd_frame,
	.poll = fwd_poll,
	.destroy = fwd_destroy,
};

void op_forward(uint32_t id, json_t *req)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	_cleanup_close_ int fd = -1;
	struct fwd_stream *fs;
	struct jerr e;
	int64_t port;
	int rc;

	if (!json_object_get(req, "port")) {
		send_error(id, EINVAL, NULL, "\"port\" is required");
		return;
	}
	if (jget_int(req, "port", 1, 65535, 0, &port, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		send_error(id, errno, NULL, "cannot create a socket: %s", strerror(errno));
		return;
	}
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc < 0 && errno != EINPROGRESS) {
		send_error(id, errno, NULL, "cannot connect to 127.0.0.1:%d: %s", (int)port,
			   strerror(errno));
		return;
	}
	fs = (struct fwd_stream *)stream_new(id, sizeof(*fs), &fwd_ops);
	if (!fs)
		return;
	fs->fd = omr_steal_fd(fd);
	fs->port = (int)port;
	fs->connecting = true;
	if (rc == 0)
		fwd_connected(fs);
}
