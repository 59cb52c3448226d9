/* Byte strings in JSON; see omnirun/base/json.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/json.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"

json_t *omr_json_text(const char *s, size_t n)
{
	_cleanup_free_ char *out = NULL;
	size_t o = 0;

	if (omr_utf8_valid(s, n))
		return json_stringn(s, n);
	out = omr_xmalloc(3 * n + 1);
	for (size_t i = 0, l; i < n; i += l) {
		l = omr_utf8_seq(s + i, n - i);
		if (l) {
			memcpy(out + o, s + i, l);
			o += l;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3); /* U+FFFD */
			o += 3;
			l = 1;
		}
	}
	return json_stringn(out, o);
}

static char *b64_key(const char *key)
{
	return omr_strdup_printf("%s_b64", key);
}

void omr_json_set_bytes(json_t *o, const char *key, const char *s)
{
	size_t n = strlen(s);

	json_object_set_new(o, key, omr_json_text(s, n));
	if (!omr_utf8_valid(s, n)) {
		_cleanup_free_ char *k = b64_key(key), *b = omr_b64_encode(s, n);
		json_object_set_new(o, k, json_string(b));
	}
}

/* The C string that v (a string; base64 when b64) stands for. */
static int bytes_of(json_t *v, int b64, char **out)
{
	size_t n;

	if (!json_is_string(v))
		return -EINVAL;
	if (!b64) {
		n = json_string_length(v);
		if (strlen(json_string_value(v)) != n)
			return -EINVAL; /* "\u0000" */
		*out = omr_xstrdup(json_string_value(v));
		return 0;
	}
	if (omr_b64_decode(json_string_value(v), out, &n) < 0)
		return -EINVAL;
	if (strlen(*out) != n) {
		free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

/* o[key_b64] (*b64 = 1) if it is there and not null, else o[key]. */
static json_t *pick(json_t *o, const char *key, int *b64)
{
	_cleanup_free_ char *k = b64_key(key);
	json_t *v = json_object_get(o, k);

	*b64 = v && !json_is_null(v);
	if (!*b64)
		v = json_object_get(o, key);
	return v && !json_is_null(v) ? v : NULL;
}

int omr_json_get_bytes(json_t *o, const char *key, char **out)
{
	int b64, rc;
	json_t *v = pick(o, key, &b64);

	*out = NULL;
	if (!v)
		return 0;
	rc = bytes_of(v, b64, out);
	return rc < 0 ? rc : 1;
}

void omr_json_set_bytes_array(json_t *o, const char *key, char *const *v)
{
	json_t *a = json_array(), *b = NULL;
	size_t i;

	for (i = 0; v[i]; i++) {
		json_array_append_new(a, omr_json_text(v[i], strlen(v[i])));
		if (!b && !omr_utf8_valid(v[i], strlen(v[i])))
			b = json_array();
	}
	json_object_set_new(o, key, a);
	if (!b)
		return;
	for (i = 0; v[i]; i++) {
		_cleanup_free_ char *e = omr_b64_encode(v[i], strlen(v[i]));
		json_array_append_new(b, json_string(e));
	}
	_cleanup_free_ char *k = b64_key(key);
	json_object_set_new(o, k, b);
}

int omr_json_get_bytes_array(json_t *o, const char *key, size_t max, char ***out)
{
	int b64;
	json_t *a = pick(o, key, &b64), *e;
	char **v;
	size_t i;

	*out = NULL;
	if (!a)
		return 0;
	if (!json_is_array(a))
		return -EINVAL;
	if (json_array_size(a) > max)
		return -E2BIG;
	v = omr_xcalloc(json_array_size(a) + 1, sizeof(*v));
	json_array_foreach(a, i, e) {
		if (bytes_of(e, b64, &v[i]) < 0) {
			omr_argv_free(v);
			return -EINVAL;
		}
	}
	*out = v;
	return 1;
}
