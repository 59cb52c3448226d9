/* Templates: INI recipes (guest/templates/NAME/recipe), read with libinih
 * and checked whole before anything is built.  See template-internal.h
 * for the format. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "template-internal.h"

#define RECIPE_MAX (64 * 1024)

enum { R_DESC, R_SUITE, R_PACKAGES, R_NPM, R_CPUS, R_MEM, R_DISK, R_WORKDIR };

static const char *const rkeys[] = {
	[R_DESC] = "description", [R_SUITE] = "suite", [R_PACKAGES] = "packages",
	[R_NPM] = "npm", [R_CPUS] = "cpus", [R_MEM] = "memory_mb", [R_DISK] = "disk_mb",
	[R_WORKDIR] = "workdir",
};

__attribute__((format(printf, 2, 3)))
static int fail(struct recipe *r, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->rc = omr_err_setx(r->err, OMR_E_USAGE, EINVAL, "%s", msg);
	return 0;
}

static int word_ok(const char *w, const char *extra)
{
	if (!*w)
		return 0;
	for (; *w; w++)
		if (!((*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9') || strchr(extra, *w)))
			return 0;
	return 1;
}

/* Appends the words of value to *list (space-separated), each checked. */
static int add_words(struct recipe *r, char **list, const char *key, const char *value)
{
	_cleanup_free_ char *copy = omr_xstrdup(value);

	for (char *w = strtok(copy, " \t,"); w; w = strtok(NULL, " \t,")) {
		if (!strcmp(key, "packages")) {
			/* Debian package names (policy 5.6.1). */
			if (!word_ok(w, "+.-") || w[0] == '-' || w[0] == '+' || w[0] == '.')
				return fail(r, "invalid Debian package name '%s'%s", w, "");
		} else {
			/* npm: NAME@VERSION or @SCOPE/NAME@VERSION, pinned. */
			const char *at = strrchr(w, '@');
			if (!at || at == w || !at[1] || !word_ok(at + 1, ".-+") ||
			    !word_ok(w[0] == '@' ? w + 1 : w, "@/._-"))
				return fail(r, "npm package '%s' must be NAME@VERSION%s", w, " (pinned)");
		}
		char *n = *list ? omr_strdup_printf("%s %s", *list, w) : omr_xstrdup(w);
		free(*list);
		*list = n;
	}
	return 1;
}

static int printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static int template_key(struct recipe *r, const char *name, const char *value)
{
	size_t k;

	for (k = 0; k < OMR_ARRAY_SIZE(rkeys); k++)
		if (!strcmp(name, rkeys[k]))
			break;
	if (k == OMR_ARRAY_SIZE(rkeys))
		return fail(r, "unknown key '%s' in [template]%s", name, "");
	/* libinih hands continuation lines over as the same key again: the
	 * lists may span lines, nothing else may come twice. */
	if ((r->seen & (1u << k)) && k != R_PACKAGES && k != R_NPM)
		return fail(r, "key '%s' given twice%s", name, "");
	r->seen |= 1u << k;
	switch (k) {
	case R_DESC:
		if (!printable(value))
			return fail(r, "invalid %s '%s'", name, value);
		free(r->description);
		r->description = omr_xstrdup(value);
		return 1;
	case R_SUITE:
		if (!word_ok(value, "-"))
			return fail(r, "invalid suite '%s'%s", value, "");
		r->suite = omr_xstrdup(value);
		return 1;
	case R_PACKAGES:
		return add_words(r, &r->packages, "packages", value);
	case R_NPM:
		return add_words(r, &r->npm, "npm", value);
	case R_WORKDIR:
		if (value[0] != '/' || !word_ok(value + 1, "/_-.") || strstr(value, "..") ||
		    !strcmp(value, "/"))
			return fail(r, "invalid workdir '%s' (an absolute path)%s", value, "");
		r->workdir = omr_xstrdup(value);
		return 1;
	default: {
		uint64_t *dst = k == R_CPUS ? &r->cpus : k == R_MEM ? &r->memory_mb : &r->disk_mb;
		uint64_t min = k == R_CPUS ? 1 : k == R_MEM ? 64 : 16;
		uint64_t max = k == R_CPUS ? 64 : k == R_MEM ? 1048576 : 16777216;
		r->rc = omr_parse_u64(value, min, max, dst, name, r->err);
		return r->rc == 0;
	}
	}
}

static int env_key(struct recipe *r, const char *name, const char *value)
{
	if (!((*name >= 'A' && *name <= 'Z') || (*name >= 'a' && *name <= 'z') || *name == '_') ||
	    !word_ok(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") || !printable(value))
		return fail(r, "invalid environment variable '%s'%s", name, "");
	r->env = omr_xrealloc(r->env, (r->nenv + 1) * sizeof(char *));
	r->env[r->nenv++] = omr_strdup_printf("%s=%s", name, value);
	return 1;
}

static int files_key(struct recipe *r, const char *dst, const char *src)
{
	struct stat st;
	char *path;

	if (dst[0] != '/' || strstr(dst, "..") || !word_ok(dst + 1, "/_-.+@ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
		return fail(r, "[files]: '%s' must be an absolute path in the image%s", dst, "");
	path = src[0] == '/' ? omr_xstrdup(src) : omr_strdup_printf("%s/%s", r->base_dir, src);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		r->rc = omr_err_set(r->err, OMR_E_USAGE, errno ? errno : EINVAL,
				    "[files]: %s for %s is not a readable file", path, dst);
		free(path);
		return 0;
	}
	r->files_src = omr_xrealloc(r->files_src, (r->nfiles + 1) * sizeof(char *));
	r->files_dst = omr_xrealloc(r->files_dst, (r->nfiles + 1) * sizeof(char *));
	r->files_src[r->nfiles] = path;
	r->files_dst[r->nfiles++] = omr_xstrdup(dst);
	return 1;
}

static int services_key(struct recipe *r, const char *name, const char *value)
{
	if (!word_ok(name, "-_") || !*value || !printable(value))
		return fail(r, "[services]: invalid service '%s'%s", name, "");
	if (r->nservices >= 8)
		return fail(r, "[services]: more than 8 services%s%s", "", "");
	r->services = omr_xrealloc(r->services, (r->nservices + 1) * sizeof(char *));
	r->services[r->nservices++] = omr_xstrdup(value);
	return 1;
}

static int recipe_key(void *user, const char *section, const char *name, const char *value)
{
	struct recipe *r = user;

	if (r->rc < 0)
		return 0;
	if (!strcmp(section, "template"))
		return template_key(r, name, value);
	if (!strcmp(section, "env"))
		return env_key(r, name, value);
	if (!strcmp(section, "files"))
		return files_key(r, name, value);
	if (!strcmp(section, "services"))
		return services_key(r, name, value);
	if (!*section)
		return fail(r, "key '%s' outside a section (want [template])%s", name, "");
	return fail(r, "unknown section [%s]%s", section, "");
}

int tpl_recipe_is_ini(const char *path)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char head[2] = { 0 };

	/* A script (the tiny template's) starts with "#!". */
	return f && !(fread(head, 1, 2, f) == 2 && head[0] == '#' && head[1] == '!');
}

int tpl_recipe_parse(const char *path, struct recipe *r, struct omr_err **err)
{
	_cleanup_free_ char *text = NULL, *dir = NULL;
	unsigned line = 1;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = omr_read_file_at(AT_FDCWD, path, RECIPE_MAX, &text, NULL, err);
	if (rc < 0)
		return rc;
	for (const char *p = text; *p; line++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > CONF_LINE_MAX)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL,
					    "recipe %s: line %u longer than %d characters (split lists "
					    "over indented lines)", path, line, CONF_LINE_MAX);
		p += len + (nl ? 1 : 0);
	}
	dir = omr_xstrdup(path);
	*strrchr(dir, '/') = 0;
	r->base_dir = dir;
	r->err = err;
	rc = ini_parse_string(text, recipe_key, r);
	r->base_dir = NULL;
	if (r->rc < 0)
		goto bad;
	if (rc != 0) {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "line %d: syntax error", rc);
		goto bad;
	}
	if (!r->suite || !r->packages) {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "[template] needs '%s'",
			     !r->suite ? "suite" : "packages");
		goto bad;
	}
	if (!r->workdir)
		r->workdir = omr_xstrdup("/workspace");
	return 0;
bad:
	tpl_recipe_clear(r);
	return omr_err_wrap(err, "recipe %s", path);
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void tpl_recipe_clear(struct recipe *r)
{
	free(r->description);
	free(r->suite);
	free(r->packages);
	free(r->npm);
	free(r->workdir);
	free_list(r->env, r->nenv);
	free_list(r->services, r->nservices);
	free_list(r->files_src, r->nfiles);
	free_list(r->files_dst, r->nfiles);
	memset(r, 0, sizeof(*r));
}
