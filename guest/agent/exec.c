/* The exec op and its foreground stream.
 *
 * Output is read from the child's pipes only while the host has granted
 * credit; without credit the pipes fill and the child blocks, so a command
 * printing gigabytes costs the agent one chunk of memory.  Stdin is
 * buffered up to one window and credit is returned as the child takes it. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define ARGS_MAX 4096
#define ARGS_BYTES_MAX (1u << 20)
#define PS_ARGV_BYTES 1024
#define PS_ARGS 64
#define MAX_PROCS 1024

struct exec_stream {
	struct stream s;
	struct proc *p;
	uint8_t *in;
	size_t in_len;
	bool in_eof;  /* the host closed stdin */
	bool in_gone; /* the child's stdin is gone: input is discarded */
};

static uint8_t iobuf[OMR_DATA_CHUNK];

static void close_out(struct exec_stream *es, int ch)
{
	struct proc *p = es->p;
	int *fd = ch == OMR_CH_STDOUT ? &p->fd_out : &p->fd_err;

	if (*fd < 0)
		return;
	proc_close_fd(fd);
	send_frame(OMR_F_EOF, (uint8_t)ch, es->s.id, NULL, 0);
	if (p->pty) /* everything came on channel 1 */
		send_frame(OMR_F_EOF, OMR_CH_STDERR, es->s.id, NULL, 0);
}

static void stdin_discard(struct exec_stream *es)
{
	es->in_gone = true;
	send_window(es->s.id, es->in_len);
	es->in_len = 0;
	if (!es->p->pty)
		proc_close_fd(&es->p->fd_in);
}

static void stdin_flush(struct exec_stream *es)
{
	struct proc *p = es->p;
	ssize_t w;

	while (es->in_len > 0 && p->fd_in >= 0) {
		w = write(p->fd_in, es->in, es->in_len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			stdin_discard(es); /* EPIPE: the child closed its stdin */
			return;
		}
		memmove(es->in, es->in + w, es->in_len - (size_t)w);
		es->in_len -= (size_t)w;
		send_window(es->s.id, (size_t)w);
	}
	if (es->in_len == 0 && es->in_eof && p->fd_in >= 0) {
		if (p->pty) {
			/* A terminal has no half-close: send the EOF character. */
			(void)!write(p->fd_in, "\x04", 1);
			es->in_eof = false;
		} else {
			proc_close_fd(&p->fd_in);
		}
	}
}

static void stdin_data(struct exec_stream *es, const uint8_t *d, size_t n)
{
	size_t room;

	if (es->in_gone || es->p->fd_in < 0) {
		send_window(es->s.id, n);
		return;
	}
	if (!es->in) {
		es->in = malloc(OMR_WINDOW_INIT);
		if (!es->in) {
			send_window(es->s.id, n);
			return;
		}
	}
	room = OMR_WINDOW_INIT - es->in_len;
	if (n > room) {
		/* The host overran its credit; we hold one window, no more. */
		omr_log(OMR_LOG_INFO, "stream %u: stdin beyond credit, %zu bytes dropped", es->s.id, n - room);
		send_window(es->s.id, n - room);
		n = room;
	}
	memcpy(es->in + es->in_len, d, n);
	es->in_len += n;
	stdin_flush(es);
}

static void in_ready(void *obj, int tag, short rev)
{
	struct exec_stream *es = obj;

	(void)tag;
	if (es->s.dead)
		return;
	if (rev & (POLLERR | POLLHUP))
		stdin_discard(es);
	else
		stdin_flush(es);
}

static void out_ready(void *obj, int ch, short rev)
{
	struct exec_stream *es = obj;
	struct proc *p = es->p;
	int fd = ch == OMR_CH_STDOUT ? p->fd_out : p->fd_err;
	size_t max;
	ssize_t n;

	(void)rev;
	if (es->s.dead || fd < 0 || es->s.credit == 0)
		return;
	max = es->s.credit < sizeof(iobuf) ? (size_t)es->s.credit : sizeof(iobuf);
	n = read(fd, iobuf, max);
	if (n > 0) {
		send_frame(OMR_F_DATA, (uint8_t)ch, es->s.id, iobuf, (size_t)n);
		es->s.credit -= (size_t)n;
		if (!p->running)
			p->quiet_until = omr_now_ms() + PROC_LINGER_MS;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_out(es, ch); /* EOF; EIO on a pty master is EOF too */
	}
}

static void exec_poll(struct stream *s, struct pollctx *pc)
{
	struct exec_stream *es = container_of(s, struct exec_stream, s);
	struct proc *p = es->p;
	bool can_read = s->credit > 0 && conn_can_produce();

	if (p->fd_out >= 0 && can_read)
		poll_add(pc, p->fd_out, POLLIN, out_ready, es, OMR_CH_STDOUT);
	if (p->fd_err >= 0 && can_read)
		poll_add(pc, p->fd_err, POLLIN, out_ready, es, OMR_CH_STDERR);
	if (p->fd_in >= 0 && es->in_len > 0)
		poll_add(pc, p->fd_in, POLLOUT, in_ready, es, 0);
	if (!p->running && can_read && (p->fd_out >= 0 || p->fd_err >= 0))
		poll_wake_at(pc, p->quiet_until);
}

static void exec_tick(struct stream *s)
{
	struct exec_stream *es = container_of(s, struct exec_stream, s);
	struct proc *p = es->p;

	if (p->running)
		return;
	/* Pipes held open by processes that left the group (daemons) end
	 * after a quiet period; not while the host is holding us back. */
	if ((p->fd_out >= 0 || p->fd_err >= 0) && s->credit > 0 && conn_can_produce() &&
	    omr_now_ms() >= p->quiet_until) {
		close_out(es, OMR_CH_STDOUT);
		close_out(es, OMR_CH_STDERR);
	}
	if (p->fd_out < 0 && p->fd_err < 0) {
		proc_close_fd(&p->fd_in);
		stream_end(s, proc_status_json(p));
	}
}

static void exec_signal(struct stream *s, int sig)
{
	struct exec_stream *es = container_of(s, struct exec_stream, s);

	if (sig > 0) {
		proc_signal(es->p, sig);
		return;
	}
	/* Cancel: the group dies now; output so far is dropped. */
	es->p->cancelled = es->p->running;
	proc_signal(es->p, SIGKILL);
	close_out(es, OMR_CH_STDOUT);
	close_out(es, OMR_CH_STDERR);
	stdin_discard(es);
}

static void exec_resize(struct exec_stream *es, const struct omr_frame_hdr *h, const uint8_t *pl)
{
	json_t *o = json_loadb((const char *)pl, h->len, 0, NULL);
	struct jerr e;
	int64_t rows, cols;

	if (es->p->pty && es->p->fd_out >= 0 && json_is_object(o) &&
	    jget_int(o, "rows", 1, 10000, 24, &rows, &e) == 0 &&
	    jget_int(o, "cols", 1, 10000, 80, &cols, &e) == 0) {
		struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
		ioctl(es->p->fd_out, TIOCSWINSZ, &ws);
	}
	json_decref(o);
}

static void exec_frame(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *pl)
{
	struct exec_stream *es = container_of(s, struct exec_stream, s);

	switch (h->type) {
	case OMR_F_DATA:
		if (h->flags == OMR_CH_STDIN)
			stdin_data(es, pl, h->len);
		else
			send_window(s->id, h->len);
		break;
	case OMR_F_EOF:
		if (h->flags == OMR_CH_STDIN && !es->in_gone) {
			es->in_eof = true;
			stdin_flush(es);
		}
		break;
	case OMR_F_RESIZE:
		exec_resize(es, h, pl);
		break;
	}
}

static void exec_destroy(struct stream *s, bool conn_lost)
{
	struct exec_stream *es = container_of(s, struct exec_stream, s);

	free(es->in);
	/* A foreground command whose host went away is killed. */
	if (es->p)
		proc_release(es->p, conn_lost);
}

static const struct stream_ops exec_ops = {
	.frame = exec_frame,
	.signal = exec_signal,
	.poll = exec_poll,
	.tick = exec_tick,
	.destroy = exec_destroy,
};

/* ---- request parsing ---- */

struct exec_req {
	struct strv argv, env;
	const char *cwd_s;
	char *cwd;
	struct user_info user;
	bool shell, have_user, use_stdin, pty, background;
	int64_t timeout_ms, rows, cols;
};

static void exec_req_free(struct exec_req *x)
{
	strv_free(&x->argv);
	strv_free(&x->env);
	free(x->cwd);
	user_info_free(&x->user);
}

static int parse_argv(json_t *req, struct exec_req *x, struct jerr *e)
{
	_cleanup_free_ char *cmd = NULL;
	char **argv = NULL;
	int has_cmd = omr_json_get_bytes(req, "cmd", &cmd);
	int has_argv = omr_json_get_bytes_array(req, "argv", ARGS_MAX, &argv);
	size_t n = 0;

	if (has_cmd < 0) {
		snprintf(e->msg, sizeof(e->msg), "\"cmd\" must be a string without NUL bytes");
		goto bad;
	}
	if (has_argv < 0 || (argv && (!argv[0] || !argv[0][0]))) {
		snprintf(e->msg, sizeof(e->msg),
			 "\"argv\" must be an array of 1 to %d strings without NUL bytes, "
			 "argv[0] not empty", ARGS_MAX);
		goto bad;
	}
	if (!has_cmd == !has_argv) {
		snprintf(e->msg, sizeof(e->msg), "exactly one of \"argv\" and \"cmd\" is required");
		goto bad;
	}
	if (cmd) {
		x->shell = true;
		if (strv_push(&x->argv, "/bin/sh") < 0 || strv_push(&x->argv, "-c") < 0 ||
		    strv_push(&x->argv, cmd) < 0) {
			snprintf(e->msg, sizeof(e->msg), "out of memory");
			return -1;
		}
		return 0;
	}
	while (argv[n])
		n++;
	x->argv = (struct strv){ .v = argv, .n = n, .cap = n + 1 };
	return 0;
bad:
	omr_argv_free(argv);
	return -1;
}

/* env_b64: "K=V" entries in base64, for those that are not UTF-8. */
static int env_b64(json_t *req, struct exec_req *x, struct jerr *e)
{
	json_t *a = json_object_get(req, "env_b64"), *v;
	size_t i;

	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) > ARGS_MAX)
		goto bad;
	json_array_foreach(a, i, v) {
		_cleanup_free_ char *kv = NULL;
		size_t n;
		char *eq;
		if (!json_is_string(v) || omr_b64_decode(json_string_value(v), &kv, &n) < 0 ||
		    strlen(kv) != n || !(eq = strchr(kv, '=')))
			goto bad;
		*eq = 0;
		if (!env_key_ok(kv))
			goto bad;
		strv_setenv(&x->env, kv, eq + 1);
	}
	return 0;
bad:
	snprintf(e->msg, sizeof(e->msg),
		 "\"env_b64\" must be an array of base64 K=V entries (no NUL, K not empty)");
	return -1;
}

/* PATH, HOME, USER (and TERM for a pty), then the env file, then the
 * request's env: the most specific wins. */
static int build_env(json_t *req, struct exec_req *x, struct jerr *e)
{
	json_t *env = json_object_get(req, "env"), *v;
	const char *k;

	strv_setenv(&x->env, "PATH", AGENT_PATH_DEFAULT);
	strv_setenv(&x->env, "HOME", x->user.home ? x->user.home : "/");
	if (x->user.name) {
		strv_setenv(&x->env, "USER", x->user.name);
		strv_setenv(&x->env, "LOGNAME", x->user.name);
	}
	if (x->pty)
		strv_setenv(&x->env, "TERM", "xterm-256color");
	env_file_load(agent_cfg.env_file, &x->env);
	if (env && !json_is_null(env)) {
		if (!json_is_object(env)) {
			snprintf(e->msg, sizeof(e->msg), "\"env\" must be an object");
			return -1;
		}
		json_object_foreach(env, k, v) {
			if (!env_key_ok(k) || !json_is_string(v)) {
				snprintf(e->msg, sizeof(e->msg),
					 "env names must be non-empty without '=', values strings");
				return -1;
			}
			strv_setenv(&x->env, k, json_string_value(v));
		}
	}
	return env_b64(req, x, e);
}

static int check_limits(const struct exec_req *x, struct jerr *e)
{
	size_t bytes = 0;

	for (size_t i = 0; i < x->argv.n; i++)
		bytes += strlen(x->argv.v[i]) + 1;
	for (size_t i = 0; i < x->env.n; i++)
		bytes += strlen(x->env.v[i]) + 1;
	if (x->argv.n + x->env.n > ARGS_MAX || bytes > ARGS_BYTES_MAX) {
		snprintf(e->msg, sizeof(e->msg),
			 "argv and env exceed %d strings or %u bytes", ARGS_MAX, ARGS_BYTES_MAX);
		return -1;
	}
	return 0;
}

/* Looks the user up; returns 0, or -errno with a message in e. */
static int parse_user(json_t *req, struct exec_req *x, struct jerr *e)
{
	json_t *u = json_object_get(req, "user");
	char buf[32];
	const char *spec = buf;
	int rc;

	if ((!u || json_is_null(u)) && agent_cfg.default_user &&
	    user_lookup(agent_cfg.default_user, &x->user) == 0) {
		x->have_user = true; /* a template's default user */
		return 0;
	}
	if (!u || json_is_null(u)) {
		user_info_free(&x->user);
		user_lookup_uid(geteuid(), &x->user);
		return 0;
	}
	if (json_is_integer(u) && json_integer_value(u) >= 0 &&
	    json_integer_value(u) <= 0x7fffffff)
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(u));
	else if (json_is_string(u) && *json_string_value(u))
		spec = json_string_value(u);
	else {
		snprintf(e->msg, sizeof(e->msg), "\"user\" must be a name or a uid");
		return -EINVAL;
	}
	rc = user_lookup(spec, &x->user);
	if (rc < 0) {
		snprintf(e->msg, sizeof(e->msg), "unknown user \"%.64s\"", spec);
		return rc;
	}
	x->have_user = true;
	return 0;
}

static int parse_exec(json_t *req, struct exec_req *x, struct jerr *e)
{
	if (parse_argv(req, x, e) < 0 || jget_path(req, "cwd", false, &x->cwd, NULL, e) < 0 ||
	    jget_int(req, "timeout_ms", 0, INT64_C(1) << 40, 0, &x->timeout_ms, e) < 0 ||
	    jget_bool(req, "stdin", false, &x->use_stdin, e) < 0 ||
	    jget_bool(req, "pty", false, &x->pty, e) < 0 ||
	    jget_int(req, "rows", 1, 10000, 24, &x->rows, e) < 0 ||
	    jget_int(req, "cols", 1, 10000, 80, &x->cols, e) < 0 ||
	    jget_bool(req, "background", false, &x->background, e) < 0)
		return -1;
	return 0;
}

/* What ps shows: "argv" (a bounded prefix: replies fit in one frame) and
 * "cmd" (the shell line, argv[2] of /bin/sh -c, or argv joined, bounded
 * too), with their _b64 twins for bytes that are not UTF-8. */
static json_t *what_for_ps(const struct strv *argv, bool shell)
{
	json_t *o = json_object();
	char *v[PS_ARGS + 1], cmd[PS_ARGV_BYTES + 1];
	size_t bytes = 0, n = 0, c = 0;

	for (size_t i = 0; i < argv->n && n < PS_ARGS && bytes < PS_ARGV_BYTES; i++) {
		v[n] = strndup(argv->v[i], PS_ARGV_BYTES - bytes);
		if (!v[n])
			break;
		bytes += strlen(v[n++]);
	}
	v[n] = NULL;
	omr_json_set_bytes_array(o, "argv", v);
	while (n > 0)
		free(v[--n]);
	if (shell) {
		snprintf(cmd, sizeof(cmd), "%s", argv->v[2]);
	} else {
		for (size_t i = 0; i < argv->n && c < PS_ARGV_BYTES; i++)
			c += (size_t)snprintf(cmd + c, sizeof(cmd) - c, "%s%s", i ? " " : "",
					      argv->v[i]);
	}
	omr_json_set_bytes(o, "cmd", cmd);
	return o;
}

void op_exec(uint32_t id, json_t *req)
{
	struct exec_req x = { 0 };
	struct spawn_req sr;
	struct exec_stream *es = NULL;
	struct proc *p;
	struct jerr e;
	int rc;

	if (parse_exec(req, &x, &e) < 0)
		goto bad;
	rc = parse_user(req, &x, &e);
	if (rc < 0) {
		send_error(id, -rc, NULL, "%s", e.msg);
		goto out;
	}
	if (build_env(req, &x, &e) < 0 || check_limits(&x, &e) < 0)
		goto bad;
	if (procs_count() >= MAX_PROCS) {
		send_error(id, EAGAIN, NULL, "too many running commands");
		goto out;
	}
	if (!x.background) {
		es = (struct exec_stream *)stream_new(id, sizeof(*es), &exec_ops);
		if (!es)
			goto out;
	}
	p = proc_new();
	if (!p || (x.background && !(p->ring = ring_new()))) {
		if (p)
			p->dead = true;
		if (es)
			stream_teardown(&es->s);
		send_error(id, ENOMEM, NULL, "out of memory");
		goto out;
	}
	sr = (struct spawn_req){ .argv = x.argv.v, .envp = x.env.v, .cwd = x.cwd,
				 .user = x.have_user ? &x.user : NULL, .pty = x.pty,
				 /* a background command has no stream to read from */
				 .stdin_pipe = x.use_stdin && !x.background,
				 .rows = (unsigned short)x.rows, .cols = (unsigned short)x.cols };
	rc = spawn_proc(&sr, p, &e);
	if (rc < 0) {
		p->dead = true;
		if (es)
			es->s.dead = true; /* no proc yet: destroy has nothing to do */
		send_error(id, -rc, NULL, "%s", e.msg);
		goto out;
	}
	p->running = true;
	p->background = x.background;
	p->start_mono = omr_now_ms();
	p->start_wall = omr_wall_ms();
	p->deadline = x.timeout_ms ? p->start_mono + (uint64_t)x.timeout_ms : 0;
	p->what = what_for_ps(&x.argv, x.shell);
	send_json(OMR_F_REPLY, id, json_pack("{s:i}", "pid", p->pid));
	if (x.background) {
		send_json(OMR_F_END, id, json_pack("{s:i,s:b}", "pid", p->pid, "background", 1));
	} else {
		es->p = p;
		p->fg = es;
		es->in_gone = !x.use_stdin;
	}
	goto out;
bad:
	send_bad_request(id, &e);
out:
	exec_req_free(&x);
}
