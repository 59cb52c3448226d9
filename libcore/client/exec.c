/* Commands in a sandbox; see omnirun/exec.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/client/client.h"
#include "omnirun/client/exec.h"
#include "omnirun/base/json.h"
#include "omnirun/base/proto.h"
#include "omnirun/state/record.h"
#include "omnirun/client/stream.h"
#include "omnirun/base/util.h"

#define ARGS_MAX 4096
#define ARGS_BYTES_MAX (1u << 20)
#define HISTORY_FILE_MAX (8u << 20)
/* One-shot calls (stat, rm, ps, kill...) answer at once; a guest that does
 * not must not hang its caller. */
#define CALL_TIMEOUT_MS 30000

int omr_exec_validate(const struct omr_exec_opts *o, struct omr_err **err)
{
	size_t n = 0, bytes = 0;

	if (!o->argv == !o->cmd)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "give either an argv or a shell command");
	if (o->argv && !o->argv[0])
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "empty command");
	for (char *const *a = o->argv; a && *a; a++, n++)
		bytes += strlen(*a) + 1;
	for (char *const *e = o->env; e && *e; e++, n++) {
		const char *eq = strchr(*e, '=');
		if (!eq || eq == *e)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "environment entry '%s' is not K=V", *e);
		bytes += strlen(*e) + 1;
	}
	if (o->cmd)
		bytes += strlen(o->cmd);
	if (n > ARGS_MAX || bytes > ARGS_BYTES_MAX)
		return omr_err_setx(err, OMR_E_TOO_LARGE, E2BIG, "arguments and environment too large "
				   "(at most %u entries and %u bytes)", ARGS_MAX, ARGS_BYTES_MAX);
	return 0;
}

/* Byte strings (argv, the shell line, env, cwd) go as text plus, where
 * they are not UTF-8, their exact bytes (omnirun/base/json.h); an env
 * entry that is not UTF-8 goes whole, as base64 "K=V", in env_b64. */
static json_t *exec_request(const struct omr_exec_opts *o)
{
	json_t *req = json_pack("{s:s}", "op", "exec");

	if (o->argv)
		omr_json_set_bytes_array(req, "argv", o->argv);
	else
		omr_json_set_bytes(req, "cmd", o->cmd);
	if (o->env) {
		json_t *e = json_object(), *eb = json_array();
		for (char *const *p = o->env; *p; p++) {
			const char *eq = strchr(*p, '=');
			if (!omr_utf8_valid(*p, strlen(*p))) {
				_cleanup_free_ char *b = omr_b64_encode(*p, strlen(*p));
				json_array_append_new(eb, json_string(b));
				continue;
			}
			_cleanup_free_ char *k = strndup(*p, (size_t)(eq - *p));
			json_object_set_new(e, k, json_string(eq + 1));
		}
		json_object_set_new(req, "env", e);
		if (json_array_size(eb))
			json_object_set(req, "env_b64", eb);
		json_decref(eb);
	}
	if (o->cwd)
		omr_json_set_bytes(req, "cwd", o->cwd);
	if (o->user)
		json_object_set_new(req, "user", omr_json_text(o->user, strlen(o->user)));
	if (o->timeout_s)
		json_object_set_new(req, "timeout_ms", json_integer((json_int_t)o->timeout_s * 1000));
	json_object_set_new(req, "stdin", json_boolean(o->in_fd >= 0));
	json_object_set_new(req, "pty", json_boolean(o->pty));
	json_object_set_new(req, "background", json_boolean(o->background));
	return req;
}

static void result_from(json_t *end, struct omr_exec_result *r)
{
	json_t *v;

	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
	if ((v = json_object_get(end, "exit_code")) && json_is_integer(v))
		r->exit_code = (int)json_integer_value(v);
	if ((v = json_object_get(end, "signal")) && json_is_integer(v))
		r->signal = (int)json_integer_value(v);
	r->timed_out = json_is_true(json_object_get(end, "timed_out"));
	r->pid = (int)json_integer_value(json_object_get(end, "pid"));
	r->duration_ms = (uint64_t)json_integer_value(json_object_get(end, "duration_ms"));
}

struct started {
	struct omr_exec_result *r;
	const struct omr_exec_opts *o;
};

static int on_started(void *user, json_t *reply)
{
	struct started *st = user;
	json_t *pid = json_object_get(reply, "pid");

	if (json_is_integer(pid)) {
		st->r->pid = (int)json_integer_value(pid);
		if (st->o->on_pid)
			st->o->on_pid(st->o->on_pid_user, st->r->pid);
	}
	return 0;
}

int omr_exec_run(const struct omr_config *c, const char *id, const struct omr_exec_opts *o,
		 struct omr_exec_result *r, struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	struct omr_stream s;
	json_t *req;
	int rc, pid = 0;

	if (omr_exec_validate(o, err) < 0)
		return -1;
	fd = omr_client_connect(c, id, err);
	if (fd < 0)
		return -1;
	omr_stream_init(&s, fd, 1);
	s.in_fd = o->in_fd;
	s.out_fd[OMR_CH_STDOUT] = o->out_fd;
	s.out_fd[OMR_CH_STDERR] = o->err_fd;
	s.sig_fd = o->sig_fd;
	s.tty_fd = o->pty ? o->tty_fd : -1;
	struct started st = { r, o };

	memset(r, 0, sizeof(*r));
	s.on_reply = on_started;
	s.user = &st;
	req = exec_request(o);
	rc = omr_stream_run(&s, req, err);
	json_decref(req);
	if (rc == 0) {
		pid = r->pid;
		result_from(s.end, r);
		if (!r->pid)
			r->pid = pid;
	}
	omr_stream_free(&s);
	return rc;
}

int omr_exec_status(const struct omr_exec_result *r)
{
	if (r->timed_out)
		return 124;
	if (r->signal > 0)
		return 128 + r->signal;
	return r->exit_code >= 0 ? r->exit_code : 1;
}

int omr_exec_attach(const struct omr_config *c, const char *id, int pid, int out_fd,
		    int err_fd, int sig_fd, struct omr_exec_result *r, struct omr_err **err)
{
	_cleanup_close_ int fd = omr_client_connect(c, id, err);
	struct omr_stream s;
	json_t *req;
	int rc;

	if (fd < 0)
		return -1;
	omr_stream_init(&s, fd, 1);
	s.out_fd[OMR_CH_STDOUT] = out_fd;
	s.out_fd[OMR_CH_STDERR] = err_fd;
	s.sig_fd = sig_fd;
	req = json_pack("{s:s, s:i}", "op", "attach", "pid", pid);
	rc = omr_stream_run(&s, req, err);
	json_decref(req);
	if (rc == 0)
		result_from(s.end, r);
	omr_stream_free(&s);
	return rc;
}

int omr_sandbox_call(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		     struct omr_err **err)
{
	_cleanup_close_ int fd = omr_client_connect(c, id, err);
	json_t *end = NULL;
	int rc;

	if (fd < 0)
		return -1;
	rc = omr_client_call(fd, 1, req, CALL_TIMEOUT_MS, &end, err);
	if (out)
		*out = end;
	else
		json_decref(end);
	return rc;
}

int omr_exec_ps(const struct omr_config *c, const char *id, json_t **out, struct omr_err **err)
{
	json_t *req = json_pack("{s:s}", "op", "ps"), *end = NULL;
	int rc = omr_sandbox_call(c, id, req, &end, err);

	json_decref(req);
	if (rc < 0)
		return rc;
	*out = json_incref(json_object_get(end, "processes"));
	if (!*out)
		*out = json_array();
	json_decref(end);
	return 0;
}

int omr_exec_kill(const struct omr_config *c, const char *id, int pid, int sig,
		  struct omr_err **err)
{
	json_t *req = json_pack("{s:s, s:i, s:i}", "op", "kill", "pid", pid, "signal", sig);
	int rc = omr_sandbox_call(c, id, req, NULL, err);

	json_decref(req);
	return rc;
}

int omr_exec_history(const struct omr_config *c, const char *id, json_t **out,
		     struct omr_err **err)
{
	struct omr_sandbox sb;
	_cleanup_free_ char *dir = NULL, *text = NULL;
	_cleanup_close_ int dfd = -1;
	json_t *arr;

	if (omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	dir = omr_sandbox_state_path(c, id, NULL);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	arr = json_array();
	if (dfd >= 0 && omr_read_file_at(dfd, "commands.jsonl", HISTORY_FILE_MAX, &text, NULL, NULL) == 0) {
		char *save = NULL;
		for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			json_t *j = json_loads(line, 0, NULL);
			if (j)
				json_array_append_new(arr, j);
		}
	}
	*out = arr;
	return 0;
}
