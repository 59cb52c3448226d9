/* Configuration: /etc/omnirun/omnirun.conf (INI, libinih), OMNIRUN_CONF
 * overrides its path, OMNIRUN_STATE_DIR / OMNIRUN_RUN_DIR override the two
 * directories.  Every setting has a default, so no file is needed. */
#ifndef OMNIRUN_CONFIG_H
#define OMNIRUN_CONFIG_H

#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/state/netconf.h"

#define OMR_DEFAULT_CONF "/etc/omnirun/omnirun.conf"
/* Carved into one /30 per sandbox: 16384 sandboxes. */
#define OMR_NET_POOL_DEFAULT "10.231.0.0/16"
/* [pool]: templates with a warm pool, and sandboxes in one at most. */
#define OMR_POOL_TEMPLATES 16
#define OMR_POOL_MAX 64

/* [pool] NAME = N: N sandboxes of template NAME kept started and not
 * yet claimed (omnirun/client/pool.h). */
struct omr_pool_conf {
	char name[33];
	unsigned size;
};

struct omr_config {
	char *conf_path;      /* file read, or NULL when none existed */
	char *state_dir;      /* [paths] state_dir   /var/lib/omnirun */
	char *run_dir;        /* [paths] run_dir     /run/omnirun */
	char *host_key;       /* [paths] host_key    /etc/omnirun/host.key: wraps
				 the keys of persisted sandboxes (0400) */
	char *cache_dir;      /* [paths] cache_dir   /var/cache/omnirun */
	char *libexec_dir;    /* [paths] libexec_dir where sbx-monitor and
				 omnirun-agent live (OMNIRUN_LIBEXEC_DIR) */
	char *recipes_dir;    /* [paths] recipes_dir template recipes
				 (OMNIRUN_RECIPES_DIR) */
	char *qemu;           /* [vmm] qemu          qemu-system-x86_64 */
	char *accel;          /* [vmm] accel         auto | kvm | tcg */
	unsigned tb_size_mb;  /* [vmm] tcg_tb_size_mb translation cache */
	unsigned boot_timeout_s;     /* [vmm] boot_timeout */
	uint64_t console_log_max;    /* [vmm] console_log_max bytes per file */
	unsigned bench_channel;      /* [vmm] bench_channel: 1 adds a raw
				        virtio-serial port for bench/exec */

	char *default_template;      /* [sandbox] template */
	unsigned default_cpus, max_cpus;            /* cpus, max_cpus */
	unsigned default_memory_mb, max_memory_mb;  /* memory_mb, max_memory_mb */
	unsigned min_memory_mb;
	unsigned default_disk_mb, max_disk_mb;      /* disk_mb, max_disk_mb */
	unsigned default_timeout_s, max_timeout_s;  /* timeout, max_timeout */
	unsigned idle_timeout_s;                    /* idle_timeout (0: none) */
	char *idle_action;                          /* idle_action: kill | pause */
	unsigned max_sandboxes;                     /* max_sandboxes per host */

	unsigned files_timeout_s;    /* [files] timeout: a file call or a
					transfer that moves nothing this long
					fails */
	unsigned max_download_mb;    /* [files] max_download_mb per download */
	unsigned host_reserve_mb;    /* [files] host_reserve_mb: a download
					stops before the host's filesystem has
					less than this free */

	/* [network] (DESIGN.md §6) */
	char *net_pool_text;          /* pool: IPv4 range the /30s come from */
	struct omr_cidr net_pool;
	char *net_uplink;             /* uplink: interface --internet NATs out
					 of, or NULL (no --internet) */
	char *net_exceptions_text;    /* exceptions: ranges --internet and the
					 proxy may reach although private */
	struct omr_cidr *net_exceptions;
	int net_nexceptions;
	unsigned default_processes, max_processes;  /* processes, max_processes:
						       inside the guest */

	/* [jail]: how each VMM is confined (omnirun/vm/jail.h, doc/jail.md) */
	unsigned jail_enable;             /* enable: uid, namespaces, root,
					     seccomp (cgroups apply anyway) */
	unsigned jail_uid_base, jail_uid_count;  /* uid_base, uid_count: one
						    uid (and gid) per live
						    sandbox from this range */
	char *jail_cgroup;                /* cgroup: auto | v2 | v1 | none */
	char *jail_cgroup_parent;         /* cgroup_parent: under each
					     hierarchy's root (omnirun) */
	unsigned jail_allow_unlimited;    /* allow_unlimited: run without
					     cgroups when none is usable */
	unsigned jail_memory_overhead_mb; /* memory_overhead_mb: QEMU's own
					     memory above the guest's */
	unsigned jail_cpu_quota_pct;      /* cpu_quota_percent of a host core
					     per vCPU */
	unsigned jail_io_weight;          /* io_weight (cgroup v2 scale) */
	unsigned jail_vmm_threads;        /* vmm_threads: QEMU's I/O thread
					     pool at most */
	char *jail_seccomp;               /* seccomp: kill | log | off */

	/* [api] (DESIGN.md §7): the shim and the accounts */
	char *api_listen;             /* listen: ADDR:PORT (127.0.0.1:8080) */
	char *api_tls_cert;           /* tls_cert, tls_key: PEM files; TLS is */
	char *api_tls_key;            /* on when both are set */
	char *api_operator;           /* operator: the account CLI-made
					 sandboxes belong to by default */
	unsigned api_user_sandboxes;  /* user_sandboxes: concurrent sandboxes
					 per user unless overridden (3) */
	unsigned api_history_days;    /* history_days: history kept (90) */
	unsigned api_rate;            /* rate: requests per second per token */
	unsigned api_rate_burst;      /* rate_burst: requests above the rate
					 a token may make at once */
	unsigned api_max_body_kb;     /* max_body_kb: a JSON request body */
	unsigned api_max_upload_mb;   /* max_upload_mb: a file upload */
	unsigned api_threads;         /* max_connections: concurrent clients */
	unsigned api_conn_timeout_s;  /* connection_timeout: an idle or slow
					 client is dropped after this long */
	char *api_mail_command;       /* mail_command: sendmail-compatible
					 (reads the message, -t) */
	char *api_mail_outbox;        /* mail_outbox: a directory mails are
					 written to instead (development) */
	unsigned api_code_ttl_s;      /* code_ttl: a login code's lifetime */

	/* [api] exposures and signed file URLs (issue 13) */
	char *api_domain;             /* domain: preview URLs are
					 PORT-SANDBOXID.DOMAIN (localhost) */
	char *api_url_scheme;         /* url_scheme: http | https, of
					 preview URLs (http) */
	char *api_public_url;         /* public_url: what signed file URLs
					 start with; NULL: the scheme and
					 Host the shim was reached at */
	unsigned api_sign_ttl_max;    /* sign_ttl_max: longest life of a
					 signed URL, seconds (86400) */

	/* [pool]: warm pools, one per template named (sizes 0 to
	 * OMR_POOL_MAX, together at most max_sandboxes) */
	struct omr_pool_conf pool[OMR_POOL_TEMPLATES];
	unsigned npool;

	/* [e2b] (doc/e2b.md): the E2B-compatible listener of sbx-shim */
	char *e2b_listen;             /* listen: ADDR:PORT; NULL: off */
	char *e2b_templates;          /* templates: "E2BNAME=TEMPLATE,..."
					 (base and code-interpreter-v1:
					 playground); other names are
					 taken as OmniRun template names */
};

/* The OmniRun template an E2B template name maps to through [e2b]
 * templates (malloc'ed), or NULL when the map does not name it. */
char *omr_config_e2b_template(const struct omr_config *c, const char *name);

/* The size of template name's warm pool ([pool] name = N), 0 for none. */
unsigned omr_config_pool_size(const struct omr_config *c, const char *name);

/* Loads the configuration (defaults, then the file, then the environment).
 * A missing file is fine unless OMNIRUN_CONF named it.  Returns 0 or < 0. */
int omr_config_load(struct omr_config **out, struct omr_err **err);
void omr_config_free(struct omr_config *c);

/* The QEMU binary of the config ([vmm] qemu: a path, or a name looked up
 * in PATH).  Returns a malloc'ed path, or NULL when there is none. */
char *omr_qemu_find(const struct omr_config *c);

#endif
