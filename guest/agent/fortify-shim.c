/* Debian's libjansson.a was built with _FORTIFY_SOURCE and calls glibc's
 * checked helpers, which musl does not have.  These do the same check
 * (abort when the stated buffer is smaller than the bound) and forward to
 * the plain functions.  Linked into the static musl build only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int __snprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));
char *__strncpy_chk(char *d, const char *s, size_t n, size_t dlen);

int __vsnprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, va_list ap)
{
	(void)flag;
	if (n > slen)
		abort();
	return vsnprintf(s, n, fmt, ap);
}

int __snprintf_chk(char *s, size_t n, int flag, size_t slen, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = __vsnprintf_chk(s, n, flag, slen, fmt, ap);
	va_end(ap);
	return r;
}

char *__strncpy_chk(char *d, const char *s, size_t n, size_t dlen)
{
	if (n > dlen)
		abort();
	return strncpy(d, s, n);
}
