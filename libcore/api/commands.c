/* /sandboxes/:id/commands: run (a JSON result, or server-sent events
 * with Accept: text/event-stream, or a pid in the background) and list.
 *
 * A foreground command runs on a thread of its own (a job) that writes
 * its output into two pipes; the request's thread reads them, and
 * watches the client's socket: a client that hangs up has its command
 * killed (a SIGKILL forwarded through the stream, as sbx-exec forwards
 * the signals it gets). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/json.h"
#include "omnirun/base/util.h"
#include "omnirun/client/exec.h"

/* A JSON result keeps at most this much of each stream (the rest is
 * dropped and said so); the event stream has no such bound. */
#define RESULT_MAX (4u << 20)
#define CHUNK 16384
#define KEEPALIVE_MS 15000

struct job {
	const struct omr_config *c;
	char id[OMR_ID_MAX];
	struct omr_exec_opts o;
	char **argv, **env;
	char *cmd, *cwd, *user;
	int out[2], err[2], sig[2], in_fd;
	pthread_t th;
	int started, joined;
	int rc;
	struct omr_exec_result res;
	struct omr_err *e;
	/* the event stream */
	int client_fd;
	int keepalive_ms;       /* well within the connection's idle timeout */
	int eof_out, eof_err, ended;
	char *pend;
	size_t pend_len, pend_off;
	int killed;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	omr_argv_free(j->argv);
	omr_argv_free(j->env);
	free(j->cmd);
	free(j->cwd);
	free(j->user);
	for (int i = 0; i < 2; i++) {
		close_fd(&j->out[i]);
		close_fd(&j->err[i]);
		close_fd(&j->sig[i]);
	}
	close_fd(&j->in_fd);
	omr_err_free(&j->e);
	free(j->pend);
	free(j);
}

static void *job_main(void *p)
{
	struct job *j = p;

	j->rc = omr_exec_run(j->c, j->id, &j->o, &j->res, &j->e);
	/* EOF for the reader: the command is over. */
	close_fd(&j->out[1]);
	close_fd(&j->err[1]);
	return NULL;
}

/* Kills the command: SIGKILL goes to it through the stream; a second
 * one, while the first got no answer, ends the stream at once. */
static void job_kill(struct job *j)
{
	struct signalfd_siginfo si = { .ssi_signo = SIGKILL };

	if (j->killed || j->sig[1] < 0)
		return;
	j->killed = 1;
	(void)!write(j->sig[1], &si, sizeof(si));
	(void)!write(j->sig[1], &si, sizeof(si));
}

static void job_join(struct job *j)
{
	if (j->started && !j->joined) {
		pthread_join(j->th, NULL);
		j->joined = 1;
	}
}

/* Env from an object {K: V} or an array ["K=V"]. */
static int parse_env(json_t *v, char ***out)
{
	size_t n = json_is_object(v) ? json_object_size(v) : json_array_size(v), i = 0;
	char **env = omr_xcalloc(n + 1, sizeof(*env));
	const char *k;
	json_t *x;

	if (json_is_object(v)) {
		json_object_foreach(v, k, x) {
			if (!json_is_string(x) || !*k || strchr(k, '='))
				goto bad;
			env[i++] = omr_strdup_printf("%s=%s", k, json_string_value(x));
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, n, x) {
			if (!json_is_string(x))
				goto bad;
			env[i++] = omr_xstrdup(json_string_value(x));
		}
	} else if (!json_is_null(v)) {
		goto bad;
	}
	*out = env;
	return 0;
bad:
	omr_argv_free(env);
	return -1;
}

static const char *const run_fields[] = {
	"cmd:s", "argv:a", "env:n", "cwd:s", "user:s", "timeout:i", "stdin:s", "background:b", NULL,
};

/* A job from the body, or NULL with a reply queued. */
static struct job *job_new(struct omr_api_req *r, const char *id)
{
	json_t *b = r->json, *v;
	struct job *j = omr_xcalloc(1, sizeof(*j));
	struct omr_err *err = NULL;
	const char *s;

	j->c = r->api->c;
	omr_strlcpy(j->id, id, sizeof(j->id));
	for (int i = 0; i < 2; i++)
		j->out[i] = j->err[i] = j->sig[i] = -1;
	j->in_fd = -1;
	j->client_fd = -1;
	if (omr_api_check_fields(r, b, run_fields) < 0)
		goto fail;
	if ((v = json_object_get(b, "argv")) &&
	    omr_json_get_bytes_array(b, "argv", 4096, &j->argv) < 0) {
		omr_api_reply_error(r, 400, "bad_request", "argv must be an array of strings");
		goto fail;
	}
	if ((s = json_string_value(json_object_get(b, "cmd"))))
		j->cmd = omr_xstrdup(s);
	if ((v = json_object_get(b, "env")) && parse_env(v, &j->env) < 0) {
		omr_api_reply_error(r, 400, "bad_request", "env must be an object of strings or an "
				    "array of \"K=V\"");
		goto fail;
	}
	if ((s = json_string_value(json_object_get(b, "cwd"))))
		j->cwd = omr_xstrdup(s);
	if ((s = json_string_value(json_object_get(b, "user"))))
		j->user = omr_xstrdup(s);
	j->o.argv = j->argv;
	j->o.cmd = j->cmd;
	j->o.env = j->env;
	j->o.cwd = j->cwd;
	j->o.user = j->user;
	if ((v = json_object_get(b, "timeout"))) {
		if (json_integer_value(v) > 86400 * 365) {
			omr_api_reply_error(r, 400, "bad_request", "timeout is too large");
			goto fail;
		}
		j->o.timeout_s = (unsigned)json_integer_value(v);
	}
	j->o.background = json_is_true(json_object_get(b, "background"));
	j->o.in_fd = j->o.out_fd = j->o.err_fd = j->o.sig_fd = j->o.tty_fd = -1;
	if (omr_exec_validate(&j->o, &err) < 0) {
		omr_api_reply_err(r, &err);
		goto fail;
	}
	/* stdin is at most a request body: a memfd holds it, read to EOF. */
	if ((s = json_string_value(json_object_get(b, "stdin")))) {
		j->in_fd = memfd_create("stdin", MFD_CLOEXEC);
		if (j->in_fd < 0 || omr_write_all(j->in_fd, s, strlen(s)) < 0 ||
		    lseek(j->in_fd, 0, SEEK_SET) < 0) {
			omr_api_reply_error(r, 500, "failed", "cannot hold stdin");
			goto fail;
		}
		j->o.in_fd = j->in_fd;
	}
	return j;
fail:
	job_free(j);
	return NULL;
}

static int job_start(struct job *j)
{
	if (pipe2(j->out, O_CLOEXEC) < 0 || pipe2(j->err, O_CLOEXEC) < 0 ||
	    pipe2(j->sig, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	j->o.out_fd = j->out[1];
	j->o.err_fd = j->err[1];
	j->o.sig_fd = j->sig[0];
	if (pthread_create(&j->th, NULL, job_main, j) != 0)
		return -1;
	j->started = 1;
	return 0;
}

/* Waits for output or the client's hang-up.  Returns the poll set. */
static void job_poll(struct job *j, struct pollfd p[3], int timeout_ms)
{
	p[0] = (struct pollfd){ .fd = j->eof_out ? -1 : j->out[0], .events = POLLIN };
	p[1] = (struct pollfd){ .fd = j->eof_err ? -1 : j->err[0], .events = POLLIN };
	p[2] = (struct pollfd){ .fd = j->killed ? -1 : j->client_fd, .events = POLLRDHUP };
	if (poll(p, 3, timeout_ms) < 0)
		memset(p, 0, 3 * sizeof(*p));
	/* A client that hangs up kills its foreground command. */
	if (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR))
		job_kill(j);
}

/* Bytes as JSON: the text, and base64 too when they are not UTF-8. */
static void set_output(json_t *o, const char *key, const char *s, size_t n)
{
	json_object_set_new(o, key, omr_json_text(s, n));
	if (!omr_utf8_valid(s, n)) {
		_cleanup_free_ char *b = omr_b64_encode(s, n);
		_cleanup_free_ char *k = omr_strdup_printf("%sB64", key);
		json_object_set_new(o, k, json_string(b));
	}
}

static json_t *exit_json(struct job *j)
{
	return json_pack("{s:o, s:o, s:b, s:I}", "exitCode",
			 j->res.signal ? json_null() : json_integer(j->res.exit_code), "signal",
			 j->res.signal ? json_integer(j->res.signal) : json_null(), "timedOut",
			 j->res.timed_out, "durationMs", (json_int_t)j->res.duration_ms);
}

/* Reads what stream i (0 stdout, 1 stderr) has ready after job_poll into
 * tmp (CHUNK bytes): > 0 bytes read, 0 nothing now (an end is marked on
 * the job). */
static ssize_t job_read(struct job *j, const struct pollfd *p, int i, char *tmp)
{
	ssize_t n;

	if (!p[i].revents)
		return 0;
	n = read(p[i].fd, tmp, CHUNK);
	if (n <= 0) {
		if (!(n < 0 && errno == EINTR))
			*(i ? &j->eof_err : &j->eof_out) = 1;
		return 0;
	}
	return n;
}

static enum MHD_Result run_json(struct omr_api_req *r, struct job *j)
{
	char *buf[2] = { NULL, NULL };
	size_t len[2] = { 0, 0 };
	int cut[2] = { 0, 0 };

	while (!j->eof_out || !j->eof_err) {
		struct pollfd p[3];

		job_poll(j, p, -1);
		for (int i = 0; i < 2; i++) {
			char tmp[CHUNK];
			ssize_t n = job_read(j, p, i, tmp);

			if (n == 0)
				continue;
			if (len[i] + (size_t)n > RESULT_MAX) {
				cut[i] = 1;
				n = (ssize_t)(RESULT_MAX - len[i]);
			}
			buf[i] = omr_xrealloc(buf[i], len[i] + (size_t)n + 1);
			memcpy(buf[i] + len[i], tmp, (size_t)n);
			len[i] += (size_t)n;
		}
	}
	job_join(j);
	enum MHD_Result rc;
	if (j->killed) {
		rc = MHD_NO; /* nobody to answer */
	} else if (j->rc < 0) {
		rc = omr_api_reply_err(r, &j->e);
	} else {
		json_t *o = exit_json(j);
		set_output(o, "stdout", buf[0] ? buf[0] : "", len[0]);
		set_output(o, "stderr", buf[1] ? buf[1] : "", len[1]);
		if (cut[0] || cut[1])
			json_object_set_new(o, "truncated", json_true());
		rc = omr_api_reply_json(r, 200, o);
	}
	free(buf[0]);
	free(buf[1]);
	return rc;
}

/* ---- server-sent events ---- */

static void pend_event(struct job *j, const char *event, json_t *data)
{
	_cleanup_free_ char *d = json_dumps(data, JSON_COMPACT);
	_cleanup_free_ char *ev = omr_strdup_printf("event: %s\ndata: %s\n\n", event, d);
	size_t n = strlen(ev);

	json_decref(data);
	j->pend = omr_xrealloc(j->pend, j->pend_len + n);
	memcpy(j->pend + j->pend_len, ev, n);
	j->pend_len += n;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct job *j = cls;

	(void)pos;
	while (j->pend_off == j->pend_len) {
		struct pollfd p[3];

		j->pend_off = j->pend_len = 0;
		if (j->ended)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (j->eof_out && j->eof_err) {
			job_join(j);
			if (j->killed)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			if (j->rc < 0) {
				const struct omr_err_kind_info *k = omr_err_kind_info(omr_err_kind(j->e));
				pend_event(j, "error", json_pack("{s:s, s:s}", "error", j->e->msg,
								 "code", k->name));
			} else {
				pend_event(j, "exit", exit_json(j));
			}
			j->ended = 1;
			break;
		}
		job_poll(j, p, j->keepalive_ms);
		if (j->killed && !p[0].revents && !p[1].revents)
			continue; /* drain until the job ends */
		if (!p[0].revents && !p[1].revents) {
			/* A comment keeps proxies and MHD's timeout from
			 * taking a quiet command for a dead connection. */
			j->pend = omr_xrealloc(j->pend, 2);
			memcpy(j->pend, ":\n", 2);
			j->pend_len = 2;
			break;
		}
		for (int i = 0; i < 2; i++) {
			char tmp[CHUNK];
			ssize_t n = job_read(j, p, i, tmp);

			if (n == 0 || j->killed)
				continue;
			json_t *d = json_object();
			set_output(d, "data", tmp, (size_t)n);
			pend_event(j, i ? "stderr" : "stdout", d);
		}
	}
	size_t n = j->pend_len - j->pend_off < max ? j->pend_len - j->pend_off : max;
	memcpy(out, j->pend + j->pend_off, n);
	j->pend_off += n;
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct job *j = cls;

	/* The response is done with, whole or not: a command still running
	 * lost its client. */
	if (!(j->eof_out && j->eof_err))
		job_kill(j);
	close_fd(&j->out[0]);
	close_fd(&j->err[0]);
	job_join(j);
	job_free(j);
}

static int wants_events(struct omr_api_req *r)
{
	const char *acc = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Accept");
	return acc && strstr(acc, "text/event-stream");
}

enum MHD_Result omr_api_commands_run(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	struct job *j;
	enum MHD_Result rc;

	if (!id || !(j = job_new(r, id)))
		return MHD_YES;
	omr_api_audit(r, "exec", id, j->o.background ? "background" : NULL);
	if (j->o.background) {
		if (omr_exec_run(r->api->c, id, &j->o, &j->res, &err) < 0)
			rc = omr_api_reply_err(r, &err);
		else
			rc = omr_api_reply_json(r, 200, json_pack("{s:i}", "pid", j->res.pid));
		job_free(j);
		return rc;
	}
	j->client_fd = omr_api_client_fd(r);
	j->keepalive_ms = (int)r->api->c->api_conn_timeout_s * 500;
	if (j->keepalive_ms > KEEPALIVE_MS)
		j->keepalive_ms = KEEPALIVE_MS;
	if (job_start(j) < 0) {
		job_free(j);
		return omr_api_reply_error(r, 500, "failed", "cannot start the command's thread");
	}
	if (!wants_events(r)) {
		rc = run_json(r, j);
		job_free(j);
		return rc;
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, CHUNK * 8,
								      sse_read, j, sse_free);
	if (!resp) {
		sse_free(j);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	return omr_api_reply_response(r, 200, resp);
}

enum MHD_Result omr_api_commands_list(struct omr_api_req *r)
{
	const char *id = omr_api_own_sandbox(r);
	struct omr_err *err = NULL;
	json_t *h, *c;

	if (!id)
		return MHD_YES;
	if (omr_exec_history(r->api->c, id, &h, &err) < 0)
		return omr_api_reply_err(r, &err);
	c = omr_api_camel(h);
	json_decref(h);
	return omr_api_reply_json(r, 200, c);
}
