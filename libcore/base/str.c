/* Strings and memory: bounded copies, strict numbers, escapes. See omnirun/base/util.h. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"

int omr_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		  const char *what, struct omr_err **err)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid %s '%s': not a number",
				   what, s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid %s '%s': not a number",
				   what, s);
	if (errno == ERANGE || v < min || v > max)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE,
				    "invalid %s '%s': must be between %llu and %llu",
				    what, s, (unsigned long long)min,
				    (unsigned long long)max);
	*out = v;
	return 0;
}

int omr_strlcpy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n == 0 || len >= n)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

void *omr_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

void *omr_xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		abort();
	return p;
}

void *omr_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

char *omr_xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

char *omr_strdup_printf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

/* Length of the well-formed UTF-8 sequence at p (1 for ASCII), 0 if it
 * is not one: overlong forms and surrogates included. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0; /* also stops at the NUL */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return n;
}

static char *escape(const char *s, int keep_lines)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = omr_xmalloc(4 * strlen(s) + 1), *o = out;

	while (*p) {
		size_t n = utf8_len(p), bad = 0;

		if (n == 0)
			bad = 1; /* not UTF-8: a C1 control on an 8-bit terminal */
		else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)
			bad = 2; /* U+0080..U+009F, the C1 controls */
		else if (n == 1 && ((*p < 0x20 && !(keep_lines && (*p == '\n' || *p == '\t'))) ||
				    *p == 0x7f))
			bad = 1; /* C0 and DEL */

		if (!bad) {
			memcpy(o, p, n);
			o += n;
			p += n;
			continue;
		}
		for (size_t i = 0; i < bad; i++, p++)
			o += sprintf(o, "\\x%02x", *p);
	}
	*o = 0;
	return out;
}

char *omr_str_escape_ctl(const char *s)
{
	return escape(s, 1);
}

char *omr_str_escape_line(const char *s)
{
	return escape(s, 0);
}

char *omr_str_quote_short(const char *s, size_t max)
{
	size_t len = strlen(s);
	_cleanup_free_ char *cut = omr_xstrdup(s);
	_cleanup_free_ char *safe = NULL;

	if (len <= max)
		return escape(s, 0);
	/* Cut on a character boundary so the escape shows no stray byte. */
	while (max > 0 && ((unsigned char)cut[max] & 0xc0) == 0x80)
		max--;
	cut[max] = 0;
	safe = escape(cut, 0);
	return omr_strdup_printf("%s... (%zu bytes)", safe, len);
}
