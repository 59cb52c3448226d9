/* Running commands in a sandbox (sbx-exec, the shim's /commands). */
#ifndef OMNIRUN_EXEC_H
#define OMNIRUN_EXEC_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

/* argv, cmd, env and cwd are bytes, carried exactly (doc/protocol.md,
 * "Bytes"); user is a UTF-8 name or a uid. */
struct omr_exec_opts {
	char *const *argv;      /* argv to run, or NULL with cmd */
	const char *cmd;        /* shell line for /bin/sh -c */
	char *const *env;       /* "K=V" strings, NULL-terminated, or NULL */
	const char *cwd, *user;
	unsigned timeout_s;     /* 0: none */
	int in_fd;              /* stdin to forward, -1 for /dev/null */
	int out_fd, err_fd;     /* where output goes */
	int sig_fd;             /* signalfd to forward, or -1 */
	int pty;                /* run on a pseudo-terminal */
	int tty_fd;             /* local terminal for the window size, or -1 */
	int background;         /* start and return at once with the pid */
	/* Called (may be NULL) once the command has started, with its pid,
	 * before any of its output: what a caller that streams stdin to it
	 * names it by to others. */
	void (*on_pid)(void *user, int pid);
	void *on_pid_user;
};

struct omr_exec_result {
	int exit_code;          /* -1 if killed by a signal */
	int signal;             /* 0 if exited */
	int timed_out;
	int pid;
	uint64_t duration_ms;
};

/* Checks argv/env sizes (at most 4096 entries, 1 MiB in all) and "K=V"
 * form.  Returns 0 or -EINVAL/-E2BIG with *err. */
int omr_exec_validate(const struct omr_exec_opts *o, struct omr_err **err);

/* Runs a command in sandbox `id` and waits for it (or, with background,
 * for its pid).  Returns 0 (see *r) or < 0. */
int omr_exec_run(const struct omr_config *c, const char *id, const struct omr_exec_opts *o,
		 struct omr_exec_result *r, struct omr_err **err);

/* The exit status a shell would give: code, 128+signal, 124 on timeout. */
int omr_exec_status(const struct omr_exec_result *r);

/* Background commands: re-attach to the output from the start of its
 * buffer, list, signal. */
int omr_exec_attach(const struct omr_config *c, const char *id, int pid, int out_fd,
		    int err_fd, int sig_fd, struct omr_exec_result *r, struct omr_err **err);
int omr_exec_ps(const struct omr_config *c, const char *id, json_t **out, struct omr_err **err);
int omr_exec_kill(const struct omr_config *c, const char *id, int pid, int sig,
		  struct omr_err **err);

/* The commands that ran in a sandbox (its commands.jsonl), oldest first,
 * as a JSON array; works for stopped sandboxes too. */
int omr_exec_history(const struct omr_config *c, const char *id, json_t **out,
		     struct omr_err **err);

/* A JSON request with the one op and fields, sent on a fresh connection;
 * for the small file and process ops.  *out gets END (may be NULL).
 * -ETIMEDOUT when no answer came within 30 s. */
int omr_sandbox_call(const struct omr_config *c, const char *id, json_t *req, json_t **out,
		     struct omr_err **err);

#endif
