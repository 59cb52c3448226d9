/* The programs' shared skin; see omnirun/cli.h. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/util.h"

static const char *cli_prog = "sbx";

static void close_stdout(void)
{
	/* Like util-linux close_stdout(): a failed write must not exit 0. */
	if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
		if (errno == EPIPE)
			_exit(OMR_EXIT_FAILURE);
		fprintf(stderr, "%s: write error: %s\n", cli_prog, strerror(errno));
		_exit(OMR_EXIT_FAILURE);
	}
}

void omr_cli_init(const char *prog)
{
	const char *slash = strrchr(prog, '/');

	cli_prog = slash ? slash + 1 : prog;
	atexit(close_stdout);
}

const char *omr_cli_prog(void)
{
	return cli_prog;
}

void omr_cli_usage_error(int code, const char *fmt, ...)
{
	va_list ap;

	if (fmt) {
		fprintf(stderr, "%s: ", cli_prog);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fprintf(stderr, "Try '%s --help' for more information.\n", cli_prog);
	exit(code);
}

int omr_cli_fail(struct omr_err **err)
{
	int code = OMR_EXIT_FAILURE;

	if (err && *err) {
		/* Messages may carry what a guest said (errors, paths, its
		 * console): it must not drive the terminal. */
		char *msg = omr_str_escape_ctl((*err)->msg);
		fprintf(stderr, "%s: %s\n", cli_prog, msg);
		free(msg);
		code = omr_err_kind_info((*err)->kind)->exit_code;
		omr_err_free(err);
	}
	return code;
}

void omr_cli_version(void)
{
	printf("%s from OmniRun %s\n", cli_prog, OMR_VERSION);
	exit(OMR_EXIT_OK);
}

struct omr_config *omr_cli_config(void)
{
	struct omr_config *c = NULL;
	struct omr_err *err = NULL;

	if (omr_config_load(&c, &err) < 0)
		exit(omr_cli_fail(&err) == OMR_EXIT_USAGE ? OMR_EXIT_FAILURE : OMR_EXIT_FAILURE);
	return c;
}

static int usage_code = OMR_EXIT_USAGE;

void omr_cli_usage_code(int code)
{
	usage_code = code;
}

uint64_t omr_cli_number(const char *s, uint64_t min, uint64_t max, const char *what)
{
	struct omr_err *err = NULL;
	uint64_t v;

	if (omr_parse_u64(s, min, max, &v, what, &err) < 0) {
		fprintf(stderr, "%s: %s\n", cli_prog, err->msg);
		omr_err_free(&err);
		omr_cli_usage_error(usage_code, NULL);
	}
	return v;
}

char *omr_cli_json_dumps(const json_t *j, size_t flags)
{
	/* ASCII only, so C1 controls are \u0080..\u009f; DEL is the one
	 * control that JSON leaves raw. */
	char *s = json_dumps(j, flags | JSON_ENSURE_ASCII | JSON_ENCODE_ANY), *out, *o;
	size_t dels = 0;

	if (!s)
		return NULL;
	for (char *p = s; *p; p++)
		dels += *p == 0x7f;
	if (!dels)
		return s;
	out = o = omr_xmalloc(strlen(s) + 5 * dels + 1);
	for (char *p = s; *p; p++)
		o = *p == 0x7f ? o + sprintf(o, "\\u007f") : (*o = *p, o + 1);
	*o = 0;
	free(s);
	return out;
}

void omr_cli_print_json(json_t *j)
{
	char *s = omr_cli_json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));

	if (s) {
		puts(s);
		free(s);
	}
	json_decref(j);
}

void omr_cli_progress(const char *fmt, ...)
{
	va_list ap;

	if (!isatty(2))
		return;
	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int omr_cli_signalfd(int winch)
{
	int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH };
	size_t n = winch ? 5 : 4;
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < n; i++) {
		signal(sigs[i], SIG_DFL);
		sigaddset(&set, sigs[i]);
	}
	sigprocmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int omr_cli_flag_opts(int argc, char **argv, void (*usage)(void), const char *const *ops, int nops,
		      const char *flag, int flag_short, int *flag_set)
{
	struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ flag, no_argument, NULL, flag_short },
		{ 0 },
	};
	char shorts[8] = "jhV";
	int ch, json = 0;

	if (!flag)
		opts[3] = (struct option){ 0 };
	else
		shorts[3] = (char)flag_short;
	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		if (flag && ch == flag_short) {
			*flag_set = 1;
			continue;
		}
		switch (ch) {
		case 'j': json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (argc - optind < nops)
		omr_cli_usage_error(OMR_EXIT_USAGE, "no %s given", ops[argc - optind]);
	if (argc - optind > nops)
		omr_cli_usage_error(OMR_EXIT_USAGE, "unexpected argument '%s'", argv[optind + nops]);
	return json;
}

int omr_cli_simple_opts(int argc, char **argv, void (*usage)(void), const char *const *ops,
			int nops)
{
	return omr_cli_flag_opts(argc, argv, usage, ops, nops, NULL, 0, NULL);
}
