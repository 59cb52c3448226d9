/* sbx-exec: run a command in a sandbox, live output, its exit status. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "cli.h"
#include "omnirun/client/exec.h"
#include "omnirun/base/util.h"

/* sbx-exec's own failures; everything else is the command's status. */
#define EXIT_OWN 125

static void usage(void)
{
	printf("Usage: sbx-exec [options] ID -- CMD [ARG...]\n"
	       "       sbx-exec [options] -c 'SHELL LINE' ID\n"
	       "       sbx-exec --history [--json] ID\n"
	       "       sbx-exec --ps [--json] ID\n"
	       "       sbx-exec --attach ID PID\n"
	       "       sbx-exec --kill ID PID [SIGNAL]\n\n"
	       "Run a command in a sandbox.  Its stdout and stderr appear live on ours;\n"
	       "our exit status is its own.\n\n"
	       "Options:\n"
	       "  -c, --shell LINE    run LINE with /bin/sh -c instead of an argv\n"
	       "  -e, --env K=V       set an environment variable (repeatable)\n"
	       "  -w, --workdir DIR   working directory in the guest\n"
	       "  -u, --user USER     user name or uid in the guest (default: the template's,\n"
	       "                      user in /workspace; root in tiny)\n"
	       "  -T, --timeout SEC   kill the command's process group after SEC\n"
	       "  -i, --interactive   forward our stdin (otherwise it is /dev/null)\n"
	       "  -t, --tty           run on a pseudo-terminal\n"
	       "  -b, --background    start it, print its pid and return; it lives on\n"
	       "      --history       list the commands that ran in the sandbox\n"
	       "      --ps            list background commands\n"
	       "      --attach        print a background command's output (from the\n"
	       "                      start of its buffer) and wait for its status\n"
	       "      --kill          signal a background command (default TERM)\n"
	       "  -j, --json          JSON output for --history and --ps\n"
	       "  -h, --help          show this help\n"
	       "  -V, --version       show the version\n\n"
	       "Exit status: the command's own; 124 if it timed out, 128+N if killed\n"
	       "by signal N, 126 not executable, 127 not found; 125 if sbx-exec\n"
	       "itself failed (unknown or stopped sandbox, bad usage); 130 if a second\n"
	       "interrupt made it leave without the command's status.\n");
	exit(0);
}

static struct termios saved_tio;
static int tio_saved;

static void restore_tty(void)
{
	if (tio_saved)
		tcsetattr(0, TCSADRAIN, &saved_tio);
}

/* sbx-exec's own failures are 125; 130 when the user insisted on
 * interrupting (a second Ctrl-C) and we left without the command's status. */
static int fail(struct omr_err **err)
{
	int interrupted = *err && (*err)->errnum == EINTR;

	omr_cli_fail(err);
	return interrupted ? 128 + SIGINT : EXIT_OWN;
}

static int parse_signal(const char *s)
{
	static const struct { const char *name; int sig; } names[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "KILL", SIGKILL },
		{ "TERM", SIGTERM }, { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
		{ "STOP", SIGSTOP }, { "CONT", SIGCONT },
	};
	if (!strncmp(s, "SIG", 3))
		s += 3;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name))
			return names[i].sig;
	return (int)omr_cli_number(s, 1, 64, "signal");
}

/* One line per command: what ran and how it ended. */
static void print_entry(json_t *e, int ps)
{
	json_t *what_j = json_object_get(e, "argv");
	_cleanup_free_ char *dump = json_dumps(what_j ? what_j : json_object_get(e, "cmd"),
					       JSON_COMPACT | JSON_ENCODE_ANY);
	/* JSON escapes C0 controls but not C1 ones: the guest's own words. */
	char *what = dump ? omr_str_escape_ctl(dump) : NULL;
	json_t *code = json_object_get(e, "exit_code"), *sig = json_object_get(e, "signal");
	char status[32] = "-", when[32];

	if (json_is_integer(sig) && json_integer_value(sig) > 0)
		snprintf(status, sizeof(status), "signal %lld", json_integer_value(sig));
	else if (json_is_integer(code))
		snprintf(status, sizeof(status), "%lld", json_integer_value(code));
	if (json_is_true(json_object_get(e, "timed_out")))
		snprintf(status, sizeof(status), "timeout");
	if (ps) {
		printf("%-7lld %-8s %-9s %s\n", json_integer_value(json_object_get(e, "pid")),
		       json_is_true(json_object_get(e, "running")) ? "running" : "exited", status,
		       what ? what : "");
	} else {
		omr_format_time(json_integer_value(json_object_get(e, "started_at")) / 1000, when);
		printf("%-20s %8lldms %-9s %s\n", when,
		       json_integer_value(json_object_get(e, "duration_ms")),
		       json_is_true(json_object_get(e, "background")) ? "bg" : status,
		       what ? what : "");
	}
	free(what);
}

int main(int argc, char **argv)
{
	enum { MODE_RUN, MODE_HISTORY, MODE_PS, MODE_ATTACH, MODE_KILL };
	static const struct option opts[] = {
		{ "shell", required_argument, NULL, 'c' }, { "env", required_argument, NULL, 'e' },
		{ "workdir", required_argument, NULL, 'w' }, { "user", required_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 'T' }, { "interactive", no_argument, NULL, 'i' },
		{ "tty", no_argument, NULL, 't' }, { "background", no_argument, NULL, 'b' },
		{ "history", no_argument, NULL, 'H' }, { "ps", no_argument, NULL, 'P' },
		{ "attach", no_argument, NULL, 'A' }, { "kill", no_argument, NULL, 'K' },
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { 0 },
	};
	struct omr_exec_opts o = { .in_fd = -1, .out_fd = 1, .err_fd = 2, .sig_fd = -1, .tty_fd = -1 };
	struct omr_exec_result r;
	struct omr_err *err = NULL;
	struct omr_config *c;
	char **env = calloc((size_t)argc + 1, sizeof(char *));
	int mode = MODE_RUN, json = 0, interactive = 0, nenv = 0, ch, rc;
	const char *id;
	json_t *out = NULL;

	omr_cli_init(argv[0]);
	omr_cli_usage_code(EXIT_OWN);
	while ((ch = getopt_long(argc, argv, "c:e:w:u:T:itbjhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': o.cmd = optarg; break;
		case 'e': env[nenv++] = optarg; break;
		case 'w': o.cwd = optarg; break;
		case 'u': o.user = optarg; break;
		case 'T': o.timeout_s = (unsigned)omr_cli_number(optarg, 1, 31536000, "timeout"); break;
		case 'i': interactive = 1; break;
		case 't': o.pty = 1; break;
		case 'b': o.background = 1; break;
		case 'H': mode = MODE_HISTORY; break;
		case 'P': mode = MODE_PS; break;
		case 'A': mode = MODE_ATTACH; break;
		case 'K': mode = MODE_KILL; break;
		case 'j': json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(EXIT_OWN, NULL);
		}
	}
	if (optind >= argc) {
		omr_cli_usage_error(EXIT_OWN, "no sandbox id given");
	}
	id = argv[optind++];
	o.env = nenv ? env : NULL;
	if (omr_config_load(&c, &err) < 0)
		return fail(&err);
	switch (mode) {
	case MODE_HISTORY:
	case MODE_PS:
		rc = mode == MODE_PS ? omr_exec_ps(c, id, &out, &err) : omr_exec_history(c, id, &out, &err);
		if (rc < 0)
			return fail(&err);
		if (json) {
			omr_cli_print_json(out);
			return 0;
		}
		for (size_t i = 0; i < json_array_size(out); i++)
			print_entry(json_array_get(out, i), mode == MODE_PS);
		json_decref(out);
		return 0;
	case MODE_ATTACH:
	case MODE_KILL:
		if (optind >= argc) {
			omr_cli_usage_error(EXIT_OWN, "no pid given");
		}
		int pid = (int)omr_cli_number(argv[optind], 1, 4194304, "pid");
		if (mode == MODE_KILL) {
			int sig = optind + 1 < argc ? parse_signal(argv[optind + 1]) : SIGTERM;
			return omr_exec_kill(c, id, pid, sig, &err) < 0 ? fail(&err) : 0;
		}
		if (omr_exec_attach(c, id, pid, 1, 2, omr_cli_signalfd(1), &r, &err) < 0)
			return fail(&err);
		return omr_exec_status(&r);
	}
	if (!o.cmd && optind >= argc) {
		omr_cli_usage_error(EXIT_OWN, "no command given");
	}
	if (o.cmd && optind < argc) {
		omr_cli_usage_error(EXIT_OWN, "give either -c LINE or an argv, not both");
	}
	o.argv = o.cmd ? NULL : argv + optind;
	if (interactive)
		o.in_fd = 0;
	if (!o.background)
		o.sig_fd = omr_cli_signalfd(1);
	if (o.pty && isatty(0)) {
		struct termios raw;
		o.tty_fd = 0;
		if (tcgetattr(0, &saved_tio) == 0) {
			tio_saved = 1;
			atexit(restore_tty);
			raw = saved_tio;
			cfmakeraw(&raw);
			tcsetattr(0, TCSADRAIN, &raw);
		}
	}
	if (omr_exec_run(c, id, &o, &r, &err) < 0)
		return fail(&err);
	if (o.background) {
		printf("%d\n", r.pid);
		return 0;
	}
	return omr_exec_status(&r);
}
