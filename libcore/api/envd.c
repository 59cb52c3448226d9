/* envd on the E2B listener (doc/e2b.md), its framing and its process
 * calls (envd-fs.c has the filesystem's): the calls E2B's SDKs make to
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

int omr_envd_keepalive_ms(struct omr_api_req *r)
{
	int ms = (int)r->api->c->api_conn_timeout_s * 500;

	return ms > KEEPALIVE_MS ? KEEPALIVE_MS : ms;
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
		omr_envd_close_fd(&s->out[i]);
		omr_envd_close_fd(&s->err[i]);
		omr_envd_close_fd(&s->sig[i]);
		omr_envd_close_fd(&s->pidp[i]);
	}
	omr_envd_close_fd(&s->in_r);
	omr_argv_free(s->argv);
	omr_argv_free(s->env);
	free(s->cwd);
	free(s->user);
	omr_err_free(&s->e);
	free(s->pend);
	free(s);
}

/* Queues one message (flags 0) or the end of the stream. */
void omr_connect_push(uint8_t **pend, size_t *len, uint8_t flags, json_t *msg)
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
	omr_connect_push(&s->pend, &s->pend_len, flags, msg);
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
	omr_envd_close_fd(&s->out[1]);
	omr_envd_close_fd(&s->err[1]);
	omr_envd_close_fd(&s->pidp[1]);
	return NULL;
}

static void *ps_main(void *p)
{
	struct pstream *s = p;

	s->rc = omr_exec_attach(s->c, s->id, s->pid, s->out[1], s->err[1], s->sig[0], &s->res,
				&s->e);
	omr_envd_close_fd(&s->out[1]);
	omr_envd_close_fd(&s->err[1]);
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
	omr_envd_close_fd(&s->out[0]);
	omr_envd_close_fd(&s->err[0]);
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
	s->keepalive_ms = omr_envd_keepalive_ms(r);
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
		omr_envd_close_fd(&s->out[0]);
		omr_envd_close_fd(&s->err[0]);
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

