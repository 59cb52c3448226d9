/* Templates: names and template.conf (parse, check, format).
 * See omnirun/vm/template.h and DESIGN.md §5. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/vm/template.h"
#include "template-internal.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/vmm.h"


int omr_template_name_valid(const char *name)
{
	size_t n;

	if (!name || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return 0;
	for (n = 1; name[n]; n++) {
		char ch = name[n];
		if (n > 31)
			return 0;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return 0;
	}
	return 1;
}

/* A file named by template.conf: one plain name inside the template dir. */
static int file_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FILE_NAME_MAX || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

static int printable(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n >= max || s[n] < 0x20 || s[n] > 0x7e)
			return 0;
	return 1;
}


int tpl_check_name(const char *name, struct omr_err **err)
{
	if (omr_template_name_valid(name))
		return 0;
	return omr_err_setx(err, OMR_E_USAGE, EINVAL,
			   "invalid template name '%s' (want 1 to 32 of a-z, 0-9 and -, not starting with -)",
			   name ? name : "");
}

char *tpl_abs_path(const char *p)
{
	_cleanup_free_ char *cwd = NULL;

	if (p[0] == '/')
		return omr_xstrdup(p);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return omr_xstrdup(p);
	return omr_strdup_printf("%s/%s", cwd, p);
}

char *tpl_dir(const struct omr_config *c)
{
	return omr_strdup_printf("%s/templates", c->state_dir);
}

/* ---- template.conf ---------------------------------------------------- */



void tpl_conf_clear(struct tconf *t)
{
	free(t->name);
	free(t->kernel);
	free(t->initrd);
	free(t->rootfs);
	free(t->kernel_version);
	free(t->cmdline);
	free(t->base);
	memset(t, 0, sizeof(*t));
}

enum { K_NAME, K_KERNEL, K_INITRD, K_ROOTFS, K_KVER, K_CMDLINE, K_CPUS, K_MEM,
       K_DISK, K_BUILT, K_SIZE, K_BASE };

static const struct {
	const char *key;
	uint64_t min, max;   /* numbers only */
} tkeys[] = {
	[K_NAME] = { "name", 0, 0 },
	[K_KERNEL] = { "kernel", 0, 0 },
	[K_INITRD] = { "initrd", 0, 0 },
	[K_ROOTFS] = { "rootfs", 0, 0 },
	[K_KVER] = { "kernel_version", 0, 0 },
	[K_CMDLINE] = { "cmdline", 0, 0 },
	[K_CPUS] = { "cpus", 0, 64 },
	[K_MEM] = { "memory_mb", 0, 1048576 },
	[K_DISK] = { "disk_mb", 0, 16777216 },
	[K_BUILT] = { "built_at", 0, 1ull << 40 },
	[K_SIZE] = { "size_bytes", 0, 1ull << 50 },
	[K_BASE] = { "base", 0, 0 },
};

static int tconf_key(void *user, const char *section, const char *name, const char *value)
{
	struct tconf *t = user;
	size_t k;

	if (t->rc < 0)
		return 0;
	if (*section) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "unexpected section [%s]: keys take no section",
				    section);
		return 0;
	}
	for (k = 0; k < OMR_ARRAY_SIZE(tkeys); k++)
		if (!strcmp(name, tkeys[k].key))
			break;
	if (k == OMR_ARRAY_SIZE(tkeys)) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "unknown key '%s'", name);
		return 0;
	}
	if (t->seen & (1u << k)) {
		t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "key '%s' given twice", name);
		return 0;
	}
	t->seen |= 1u << k;

	switch (k) {
	case K_NAME:
		if (!omr_template_name_valid(value))
			goto bad;
		t->name = omr_xstrdup(value);
		return 1;
	case K_KERNEL: case K_INITRD: case K_ROOTFS: {
		char **dst = k == K_KERNEL ? &t->kernel : k == K_INITRD ? &t->initrd : &t->rootfs;
		if (k == K_ROOTFS && !*value)
			return 1;  /* "rootfs=" means none */
		if (!file_name_valid(value)) {
			t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL,
					    "%s '%s' must be a plain file name in the template directory",
					    name, value);
			return 0;
		}
		*dst = omr_xstrdup(value);
		return 1;
	}
	case K_BASE:
		if (!*value || !printable(value, 64) || strchr(value, ' '))
			goto bad;
		t->base = omr_xstrdup(value);
		return 1;
	case K_KVER:
		if (!*value || !printable(value, 64) || strchr(value, ' '))
			goto bad;
		t->kernel_version = omr_xstrdup(value);
		return 1;
	case K_CMDLINE:
		if (!printable(value, CMDLINE_MAX))
			goto bad;
		t->cmdline = omr_xstrdup(value);
		return 1;
	default: {
		uint64_t *dst = k == K_CPUS ? &t->cpus : k == K_MEM ? &t->memory_mb :
				k == K_DISK ? &t->disk_mb : k == K_BUILT ? &t->built_at : &t->size_bytes;
		t->rc = omr_parse_u64(value, tkeys[k].min, tkeys[k].max, dst, name, t->err);
		if (k == K_SIZE)
			t->have_size = 1;
		return t->rc == 0;
	}
	}
bad:
	t->rc = omr_err_setx(t->err, OMR_E_USAGE, EINVAL, "invalid %s '%s'", name, value);
	return 0;
}

int tpl_conf_parse(const char *text, struct tconf *t, struct omr_err **err)
{
	unsigned line = 1;
	int rc;

	/* libinih silently splits lines longer than its buffer: refuse them. */
	for (const char *p = text; *p; line++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > CONF_LINE_MAX)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "line %u longer than %d characters",
					   line, CONF_LINE_MAX);
		p += len + (nl ? 1 : 0);
	}
	t->err = err;
	rc = ini_parse_string(text, tconf_key, t);
	if (t->rc < 0)
		return t->rc;
	if (rc != 0)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "line %d: syntax error", rc);
	if (t->memory_mb && t->memory_mb < 64)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "memory_mb must be 0 or at least 64");
	if (!t->kernel)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "no kernel= given");
	if (!t->initrd)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "no initrd= given");
	return 0;
}

char *tpl_conf_format(const struct tconf *t)
{
	char *s = omr_strdup_printf("name=%s\nkernel=%s\ninitrd=%s\n", t->name, t->kernel,
				    t->initrd);
	char *n;

	if (t->rootfs) {
		n = omr_strdup_printf("%srootfs=%s\n", s, t->rootfs);
		free(s);
		s = n;
	}
	n = omr_strdup_printf("%skernel_version=%s\ncmdline=%s\ncpus=%llu\nmemory_mb=%llu\n"
			      "disk_mb=%llu\nbuilt_at=%llu\nsize_bytes=%llu\n",
			      s, t->kernel_version ? t->kernel_version : "unknown",
			      t->cmdline ? t->cmdline : "", (unsigned long long)t->cpus,
			      (unsigned long long)t->memory_mb, (unsigned long long)t->disk_mb,
			      (unsigned long long)t->built_at, (unsigned long long)t->size_bytes);
	free(s);
	if (t->base) {
		s = omr_strdup_printf("%sbase=%s\n", n, t->base);
		free(n);
		n = s;
	}
	return n;
}
