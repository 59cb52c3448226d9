/* A QMP client for one command at a time (omr_qmp_command in
 * omnirun/vm/vmm.h).  QMP is newline-delimited JSON: a greeting, then
 * "qmp_capabilities" leaves negotiation mode, then commands, each answered
 * by one "return" or "error" object; "event" objects may come in between. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/io.h"
#include "omnirun/base/loop.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"

/* QEMU's answers are small; a longer line is not QMP. */
#define QMP_LINE_MAX (1u << 20)

struct qmp {
	int fd;
	uint64_t deadline;
	char *buf;
	size_t len, cap;
};

/* Reads one line (without its newline) into q->buf; the line is
 * NUL-terminated and *n gets its length.  Returns 0 or < 0 with *err. */
static int qmp_line(struct qmp *q, size_t *n, struct omr_err **err)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		ssize_t r;

		if (nl) {
			*n = (size_t)(nl - q->buf);
			*nl = 0;
			return 0;
		}
		if (q->len >= QMP_LINE_MAX)
			return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP: a line over %u bytes",
					    QMP_LINE_MAX);
		if (now >= q->deadline)
			return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT, "QMP: no answer in time");
		r = poll(&p, 1, (int)(q->deadline - now));
		if (r < 0 && errno != EINTR)
			return omr_err_set(err, OMR_E_FAIL, errno, "QMP: poll");
		if (r <= 0)
			continue;
		if (q->cap - q->len < 4096) {
			q->cap = q->cap ? q->cap * 2 : 8192;
			q->buf = omr_xrealloc(q->buf, q->cap);
		}
		r = read(q->fd, q->buf + q->len, q->cap - q->len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "QMP: cannot read");
		if (r == 0)
			return omr_err_setx(err, OMR_E_FAIL, ECONNRESET, "QMP: the VMM closed the connection");
		q->len += (size_t)r;
	}
}

/* Drops the line qmp_line returned. */
static void qmp_consume(struct qmp *q, size_t n)
{
	memmove(q->buf, q->buf + n + 1, q->len - n - 1);
	q->len -= n + 1;
}

/* Reads objects until one that is not an event: *msg gets it. */
static int qmp_read(struct qmp *q, json_t **msg, struct omr_err **err)
{
	for (;;) {
		size_t n = 0;
		json_t *j;

		if (qmp_line(q, &n, err) < 0)
			return -1;
		j = json_loadb(q->buf, n, 0, NULL);
		qmp_consume(q, n);
		if (!json_is_object(j)) {
			json_decref(j);
			return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP: an answer that is not an object");
		}
		if (json_object_get(j, "event")) {
			json_decref(j);
			continue;
		}
		*msg = j;
		return 0;
	}
}

/* One command as QMP's wire wants it: a JSON line (malloc'ed, its length
 * in *len), or NULL and *err. */
static char *qmp_encode(const char *cmd, json_t *args, size_t *len, struct omr_err **err)
{
	json_t *req = json_pack("{s:s}", "execute", cmd);
	char *s;

	if (args)
		json_object_set(req, "arguments", args);
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!s) {
		omr_err_setx(err, OMR_E_FAIL, ENOMEM, "QMP: cannot encode %s", cmd);
		return NULL;
	}
	*len = strlen(s);
	s = omr_xrealloc(s, *len + 2);
	s[(*len)++] = '\n';
	s[*len] = '\0';
	return s;
}

/* Sends one command and waits for its answer. */
static int qmp_execute(struct qmp *q, const char *cmd, json_t *args, json_t **ret,
		       struct omr_err **err)
{
	json_t *ans = NULL, *e;
	size_t len;
	char *s = qmp_encode(cmd, args, &len, err);
	int rc;

	if (!s)
		return -1;
	rc = omr_write_all(q->fd, s, len);
	free(s);
	if (rc < 0)
		return omr_err_set(err, OMR_E_FAIL, -rc, "QMP: cannot send %s", cmd);
	if (qmp_read(q, &ans, err) < 0)
		return -1;
	if ((e = json_object_get(ans, "error"))) {
		const char *desc = json_string_value(json_object_get(e, "desc"));
		rc = omr_err_setx(err, OMR_E_FAIL, EIO, "QMP %s: %s", cmd, desc ? desc : "failed");
		json_decref(ans);
		return rc;
	}
	if (!json_object_get(ans, "return")) {
		json_decref(ans);
		return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP %s: neither return nor error", cmd);
	}
	if (ret)
		*ret = json_incref(json_object_get(ans, "return"));
	json_decref(ans);
	return 0;
}

/* QMP "getfd": hands fd to QEMU under name, on this connection (the
 * fd travels with the command as SCM_RIGHTS). */
static int qmp_getfd(struct qmp *q, const char *name, int fd, struct omr_err **err)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u = { 0 };
	json_t *args = json_pack("{s:s}", "fdname", name), *ans = NULL;
	size_t len;
	char *s = qmp_encode("getfd", args, &len, err);
	struct iovec iov;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	ssize_t n;
	int rc = -1;

	json_decref(args);
	if (!s)
		return -1;
	iov = (struct iovec){ .iov_base = s, .iov_len = len };
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	/* The fd went with the first byte; the rest is an ordinary line. */
	if (n < 0 || (n < (ssize_t)len && omr_write_all(q->fd, s + n, len - (size_t)n) < 0)) {
		omr_err_set(err, OMR_E_FAIL, errno, "QMP: cannot send getfd");
		goto out;
	}
	if (qmp_read(q, &ans, err) < 0)
		goto out;
	if (json_object_get(ans, "error")) {
		const char *desc = json_string_value(json_object_get(json_object_get(ans, "error"), "desc"));
		omr_err_setx(err, OMR_E_FAIL, EIO, "QMP getfd: %s", desc ? desc : "failed");
		goto out;
	}
	rc = 0;
out:
	json_decref(ans);
	free(s);
	return rc;
}

/* Connects to path and leaves negotiation mode: *q is ready for
 * commands, its fd open (the caller closes it and frees its buffer). */
static int qmp_open(struct qmp *q, const char *path, unsigned timeout_ms, struct omr_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *greeting = NULL;
	int rc = -1;

	*q = (struct qmp){ .fd = -1, .deadline = omr_now_ms() + timeout_ms };
	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "QMP socket path too long: %s", path);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "QMP: cannot create a socket");
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return omr_err_set(err, errno == ENOENT || errno == ECONNREFUSED ? OMR_E_STATE
				   : OMR_E_FAIL, errno, "QMP: cannot connect to %s", path);
	/* The greeting carries "QMP"; then leave negotiation mode. */
	if (qmp_read(q, &greeting, err) < 0)
		goto out;
	if (!json_object_get(greeting, "QMP")) {
		omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP: no greeting from %s", path);
		goto out;
	}
	rc = qmp_execute(q, "qmp_capabilities", NULL, NULL, err);
out:
	json_decref(greeting);
	return rc;
}

/* One connection: fd handed over first when fdname is set, then cmd. */
static int qmp_session(const char *path, const char *fdname, int fd, const char *cmd,
		       json_t *args, unsigned timeout_ms, json_t **ret, struct omr_err **err)
{
	struct qmp q;
	int rc = -1;

	if (ret)
		*ret = NULL;
	if (qmp_open(&q, path, timeout_ms, err) == 0 &&
	    (!fdname || qmp_getfd(&q, fdname, fd, err) == 0))
		rc = qmp_execute(&q, cmd, args, ret, err);
	json_decref(args);
	free(q.buf);
	if (q.fd >= 0)
		close(q.fd);
	return rc;
}

int omr_qmp_command_fd(const char *path, const char *fdname, int fd, const char *cmd,
		       json_t *args, unsigned timeout_ms, json_t **ret, struct omr_err **err)
{
	return qmp_session(path, fdname, fd, cmd, args, timeout_ms, ret, err);
}

int omr_qmp_command(const char *path, const char *cmd, json_t *args, unsigned timeout_ms,
		    json_t **ret, struct omr_err **err)
{
	return qmp_session(path, NULL, -1, cmd, args, timeout_ms, ret, err);
}

/* --- one command on an event loop (omr_qmp_call_start) --- */

enum call_phase { CALL_GREETING, CALL_CAPS, CALL_CMD };

struct omr_qmp_call {
	struct omr_loop *loop;
	struct qmp q;
	enum call_phase phase;
	char *cmd;
	json_t *args;
	uint64_t timer;
	omr_qmp_done_fn done;
	void *user;
};

static void call_free(struct omr_qmp_call *k)
{
	if (k->q.fd >= 0) {
		omr_loop_remove_fd(k->loop, k->q.fd);
		close(k->q.fd);
	}
	if (k->timer)
		omr_loop_cancel_timer(k->loop, k->timer);
	free(k->q.buf);
	free(k->cmd);
	json_decref(k->args);
	free(k);
}

/* Calls done once and frees the call. */
static void call_finish(struct omr_qmp_call *k, json_t *ret, struct omr_err *e)
{
	omr_qmp_done_fn done = k->done;
	void *user = k->user;

	call_free(k);
	done(user, ret, e);
	json_decref(ret);
	omr_err_free(&e);
}

/* A command line is a few hundred bytes on a fresh socket: it fits in
 * the socket's buffer at once, so a short write is a broken peer. */
static int call_send(struct omr_qmp_call *k, const char *cmd, json_t *args, struct omr_err **err)
{
	size_t len;
	char *s = qmp_encode(cmd, args, &len, err);
	ssize_t n;

	if (!s)
		return -1;
	n = send(k->q.fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(s);
	if (n != (ssize_t)len)
		return omr_err_set(err, OMR_E_FAIL, n < 0 ? errno : EAGAIN, "QMP: cannot send %s", cmd);
	return 0;
}

/* One message arrived: moves the call on.  Returns 1 when finished
 * (*ret or *err set), 0 to wait for more, < 0 with *err. */
static int call_step(struct omr_qmp_call *k, json_t *msg, json_t **ret, struct omr_err **err)
{
	json_t *e;

	if (json_object_get(msg, "event"))
		return 0;
	switch (k->phase) {
	case CALL_GREETING:
		if (!json_object_get(msg, "QMP"))
			return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP: no greeting");
		k->phase = CALL_CAPS;
		return call_send(k, "qmp_capabilities", NULL, err);
	case CALL_CAPS:
		if (!json_object_get(msg, "return"))
			return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP: qmp_capabilities refused");
		k->phase = CALL_CMD;
		return call_send(k, k->cmd, k->args, err);
	case CALL_CMD:
		if ((e = json_object_get(msg, "error"))) {
			const char *desc = json_string_value(json_object_get(e, "desc"));
			return omr_err_setx(err, OMR_E_FAIL, EIO, "QMP %s: %s", k->cmd,
					    desc ? desc : "failed");
		}
		if (!json_object_get(msg, "return"))
			return omr_err_setx(err, OMR_E_FAIL, EPROTO, "QMP %s: neither return nor error",
					    k->cmd);
		*ret = json_incref(json_object_get(msg, "return"));
		return 1;
	}
	return 0;
}

static void call_readable(void *user, int fd, uint32_t events)
{
	struct omr_qmp_call *k = user;
	struct omr_err *e = NULL;
	json_t *ret = NULL;
	ssize_t r;
	char *nl;

	(void)events;
	if (k->q.cap - k->q.len < 4096) {
		k->q.cap = k->q.cap ? k->q.cap * 2 : 8192;
		k->q.buf = omr_xrealloc(k->q.buf, k->q.cap);
	}
	r = read(fd, k->q.buf + k->q.len, k->q.cap - k->q.len - 1);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		omr_err_set(&e, OMR_E_FAIL, r < 0 ? errno : ECONNRESET,
			    "QMP %s: the VMM closed the connection", k->cmd);
		call_finish(k, NULL, e);
		return;
	}
	k->q.len += (size_t)r;
	while ((nl = memchr(k->q.buf, '\n', k->q.len))) {
		size_t n = (size_t)(nl - k->q.buf);
		json_t *msg = json_loadb(k->q.buf, n, 0, NULL);
		int rc;

		qmp_consume(&k->q, n);
		rc = json_is_object(msg) ? call_step(k, msg, &ret, &e)
			: omr_err_setx(&e, OMR_E_FAIL, EPROTO, "QMP: an answer that is not an object");
		json_decref(msg);
		if (rc != 0) {
			call_finish(k, ret, e);
			return;
		}
	}
	if (k->q.len >= QMP_LINE_MAX) {
		omr_err_setx(&e, OMR_E_FAIL, EPROTO, "QMP: a line over %u bytes", QMP_LINE_MAX);
		call_finish(k, NULL, e);
	}
}

static void call_timeout(void *user)
{
	struct omr_qmp_call *k = user;
	struct omr_err *e = NULL;

	k->timer = 0;
	omr_err_setx(&e, OMR_E_TIMEOUT, ETIMEDOUT, "QMP %s: no answer in time", k->cmd);
	call_finish(k, NULL, e);
}

struct omr_qmp_call *omr_qmp_call_start(struct omr_loop *l, const char *path, const char *cmd,
					json_t *args, unsigned timeout_ms, omr_qmp_done_fn done,
					void *user, struct omr_err **err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct omr_qmp_call *k;

	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0) {
		omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "QMP socket path too long: %s", path);
		return NULL;
	}
	k = omr_xcalloc(1, sizeof(*k));
	k->loop = l;
	k->cmd = omr_xstrdup(cmd);
	k->args = json_incref(args);
	k->done = done;
	k->user = user;
	k->q.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (k->q.fd < 0) {
		omr_err_set(err, OMR_E_FAIL, errno, "QMP: cannot create a socket");
		goto fail;
	}
	/* A Unix socket connects at once or fails: EAGAIN is a full backlog
	 * (someone else holds QEMU's one QMP connection). */
	if (connect(k->q.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		omr_err_set(err, errno == ENOENT || errno == ECONNREFUSED ? OMR_E_STATE : OMR_E_FAIL,
			    errno, "QMP: cannot connect to %s", path);
		goto fail;
	}
	if (omr_loop_add_fd(l, k->q.fd, EPOLLIN, call_readable, k, err) < 0) {
		close(k->q.fd);
		k->q.fd = -1;
		goto fail;
	}
	k->timer = omr_loop_add_timer(l, timeout_ms, call_timeout, k);
	return k;
fail:
	call_free(k);
	return NULL;
}

void omr_qmp_call_cancel(struct omr_qmp_call *k)
{
	if (k)
		call_free(k);
}
