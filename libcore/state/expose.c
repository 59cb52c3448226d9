/* Exposures; see omnirun/state/expose.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/state/expose.h"
#include "omnirun/state/record.h"

#define EXPOSE_FILE "exposures.json"
#define EXPOSE_FILE_MAX (64u * 1024u)
#define LOCK_TIMEOUT_MS 10000

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

int omr_expose_id_valid(const char *s)
{
	size_t n = strlen(OMR_EXPOSE_ID_PREFIX), len;

	if (!s || strncmp(s, OMR_EXPOSE_ID_PREFIX, n))
		return 0;
	len = strlen(s + n);
	if (len < 8 || len > 32 || strspn(s + n, b32) != len)
		return 0;
	return 1;
}

/* The sandbox's state directory, opened. */
static int sandbox_dir(const struct omr_config *c, const char *id, struct omr_err **err)
{
	_cleanup_close_ int root = omr_state_sandboxes_dir(c, 0, err);
	int fd;

	if (root < 0)
		return -1;
	fd = openat(root, id, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "no such sandbox '%s'", id);
	return fd;
}

/* Reads the file; a missing one is no exposures.  A malformed one is
 * refused rather than overwritten. */
static int load(int dfd, const char *id, struct omr_exposure **out, size_t *n,
		struct omr_err **err)
{
	_cleanup_free_ char *text = NULL;
	struct omr_err *e = NULL;
	json_t *a, *v;
	size_t i;

	*out = NULL;
	*n = 0;
	if (omr_read_file_at(dfd, EXPOSE_FILE, EXPOSE_FILE_MAX, &text, NULL, &e) < 0) {
		if (omr_err_kind(e) == OMR_E_NOT_FOUND || (e && e->errnum == ENOENT)) {
			omr_err_free(&e);
			return 0;
		}
		if (err && !*err)
			*err = e;
		else
			omr_err_free(&e);
		return -1;
	}
	a = json_loads(text, 0, NULL);
	if (!json_is_array(a) || json_array_size(a) > OMR_EXPOSE_MAX) {
		json_decref(a);
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "sandbox %s: %s is malformed", id,
				    EXPOSE_FILE);
	}
	*out = omr_xcalloc(json_array_size(a) + 1, sizeof(**out));
	json_array_foreach(a, i, v) {
		struct omr_exposure *x = &(*out)[*n];
		const char *eid = json_string_value(json_object_get(v, "id"));
		json_int_t port = json_integer_value(json_object_get(v, "port"));

		if (!omr_expose_id_valid(eid) || port < OMR_EXPOSE_ALL || port > 65535) {
			json_decref(a);
			free(*out);
			*out = NULL;
			*n = 0;
			return omr_err_setx(err, OMR_E_STATE, EINVAL, "sandbox %s: %s is malformed", id,
					    EXPOSE_FILE);
		}
		omr_strlcpy(x->id, eid, sizeof(x->id));
		x->port = (unsigned)port;
		x->protected_ = json_is_true(json_object_get(v, "protected"));
		x->created_at = json_integer_value(json_object_get(v, "created_at"));
		(*n)++;
	}
	json_decref(a);
	return 0;
}

static int save(int dfd, const struct omr_exposure *v, size_t n, struct omr_err **err)
{
	json_t *a = json_array();
	char *text;
	int rc;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:i, s:b, s:I}", "id", v[i].id, "port",
						   (int)v[i].port, "protected", v[i].protected_,
						   "created_at", (json_int_t)v[i].created_at));
	text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (!text)
		abort();
	rc = omr_write_file_atomic_at(dfd, EXPOSE_FILE, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

static int new_eid(char out[OMR_EXPOSE_ID_MAX], struct omr_err **err)
{
	char sb[OMR_ID_MAX];

	if (omr_id_new(sb, err) < 0)
		return -1;
	/* Same randomness and alphabet as a sandbox id, another prefix. */
	snprintf(out, OMR_EXPOSE_ID_MAX, "%s%s", OMR_EXPOSE_ID_PREFIX, sb + strlen(OMR_ID_PREFIX));
	return 0;
}

int omr_expose_add(const struct omr_config *c, const char *id, unsigned port, int protect,
		   struct omr_exposure *out, struct omr_err **err)
{
	_cleanup_close_ int lock = -1, dfd = -1;
	_cleanup_free_ struct omr_exposure *v = NULL;
	struct omr_sandbox sb;
	size_t n;

	if (port > 65535)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "port %u is not in 1..65535", port);
	if ((lock = omr_sandbox_lock(c, id, LOCK_TIMEOUT_MS, err)) < 0 ||
	    omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	if (sb.state == OMR_SB_STOPPED || sb.state == OMR_SB_STOPPING || sb.state == OMR_SB_CORRUPT)
		return omr_err_setx(err, OMR_E_STATE, ENOTCONN, "sandbox %s is not running (%s)", id,
				    omr_sb_state_name(sb.state));
	if ((dfd = sandbox_dir(c, id, err)) < 0 || load(dfd, id, &v, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (v[i].port == port)
			return omr_err_setx(err, OMR_E_STATE, EEXIST,
					    "port %u of sandbox %s is exposed already (%s)", port, id,
					    v[i].id);
	if (n >= OMR_EXPOSE_MAX)
		return omr_err_setx(err, OMR_E_LIMIT, EUSERS,
				    "sandbox %s has %d exposures, the most it may have", id,
				    OMR_EXPOSE_MAX);
	v = omr_xrealloc(v, (n + 1) * sizeof(*v));
	memset(&v[n], 0, sizeof(v[n]));
	if (new_eid(v[n].id, err) < 0)
		return -1;
	v[n].port = port;
	v[n].protected_ = !!protect;
	v[n].created_at = (int64_t)(omr_wall_ms() / 1000);
	if (save(dfd, v, n + 1, err) < 0)
		return -1;
	*out = v[n];
	return 0;
}

int omr_expose_remove(const struct omr_config *c, const char *id, const char *eid,
		      struct omr_err **err)
{
	_cleanup_close_ int lock = -1, dfd = -1;
	_cleanup_free_ struct omr_exposure *v = NULL;
	size_t n;

	if (!omr_expose_id_valid(eid))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid exposure id '%.64s'", eid);
	if ((lock = omr_sandbox_lock(c, id, LOCK_TIMEOUT_MS, err)) < 0 ||
	    (dfd = sandbox_dir(c, id, err)) < 0 || load(dfd, id, &v, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].id, eid))
			continue;
		memmove(&v[i], &v[i + 1], (n - i - 1) * sizeof(*v));
		return save(dfd, v, n - 1, err);
	}
	return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "sandbox %s has no exposure %s", id, eid);
}

int omr_expose_list(const struct omr_config *c, const char *id, struct omr_exposure **out,
		    size_t *n, struct omr_err **err)
{
	_cleanup_close_ int dfd = -1;
	struct omr_sandbox sb;

	*out = NULL;
	*n = 0;
	/* Readers need no lock: the file is replaced whole. */
	if ((dfd = sandbox_dir(c, id, err)) < 0 || omr_sandbox_load(c, id, &sb, err) < 0)
		return -1;
	/* Exposures end with their sandbox, however it ended. */
	if (sb.state == OMR_SB_STOPPED)
		return 0;
	return load(dfd, id, out, n, err);
}

int omr_expose_find(const struct omr_config *c, const char *id, unsigned port,
		    struct omr_exposure *out, struct omr_err **err)
{
	_cleanup_free_ struct omr_exposure *v = NULL;
	size_t n;

	const struct omr_exposure *all = NULL;

	if (omr_expose_list(c, id, &v, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i].port == port) {
			*out = v[i];
			return 0;
		}
		if (v[i].port == OMR_EXPOSE_ALL)
			all = &v[i];
	}
	/* A port's own exposure wins over the one of every port: the owner
	 * may protect one port of a public sandbox. */
	if (all && port != OMR_EXPOSE_ALL) {
		*out = *all;
		return 0;
	}
	return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "port %u of sandbox %s is not exposed",
			    port, id);
}

char *omr_expose_host(const struct omr_config *c, const char *id, unsigned port)
{
	/* The id without its "_": "sb_abc" is "sbabc". */
	if (port == OMR_EXPOSE_ALL)
		return omr_strdup_printf("*-sb%s.%s", id + strlen(OMR_ID_PREFIX), c->api_domain);
	return omr_strdup_printf("%u-sb%s.%s", port, id + strlen(OMR_ID_PREFIX), c->api_domain);
}

char *omr_expose_url(const struct omr_config *c, const char *id, unsigned port)
{
	_cleanup_free_ char *host = omr_expose_host(c, id, port);

	return omr_strdup_printf("%s://%s/", c->api_url_scheme, host);
}

json_t *omr_expose_json(const struct omr_config *c, const char *id, const struct omr_exposure *e)
{
	_cleanup_free_ char *url = omr_expose_url(c, id, e->port);
	char when[32];

	omr_format_time(e->created_at, when);
	return json_pack("{s:s, s:i, s:s, s:b, s:s}", "id", e->id, "port", (int)e->port, "url",
			 url, "protected", e->protected_, "createdAt", when);
}

json_t *omr_expose_list_json(const struct omr_config *c, const char *id, struct omr_err **err)
{
	_cleanup_free_ struct omr_exposure *v = NULL;
	json_t *a;
	size_t n;

	if (omr_expose_list(c, id, &v, &n, err) < 0)
		return NULL;
	a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, omr_expose_json(c, id, &v[i]));
	return a;
}

int omr_expose_host_parse(const char *host, const char *domain, char id[OMR_ID_MAX],
			  unsigned *port, struct omr_err **err)
{
	char buf[256], *dot, *rest;
	size_t len, dlen = strlen(domain), plen;
	uint64_t p;

	if (!host || (len = strlen(host)) == 0 || len >= sizeof(buf))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
	for (size_t i = 0; i <= len; i++)
		buf[i] = (char)tolower((unsigned char)host[i]);
	/* ":PORT" of the Host header (the listener's port, not the guest's). */
	if ((dot = strrchr(buf, ':'))) {
		if (!dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1) || strlen(dot + 1) > 5)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
		*dot = 0;
	}
	len = strlen(buf);
	if (len && buf[len - 1] == '.')
		buf[--len] = 0;
	if (len <= dlen + 1 || strcmp(buf + len - dlen, domain) || buf[len - dlen - 1] != '.')
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name of %s", domain);
	buf[len - dlen - 1] = 0; /* the label */
	if (strchr(buf, '.') || strlen(buf) > 63)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
	plen = strspn(buf, "0123456789");
	if (plen < 1 || plen > 5 || buf[0] == '0' || buf[plen] != '-' ||
	    strncmp(buf + plen + 1, "sb", 2))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
	buf[plen] = 0;
	if (omr_parse_u64(buf, 1, 65535, &p, "port", NULL) < 0)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
	/* E2B's getHost() keeps the id's "_" ("3000-sb_abc.DOMAIN"): both
	 * spellings name the sandbox. */
	rest = buf + plen + 3;
	if (*rest == '_')
		rest++;
	if (snprintf(id, OMR_ID_MAX, "%s%s", OMR_ID_PREFIX, rest) >= OMR_ID_MAX ||
	    !omr_id_valid(id))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "not a preview host name");
	*port = (unsigned)p;
	return 0;
}
