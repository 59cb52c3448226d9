/* Configuration loading; see omnirun/config.h. */
#include <errno.h>
#include <ini.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <stddef.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/state/config.h"
#include "omnirun/state/record.h"
#include "omnirun/base/util.h"

struct load_ctx {
	struct omr_config *c;
	struct omr_err **err;
	int rc;
};

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = omr_xstrdup(v);
}

struct num_key {
	const char *section, *name;
	size_t off;
	uint64_t min, max;
};

#define NUM(sec, key, field, lo, hi) \
	{ sec, key, offsetof(struct omr_config, field), lo, hi }

static const struct num_key num_keys[] = {
	NUM("vmm", "tcg_tb_size_mb", tb_size_mb, 8, 2048),
	NUM("vmm", "boot_timeout", boot_timeout_s, 1, 600),
	NUM("vmm", "bench_channel", bench_channel, 0, 1),
	NUM("sandbox", "cpus", default_cpus, 1, 64),
	NUM("sandbox", "max_cpus", max_cpus, 1, 64),
	NUM("sandbox", "memory_mb", default_memory_mb, 64, 1048576),
	NUM("sandbox", "max_memory_mb", max_memory_mb, 64, 1048576),
	NUM("sandbox", "disk_mb", default_disk_mb, 16, 16777216),
	NUM("sandbox", "max_disk_mb", max_disk_mb, 16, 16777216),
	NUM("sandbox", "timeout", default_timeout_s, 1, 31536000),
	NUM("sandbox", "max_timeout", max_timeout_s, 1, 31536000),
	NUM("sandbox", "idle_timeout", idle_timeout_s, 0, 31536000),
	NUM("sandbox", "max_sandboxes", max_sandboxes, 1, 100000),
	NUM("files", "timeout", files_timeout_s, 1, 86400),
	NUM("files", "max_download_mb", max_download_mb, 1, 1ULL << 30),
	NUM("files", "host_reserve_mb", host_reserve_mb, 0, 1ULL << 30),
	NUM("sandbox", "processes", default_processes, 16, 1048576),
	NUM("sandbox", "max_processes", max_processes, 16, 1048576),
	/* uid 0 is never a jail's, nor is (uid_t)-1 (checked with the count). */
	NUM("jail", "uid_base", jail_uid_base, 1, 4294967294u),
	NUM("jail", "uid_count", jail_uid_count, 1, 1048576),
	NUM("jail", "memory_overhead_mb", jail_memory_overhead_mb, 0, 1048576),
	NUM("jail", "cpu_quota_percent", jail_cpu_quota_pct, 1, 1000),
	NUM("jail", "io_weight", jail_io_weight, 1, 10000),
	NUM("jail", "vmm_threads", jail_vmm_threads, 1, 256),
	NUM("api", "user_sandboxes", api_user_sandboxes, 0, 100000),
	NUM("api", "history_days", api_history_days, 1, 36500),
	NUM("api", "rate", api_rate, 1, 1000000),
	NUM("api", "rate_burst", api_rate_burst, 1, 1000000),
	NUM("api", "max_body_kb", api_max_body_kb, 1, 65536),
	NUM("api", "max_upload_mb", api_max_upload_mb, 1, 1048576),
	NUM("api", "max_connections", api_threads, 4, 65536),
	NUM("api", "connection_timeout", api_conn_timeout_s, 1, 86400),
	NUM("api", "code_ttl", api_code_ttl_s, 30, 86400),
	NUM("api", "sign_ttl_max", api_sign_ttl_max, 1, 31536000),
};

struct bool_key {
	const char *section, *name;
	size_t off;
};

#define BOOL(sec, key, field) { sec, key, offsetof(struct omr_config, field) }

static const struct bool_key bool_keys[] = {
	BOOL("jail", "enable", jail_enable),
	BOOL("jail", "allow_unlimited", jail_allow_unlimited),
};

/* true/yes/on/1 and false/no/off/0, as INI files usually spell them. */
static int parse_bool(const char *v, unsigned *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < OMR_ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(v, yes[i]))
			return *out = 1, 0;
		if (!strcasecmp(v, no[i]))
			return *out = 0, 0;
	}
	return -1;
}

/* [pool] NAME = N.  NAME is spelt as template names are (omnirun/vm/
 * template.h; that area is above this one): whether the template
 * exists is the filler's to say. */
static int pool_key(struct load_ctx *x, const char *name, const char *value)
{
	struct omr_config *c = x->c;
	size_t len = strlen(name);
	unsigned i;
	uint64_t v;

	if (!len || len > 32 || name[0] == '-' ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != len) {
		x->rc = omr_err_setx(x->err, OMR_E_USAGE, EINVAL, "[pool] '%s' is not a template "
				     "name (1 to 32 of a-z, 0-9 and -)", name);
		return 0;
	}
	_cleanup_free_ char *what = omr_strdup_printf("pool.%s", name);
	if ((x->rc = omr_parse_u64(value, 0, OMR_POOL_MAX, &v, what, x->err)) < 0)
		return 0;
	for (i = 0; i < c->npool && strcmp(c->pool[i].name, name); i++)
		;
	if (i == OMR_POOL_TEMPLATES) {
		x->rc = omr_err_setx(x->err, OMR_E_USAGE, E2BIG, "[pool] names at most %d templates",
				     OMR_POOL_TEMPLATES);
		return 0;
	}
	if (i == c->npool)
		c->npool++;
	memcpy(c->pool[i].name, name, len + 1);
	c->pool[i].size = (unsigned)v;
	return 1;
}

unsigned omr_config_pool_size(const struct omr_config *c, const char *name)
{
	for (unsigned i = 0; i < c->npool; i++)
		if (!strcmp(c->pool[i].name, name))
			return c->pool[i].size;
	return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *x = user;
	struct omr_config *c = x->c;
	uint64_t v;

	if (x->rc < 0)
		return 0;
	struct { const char *s, *n; char **dst; } strs[] = {
		{ "paths", "state_dir", &c->state_dir },
		{ "paths", "run_dir", &c->run_dir },
		{ "paths", "host_key", &c->host_key },
		{ "paths", "cache_dir", &c->cache_dir },
		{ "paths", "libexec_dir", &c->libexec_dir },
		{ "paths", "recipes_dir", &c->recipes_dir },
		{ "vmm", "qemu", &c->qemu },
		{ "vmm", "accel", &c->accel },
		{ "sandbox", "template", &c->default_template },
		{ "sandbox", "idle_action", &c->idle_action },
		{ "network", "pool", &c->net_pool_text },
		{ "network", "uplink", &c->net_uplink },
		{ "network", "exceptions", &c->net_exceptions_text },
		{ "jail", "cgroup", &c->jail_cgroup },
		{ "jail", "cgroup_parent", &c->jail_cgroup_parent },
		{ "jail", "seccomp", &c->jail_seccomp },
		{ "api", "listen", &c->api_listen },
		{ "api", "tls_cert", &c->api_tls_cert },
		{ "api", "tls_key", &c->api_tls_key },
		{ "api", "operator", &c->api_operator },
		{ "api", "mail_command", &c->api_mail_command },
		{ "api", "mail_outbox", &c->api_mail_outbox },
		{ "api", "domain", &c->api_domain },
		{ "api", "url_scheme", &c->api_url_scheme },
		{ "api", "public_url", &c->api_public_url },
		{ "e2b", "listen", &c->e2b_listen },
		{ "e2b", "templates", &c->e2b_templates },
	};
	for (size_t i = 0; i < OMR_ARRAY_SIZE(strs); i++) {
		if (!strcmp(section, strs[i].s) && !strcmp(name, strs[i].n)) {
			set_str(strs[i].dst, value);
			return 1;
		}
	}
	if (!strcmp(section, "vmm") && !strcmp(name, "console_log_max")) {
		x->rc = omr_parse_u64(value, 4096, 1ull << 30, &c->console_log_max,
				      "vmm.console_log_max", x->err);
		return x->rc == 0;
	}
	for (size_t i = 0; i < OMR_ARRAY_SIZE(bool_keys); i++) {
		const struct bool_key *k = &bool_keys[i];
		if (strcmp(section, k->section) || strcmp(name, k->name))
			continue;
		if (parse_bool(value, (unsigned *)((char *)c + k->off)) < 0) {
			x->rc = omr_err_setx(x->err, OMR_E_USAGE, EINVAL,
					     "%s.%s must be true or false, not '%s'", section, name, value);
			return 0;
		}
		return 1;
	}
	for (size_t i = 0; i < OMR_ARRAY_SIZE(num_keys); i++) {
		const struct num_key *k = &num_keys[i];
		if (strcmp(section, k->section) || strcmp(name, k->name))
			continue;
		_cleanup_free_ char *what = omr_strdup_printf("%s.%s", section, name);
		x->rc = omr_parse_u64(value, k->min, k->max, &v, what, x->err);
		if (x->rc < 0)
			return 0;
		*(unsigned *)((char *)c + k->off) = (unsigned)v;
		return 1;
	}
	if (!strcmp(section, "pool"))
		return pool_key(x, name, value);
	x->rc = omr_err_setx(x->err, OMR_E_USAGE, EINVAL, "unknown setting [%s] %s", section, name);
	return 0;
}

static void set_defaults(struct omr_config *c)
{
	c->state_dir = omr_xstrdup("/var/lib/omnirun");
	c->run_dir = omr_xstrdup("/run/omnirun");
	c->host_key = omr_xstrdup("/etc/omnirun/host.key");
	c->cache_dir = omr_xstrdup("/var/cache/omnirun");
	c->libexec_dir = omr_xstrdup(OMR_LIBEXEC_DIR);
	c->recipes_dir = omr_xstrdup(OMR_RECIPES_DIR);
	c->qemu = omr_xstrdup("qemu-system-x86_64");
	c->accel = omr_xstrdup("auto");
	c->tb_size_mb = 32; /* HOSTS.md: cold boots 1.007x of 64, 14 MiB less per VM */
	c->boot_timeout_s = 60;
	c->console_log_max = 1024 * 1024;
	c->default_template = omr_xstrdup("tiny");
	/* Sizes a template does not set: 2 of at most 8 vCPUs, 4 of at most
	 * 16 GiB, 10 of at most 50 GiB of disk, 256 of at most 1024
	 * processes.  Guest memory is host memory only once touched. */
	c->default_cpus = 2;
	c->max_cpus = 8;
	c->default_memory_mb = 4096;
	c->min_memory_mb = 64;
	c->max_memory_mb = 16384;
	c->default_disk_mb = 10240;
	c->max_disk_mb = 51200;
	c->default_processes = 256;
	c->max_processes = 1024;
	c->default_timeout_s = 3600;
	c->max_timeout_s = 86400;
	c->idle_timeout_s = 900;
	c->idle_action = omr_xstrdup("kill");
	c->max_sandboxes = 64;
	c->files_timeout_s = 30;
	c->max_download_mb = 65536;
	c->host_reserve_mb = 256;
	c->net_pool_text = omr_xstrdup(OMR_NET_POOL_DEFAULT);
	c->jail_enable = 1;
	/* Past systemd-nspawn's container range (up to 0x6fffffff) and far
	 * from Debian's /etc/subuid blocks (100000 + 65536 n): no other
	 * process on the host should ever run as one of these. */
	c->jail_uid_base = 0x70000000u;
	c->jail_uid_count = 65536;
	c->jail_cgroup = omr_xstrdup("auto");
	c->jail_cgroup_parent = omr_xstrdup("omnirun");
	c->jail_memory_overhead_mb = 128;
	c->jail_cpu_quota_pct = 100;
	c->jail_io_weight = 100;
	c->jail_vmm_threads = 8;
	c->jail_seccomp = omr_xstrdup("kill");
	c->api_listen = omr_xstrdup("127.0.0.1:8080");
	c->api_operator = omr_xstrdup("operator@localhost");
	c->api_user_sandboxes = 3;
	c->api_history_days = 90;
	c->api_rate = 20;
	c->api_rate_burst = 100;
	c->api_max_body_kb = 1024;
	c->api_max_upload_mb = 4096;
	c->api_threads = 1024;
	c->api_conn_timeout_s = 30;
	c->api_code_ttl_s = 600;
	c->api_domain = omr_xstrdup("localhost");
	c->api_url_scheme = omr_xstrdup("http");
	c->api_sign_ttl_max = 86400;
	c->e2b_templates = omr_xstrdup("base=playground,code-interpreter-v1=playground");
}

/* [network]: the pool is an IPv4 range that holds at least one /30; the
 * uplink a plausible interface name; the exceptions address ranges. */
static int network_check(struct omr_config *c, struct omr_err **err)
{
	const char *bad = NULL;
	int n;

	if (omr_cidr_parse(c->net_pool_text, &c->net_pool) < 0 || c->net_pool.family != AF_INET ||
	    c->net_pool.prefix < 8 || c->net_pool.prefix > 30)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "network.pool must be an IPv4 range "
				    "between /8 and /30, not '%s'", c->net_pool_text);
	if (c->net_uplink && !*c->net_uplink) {
		free(c->net_uplink);
		c->net_uplink = NULL;
	}
	if (c->net_uplink && (strlen(c->net_uplink) >= 16 || strchr(c->net_uplink, '/') ||
			      strchr(c->net_uplink, ' ')))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "network.uplink '%s' is not an "
				    "interface name", c->net_uplink);
	if (c->net_exceptions_text) {
		n = omr_cidr_list_parse(c->net_exceptions_text, &c->net_exceptions, &bad);
		if (n < 0)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "network.exceptions: '%.40s' "
					    "is not an address range", bad);
		c->net_nexceptions = n;
	}
	return 0;
}

static int check_jail(const struct omr_config *c, struct omr_err **err)
{
	const char *p = c->jail_cgroup_parent;

	if ((uint64_t)c->jail_uid_base + c->jail_uid_count - 1 > 4294967294u)
		return omr_err_setx(err, OMR_E_USAGE, ERANGE,
				    "jail.uid_base + jail.uid_count goes past the last uid");
	if (strcmp(c->jail_cgroup, "auto") && strcmp(c->jail_cgroup, "v2") &&
	    strcmp(c->jail_cgroup, "v1") && strcmp(c->jail_cgroup, "none"))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL,
				    "jail.cgroup must be auto, v2, v1 or none, not '%s'", c->jail_cgroup);
	/* One relative path of plain names: it is joined under every
	 * hierarchy's root. */
	if (!*p || *p == '/' || strstr(p, "..") || p[strlen(p) - 1] == '/' ||
	    strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != strlen(p))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "jail.cgroup_parent is not a relative "
				    "path of plain names: '%s'", p);
	if (strcmp(c->jail_seccomp, "kill") && strcmp(c->jail_seccomp, "log") &&
	    strcmp(c->jail_seccomp, "off"))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL,
				    "jail.seccomp must be kill, log or off, not '%s'", c->jail_seccomp);
	return 0;
}

static void env_override(char **dst, const char *var)
{
	const char *v = getenv(var);
	if (v && *v)
		set_str(dst, v);
}

/* [e2b]: an empty listen is off; templates is a list of NAME=TEMPLATE
 * pairs of plain names. */
static int e2b_check(struct omr_config *c, struct omr_err **err)
{
	const char *ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

	if (c->e2b_listen && !*c->e2b_listen) {
		free(c->e2b_listen);
		c->e2b_listen = NULL;
	}
	for (const char *p = c->e2b_templates; p && *p; ) {
		size_t n = strcspn(p, ","), a = strspn(p, ok);
		if (a == 0 || a >= n || p[a] != '=' || a + 1 == n || strspn(p + a + 1, ok) != n - a - 1)
			return omr_err_setx(err, OMR_E_USAGE, EINVAL, "e2b.templates must be "
					    "NAME=TEMPLATE pairs separated by commas, not '%s'",
					    c->e2b_templates);
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

char *omr_config_e2b_template(const struct omr_config *c, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = c->e2b_templates; p && *p; ) {
		size_t n = strcspn(p, ","), eq = strcspn(p, "=");
		if (eq == len && !strncmp(p, name, len))
			return strndup(p + eq + 1, n - eq - 1);
		p += n;
		if (*p == ',')
			p++;
	}
	return NULL;
}

/* [api]: preview URLs are built from the domain, so it must be a host
 * name (normalized here); signed URLs from public_url. */
static int api_check(struct omr_config *c, struct omr_err **err)
{
	char host[OMR_HOST_MAX];

	if (strcmp(c->api_url_scheme, "http") && strcmp(c->api_url_scheme, "https"))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL,
				    "api.url_scheme must be http or https, not '%s'", c->api_url_scheme);
	if (omr_host_normalize(c->api_domain, 0, host, err) < 0)
		return omr_err_wrap(err, "api.domain");
	set_str(&c->api_domain, host);
	if (!c->api_public_url)
		return 0; /* the shim uses the address it was reached at */
	if (strncmp(c->api_public_url, "http://", 7) && strncmp(c->api_public_url, "https://", 8))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL,
				    "api.public_url must start with http:// or https://, not '%s'",
				    c->api_public_url);
	/* Paths are appended to it. */
	for (size_t n = strlen(c->api_public_url); n > 8 && c->api_public_url[n - 1] == '/'; n--)
		c->api_public_url[n - 1] = 0;
	return 0;
}

int omr_config_load(struct omr_config **out, struct omr_err **err)
{
	struct omr_config *c = omr_xcalloc(1, sizeof(*c));
	const char *path = getenv("OMNIRUN_CONF");
	int explicit = path && *path;
	struct load_ctx x = { c, err, 0 };
	int rc;

	set_defaults(c);
	if (!explicit)
		path = OMR_DEFAULT_CONF;
	rc = ini_parse(path, on_key, &x);
	if (x.rc < 0) {
		omr_err_wrap(err, "%s", path);
		goto fail;
	}
	if (rc == -1) {
		if (explicit) {
			x.rc = omr_err_set(err, errno && errno != ENOENT ? OMR_E_FAIL : OMR_E_NOT_FOUND,
					   errno ? errno : ENOENT, "cannot read %s", path);
			goto fail;
		}
	} else if (rc != 0) {
		x.rc = omr_err_setx(err, OMR_E_USAGE, EINVAL, "%s:%d: syntax error", path, rc);
		goto fail;
	} else {
		c->conf_path = omr_xstrdup(path);
	}
	env_override(&c->state_dir, "OMNIRUN_STATE_DIR");
	env_override(&c->run_dir, "OMNIRUN_RUN_DIR");
	env_override(&c->host_key, "OMNIRUN_HOST_KEY");
	env_override(&c->cache_dir, "OMNIRUN_CACHE_DIR");
	env_override(&c->libexec_dir, "OMNIRUN_LIBEXEC_DIR");
	env_override(&c->recipes_dir, "OMNIRUN_RECIPES_DIR");
	env_override(&c->accel, "OMNIRUN_ACCEL");
	if (strcmp(c->accel, "auto") && strcmp(c->accel, "kvm") && strcmp(c->accel, "tcg")) {
		x.rc = omr_err_setx(err, OMR_E_USAGE, EINVAL, "vmm.accel must be auto, kvm or tcg, not '%s'",
				   c->accel);
		goto fail;
	}
	if (c->default_cpus > c->max_cpus || c->default_memory_mb > c->max_memory_mb ||
	    c->default_disk_mb > c->max_disk_mb || c->default_timeout_s > c->max_timeout_s ||
	    c->default_processes > c->max_processes) {
		x.rc = omr_err_setx(err, OMR_E_USAGE, EINVAL, "a sandbox default exceeds its maximum");
		goto fail;
	}
	{
		unsigned pooled = 0;
		for (unsigned i = 0; i < c->npool; i++)
			pooled += c->pool[i].size;
		/* A pool as large as the host would leave no place to create. */
		if (pooled > c->max_sandboxes) {
			x.rc = omr_err_setx(err, OMR_E_USAGE, ERANGE, "[pool] sizes add up to %u, more "
					    "than sandbox.max_sandboxes (%u)", pooled, c->max_sandboxes);
			goto fail;
		}
	}
	if ((x.rc = omr_idle_action_check(c->idle_action, err)) < 0) {
		omr_err_wrap(err, "sandbox.idle_action");
		goto fail;
	}
	if ((x.rc = api_check(c, err)) < 0 || (x.rc = e2b_check(c, err)) < 0) {
		omr_err_wrap(err, "%s", c->conf_path ? c->conf_path : "config");
		goto fail;
	}
	if ((x.rc = network_check(c, err)) < 0) {
		omr_err_wrap(err, "%s", c->conf_path ? c->conf_path : "config");
		goto fail;
	}
	if ((x.rc = check_jail(c, err)) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	omr_config_free(c);
	return x.rc < 0 ? x.rc : -1;
}

void omr_config_free(struct omr_config *c)
{
	if (!c)
		return;
	free(c->conf_path);
	free(c->state_dir);
	free(c->run_dir);
	free(c->host_key);
	free(c->cache_dir);
	free(c->libexec_dir);
	free(c->recipes_dir);
	free(c->qemu);
	free(c->accel);
	free(c->default_template);
	free(c->idle_action);
	free(c->net_pool_text);
	free(c->net_uplink);
	free(c->net_exceptions_text);
	free(c->net_exceptions);
	free(c->jail_cgroup);
	free(c->jail_cgroup_parent);
	free(c->jail_seccomp);
	free(c->api_listen);
	free(c->api_tls_cert);
	free(c->api_tls_key);
	free(c->api_operator);
	free(c->api_mail_command);
	free(c->api_mail_outbox);
	free(c->api_domain);
	free(c->api_url_scheme);
	free(c->api_public_url);
	free(c->e2b_listen);
	free(c->e2b_templates);
	free(c);
}

char *omr_qemu_find(const struct omr_config *c)
{
	return omr_find_program(c->qemu && *c->qemu ? c->qemu : "qemu-system-x86_64", NULL);
}
