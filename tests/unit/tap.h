/* A tiny TAP harness shared by the unit tests: ok() prints one line per
 * check; main() ends with printf("1..%d\n", tests) and returns failures != 0. */
#ifndef OMNIRUN_TESTS_TAP_H
#define OMNIRUN_TESTS_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int tests, failures;

__attribute__((format(printf, 2, 3)))
static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tests++;
	if (!cond)
		failures++;
	printf("%sok %d - ", cond ? "" : "not ", tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#endif
