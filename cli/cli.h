/* What every sbx-* program shares: the util-linux command template.
 * These are the only libcore functions that print or exit, and only
 * programs call them. */
#ifndef OMNIRUN_CLI_H
#define OMNIRUN_CLI_H

#include <jansson.h>
#include <stdint.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

/* Records the program name and checks at exit that stdout was written
 * (a full disk or a closed pipe is exit 1, not silent loss). */
void omr_cli_init(const char *prog);
const char *omr_cli_prog(void);

/* Prints "PROG: MSG" (when fmt is not NULL), then "Try 'PROG --help' for
 * more information.", and exits with code (OMR_EXIT_USAGE, or a program's
 * own code for its usage errors, as sbx-exec's 125). */
__attribute__((noreturn)) void omr_cli_usage_error(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prints "PROG: MSG" on stderr, frees err, returns the exit code for it. */
int omr_cli_fail(struct omr_err **err);
/* Prints "PROG version X". */
__attribute__((noreturn)) void omr_cli_version(void);
/* Loads the config or exits 1 with its error. */
struct omr_config *omr_cli_config(void);
/* The exit code of usage errors that come from the skin itself (bad
 * numbers): OMR_EXIT_USAGE unless a program sets its own (sbx-exec: 125). */
void omr_cli_usage_code(int code);
/* Parses a number option or exits with the usage code, naming it. */
uint64_t omr_cli_number(const char *s, uint64_t min, uint64_t max, const char *what);
/* json_dumps for a terminal: ASCII only, with DEL and the C1 controls
 * escaped too (malloc'ed, or NULL). */
char *omr_cli_json_dumps(const json_t *j, size_t flags);
/* Prints j (pretty, newline) on stdout and releases it. */
void omr_cli_print_json(json_t *j);
/* The options of a program that acts on one sandbox and says little:
 * -j/--json, -h/--help (usage()), -V/--version, then exactly the
 * operands named in ops (e.g. {"a sandbox id", "SECONDS"}), which start
 * at optind.  Exits with a usage error otherwise.  Returns the --json
 * flag. */
int omr_cli_simple_opts(int argc, char **argv, void (*usage)(void), const char *const *ops,
			int nops);
/* The same with one more flag (--FLAG / -SHORT, no argument): *flag_set
 * becomes 1 when it is given. */
int omr_cli_flag_opts(int argc, char **argv, void (*usage)(void), const char *const *ops, int nops,
		      const char *flag, int flag_short, int *flag_set);
/* Progress on stderr, only when stderr is a terminal (scripts stay quiet). */
void omr_cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A signalfd for INT, TERM, HUP, QUIT (and WINCH when winch): they are
 * blocked and their disposition reset, since a shell starts background
 * jobs with INT and QUIT ignored and an ignored signal never reaches a
 * signalfd.  Returns the fd or -1. */
int omr_cli_signalfd(int winch);

#endif
