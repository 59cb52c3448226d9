/* The connection to the host and its framing: an fd (tests), a Unix
 * socket (development) or the virtio-serial port (a guest); frames read
 * and handed whole to the server's hook; one output queue for what we
 * send.
 *
 * Control frames are always queued; bulk producers ask conn_can_produce()
 * first, so the queue stays near OUTQ_HIGH however slow the host reads. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"

#define OUTQ_HIGH (256u * 1024u)
#define PORT_WAIT_MS 5000
#define RECONNECT_POLL_MS 200

static struct {
	enum conn_kind kind;
	const struct conn_hooks *hooks;
	int fd;         /* the connection, -1 when there is none */
	int listen_fd;  /* CONN_SOCKET */
	char *port;     /* CONN_VIRTIO device path */
	bool hup;       /* CONN_VIRTIO: no host on the other end */
	bool done;      /* CONN_FD: the connection is gone */
	bool failed;    /* a protocol error happened */
	struct omr_frame_reader rd;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
} conn = { .fd = -1, .listen_fd = -1 };

/* ---- output queue ---- */

bool conn_up(void)
{
	return conn.fd >= 0 && !conn.hup;
}

bool conn_can_produce(void)
{
	return conn_up() && conn.out_len - conn.out_off < OUTQ_HIGH;
}

bool conn_flushed(void)
{
	return conn.out_off == conn.out_len;
}

static void outq_reset(void)
{
	conn.out_off = conn.out_len = 0;
	if (conn.out_cap > 4 * OUTQ_HIGH) {
		free(conn.out);
		conn.out = NULL;
		conn.out_cap = 0;
	}
}

void send_frame(uint8_t type, uint8_t flags, uint32_t id, const void *p, size_t n)
{
	struct omr_frame_hdr h = { .len = (uint32_t)n, .type = type, .flags = flags, .stream = id };

	if (!conn_up() || n > OMR_FRAME_MAX)
		return;
	if (conn.out_len + OMR_FRAME_HDR + n > conn.out_cap && conn.out_off) {
		memmove(conn.out, conn.out + conn.out_off, conn.out_len - conn.out_off);
		conn.out_len -= conn.out_off;
		conn.out_off = 0;
	}
	if (conn.out_len + OMR_FRAME_HDR + n > conn.out_cap) {
		size_t cap = conn.out_cap ? conn.out_cap : 64 * 1024;
		while (cap < conn.out_len + OMR_FRAME_HDR + n)
			cap *= 2;
		conn.out = omr_xrealloc(conn.out, cap);
		conn.out_cap = cap;
	}
	omr_frame_hdr_pack(&h, conn.out + conn.out_len);
	if (n)
		memcpy(conn.out + conn.out_len + OMR_FRAME_HDR, p, n);
	conn.out_len += OMR_FRAME_HDR + n;
}

void send_json(uint8_t type, uint32_t id, json_t *o)
{
	_cleanup_free_ char *s = NULL;

	if (!o) {
		o = error_json(ENOMEM, NULL, "out of memory");
		if (!o)
			return;
	}
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s) {
		omr_log(OMR_LOG_ERR, "cannot encode a reply on stream %u", id);
		return;
	}
	if (strlen(s) > OMR_FRAME_MAX) {
		/* Callers bound their replies; this is the last line of defence. */
		omr_log(OMR_LOG_ERR, "reply on stream %u too large (%zu bytes)", id, strlen(s));
		if (type == OMR_F_END)
			send_error(id, EMSGSIZE, NULL, "reply too large");
		return;
	}
	send_frame(type, 0, id, s, strlen(s));
}

void send_window(uint32_t id, size_t n)
{
	uint8_t b[OMR_WINDOW_LEN];

	while (n > 0) {
		uint32_t k = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
		omr_window_pack(k, b);
		send_frame(OMR_F_WINDOW, 0, id, b, sizeof(b));
		n -= k;
	}
}

static json_t *verror_json(int e, const char *code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static json_t *verror_json(int e, const char *code, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	return json_pack("{s:o,s:s,s:i}", "error", omr_json_text(msg, strlen(msg)), "code",
			 code ? code : omr_proto_code(e), "errno", e);
}

json_t *error_json(int e, const char *code, const char *fmt, ...)
{
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	o = verror_json(e, code, fmt, ap);
	va_end(ap);
	return o;
}

void send_error(uint32_t id, int e, const char *code, const char *fmt, ...)
{
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	o = verror_json(e, code, fmt, ap);
	va_end(ap);
	if (o)
		send_json(OMR_F_END, id, o);
}

void send_bad_request(uint32_t id, const struct jerr *e)
{
	send_error(id, EINVAL, NULL, "%s", e->msg);
}

/* ---- the connection ---- */

static void conn_lost(const char *why)
{
	if (conn.fd < 0)
		return;
	omr_log(OMR_LOG_INFO, "host connection lost (%s)", why);
	outq_reset();
	conn.rd.have = conn.rd.taken = 0;
	switch (conn.kind) {
	case CONN_FD:
		omr_closep(&conn.fd);
		conn.done = true;
		break;
	case CONN_SOCKET:
		omr_closep(&conn.fd);
		break;
	case CONN_VIRTIO:
		conn.hup = true;
		break;
	}
	conn.hooks->lost();
}

/* A frame header we cannot skip: the byte stream is lost. */
static void conn_protocol_error(void)
{
	omr_log(OMR_LOG_ERR, "oversized frame from the host: dropping the connection");
	conn.failed = true;
	conn_lost("protocol error");
	if (conn.kind == CONN_VIRTIO && conn.fd >= 0) {
		/* Reopening the port discards what is left of the bad frame
		 * and tells the host (port close/open) that we start over. */
		close(conn.fd);
		conn.fd = open(conn.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (conn.fd < 0)
			omr_log(OMR_LOG_ERR, "cannot reopen %s: %s", conn.port, strerror(errno));
	}
}

void conn_flush(void)
{
	while (conn_up() && conn.out_off < conn.out_len) {
		ssize_t w = write(conn.fd, conn.out + conn.out_off, conn.out_len - conn.out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_lost(strerror(errno));
			return;
		}
		conn.out_off += (size_t)w;
	}
	if (conn.out_off == conn.out_len)
		conn.out_off = conn.out_len = 0;
}

static void conn_ready(void *obj, int tag, short rev)
{
	struct omr_frame_hdr h;
	const uint8_t *p;
	ssize_t r;
	int k;

	(void)obj;
	(void)tag;
	if (rev & POLLOUT)
		conn_flush();
	if (!conn_up() || !(rev & (POLLIN | POLLHUP | POLLERR)))
		return;
	/* A virtio port hands out at most one 4 KiB buffer per read: read on
	 * until it is empty (within a budget, for fairness) rather than
	 * paying a poll() per page under TCG. */
	for (int budget = 64; budget > 0; budget--) {
		r = omr_frame_reader_fill(&conn.rd, conn.fd);
		if (r == -EAGAIN)
			return;
		if (r == -EMSGSIZE) {
			conn_protocol_error();
			return;
		}
		if (r <= 0) {
			conn_lost(r == 0 ? "end of file" : strerror((int)-r));
			return;
		}
		while ((k = omr_frame_reader_next(&conn.rd, &h, &p)) == 1) {
			conn.hooks->frame(&h, p);
			if (!conn_up())
				return;
		}
		if (k == -EMSGSIZE) {
			conn_protocol_error();
			return;
		}
	}
}

static void accept_ready(void *obj, int tag, short rev)
{
	(void)obj;
	(void)tag;
	(void)rev;
	conn.fd = accept4(conn.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (conn.fd >= 0)
		conn.hooks->up();
}

/* CONN_VIRTIO: the port reports POLLHUP for as long as no host is
 * connected, so poll() cannot wait on it then; we look every 200 ms. */
static void check_reconnect(void)
{
	struct pollfd pfd = { .events = POLLIN };

	if (conn.fd < 0) /* a failed reopen after a protocol error */
		conn.fd = open(conn.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	pfd.fd = conn.fd;
	if (conn.fd < 0 || poll(&pfd, 1, 0) < 0 || (pfd.revents & POLLHUP))
		return;
	omr_log(OMR_LOG_INFO, "host connected");
	conn.hup = false;
	conn.hooks->up();
}

void conn_poll(struct pollctx *pc)
{
	if (conn_up())
		poll_add(pc, conn.fd, (short)(POLLIN | (conn_flushed() ? 0 : POLLOUT)), conn_ready,
			 NULL, 0);
	else if (conn.kind == CONN_SOCKET && conn.fd < 0)
		poll_add(pc, conn.listen_fd, POLLIN, accept_ready, NULL, 0);
	else if (conn.kind == CONN_VIRTIO)
		poll_wake_at(pc, omr_now_ms() + RECONNECT_POLL_MS);
}

void conn_after_poll(void)
{
	if (conn.kind == CONN_VIRTIO && conn.hup)
		check_reconnect();
}

bool conn_done(void)
{
	return conn.done;
}

bool conn_failed(void)
{
	return conn.failed;
}

static char *find_port(const char *name)
{
	_cleanup_free_ char *found = NULL;
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *de;

	if (!d)
		return NULL;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *path = omr_strdup_printf("/sys/class/virtio-ports/%s/name",
							      de->d_name);
		_cleanup_free_ char *buf = NULL;
		if (omr_read_file_at(AT_FDCWD, path, 256, &buf, NULL, NULL) < 0)
			continue;
		buf[strcspn(buf, "\n")] = 0;
		if (!strcmp(buf, name))
			found = omr_strdup_printf("/dev/%s", de->d_name);
	}
	closedir(d);
	return omr_steal_ptr(found);
}

int conn_start(enum conn_kind kind, int fd, const char *path, const struct conn_hooks *hooks)
{
	int rc = omr_frame_reader_init(&conn.rd);

	if (rc < 0)
		return rc;
	conn.kind = kind;
	conn.hooks = hooks;
	switch (kind) {
	case CONN_FD:
		conn.fd = fd;
		omr_fd_set_cloexec(fd, 1);
		omr_fd_set_nonblock(fd, 1);
		hooks->up();
		return 0;
	case CONN_SOCKET: {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
			return -ENAMETOOLONG;
		conn.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (conn.listen_fd < 0)
			return -errno;
		unlink(path);
		if (bind(conn.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(conn.listen_fd, 4) < 0)
			return -errno;
		return 0;
	}
	case CONN_VIRTIO:
		for (uint64_t end = omr_now_ms() + PORT_WAIT_MS; !conn.port && omr_now_ms() < end;) {
			conn.port = find_port(path);
			if (!conn.port)
				usleep(20 * 1000);
		}
		if (!conn.port) {
			omr_log(OMR_LOG_ERR, "no virtio-serial port named %s", path);
			return -ENOENT;
		}
		conn.fd = open(conn.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (conn.fd < 0)
			return -errno;
		omr_log(OMR_LOG_INFO, "serving on %s", conn.port);
		conn.hup = true; /* HELLO once the host is there */
		check_reconnect();
		return 0;
	}
	return -EINVAL;
}
