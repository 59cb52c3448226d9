/* The request server: one connection, one poll() loop, many streams.
 *
 * Output goes through one queue.  Control frames are always queued; bulk
 * producers (command output, file reads, listings, watch events) only run
 * while the queue is below OUTQ_HIGH and, for DATA, while the stream has
 * credit, so memory stays bounded however slow the host reads.
 *
 * Objects found by poll() callbacks are never freed during a round: a
 * stream or process is marked dead and freed once the round is over. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define OUTQ_HIGH (256u * 1024u)
#define MAX_STREAMS 1024
#define CREDIT_MAX (1ull << 40)
#define PORT_WAIT_MS 5000
#define RECONNECT_POLL_MS 200
#define EXIT_FLUSH_MS 2000

struct pollent {
	poll_fn fn;
	void *obj;
	int tag;
};

struct pollctx {
	struct pollfd *fds;
	struct pollent *ents;
	size_t n, cap;
	uint64_t wake; /* 0 = none */
};

static struct {
	enum conn_kind kind;
	int fd;         /* the connection, -1 when there is none */
	int listen_fd;  /* CONN_SOCKET */
	char *port;     /* CONN_VIRTIO device path */
	bool hup;       /* CONN_VIRTIO: no host on the other end */
	bool done;      /* CONN_FD: the connection is gone */
	int status;     /* exit status of server_run */
	struct omr_frame_reader rd;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	struct stream *streams;
	size_t nstreams;
	enum server_exit exit;
	uint64_t exit_deadline;
} srv = { .fd = -1, .listen_fd = -1 };

/* ---- poll context ---- */

void poll_add(struct pollctx *pc, int fd, short events, poll_fn fn, void *obj, int tag)
{
	if (pc->n == pc->cap) {
		size_t cap = pc->cap ? pc->cap * 2 : 64;
		struct pollfd *f = realloc(pc->fds, cap * sizeof(*f));
		if (!f)
			return;
		pc->fds = f;
		struct pollent *e = realloc(pc->ents, cap * sizeof(*e));
		if (!e)
			return;
		pc->ents = e;
		pc->cap = cap;
	}
	pc->fds[pc->n] = (struct pollfd){ .fd = fd, .events = events };
	pc->ents[pc->n] = (struct pollent){ .fn = fn, .obj = obj, .tag = tag };
	pc->n++;
}

void poll_wake_at(struct pollctx *pc, uint64_t when)
{
	if (when == 0)
		when = 1;
	if (!pc->wake || when < pc->wake)
		pc->wake = when;
}

/* ---- output queue ---- */

bool conn_up(void)
{
	return srv.fd >= 0 && !srv.hup;
}

bool conn_can_produce(void)
{
	return conn_up() && srv.out_len - srv.out_off < OUTQ_HIGH;
}

static void outq_reset(void)
{
	srv.out_off = srv.out_len = 0;
	if (srv.out_cap > 4 * OUTQ_HIGH) {
		free(srv.out);
		srv.out = NULL;
		srv.out_cap = 0;
	}
}

void send_frame(uint8_t type, uint8_t flags, uint32_t id, const void *p, size_t n)
{
	struct omr_frame_hdr h = { .len = (uint32_t)n, .type = type, .flags = flags, .stream = id };

	if (!conn_up() || n > OMR_FRAME_MAX)
		return;
	if (srv.out_len + OMR_FRAME_HDR + n > srv.out_cap && srv.out_off) {
		memmove(srv.out, srv.out + srv.out_off, srv.out_len - srv.out_off);
		srv.out_len -= srv.out_off;
		srv.out_off = 0;
	}
	if (srv.out_len + OMR_FRAME_HDR + n > srv.out_cap) {
		size_t cap = srv.out_cap ? srv.out_cap : 64 * 1024;
		while (cap < srv.out_len + OMR_FRAME_HDR + n)
			cap *= 2;
		uint8_t *o = realloc(srv.out, cap);
		if (!o) {
			omr_log(OMR_LOG_ERR, "out of memory queueing a frame");
			return;
		}
		srv.out = o;
		srv.out_cap = cap;
	}
	omr_frame_hdr_pack(&h, srv.out + srv.out_len);
	if (n)
		memcpy(srv.out + srv.out_len + OMR_FRAME_HDR, p, n);
	srv.out_len += OMR_FRAME_HDR + n;
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

json_t *hello_json(void)
{
	struct utsname u;

	uname(&u);
	return json_pack("{s:i,s:s,s:s,s:s}", "version", OMR_PROTO_VERSION, "agent",
			 AGENT_VERSION, "kernel", u.release, "disk", agent_cfg.disk_state);
}

void send_hello(void)
{
	send_json(OMR_F_HELLO, 0, hello_json());
}

void server_request_exit(enum server_exit what)
{
	srv.exit = what;
	srv.exit_deadline = omr_now_ms() + EXIT_FLUSH_MS;
}

/* ---- streams ---- */

struct stream *stream_new(uint32_t id, size_t size, const struct stream_ops *ops)
{
	struct stream *s;

	if (srv.nstreams >= MAX_STREAMS) {
		send_error(id, EBUSY, NULL, "too many open streams");
		return NULL;
	}
	s = calloc(1, size);
	if (!s) {
		send_error(id, ENOMEM, NULL, "out of memory");
		return NULL;
	}
	s->id = id;
	s->ops = ops;
	s->credit = OMR_WINDOW_INIT;
	s->next = srv.streams;
	srv.streams = s;
	srv.nstreams++;
	return s;
}

struct stream *stream_find(uint32_t id)
{
	for (struct stream *s = srv.streams; s; s = s->next)
		if (s->id == id && !s->dead)
			return s;
	return NULL;
}

void stream_teardown(struct stream *s)
{
	if (!s->dead)
		s->torn = true;
	s->dead = true;
}

void stream_end(struct stream *s, json_t *o)
{
	if (s->dead)
		return;
	send_json(OMR_F_END, s->id, o);
	s->dead = true;
}

/* Frees dead streams (all: every stream); torn down ones and those still
 * open get destroy(conn_lost = true). */
static void streams_collect(bool all)
{
	struct stream **pp = &srv.streams;

	while (*pp) {
		struct stream *s = *pp;
		if (!s->dead && !all) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		srv.nstreams--;
		if (s->ops->destroy)
			s->ops->destroy(s, s->torn || !s->dead);
		free(s);
	}
}

/* ---- connection ---- */

static void conn_lost(const char *why)
{
	if (srv.fd < 0)
		return;
	omr_log(OMR_LOG_INFO, "host connection lost (%s)", why);
	/* Foreground commands die with the connection (doc/protocol.md).
	 * Torn down, not freed: poll entries of this round still point at
	 * the streams; they are freed at its end. */
	for (struct stream *s = srv.streams; s; s = s->next)
		stream_teardown(s);
	outq_reset();
	srv.rd.have = srv.rd.taken = 0;
	switch (srv.kind) {
	case CONN_FD:
		close(srv.fd);
		srv.fd = -1;
		srv.done = true;
		break;
	case CONN_SOCKET:
		close(srv.fd);
		srv.fd = -1;
		break;
	case CONN_VIRTIO:
		srv.hup = true;
		break;
	}
}

/* A frame header we cannot skip: the byte stream is lost. */
static void conn_protocol_error(void)
{
	omr_log(OMR_LOG_ERR, "oversized frame from the host: dropping the connection");
	if (srv.kind == CONN_FD)
		srv.status = 1;
	conn_lost("protocol error");
	if (srv.kind == CONN_VIRTIO && srv.fd >= 0) {
		/* Reopening the port discards what is left of the bad frame
		 * and tells the host (port close/open) that we start over. */
		close(srv.fd);
		srv.fd = open(srv.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (srv.fd < 0)
			omr_log(OMR_LOG_ERR, "cannot reopen %s: %s", srv.port, strerror(errno));
	}
}

static void flush_out(void)
{
	while (conn_up() && srv.out_off < srv.out_len) {
		ssize_t w = write(srv.fd, srv.out + srv.out_off, srv.out_len - srv.out_off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				conn_lost(strerror(errno));
			return;
		}
		srv.out_off += (size_t)w;
	}
	if (srv.out_off == srv.out_len)
		srv.out_off = srv.out_len = 0;
}

static void handle_req(const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct stream *s = stream_find(h->stream);
	json_error_t jerr;
	json_t *req;

	if (h->stream == 0) {
		send_error(0, EINVAL, NULL, "REQ on stream 0");
		return;
	}
	if (s) {
		/* The host lost track of this stream: both ends drop it. */
		send_error(h->stream, EINVAL, NULL, "stream %u is already open",
			   h->stream);
		stream_teardown(s);
		return;
	}
	req = json_loadb((const char *)p, h->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		send_error(h->stream, EINVAL, NULL, "bad JSON in request: %s",
			   req ? "not an object" : jerr.text);
		json_decref(req);
		return;
	}
	ops_dispatch(h->stream, req);
	json_decref(req);
}

/* A SIGNAL payload: 1..64 a signal, 0 a cancel (an object without
 * "signal"), -1 malformed. */
static int signal_parse(const uint8_t *p, size_t n)
{
	json_t *o = json_loadb((const char *)p, n, 0, NULL), *sig;
	int r = -1;

	if (json_is_object(o)) {
		sig = json_object_get(o, "signal");
		if (!sig)
			r = 0;
		else if (json_is_integer(sig) && json_integer_value(sig) > 0 &&
			 json_integer_value(sig) <= 64)
			r = (int)json_integer_value(sig);
	}
	json_decref(o);
	return r;
}

static void handle_signal(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *p)
{
	int sig = signal_parse(p, h->len);

	if (sig < 0)
		omr_log(OMR_LOG_INFO, "stream %u: bad SIGNAL payload ignored", s->id);
	else if (s->ops->signal)
		s->ops->signal(s, sig);
	else if (sig == 0)
		stream_end(s, error_json(ECANCELED, NULL, "cancelled"));
}

static void handle_frame(const struct omr_frame_hdr *h, const uint8_t *p)
{
	struct stream *s;

	switch (h->type) {
	case OMR_F_REQ:
		handle_req(h, p);
		return;
	case OMR_F_WINDOW:
		s = stream_find(h->stream);
		if (s) {
			s->credit += omr_window_unpack(p, h->len);
			if (s->credit > CREDIT_MAX)
				s->credit = CREDIT_MAX;
		}
		return;
	case OMR_F_DATA:
	case OMR_F_EOF:
	case OMR_F_SIGNAL:
	case OMR_F_RESIZE:
		/* Frames for a stream that has just ended are expected: the
		 * host may not have seen our END yet. */
		s = stream_find(h->stream);
		if (s && h->type == OMR_F_SIGNAL)
			handle_signal(s, h, p);
		else if (s && s->ops->frame)
			s->ops->frame(s, h, p);
		return;
	case OMR_F_HELLO:
	case OMR_F_REPLY:
	case OMR_F_END:
		return; /* only the agent sends these; harmless */
	default:
		s = stream_find(h->stream);
		send_error(h->stream, EINVAL, NULL, "unknown frame type %u", h->type);
		if (s)
			stream_teardown(s); /* END is out: the stream is over */
		return;
	}
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
		flush_out();
	if (!conn_up() || !(rev & (POLLIN | POLLHUP | POLLERR)))
		return;
	/* A virtio port hands out at most one 4 KiB buffer per read: read on
	 * until it is empty (within a budget, for fairness) rather than
	 * paying a poll() per page under TCG. */
	for (int budget = 64; budget > 0; budget--) {
		r = omr_frame_reader_fill(&srv.rd, srv.fd);
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
		while ((k = omr_frame_reader_next(&srv.rd, &h, &p)) == 1) {
			handle_frame(&h, p);
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
	srv.fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (srv.fd >= 0)
		send_hello();
}

/* CONN_VIRTIO: the port reports POLLHUP for as long as no host is
 * connected, so poll() cannot wait on it then; we look every 200 ms. */
static void check_reconnect(void)
{
	struct pollfd pfd = { .events = POLLIN };

	if (srv.fd < 0) /* a failed reopen after a protocol error */
		srv.fd = open(srv.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	pfd.fd = srv.fd;
	if (srv.fd < 0 || poll(&pfd, 1, 0) < 0 || (pfd.revents & POLLHUP))
		return;
	omr_log(OMR_LOG_INFO, "host connected");
	srv.hup = false;
	send_hello();
}

static char *find_port(const char *name)
{
	_cleanup_free_ char *found = NULL;
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *de;
	char path[512];

	if (!d)
		return NULL;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
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

static int conn_start(enum conn_kind kind, int fd, const char *path)
{
	srv.kind = kind;
	switch (kind) {
	case CONN_FD:
		srv.fd = fd;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		omr_fd_set_nonblock(fd, 1);
		send_hello();
		return 0;
	case CONN_SOCKET: {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(path) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		strcpy(sa.sun_path, path);
		srv.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (srv.listen_fd < 0)
			return -errno;
		unlink(path);
		if (bind(srv.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(srv.listen_fd, 4) < 0)
			return -errno;
		return 0;
	}
	case CONN_VIRTIO:
		for (uint64_t end = omr_now_ms() + PORT_WAIT_MS; !srv.port && omr_now_ms() < end;) {
			srv.port = find_port(path);
			if (!srv.port)
				usleep(20 * 1000);
		}
		if (!srv.port) {
			omr_log(OMR_LOG_ERR, "no virtio-serial port named %s", path);
			return -ENOENT;
		}
		srv.fd = open(srv.port, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (srv.fd < 0)
			return -errno;
		omr_log(OMR_LOG_INFO, "serving on %s", srv.port);
		srv.hup = true; /* HELLO once the host is there */
		check_reconnect();
		return 0;
	}
	return -EINVAL;
}

int server_run(enum conn_kind kind, int fd, const char *path)
{
	struct pollctx pc = { 0 };
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if (omr_frame_reader_init(&srv.rd) < 0)
		return 1;
	procs_init();
	rc = conn_start(kind, fd, path);
	if (rc < 0) {
		omr_log(OMR_LOG_ERR, "cannot start serving: %s", strerror(-rc));
		return 1;
	}
	while (!srv.done) {
		uint64_t now = omr_now_ms();
		int timeout = -1;

		if (srv.exit && (srv.out_off == srv.out_len || !conn_up() || now >= srv.exit_deadline))
			break;
		pc.n = 0;
		pc.wake = 0;
		if (conn_up())
			poll_add(&pc, srv.fd,
				 (short)(POLLIN | (srv.out_off < srv.out_len ? POLLOUT : 0)),
				 conn_ready, NULL, 0);
		else if (srv.kind == CONN_SOCKET && srv.fd < 0)
			poll_add(&pc, srv.listen_fd, POLLIN, accept_ready, NULL, 0);
		else if (srv.kind == CONN_VIRTIO)
			poll_wake_at(&pc, now + RECONNECT_POLL_MS);
		if (srv.exit)
			poll_wake_at(&pc, srv.exit_deadline);
		procs_poll(&pc);
		for (struct stream *s = srv.streams; s; s = s->next)
			if (!s->dead && s->ops->poll)
				s->ops->poll(s, &pc);
		if (pc.wake)
			timeout = pc.wake <= now ? 0 : (int)(pc.wake - now);
		if (poll(pc.fds, pc.n, timeout) < 0 && errno != EINTR) {
			omr_log(OMR_LOG_ERR, "poll: %s", strerror(errno));
			usleep(100 * 1000);
			continue;
		}
		for (size_t i = 0; i < pc.n; i++)
			if (pc.fds[i].revents)
				pc.ents[i].fn(pc.ents[i].obj, pc.ents[i].tag, pc.fds[i].revents);
		if (srv.kind == CONN_VIRTIO && srv.hup)
			check_reconnect();
		procs_tick();
		for (struct stream *s = srv.streams; s; s = s->next)
			if (!s->dead && s->ops->tick)
				s->ops->tick(s);
		flush_out();
		streams_collect(false);
		procs_collect();
	}
	streams_collect(true);
	procs_shutdown();
	free(pc.fds);
	free(pc.ents);
	if (srv.exit == SERVER_EXIT_POWEROFF && agent_cfg.pid1)
		kill(1, SIGTERM); /* init powers the machine off */
	return srv.status;
}
