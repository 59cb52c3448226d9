/* The TAP harness every unit test uses (tests/run-all reads its output).
 *
 *   ok(cond, "what")              a plain check
 *   is_int(got, want, "what")     on failure prints "#   got: 3" / "# expected: 4"
 *   is_str(got, want, "what")     the same for strings (NULL is shown as NULL)
 *   is_mem(got, n, want, m, ...)  byte buffers; shows the first differing offset
 *   like(got, needle, "what")     got contains needle
 *   is_true(cond, ...) / is_false(cond, ...)
 *   skip("why")                   "ok N # SKIP why": counted apart by run-all
 *   diag("fmt", ...)              a "# ..." comment line
 *   bail_out("fmt", ...)          "Bail out! ...", exit 1 (clean up first)
 *   return done_testing();        prints the computed plan "1..N" last and
 *                                 returns the exit status (1 if any failed)
 *
 * The plan is counted, never written by hand, and printed at the end: a
 * test that crashes or stops early prints no plan, and run-all fails it.
 * Every check returns whether it passed, so a test can stop when a
 * precondition failed.  Output goes to stdout, line-buffered by fflush, so
 * diagnostics stay next to their check. */
#ifndef OMNIRUN_TESTS_TAP_H
#define OMNIRUN_TESTS_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
	int run, failed, skipped;
} tap_state __attribute__((unused));

#define TAP_FMT(a, b) __attribute__((format(printf, a, b), unused))

static inline void tap_vline(bool pass, const char *fmt, va_list ap)
{
	tap_state.run++;
	if (!pass)
		tap_state.failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_state.run);
	vprintf(fmt, ap);
	putchar('\n');
}

TAP_FMT(1, 2) static inline void diag(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

TAP_FMT(2, 3) static inline bool ok(bool pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	fflush(stdout);
	return pass;
}

#define is_true(c, ...) ok((c), __VA_ARGS__)
#define is_false(c, ...) ok(!(c), __VA_ARGS__)

TAP_FMT(3, 4) static inline bool is_int(long long got, long long want, const char *fmt, ...)
{
	bool pass = got == want;
	va_list ap;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		printf("#      got: %lld\n# expected: %lld\n", got, want);
	fflush(stdout);
	return pass;
}

/* Prints s escaped on one line, so a diagnostic never breaks the TAP. */
static inline void tap_print_str(const char *label, const char *s)
{
	printf("# %8s: ", label);
	if (!s) {
		puts("NULL");
		return;
	}
	putchar('\'');
	for (int n = 0; *s && n < 400; s++, n++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	puts(*s ? "'..." : "'");
}

TAP_FMT(3, 4) static inline bool is_str(const char *got, const char *want, const char *fmt, ...)
{
	bool pass = got && want ? !strcmp(got, want) : got == want;
	va_list ap;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass) {
		tap_print_str("got", got);
		tap_print_str("expected", want);
	}
	fflush(stdout);
	return pass;
}

TAP_FMT(3, 4) static inline bool like(const char *got, const char *needle, const char *fmt, ...)
{
	bool pass = got && needle && strstr(got, needle);
	va_list ap;

	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass) {
		tap_print_str("got", got);
		tap_print_str("to hold", needle);
	}
	fflush(stdout);
	return pass;
}

TAP_FMT(5, 6) static inline bool is_mem(const void *got, size_t got_len, const void *want,
					size_t want_len, const char *fmt, ...)
{
	const unsigned char *g = got, *w = want;
	size_t i = 0;
	bool pass;
	va_list ap;

	if (g && w)
		while (i < got_len && i < want_len && g[i] == w[i])
			i++;
	pass = g && w && got_len == want_len && i == got_len;
	va_start(ap, fmt);
	tap_vline(pass, fmt, ap);
	va_end(ap);
	if (!pass) {
		printf("#      got: %zu bytes%s\n# expected: %zu bytes\n", got_len, g ? "" : " (NULL)",
		       want_len);
		if (g && w && i < got_len && i < want_len)
			printf("# first difference at byte %zu: got 0x%02x, expected 0x%02x\n", i, g[i],
			       w[i]);
	}
	fflush(stdout);
	return pass;
}

TAP_FMT(1, 2) static inline void skip(const char *fmt, ...)
{
	va_list ap;

	tap_state.run++;
	tap_state.skipped++;
	printf("ok %d # SKIP ", tap_state.run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

TAP_FMT(1, 2) static inline _Noreturn void bail_out(const char *fmt, ...)
{
	va_list ap;

	fputs("Bail out! ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(1);
}

/* Prints the plan (the number of checks that ran) and returns main's exit
 * status.  A test that ran no check at all fails: it proved nothing. */
__attribute__((unused)) static inline int done_testing(void)
{
	printf("1..%d\n", tap_state.run);
	if (tap_state.run == 0)
		printf("# no check ran\n");
	fflush(stdout);
	return tap_state.failed || tap_state.run == 0;
}

#undef TAP_FMT
#endif
