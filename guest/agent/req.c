/* Typed, bounded access to request fields.  Each getter returns 0, or -1
 * with a message for the host in e; a missing optional field gives the
 * default. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static int fail(struct jerr *e, const char *key, const char *what)
{
	snprintf(e->msg, sizeof(e->msg), "\"%s\" %s", key, what);
	return -1;
}

int jget_str(json_t *o, const char *key, bool required, const char **out, struct jerr *e)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return required ? fail(e, key, "is required") : 0;
	if (!json_is_string(v))
		return fail(e, key, "must be a string");
	*out = json_string_value(v);
	return 0;
}

int jget_path(json_t *o, const char *key, bool required, char **out, bool *dir_form,
	      struct jerr *e)
{
	_cleanup_free_ char *raw = NULL;
	int rc = omr_json_get_bytes(o, key, &raw);
	size_t n;

	*out = NULL;
	if (rc < 0)
		return fail(e, key, "must be a string (or, as _b64, base64) without NUL bytes");
	if (rc == 0)
		return required ? fail(e, key, "is required") : 0;
	if (raw[0] != '/')
		return fail(e, key, "must be an absolute path");
	if (dir_form) {
		n = strlen(raw);
		*dir_form = raw[n - 1] == '/' || (n >= 2 && !strcmp(raw + n - 2, "/.")) ||
			    (n >= 3 && !strcmp(raw + n - 3, "/.."));
	}
	*out = omr_path_clean(raw);
	return 0;
}

int jget_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t def,
	     int64_t *out, struct jerr *e)
{
	json_t *v = json_object_get(o, key);
	char what[96];

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return fail(e, key, "must be an integer");
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(what, sizeof(what), "must be between %lld and %lld", (long long)min,
			 (long long)max);
		return fail(e, key, what);
	}
	*out = json_integer_value(v);
	return 0;
}

int jget_bool(json_t *o, const char *key, bool def, bool *out, struct jerr *e)
{
	json_t *v = json_object_get(o, key);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return fail(e, key, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

int jget_mode(json_t *o, const char *key, mode_t def, mode_t *out, struct jerr *e)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	char *end;
	unsigned long m;

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0 || json_integer_value(v) > 07777)
			return fail(e, key, "must be between 0 and 07777");
		*out = (mode_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return fail(e, key, "must be an integer or an octal string");
	s = json_string_value(v);
	errno = 0;
	m = strtoul(s, &end, 8);
	if (!*s || *end || errno || m > 07777 || strchr(s, '-') || strchr(s, '+') ||
	    strchr(s, ' '))
		return fail(e, key, "must be an octal string such as \"0644\"");
	*out = (mode_t)m;
	return 0;
}
