/* envd on the E2B listener (doc/e2b.md): the calls E2B's SDKs make to
 * the daemon inside a sandbox, answered by the shim through libcore's
 * exec and files calls for the sandbox E2b-Sandbox-Id names, with the
 * caller's token (X-Access-Token) and ownership as on every route.
 *
 * Process and filesystem calls are Connect RPCs with JSON messages
 * (protobuf's JSON mapping: camelCase, bytes in base64, 64-bit numbers
 * as strings, enums by name).  A command runs as an OmniRun background
 * command and its stream is an attach to it, so that, as in E2B, a
 * client that goes away leaves it running and Connect finds it again by
 * its pid. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "envd-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/json.h"
#include "omnirun/base/log.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"
#include "omnirun/client/exec.h"
#include "omnirun/client/files.h"
#include "omnirun/state/record.h"

#define CHUNK 16384
/* What the SDK asks for (Keepalive-Ping-Interval: 50); a shorter one
 * when the connection's idle timeout is shorter. */
#define KEEPALIVE_MS 50000
#define LIST_ENTRIES_MAX 10000
#define LIST_DEPTH_MAX 32
#define PARTS_MAX 64

/* ---- Connect framing ---- */

void omr_connect_envelope(uint8_t hdr[5], uint8_t flags, size_t len)
{
	hdr[0] = flags;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

int omr_connect_envelope_parse(const uint8_t *p, size_t n, uint8_t *flags, uint32_t *len)
{
	if (n < 5)
		return -1;
	*flags = p[0];
	*len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
	return 0;
}

/* ---- the sandbox of an envd call ---- */

const char *omr_api_e2b_sandbox(struct omr_api_req *r)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "E2b-Sandbox-Id");

	free(r->params[0]);
	r->params[0] = h ? omr_xstrdup(h) : NULL;
	return omr_api_own_sandbox(r);
}

/* The guest user an envd call names (Authorization: Basic of "user:"),
 * or NULL for the sandbox's default; malloc'ed. */
static char *basic_user(struct omr_api_req *r)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	char *dec = NULL;
	size_t n;

	if (!h || strncasecmp(h, "Basic ", 6) || omr_b64_decode(h + 6, &dec, &n) < 0)
		return NULL;
	dec[strcspn(dec, ":")] = 0;
	if (!*dec) {
		free(dec);
		return NULL;
	}
	return dec;
}

enum MHD_Result omr_envd_health(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r);
	struct omr_sandbox sb;
	struct omr_err *err = NULL;

	if (!id)
		return MHD_YES;
	if (omr_sandbox_load(r->api->c, id, &sb, &err) < 0)
		return omr_api_reply_err(r, &err);
	/* 502 is what E2B's SDKs take for "this sandbox is gone". */
	if (sb.state == OMR_SB_STOPPED)
		return omr_api_reply_error(r, 502, "not_running", "sandbox '%s' has ended", id);
	return omr_api_reply_empty(r, 204);
}

/* ---- process: streams of events ---- */

struct pstream {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	int pid;
	int out[2], err[2], sig[2];
	pthread_t th;
	int started, joined, rc;
	struct omr_exec_result res;
	struct omr_err *e;
	int eof_out, eof_err, ended;
	int keepalive_ms;
	int client_fd;                  /* to see the client go at once */
	uint8_t *pend;
	size_t pend_len, pend_off;
	/* A command with stdin runs in the foreground on this stream
	 * (fg_main): its options, its stdin's read end, the pid's pipe. */
	int fg;
	struct omr_exec_opts o;
	char **argv, **env;
	char *cwd, *user;
	int in_r, pidp[2];
};

/* The stdin of each command started with stdin: true, by sandbox and
 * pid, for SendInput and CloseStdin (OmniRun gives a command stdin only
 * while the stream that started it is open). */
struct stdin_ent {
	struct stdin_ent *next;
	char id[OMR_ID_MAX];
	int pid;
	int fd;                         /* the write end, -1 once closed */
};
static pthread_mutex_t stdins_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stdin_ent *stdins;

static void stdin_add(const char *id, int pid, int fd)
{
	struct stdin_ent *e = omr_xcalloc(1, sizeof(*e));

	omr_strlcpy(e->id, id, sizeof(e->id));
	e->pid = pid;
	e->fd = fd;
	pthread_mutex_lock(&stdins_lock);
	e->next = stdins;
	stdins = e;
	pthread_mutex_unlock(&stdins_lock);
}

/* Unlinks (remove) or just closes the stdin of id's pid.  Returns 0, or
 * -1 when there is none. */
static int stdin_close(const char *id, int pid, int remove)
{
	struct stdin_ent **pp, *e = NULL;

	pthread_mutex_lock(&stdins_lock);
	for (pp = &stdins; *pp; pp = &(*pp)->next) {
		if ((*pp)->pid == pid && !strcmp((*pp)->id, id)) {
			e = *pp;
			break;
		}
	}
	if (e) {
		if (e->fd >= 0)
			close(e->fd);
		e->fd = -1;
		if (remove) {
			*pp = e->next;
			free(e);
		}
	}
	pthread_mutex_unlock(&stdins_lock);
	return e ? 0 : -1;
}

/* A copy of the stdin of id's pid (the write may block: not under the
 * lock), or -1. */
static int stdin_dup(const char *id, int pid)
{
	int fd = -1;

	pthread_mutex_lock(&stdins_lock);
	for (struct stdin_ent *e = stdins; e; e = e->next)
		if (e->pid == pid && !strcmp(e->id, id) && e->fd >= 0)
			fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
	pthread_mutex_unlock(&stdins_lock);
	return fd;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void ps_join(struct pstream *s)
{
	if (s->started && !s->joined) {
		pthread_join(s->th, NULL);
		s->joined = 1;
	}
}

static void ps_free(struct pstream *s)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&s->out[i]);
		close_fd(&s->err[i]);
		close_fd(&s->sig[i]);
		close_fd(&s->pidp[i]);
	}
	close_fd(&s->in_r);
	omr_argv_free(s->argv);
	omr_argv_free(s->env);
	free(s->cwd);
	free(s->user);
	omr_err_free(&s->e);
	free(s->pend);
	free(s);
}

/* Queues one message (flags 0) or the end of the stream. */
static void envelope_push(uint8_t **pend, size_t *len, uint8_t flags, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	size_t n = strlen(text);

	json_decref(msg);
	*pend = omr_xrealloc(*pend, *len + 5 + n);
	omr_connect_envelope(*pend + *len, flags, n);
	memcpy(*pend + *len + 5, text, n);
	*len += 5 + n;
	free(text);
}

static void ps_push(struct pstream *s, uint8_t flags, json_t *msg)
{
	envelope_push(&s->pend, &s->pend_len, flags, msg);
}

static void ps_event(struct pstream *s, json_t *ev)
{
	ps_push(s, 0, json_pack("{s:o}", "event", ev));
}

static void on_fg_pid(void *user, int pid)
{
	struct pstream *s = user;

	(void)!write(s->pidp[1], &pid, sizeof(pid));
}

/* A command with stdin, in the foreground. */
static void *fg_main(void *p)
{
	struct pstream *s = p;

	s->rc = omr_exec_run(s->c, s->id, &s->o, &s->res, &s->e);
	close_fd(&s->out[1]);
	close_fd(&s->err[1]);
	close_fd(&s->pidp[1]);
	return NULL;
}

static void *ps_main(void *p)
{
	struct pstream *s = p;

	s->rc = omr_exec_attach(s->c, s->id, s->pid, s->out[1], s->err[1], s->sig[0], &s->res,
				&s->e);
	close_fd(&s->out[1]);
	close_fd(&s->err[1]);
	return NULL;
}

/* The end of a command as envd's EndEvent. */
static json_t *end_event(const struct omr_exec_result *res)
{
	char status[48];

	if (res->signal)
		snprintf(status, sizeof(status), "signal: %s",
			 res->signal == SIGKILL ? "killed" : strsignal(res->signal));
	else
		snprintf(status, sizeof(status), "exit status %d", res->exit_code);
	return json_pack("{s:{s:i, s:b, s:s}}", "end", "exitCode",
			 res->signal ? -1 : res->exit_code, "exited", !res->signal, "status", status);
}

/* The stream's next bytes, as MHD's content reader wants them. */
static ssize_t ps_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct pstream *s = cls;

	(void)pos;
	while (s->pend_off == s->pend_len) {
		struct pollfd p[3];

		s->pend_off = s->pend_len = 0;
		if (s->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (s->eof_out && s->eof_err) {
			ps_join(s);
			if (s->rc < 0) {
				const struct omr_err_kind_info *k = omr_err_kind_info(omr_err_kind(s->e));
				ps_push(s, OMR_CONNECT_END_STREAM,
					json_pack("{s:{s:s, s:s}}", "error", "code",
						  k->http_status == 404 ? "not_found" : "unavailable",
						  "message", s->e->msg));
			} else {
				ps_event(s, end_event(&s->res));
				ps_push(s, OMR_CONNECT_END_STREAM, json_object());
			}
			s->ended = 1;
			break;
		}
		p[0] = (struct pollfd){ .fd = s->eof_out ? -1 : s->out[0], .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s->eof_err ? -1 : s->err[0], .events = POLLIN };
		p[2] = (struct pollfd){ .fd = s->client_fd, .events = POLLRDHUP };
		int k = poll(p, 3, s->keepalive_ms);
		/* A client that went (disconnect(), or its timeout) lets go
		 * of the command now, not at the next keepalive. */
		if (k > 0 && (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (k <= 0 || !(p[0].revents | p[1].revents)) {
			/* Quiet: a keepalive keeps the client and MHD's idle
			 * timeout from taking the stream for dead. */
			ps_event(s, json_pack("{s:{}}", "keepalive"));
			break;
		}
		for (int i = 0; i < 2; i++) {
			char tmp[CHUNK];
			ssize_t n;

			if (!p[i].revents)
				continue;
			n = read(p[i].fd, tmp, sizeof(tmp));
			if (n <= 0) {
				if (!(n < 0 && errno == EINTR))
					*(i ? &s->eof_err : &s->eof_out) = 1;
				continue;
			}
			_cleanup_free_ char *b = omr_b64_encode(tmp, (size_t)n);
			ps_event(s, json_pack("{s:{s:s}}", "data", i ? "stderr" : "stdout", b));
		}
	}
	size_t n = s->pend_len - s->pend_off < max ? s->pend_len - s->pend_off : max;
	memcpy(out, s->pend + s->pend_off, n);
	s->pend_off += n;
	return (ssize_t)n;
}

/* The client is done with the stream, whole or not.  A command still
 * running lives on (E2B's disconnect): the attach is ended by the
 * stream's "insist" rule, a second signal while the first (SIGCONT,
 * harmless to a running command) is unanswered. */
static void ps_done(void *cls)
{
	struct pstream *s = cls;
	/* A foreground command (one with stdin) cannot outlive its stream
	 * in OmniRun: it is killed, as a foreground command of the OmniRun
	 * API whose client goes. */
	struct signalfd_siginfo si = { .ssi_signo = s->fg ? SIGKILL : SIGCONT };

	if (s->fg)
		stdin_close(s->id, s->pid, 1);
	if (!s->joined && !(s->eof_out && s->eof_err)) {
		(void)!write(s->sig[1], &si, sizeof(si));
		(void)!write(s->sig[1], &si, sizeof(si));
	}
	close_fd(&s->out[0]);
	close_fd(&s->err[0]);
	ps_join(s);
	ps_free(s);
}

static struct pstream *ps_new(struct omr_api_req *r, const char *id)
{
	struct pstream *s = omr_xcalloc(1, sizeof(*s));

	s->c = r->api->c;
	omr_strlcpy(s->id, id, sizeof(s->id));
	for (int i = 0; i < 2; i++)
		s->out[i] = s->err[i] = s->sig[i] = s->pidp[i] = -1;
	s->in_r = -1;
	s->client_fd = omr_api_client_fd(r);
	s->keepalive_ms = (int)r->api->c->api_conn_timeout_s * 500;
	if (s->keepalive_ms > KEEPALIVE_MS)
		s->keepalive_ms = KEEPALIVE_MS;
	if (pipe2(s->out, O_CLOEXEC) < 0 || pipe2(s->err, O_CLOEXEC) < 0 ||
	    pipe2(s->sig, O_CLOEXEC | O_NONBLOCK) < 0) {
		ps_free(s);
		return NULL;
	}
	return s;
}

/* The stream's response, its start event queued first. */
static enum MHD_Result ps_respond(struct omr_api_req *r, struct pstream *s)
{
	struct MHD_Response *resp;

	ps_event(s, json_pack("{s:{s:i}}", "start", "pid", s->pid));
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CHUNK * 4, ps_read, s, ps_done);
	if (!resp) {
		ps_done(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/connect+json");
	return omr_api_reply_response(r, 200, resp);
}

/* Answers r with the events of background command pid: start, its
 * output from the start of its buffer, its end. */
static enum MHD_Result ps_reply(struct omr_api_req *r, const char *id, int pid)
{
	struct pstream *s = ps_new(r, id);

	if (!s)
		return omr_api_reply_error(r, 500, "failed", "cannot follow the command");
	s->pid = pid;
	if (pthread_create(&s->th, NULL, ps_main, s) != 0) {
		ps_free(s);
		return omr_api_reply_error(r, 500, "failed", "cannot follow the command");
	}
	s->started = 1;
	return ps_respond(r, s);
}

/* Runs s's command in the foreground with stdin from SendInput: the
 * pid first (its stdin is then registered), then the stream. */
static enum MHD_Result fg_reply(struct omr_api_req *r, struct pstream *s)
{
	int in[2], pid = 0;
	ssize_t n;

	if (pipe2(in, O_CLOEXEC) < 0) {
		ps_free(s);
		return omr_api_reply_error(r, 500, "failed", "cannot start the command");
	}
	s->in_r = in[0];
	s->o.in_fd = in[0];
	s->o.out_fd = s->out[1];
	s->o.err_fd = s->err[1];
	s->o.sig_fd = s->sig[0];
	s->o.on_pid = on_fg_pid;
	s->o.on_pid_user = s;
	s->fg = 1;
	if (pipe2(s->pidp, O_CLOEXEC) < 0 || pthread_create(&s->th, NULL, fg_main, s) != 0) {
		close(in[1]);
		ps_free(s);
		return omr_api_reply_error(r, 500, "failed", "cannot start the command");
	}
	s->started = 1;
	do
		n = read(s->pidp[0], &pid, sizeof(pid));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(pid)) {
		/* It ended without starting: its error says why. */
		close(in[1]);
		close_fd(&s->out[0]);
		close_fd(&s->err[0]);
		ps_join(s);
		enum MHD_Result rc = s->rc < 0 ? omr_api_reply_err(r, &s->e) :
			omr_api_reply_error(r, 500, "failed", "the command gave no pid");
		ps_free(s);
		return rc;
	}
	s->pid = pid;
	stdin_add(s->id, pid, in[1]);
	return ps_respond(r, s);
}

/* process.envs: {K: V} as "K=V" strings (NULL-terminated), or NULL. */
static int envs_of(json_t *o, char ***out)
{
	char **env = omr_xcalloc(json_object_size(o) + 1, sizeof(*env));
	const char *k;
	json_t *v;
	size_t i = 0;

	json_object_foreach(o, k, v) {
		if (!json_is_string(v) || !*k || strchr(k, '=')) {
			omr_argv_free(env);
			return -1;
		}
		env[i++] = omr_strdup_printf("%s=%s", k, json_string_value(v));
	}
	*out = env;
	return 0;
}

/* E2B's SDKs run every command as /bin/bash -l -c CMD; a template with
 * no bash (tiny is busybox) runs it with /bin/sh, which takes the same
 * flags. */
static const char *shell_of(struct omr_api_req *r, const char *id, const char *cmd)
{
	json_t *st = NULL;
	struct omr_err *err = NULL;

	if (strcmp(cmd, "/bin/bash"))
		return cmd;
	if (omr_files_stat(r->api->c, id, "/bin/bash", &st, &err) == 0) {
		json_decref(st);
		return cmd;
	}
	omr_err_free(&err);
	return "/bin/sh";
}

enum MHD_Result omr_envd_start(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *cmd, *cwd;
	json_t *proc = json_object_get(r->json, "process"), *args, *v;
	_cleanup_free_ char *user = NULL;
	char **argv = NULL, **env = NULL;
	struct omr_exec_opts o = { 0 };
	struct omr_exec_result res = { 0 };
	struct omr_err *err = NULL;
	size_t i, n;
	int rc;

	if (!id)
		return MHD_YES;
	if (json_object_get(r->json, "pty"))
		return omr_api_reply_error(r, 501, "unsupported", "terminals (pty) are not supported "
					   "through the E2B endpoint: use sbx-exec -t");
	if (!json_is_object(proc) || !(cmd = json_string_value(json_object_get(proc, "cmd"))) ||
	    !*cmd)
		return omr_api_reply_error(r, 400, "bad_request", "process.cmd is missing");
	args = json_object_get(proc, "args");
	if (args && !json_is_array(args))
		return omr_api_reply_error(r, 400, "bad_request", "process.args must be an array");
	if ((v = json_object_get(proc, "envs")) && !json_is_null(v) &&
	    (!json_is_object(v) || envs_of(v, &env) < 0))
		return omr_api_reply_error(r, 400, "bad_request", "process.envs must map names to "
					   "strings");
	n = json_array_size(args);
	argv = omr_xcalloc(n + 2, sizeof(*argv));
	argv[0] = omr_xstrdup(shell_of(r, id, cmd));
	json_array_foreach(args, i, v) {
		if (!json_is_string(v)) {
			omr_argv_free(argv);
			omr_argv_free(env);
			return omr_api_reply_error(r, 400, "bad_request", "process.args holds strings");
		}
		argv[i + 1] = omr_xstrdup(json_string_value(v));
	}
	cwd = json_string_value(json_object_get(proc, "cwd"));
	user = basic_user(r);
	o.argv = argv;
	o.env = env;
	o.cwd = cwd && *cwd ? cwd : NULL;
	o.user = user;
	o.in_fd = o.out_fd = o.err_fd = o.sig_fd = o.tty_fd = -1;
	if (omr_exec_validate(&o, &err) < 0) {
		omr_argv_free(argv);
		omr_argv_free(env);
		return omr_api_reply_err(r, &err);
	}
	if (json_is_true(json_object_get(r->json, "stdin"))) {
		struct pstream *s = ps_new(r, id);

		if (!s) {
			omr_argv_free(argv);
			omr_argv_free(env);
			return omr_api_reply_error(r, 500, "failed", "cannot start the command");
		}
		/* The stream's own copies: the command outlives this call. */
		s->argv = argv;
		s->env = env;
		s->cwd = o.cwd ? omr_xstrdup(o.cwd) : NULL;
		s->user = user ? omr_xstrdup(user) : NULL;
		s->o = o;
		s->o.cwd = s->cwd;
		s->o.user = s->user;
		omr_api_audit(r, "exec", id, "e2b stdin");
		return fg_reply(r, s);
	}
	o.background = 1;
	rc = omr_exec_run(r->api->c, id, &o, &res, &err);
	omr_argv_free(argv);
	omr_argv_free(env);
	if (rc < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "exec", id, "e2b");
	return ps_reply(r, id, res.pid);
}

/* process.pid of a selector, or < 0 with a reply queued. */
static int selector_pid(struct omr_api_req *r)
{
	json_t *sel = json_object_get(r->json, "process"), *pid = json_object_get(sel, "pid");

	if (json_is_integer(pid) && json_integer_value(pid) > 0 &&
	    json_integer_value(pid) <= INT32_MAX)
		return (int)json_integer_value(pid);
	if (json_object_get(sel, "tag"))
		omr_api_reply_error(r, 404, "not_found", "no command has that tag: OmniRun's "
				    "commands have pids only");
	else
		omr_api_reply_error(r, 400, "bad_request", "process.pid is missing");
	return -1;
}

/* The command pid of sandbox id as ps shows it (new ref), or NULL. */
static json_t *ps_entry(struct omr_api_req *r, const char *id, int pid, struct omr_err **err)
{
	json_t *procs = NULL, *p, *found = NULL;
	size_t i;

	if (omr_exec_ps(r->api->c, id, &procs, err) < 0)
		return NULL;
	json_array_foreach(procs, i, p)
		if (json_integer_value(json_object_get(p, "pid")) == pid)
			found = json_incref(p);
	json_decref(procs);
	if (!found)
		omr_err_setx(err, OMR_E_NOT_FOUND, ESRCH, "no command with pid %d", pid);
	return found;
}

enum MHD_Result omr_envd_connect(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r);
	struct omr_err *err = NULL;
	json_t *p;
	int pid;

	if (!id || (pid = selector_pid(r)) < 0)
		return MHD_YES;
	if (!(p = ps_entry(r, id, pid, &err)))
		return omr_api_reply_err(r, &err);
	json_decref(p);
	return ps_reply(r, id, pid);
}

enum MHD_Result omr_envd_list(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r);
	struct omr_err *err = NULL;
	json_t *procs = NULL, *out, *p;
	size_t i;

	if (!id)
		return MHD_YES;
	if (omr_exec_ps(r->api->c, id, &procs, &err) < 0)
		return omr_api_reply_err(r, &err);
	out = json_array();
	json_array_foreach(procs, i, p) {
		json_t *argv = json_object_get(p, "argv"), *cfg;
		const char *cmd = json_string_value(json_object_get(p, "cmd"));

		if (!json_is_true(json_object_get(p, "running")))
			continue;
		if (json_array_size(argv)) {
			json_t *args = json_array();
			for (size_t k = 1; k < json_array_size(argv); k++)
				json_array_append(args, json_array_get(argv, k));
			cfg = json_pack("{s:O, s:o, s:{}}", "cmd", json_array_get(argv, 0), "args",
					args, "envs");
		} else {
			cfg = json_pack("{s:s, s:[s, s], s:{}}", "cmd", "/bin/sh", "args", "-c",
					cmd ? cmd : "", "envs");
		}
		json_array_append_new(out, json_pack("{s:o, s:O}", "config", cfg, "pid",
						     json_object_get(p, "pid")));
	}
	json_decref(procs);
	return omr_api_reply_json(r, 200, json_pack("{s:o}", "processes", out));
}

enum MHD_Result omr_envd_signal(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *name;
	json_t *sv = json_object_get(r->json, "signal");
	struct omr_err *err = NULL;
	int pid, sig = 0;

	if (!id || (pid = selector_pid(r)) < 0)
		return MHD_YES;
	name = json_string_value(sv);
	if ((name && !strcmp(name, "SIGNAL_SIGKILL")) || json_integer_value(sv) == SIGKILL)
		sig = SIGKILL;
	else if ((name && !strcmp(name, "SIGNAL_SIGTERM")) || json_integer_value(sv) == SIGTERM)
		sig = SIGTERM;
	else
		return omr_api_reply_error(r, 400, "bad_request", "signal must be SIGNAL_SIGKILL or "
					   "SIGNAL_SIGTERM");
	if (omr_exec_kill(r->api->c, id, pid, sig, &err) < 0) {
		/* One that has exited is no more found than one that never
		 * was, for E2B (kill() then answers false). */
		if (omr_err_kind(err) == OMR_E_STATE) {
			omr_err_free(&err);
			return omr_api_reply_error(r, 404, "not_found", "command %d has exited", pid);
		}
		return omr_api_reply_err(r, &err);
	}
	omr_api_audit(r, "signal", id, sig == SIGKILL ? "SIGKILL" : "SIGTERM");
	return omr_api_reply_json(r, 200, json_object());
}

enum MHD_Result omr_envd_send_input(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r);
	json_t *in = json_object_get(r->json, "input");
	const char *b64 = json_string_value(json_object_get(in, "stdin"));
	_cleanup_free_ char *data = NULL;
	_cleanup_close_ int fd = -1;
	size_t n = 0;
	int pid;

	if (!id || (pid = selector_pid(r)) < 0)
		return MHD_YES;
	if (json_object_get(in, "pty"))
		return omr_api_reply_error(r, 501, "unsupported", "terminals (pty) are not supported "
					   "through the E2B endpoint");
	if (!b64 || omr_b64_decode(b64, &data, &n) < 0)
		return omr_api_reply_error(r, 400, "bad_request", "input.stdin must be base64");
	if ((fd = stdin_dup(id, pid)) < 0)
		return omr_api_reply_error(r, 404, "not_found", "command %d takes no stdin (start it "
					   "with stdin: true; its stream must be open)", pid);
	if (omr_write_all(fd, data, n) < 0)
		return omr_api_reply_error(r, 404, "not_found", "command %d takes no more stdin", pid);
	return omr_api_reply_json(r, 200, json_object());
}

enum MHD_Result omr_envd_close_stdin(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r);
	int pid;

	if (!id || (pid = selector_pid(r)) < 0)
		return MHD_YES;
	if (stdin_close(id, pid, 0) < 0)
		return omr_api_reply_error(r, 404, "not_found", "command %d takes no stdin", pid);
	return omr_api_reply_json(r, 200, json_object());
}

/* ---- filesystem ---- */

/* A path of a filesystem call: absolute (E2B's relative paths are the
 * guest user's home's, which the shim does not know). */
static const char *fs_path(struct omr_api_req *r, const char *key)
{
	const char *p = json_string_value(json_object_get(r->json, key));
	struct omr_err *err = NULL;

	if (!p || !*p) {
		omr_api_reply_error(r, 400, "bad_request", "%s is missing", key);
		return NULL;
	}
	if (p[0] != '/') {
		omr_api_reply_error(r, 400, "bad_request", "%s must be absolute", key);
		return NULL;
	}
	if (omr_files_path_check(p, &err) < 0) {
		omr_api_reply_err(r, &err);
		return NULL;
	}
	return p;
}

static void perm_string(const char *type, unsigned mode, char out[11])
{
	static const char rwx[] = "rwxrwxrwx";

	out[0] = !strcmp(type, "dir") ? 'd' : !strcmp(type, "symlink") ? 'l' :
		 !strcmp(type, "file") ? '-' : '?';
	for (int i = 0; i < 9; i++)
		out[i + 1] = mode & (1u << (8 - i)) ? rwx[i] : '-';
	out[10] = 0;
}

/* An OmniRun stat or list entry as envd's EntryInfo; path is the
 * entry's own. */
static json_t *entry_info(json_t *e, const char *path)
{
	const char *type = json_string_value(json_object_get(e, "type"));
	unsigned mode = (unsigned)json_integer_value(json_object_get(e, "mode")) & 07777;
	char size[24], perms[11], mtime[32], owner[16], group[16];
	const char *slash = strrchr(path, '/');
	json_t *o;

	type = type ? type : "other";
	snprintf(size, sizeof(size), "%lld", (long long)json_integer_value(json_object_get(e, "size")));
	perm_string(type, mode, perms);
	/* A Timestamp must parse: the epoch stands for "none" (and for the
	 * files of an initramfs, which carry it). */
	omr_format_time((int64_t)json_integer_value(json_object_get(e, "mtime")), mtime);
	if (!strcmp(mtime, "-"))
		strcpy(mtime, "1970-01-01T00:00:00Z");
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s}", "name",
		      slash && slash[1] ? slash + 1 : path, "type",
		      !strcmp(type, "file") ? "FILE_TYPE_FILE" : !strcmp(type, "dir") ?
		      "FILE_TYPE_DIRECTORY" : !strcmp(type, "symlink") ? "FILE_TYPE_SYMLINK" :
		      "FILE_TYPE_UNSPECIFIED", "path", path, "size", size, "mode", (int)mode,
		      "permissions", perms, "modifiedTime", mtime);
	if (json_object_get(e, "uid")) {
		snprintf(owner, sizeof(owner), "%lld", (long long)json_integer_value(json_object_get(e, "uid")));
		snprintf(group, sizeof(group), "%lld", (long long)json_integer_value(json_object_get(e, "gid")));
		json_object_set_new(o, "owner", json_string(!strcmp(owner, "0") ? "root" : owner));
		json_object_set_new(o, "group", json_string(!strcmp(group, "0") ? "root" : group));
	}
	if (json_is_string(json_object_get(e, "target")))
		json_object_set(o, "symlinkTarget", json_object_get(e, "target"));
	return o;
}

/* {"entry": EntryInfo} of path (new ref), or NULL with *err. */
static json_t *stat_entry(struct omr_api_req *r, const char *id, const char *path,
			  struct omr_err **err)
{
	json_t *st = NULL, *o;

	if (omr_files_stat(r->api->c, id, path, &st, err) < 0)
		return NULL;
	o = json_pack("{s:o}", "entry", entry_info(st, path));
	json_decref(st);
	return o;
}

enum MHD_Result omr_envd_stat(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (!(o = stat_entry(r, id, path, &err)))
		return omr_api_reply_err(r, &err);
	return omr_api_reply_json(r, 200, o);
}

static char *join_path(const char *dir, const char *name)
{
	return omr_strdup_printf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
}

/* Appends the entries of dir, and of its directories down to depth
 * levels, to out.  Returns 0 or < 0. */
static int list_into(struct omr_api_req *r, const char *id, const char *dir, unsigned depth,
		     json_t *out, struct omr_err **err)
{
	json_t *l = NULL, *e;
	size_t i;

	if (omr_files_list(r->api->c, id, dir, &l, err) < 0)
		return -1;
	json_array_foreach(l, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		_cleanup_free_ char *p = NULL;

		if (!name || json_array_size(out) >= LIST_ENTRIES_MAX)
			continue;
		p = join_path(dir, name);
		json_array_append_new(out, entry_info(e, p));
		if (depth > 1 && !strcmp(json_string_value(json_object_get(e, "type")) ?: "", "dir") &&
		    list_into(r, id, p, depth - 1, out, err) < 0) {
			json_decref(l);
			return -1;
		}
	}
	json_decref(l);
	return 0;
}

enum MHD_Result omr_envd_listdir(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	json_t *dv = json_object_get(r->json, "depth"), *out;
	struct omr_err *err = NULL;
	json_int_t depth = json_integer_value(dv);

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (depth < 1)
		depth = 1;
	if (depth > LIST_DEPTH_MAX)
		return omr_api_reply_error(r, 400, "bad_request", "depth is at most %d", LIST_DEPTH_MAX);
	out = json_array();
	if (list_into(r, id, path, (unsigned)depth, out, &err) < 0) {
		json_decref(out);
		return omr_api_reply_err(r, &err);
	}
	return omr_api_reply_json(r, 200, json_pack("{s:o}", "entries", out));
}

enum MHD_Result omr_envd_mkdir(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	/* envd tells an existing directory apart (makeDir() answers false). */
	if ((o = stat_entry(r, id, path, &err))) {
		json_decref(o);
		return omr_api_reply_error(r, 409, "already_exists", "'%s' exists", path);
	}
	omr_err_free(&err);
	if (omr_files_mkdir(r->api->c, id, path, 1, &err) < 0 ||
	    !(o = stat_entry(r, id, path, &err)))
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_mkdir", id, NULL);
	return omr_api_reply_json(r, 200, o);
}

enum MHD_Result omr_envd_move(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *from, *to;
	struct omr_err *err = NULL;
	json_t *o;

	if (!id || !(from = fs_path(r, "source")) || !(to = fs_path(r, "destination")))
		return MHD_YES;
	if (omr_files_rename(r->api->c, id, from, to, &err) < 0 ||
	    !(o = stat_entry(r, id, to, &err)))
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_rename", id, NULL);
	return omr_api_reply_json(r, 200, o);
}

enum MHD_Result omr_envd_remove(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct omr_err *err = NULL;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (omr_files_remove(r->api->c, id, path, 1, &err) < 0)
		return omr_api_reply_err(r, &err);
	omr_api_audit(r, "file_remove", id, NULL);
	return omr_api_reply_json(r, 200, json_object());
}

/* ---- WatchDir: a stream of inotify events ---- */

struct wstream {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	char *path;
	int recursive;
	int fd[2];                      /* events, one JSON text a line */
	int sig[2];                     /* ends the watch */
	pthread_t th;
	int started, joined, rc;
	struct omr_err *e;
	int eof, ended, keepalive_ms, client_fd;
	uint8_t *pend;
	size_t pend_len, pend_off;
	char line[16384];
	size_t line_len;
};

/* An agent watch event as a WatchDirResponse (new ref), or NULL for one
 * envd does not report.  Types as envd's (fsnotify's): a file moved in
 * is a create, one moved out a rename. */
static json_t *watch_msg(struct wstream *w, json_t *ev)
{
	static const struct { const char *ours, *theirs; } types[] = {
		{ "create", "EVENT_TYPE_CREATE" }, { "rename_to", "EVENT_TYPE_CREATE" },
		{ "modify", "EVENT_TYPE_WRITE" }, { "delete", "EVENT_TYPE_REMOVE" },
		{ "delete_self", "EVENT_TYPE_REMOVE" }, { "rename_from", "EVENT_TYPE_RENAME" },
		{ "move_self", "EVENT_TYPE_RENAME" }, { "attrib", "EVENT_TYPE_CHMOD" },
	};
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *path = json_string_value(json_object_get(ev, "path")), *rel;
	size_t pl = strlen(w->path);

	if (name && !strcmp(name, "ready"))
		return json_pack("{s:{}}", "start");
	for (size_t i = 0; name && path && i < OMR_ARRAY_SIZE(types); i++) {
		if (strcmp(name, types[i].ours))
			continue;
		rel = path;
		if (!strncmp(path, w->path, pl) && (path[pl] == '/' || !path[pl]))
			rel = path[pl] ? path + pl + 1 : path + pl;
		else if (pl == 1 && path[0] == '/')
			rel = path + 1;
		return json_pack("{s:{s:s, s:s}}", "filesystem", "name", rel, "type", types[i].theirs);
	}
	return NULL;
}

static int wd_event(void *user, json_t *ev)
{
	struct wstream *w = user;
	json_t *m = watch_msg(w, ev);
	char *text;
	int rc;

	if (!m)
		return 0;
	text = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	text = omr_xrealloc(text, strlen(text) + 2);
	strcat(text, "\n");
	/* The reader is gone: the watch ends. */
	rc = omr_write_all(w->fd[1], text, strlen(text)) < 0 ? -1 : 0;
	free(text);
	return rc;
}

static void *wd_main(void *p)
{
	struct wstream *w = p;

	w->rc = omr_files_watch(w->c, w->id, w->path, w->recursive, w->sig[0], wd_event, w, &w->e);
	close_fd(&w->fd[1]);
	return NULL;
}

static void wd_free(struct wstream *w)
{
	for (int i = 0; i < 2; i++) {
		close_fd(&w->fd[i]);
		close_fd(&w->sig[i]);
	}
	free(w->path);
	omr_err_free(&w->e);
	free(w->pend);
	free(w);
}

static ssize_t wd_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct wstream *w = cls;

	(void)pos;
	while (w->pend_off == w->pend_len) {
		struct pollfd p[2];
		ssize_t n;
		char *nl;

		w->pend_off = w->pend_len = 0;
		if (w->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (w->eof) {
			if (w->started && !w->joined) {
				pthread_join(w->th, NULL);
				w->joined = 1;
			}
			envelope_push(&w->pend, &w->pend_len, OMR_CONNECT_END_STREAM, w->rc < 0 ?
				      json_pack("{s:{s:s, s:s}}", "error", "code",
						omr_err_kind(w->e) == OMR_E_NOT_FOUND ? "not_found" :
						"unavailable", "message", w->e->msg) : json_object());
			w->ended = 1;
			break;
		}
		p[0] = (struct pollfd){ .fd = w->fd[0], .events = POLLIN };
		p[1] = (struct pollfd){ .fd = w->client_fd, .events = POLLRDHUP };
		int k = poll(p, 2, w->keepalive_ms);
		if (k > 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (k <= 0 || !p[0].revents) {
			envelope_push(&w->pend, &w->pend_len, 0, json_pack("{s:{}}", "keepalive"));
			break;
		}
		n = read(w->fd[0], w->line + w->line_len, sizeof(w->line) - 1 - w->line_len);
		if (n <= 0) {
			if (!(n < 0 && errno == EINTR))
				w->eof = 1;
			continue;
		}
		w->line_len += (size_t)n;
		w->line[w->line_len] = 0;
		while ((nl = strchr(w->line, '\n'))) {
			json_t *m;

			*nl = 0;
			if ((m = json_loads(w->line, 0, NULL)))
				envelope_push(&w->pend, &w->pend_len, 0, m);
			w->line_len -= (size_t)(nl + 1 - w->line);
			memmove(w->line, nl + 1, w->line_len + 1);
		}
		/* A line longer than the buffer (no path is) is dropped. */
		if (w->line_len == sizeof(w->line) - 1)
			w->line_len = 0;
	}
	size_t n = w->pend_len - w->pend_off < max ? w->pend_len - w->pend_off : max;
	memcpy(out, w->pend + w->pend_off, n);
	w->pend_off += n;
	return (ssize_t)n;
}

/* The client is gone or the watch ended: a signal ends the agent's
 * watch (a second one, unanswered, the stream at once). */
static void wd_done(void *cls)
{
	struct wstream *w = cls;
	struct signalfd_siginfo si = { .ssi_signo = SIGINT };

	if (w->started && !w->joined) {
		(void)!write(w->sig[1], &si, sizeof(si));
		close_fd(&w->fd[0]);
		pthread_join(w->th, NULL);
		w->joined = 1;
	}
	wd_free(w);
}

enum MHD_Result omr_envd_watch(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	struct MHD_Response *resp;
	struct wstream *w;

	if (!id || !(path = fs_path(r, "path")))
		return MHD_YES;
	if (json_is_true(json_object_get(r->json, "includeEntry")))
		return omr_api_reply_error(r, 501, "unsupported", "entries in watch events are not "
					   "supported");
	w = omr_xcalloc(1, sizeof(*w));
	w->c = r->api->c;
	omr_strlcpy(w->id, id, sizeof(w->id));
	w->path = omr_xstrdup(path);
	/* Events name paths below the watched one: no trailing slash. */
	for (size_t n = strlen(w->path); n > 1 && w->path[n - 1] == '/'; n--)
		w->path[n - 1] = 0;
	w->recursive = json_is_true(json_object_get(r->json, "recursive"));
	w->fd[0] = w->fd[1] = w->sig[0] = w->sig[1] = -1;
	w->client_fd = omr_api_client_fd(r);
	w->keepalive_ms = (int)r->api->c->api_conn_timeout_s * 500;
	if (w->keepalive_ms > KEEPALIVE_MS)
		w->keepalive_ms = KEEPALIVE_MS;
	if (pipe2(w->fd, O_CLOEXEC) < 0 || pipe2(w->sig, O_CLOEXEC | O_NONBLOCK) < 0 ||
	    pthread_create(&w->th, NULL, wd_main, w) != 0) {
		wd_free(w);
		return omr_api_reply_error(r, 500, "failed", "cannot start the watch");
	}
	w->started = 1;
	omr_api_audit(r, "file_watch", id, NULL);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CHUNK, wd_read, w, wd_done);
	if (!resp) {
		wd_done(w);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/connect+json");
	return omr_api_reply_response(r, 200, resp);
}

/* ---- GET and POST /files ---- */

enum MHD_Result omr_envd_files_get(struct omr_api_req *r)
{
	if (!omr_api_e2b_sandbox(r))
		return MHD_YES;
	return omr_api_files_get(r);
}

/* An upload: one raw body (application/octet-stream), or the "file"
 * parts of a multipart form, each streamed to a transfer of its own. */
struct upload {
	char id[OMR_ID_MAX];
	char *qpath;                    /* the path query argument, or NULL */
	struct MHD_PostProcessor *pp;
	struct omr_api_put *parts[PARTS_MAX];
	uint64_t sent[PARTS_MAX];
	size_t nparts;
	struct omr_api_req *r;
	char *error;                    /* a bad part: said at the end */
};

static void upload_free(struct omr_api_req *r)
{
	struct upload *u = r->ctx;

	if (!u)
		return;
	if (u->pp)
		MHD_destroy_post_processor(u->pp);
	for (size_t i = 0; i < u->nparts; i++) {
		if (r->sink_fd == omr_api_put_fd(u->parts[i]))
			r->sink_fd = -1; /* the part's, closed by it */
		omr_api_put_free(u->parts[i]);
	}
	free(u->qpath);
	free(u->error);
	free(u);
	r->ctx = NULL;
}

/* A path the client named for a part (its file name), checked as the
 * query argument is. */
static int part_path_ok(const char *p)
{
	struct omr_err *err = NULL;

	if (!p || p[0] != '/' || strstr(p, "/../") || !strcmp(p + strlen(p) - (strlen(p) > 2 ? 3 : 0), "/..") ||
	    omr_files_path_check(p, &err) < 0) {
		omr_err_free(&err);
		return 0;
	}
	return 1;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *filename, const char *content_type,
			       const char *transfer_encoding, const char *data, uint64_t off,
			       size_t size)
{
	struct upload *u = cls;
	struct omr_api_put *p;

	(void)kind;
	(void)content_type;
	(void)transfer_encoding;
	if (u->error || !key || strcmp(key, "file"))
		return MHD_YES;
	/* A part begins at offset 0; MHD may call more than once there
	 * (its headers, then its first bytes). */
	if (off == 0 && (!u->nparts || u->sent[u->nparts - 1] ||
			 strcmp(omr_api_put_path(u->parts[u->nparts - 1]),
				u->qpath ? u->qpath : filename ? filename : ""))) {
		const char *path = u->qpath ? u->qpath : filename;

		if (u->nparts == PARTS_MAX) {
			u->error = omr_strdup_printf("at most %d files at once", PARTS_MAX);
			return MHD_YES;
		}
		if (!part_path_ok(path)) {
			u->error = omr_xstrdup("each file needs an absolute path (the path query "
					       "argument or the part's file name)");
			return MHD_YES;
		}
		/* Errors of the start are queued on r: there is one. */
		if (!(p = omr_api_put_start(u->r, u->id, path, -1)))
			return MHD_NO;
		u->parts[u->nparts++] = p;
	}
	if (!u->nparts)
		return MHD_YES;
	if (size && omr_write_all(omr_api_put_fd(u->parts[u->nparts - 1]), data, size) < 0)
		return MHD_NO;
	u->sent[u->nparts - 1] += size;
	return MHD_YES;
}

static int upload_chunk(struct omr_api_req *r, const char *data, size_t n)
{
	struct upload *u = r->ctx;

	return MHD_post_process(u->pp, data, n) == MHD_YES ? 0 : -1;
}

enum MHD_Result omr_envd_files_put_begin(struct omr_api_req *r)
{
	const char *id = omr_api_e2b_sandbox(r), *path;
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *ce = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_ENCODING);
	struct upload *u;

	if (!id)
		return MHD_YES;
	if (ce && strcasecmp(ce, "identity"))
		return omr_api_reply_error(r, 501, "unsupported", "compressed uploads are not "
					   "supported");
	u = omr_xcalloc(1, sizeof(*u));
	omr_strlcpy(u->id, id, sizeof(u->id));
	u->r = r;
	r->ctx = u;
	r->ctx_free = upload_free;
	if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
		if ((path = omr_api_query(r, "path", NULL)) && !(path = omr_api_req_path(r)))
			return MHD_YES;
		u->qpath = path ? omr_xstrdup(path) : NULL;
		u->pp = MHD_create_post_processor(r->conn, 65536, on_part, u);
		if (!u->pp)
			return omr_api_reply_error(r, 400, "bad_request", "a multipart body without "
						   "a boundary");
		r->on_chunk = upload_chunk;
		return MHD_YES;
	}
	if (!(path = omr_api_req_path(r)))
		return MHD_YES;
	if (!(u->parts[0] = omr_api_put_start(r, id, path, -1)))
		return MHD_YES;
	u->nparts = 1;
	r->sink_fd = omr_api_put_fd(u->parts[0]);
	return MHD_YES;
}

enum MHD_Result omr_envd_files_put_end(struct omr_api_req *r)
{
	struct upload *u = r->ctx;
	json_t *out;

	if (!u->pp)
		u->sent[0] = r->sink_bytes;
	for (size_t i = 0; i < u->nparts; i++)
		if (omr_api_put_finish(r, u->parts[i], u->sent[i]) < 0)
			return MHD_YES;
	if (u->error)
		return omr_api_reply_error(r, 400, "bad_request", "%s", u->error);
	if (r->sink_failed)
		return omr_api_reply_error(r, 500, "failed", "the upload was cut short");
	if (!u->nparts)
		return omr_api_reply_error(r, 400, "bad_request", "no file in the upload");
	out = json_array();
	for (size_t i = 0; i < u->nparts; i++) {
		const char *p = omr_api_put_path(u->parts[i]), *slash = strrchr(p, '/');
		json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : p,
						     "type", "file", "path", p));
	}
	return omr_api_reply_json(r, 200, out);
}

void omr_envd_files_put_abort(struct omr_api_req *r)
{
	struct upload *u = r->ctx;

	if (!u)
		return;
	for (size_t i = 0; i < u->nparts; i++)
		omr_api_put_abort(u->parts[i]);
	r->sink_fd = -1;
}
