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

size_t omr_utf8_seq(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len;

	if (n == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0; /* a continuation byte, an overlong lead, past U+10FFFF */
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong 3- and 4-byte forms, surrogates, past U+10FFFF. */
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

int omr_utf8_valid(const char *s, size_t n)
{
	for (size_t i = 0, l; i < n; i += l)
		if (!(l = omr_utf8_seq(s + i, n - i)))
			return 0;
	return 1;
}

static char *escape(const char *s, int keep_lines)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	char *out = omr_xmalloc(4 * (size_t)(end - p) + 1), *o = out;

	while (*p) {
		size_t n = omr_utf8_seq((const char *)p, (size_t)(end - p)), bad = 0;

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

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *omr_b64_encode(const void *data, size_t n)
{
	const unsigned char *p = data;
	char *out = omr_xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*o++ = b64chars[p[i] >> 2];
		*o++ = b64chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
		*o++ = b64chars[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
		*o++ = b64chars[p[i + 2] & 63];
	}
	if (i < n) {
		*o++ = b64chars[p[i] >> 2];
		if (i + 1 < n) {
			*o++ = b64chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
			*o++ = b64chars[(p[i + 1] & 15) << 2];
		} else {
			*o++ = b64chars[(p[i] & 3) << 4];
			*o++ = '=';
		}
		*o++ = '=';
	}
	*o = 0;
	return out;
}

int omr_b64_decode(const char *s, char **out, size_t *n)
{
	size_t len = strlen(s), pad = 0, o = 0;
	unsigned acc = 0;
	int bits = 0;
	char *buf;

	if (len % 4)
		return -EINVAL;
	while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
		pad++;
	buf = omr_xmalloc(len / 4 * 3 + 1);
	for (size_t i = 0; i < len - pad; i++) {
		const char *c = s[i] ? strchr(b64chars, s[i]) : NULL;
		if (!c) {
			free(buf);
			return -EINVAL;
		}
		acc = acc << 6 | (unsigned)(c - b64chars);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (char)(acc >> bits);
		}
	}
	buf[o] = 0;
	*out = buf;
	*n = o;
	return 0;
}
