/* Sandbox records on disk; see omnirun/sandbox.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/state/record.h"
#include "omnirun/base/util.h"

#define RECORD "sandbox.conf"
#define RECORD_MAX 16384

static const char *const state_names[] = {
	[OMR_SB_STARTING] = "starting",
	[OMR_SB_RUNNING] = "running",
	[OMR_SB_STOPPING] = "stopping",
	[OMR_SB_STOPPED] = "stopped",
	[OMR_SB_PAUSED] = "paused",
	[OMR_SB_PERSISTED] = "persisted",
	[OMR_SB_CORRUPT] = "corrupt",
};

#define RESERVE "reserve"
#define RESERVE_BYTES (64 * 1024)

const char *omr_sb_state_name(enum omr_sb_state s)
{
	return (unsigned)s < OMR_ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

int omr_idle_action_valid(const char *s)
{
	return !*s || !strcmp(s, "kill") || !strcmp(s, "pause") || !strcmp(s, "persist");
}

int omr_idle_action_check(const char *s, struct omr_err **err)
{
	if (*s && omr_idle_action_valid(s))
		return 0;
	return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid idle action '%s': kill, pause or "
			    "persist", s);
}

int omr_sandbox_pooled(const struct omr_sandbox *sb)
{
	return !strcmp(sb->pool, "ready");
}

char *omr_sandbox_state_path(const struct omr_config *c, const char *id, const char *file)
{
	return file ? omr_strdup_printf("%s/sandboxes/%s/%s", c->state_dir, id, file)
		    : omr_strdup_printf("%s/sandboxes/%s", c->state_dir, id);
}

char *omr_sandbox_run_path(const struct omr_config *c, const char *id, const char *file)
{
	return file ? omr_strdup_printf("%s/sandboxes/%s/%s", c->run_dir, id, file)
		    : omr_strdup_printf("%s/sandboxes/%s", c->run_dir, id);
}

int omr_state_sandboxes_dir(const struct omr_config *c, int create, struct omr_err **err)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/sandboxes", c->state_dir);
	_cleanup_close_ int top = omr_dir_private(c->state_dir, create, err);

	if (top < 0)
		return -1;
	return omr_dir_private(p, create, err);
}

int omr_state_run_dir(const struct omr_config *c, struct omr_err **err)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/sandboxes", c->run_dir);
	_cleanup_close_ int top = omr_dir_private(c->run_dir, 1, err);

	if (top < 0)
		return -1;
	return omr_dir_private(p, 1, err);
}

static int pass(struct omr_err **err, struct omr_err **e);

static int id_dir(const struct omr_config *c, const char *id, struct omr_err **err)
{
	_cleanup_close_ int root = -1;
	struct omr_err *e = NULL;
	int fd;

	if (!omr_id_valid(id)) {
		_cleanup_free_ char *q = omr_str_quote_short(id, 48);
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid sandbox id '%s'", q);
	}
	root = omr_state_sandboxes_dir(c, 0, &e);
	if (root < 0) {
		if (omr_err_kind(e) == OMR_E_DENIED)
			return pass(err, &e);
		omr_err_free(&e);
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such sandbox '%s'", id);
	}
	fd = openat(root, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such sandbox '%s'", id)
				       : omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open sandbox %s", id);
	return fd;
}

struct parse_ctx {
	struct omr_sandbox *sb;
	int bad;
	unsigned seen;   /* bits of the required keys */
};

enum { SEEN_ID = 1, SEEN_STATE = 2, SEEN_CREATED = 4 };

/* Strict numbers: a record with a garbled one is corrupt, not zero. */
static int64_t to_i64(struct parse_ctx *x, const char *v)
{
	uint64_t n;

	if (omr_parse_u64(v, 0, INT64_MAX, &n, "field", NULL) < 0) {
		x->bad = 1;
		return 0;
	}
	return (int64_t)n;
}

static unsigned to_u(struct parse_ctx *x, const char *v)
{
	int64_t n = to_i64(x, v);

	if (n > UINT32_MAX)
		x->bad = 1;
	return (unsigned)n;
}

static int on_field(void *user, const char *section, const char *k, const char *v)
{
	struct parse_ctx *x = user;
	struct omr_sandbox *sb = x->sb;

	(void)section;
	if (!strcmp(k, "id")) {
		x->bad |= omr_strlcpy(sb->id, v, sizeof(sb->id)) < 0;
		x->seen |= SEEN_ID;
	} else if (!strcmp(k, "template")) {
		x->bad |= omr_strlcpy(sb->template_name, v, sizeof(sb->template_name)) < 0;
	} else if (!strcmp(k, "state")) {
		/* An unknown state is not "stopped": nobody knows. */
		sb->state = OMR_SB_CORRUPT;
		for (size_t i = 0; i < OMR_SB_CORRUPT; i++)
			if (!strcmp(v, state_names[i]))
				sb->state = (enum omr_sb_state)i;
		x->bad |= sb->state == OMR_SB_CORRUPT;
		x->seen |= SEEN_STATE;
	} else if (!strcmp(k, "created_at")) {
		sb->created_at = to_i64(x, v);
		x->seen |= SEEN_CREATED;
	} else if (!strcmp(k, "expires_at"))
		sb->expires_at = to_i64(x, v);
	else if (!strcmp(k, "ended_at"))
		sb->ended_at = to_i64(x, v);
	else if (!strcmp(k, "end_reason"))
		x->bad |= omr_strlcpy(sb->end_reason, v, sizeof(sb->end_reason)) < 0;
	else if (!strcmp(k, "cpus"))
		sb->cpus = to_u(x, v);
	else if (!strcmp(k, "memory_mb"))
		sb->memory_mb = to_u(x, v);
	else if (!strcmp(k, "disk_mb"))
		sb->disk_mb = to_u(x, v);
	else if (!strcmp(k, "processes"))
		sb->processes = to_u(x, v);
	else if (!strcmp(k, "timeout"))
		sb->timeout_s = to_u(x, v);
	else if (!strcmp(k, "idle_timeout"))
		sb->idle_timeout_s = to_u(x, v);
	else if (!strcmp(k, "idle_action")) {
		x->bad |= omr_strlcpy(sb->idle_action, v, sizeof(sb->idle_action)) < 0;
		x->bad |= !omr_idle_action_valid(sb->idle_action);
	} else if (!strcmp(k, "paused_at"))
		sb->paused_at = to_i64(x, v);
	else if (!strcmp(k, "monitor_pid"))
		sb->monitor_pid = (pid_t)to_u(x, v);
	else if (!strcmp(k, "vmm_pid"))
		sb->vmm_pid = (pid_t)to_u(x, v);
	else if (!strcmp(k, "accel"))
		x->bad |= omr_strlcpy(sb->accel, v, sizeof(sb->accel)) < 0;
	else if (!strcmp(k, "boot"))
		x->bad |= omr_strlcpy(sb->boot, v, sizeof(sb->boot)) < 0;
	else if (!strcmp(k, "boot_why"))
		omr_strlcpy(sb->boot_why, v, sizeof(sb->boot_why)); /* a note: cut, not refused */
	else if (!strcmp(k, "pool")) {
		x->bad |= omr_strlcpy(sb->pool, v, sizeof(sb->pool)) < 0;
		x->bad |= *v && strcmp(v, "ready") && strcmp(v, "claimed");
	} else if (!strcmp(k, "forked_from"))
		x->bad |= omr_strlcpy(sb->forked_from, v, sizeof(sb->forked_from)) < 0;
	else if (!strcmp(k, "fork"))
		x->bad |= omr_strlcpy(sb->fork, v, sizeof(sb->fork)) < 0;
	else if (!strcmp(k, "owner"))
		sb->owner = (uid_t)to_u(x, v);
	else if (!strcmp(k, "net_addr"))
		x->bad |= omr_strlcpy(sb->net_addr, v, sizeof(sb->net_addr)) < 0;
	else if (!strcmp(k, "net_internet"))
		sb->net_internet = to_u(x, v) != 0;
	/* Unknown keys are kept for newer versions' sake: ignored. */
	return 1;
}

/* Hands e on to err (which may be NULL).  Returns -1. */
static int pass(struct omr_err **err, struct omr_err **e)
{
	if (err && !*err)
		*err = omr_steal_ptr(*e);
	omr_err_free(e);
	return -1;
}

/* Fills out as a record nobody can read: its id, state corrupt. */
static int corrupt(struct omr_sandbox *out, const char *id, const char *why,
		   struct omr_err **err)
{
	memset(out, 0, sizeof(*out));
	omr_strlcpy(out->id, id, sizeof(out->id));
	out->state = OMR_SB_CORRUPT;
	return omr_err_setx(err, OMR_E_STATE, EBADMSG,
			    "sandbox %s: corrupt record (%s); sbx-kill %s tears it down", id, why,
			    id);
}

/* libinih cuts lines at 200 bytes: a field that may be longer (the
 * allow-list, up to OMR_ALLOW_MAX) is taken out of the text before it is
 * parsed.  Returns 0 (dst "" when absent) or -1 when it does not fit. */
static int take_long_line(char *text, const char *key, char *dst, size_t size)
{
	char *p = text;
	size_t klen = strlen(key);

	dst[0] = 0;
	while (p && *p) {
		char *nl = strchr(p, '\n');
		char *end = nl ? nl : p + strlen(p);
		if (!strncmp(p, key, klen)) {
			size_t len = (size_t)(end - p) - klen;
			if (len >= size)
				return -1;
			memcpy(dst, p + klen, len);
			dst[len] = 0;
			memmove(p, nl ? nl + 1 : end, strlen(nl ? nl + 1 : end) + 1);
			return 0;
		}
		p = nl ? nl + 1 : NULL;
	}
	return 0;
}

int omr_sandbox_load(const struct omr_config *c, const char *id,
		     struct omr_sandbox *out, struct omr_err **err)
{
	_cleanup_close_ int dfd = id_dir(c, id, err);
	_cleanup_free_ char *text = NULL;
	struct parse_ctx x = { out, 0, 0 };
	struct omr_err *e = NULL;
	size_t len = 0;

	if (dfd < 0)
		return dfd;
	if (omr_read_file_at(dfd, RECORD, RECORD_MAX, &text, &len, &e) < 0) {
		/* A directory without a record is a create in progress or
		 * one that crashed before writing it. */
		if (omr_err_kind(e) == OMR_E_NOT_FOUND) {
			omr_err_free(&e);
			return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no such sandbox '%s'", id);
		}
		if (e->errnum != EFBIG) {
			omr_err_wrap(&e, "sandbox %s", id);
			return pass(err, &e);
		}
		omr_err_free(&e);
		return corrupt(out, id, "too large", err);
	}
	memset(out, 0, sizeof(*out));
	if (strlen(text) != len)
		return corrupt(out, id, "NUL bytes", err);
	if (take_long_line(text, "net_allow = ", out->net_allow, sizeof(out->net_allow)) < 0)
		return corrupt(out, id, "allow-list too long", err);
	if (ini_parse_string(text, on_field, &x) != 0 || x.bad)
		return corrupt(out, id, "unreadable fields", err);
	if (x.seen != (SEEN_ID | SEEN_STATE | SEEN_CREATED))
		return corrupt(out, id, "fields missing", err);
	if (strcmp(out->id, id))
		return corrupt(out, id, "another sandbox's id", err);
	return 0;
}

int omr_sandbox_save(const struct omr_config *c, const struct omr_sandbox *sb,
		     struct omr_err **err)
{
	_cleanup_close_ int dfd = id_dir(c, sb->id, err);
	_cleanup_free_ char *text = NULL;
	struct omr_err *e = NULL;

	if (dfd < 0)
		return dfd;
	text = omr_strdup_printf(
		"id = %s\ntemplate = %s\nstate = %s\ncreated_at = %lld\n"
		"expires_at = %lld\nended_at = %lld\nend_reason = %s\ncpus = %u\n"
		"memory_mb = %u\ndisk_mb = %u\ntimeout = %u\nidle_timeout = %u\n"
		"monitor_pid = %d\nvmm_pid = %d\naccel = %s\nowner = %u\nprocesses = %u\n"
		"net_addr = %s\nnet_internet = %d\nidle_action = %s\npaused_at = %lld\n"
		"net_allow = %s\nboot = %s\nboot_why = %s\nforked_from = %s\nfork = %s\n"
		"pool = %s\n",
		sb->id, sb->template_name, omr_sb_state_name(sb->state),
		(long long)sb->created_at, (long long)sb->expires_at,
		(long long)sb->ended_at, sb->end_reason, sb->cpus, sb->memory_mb,
		sb->disk_mb, sb->timeout_s, sb->idle_timeout_s, (int)sb->monitor_pid,
		(int)sb->vmm_pid, sb->accel, (unsigned)sb->owner, sb->processes, sb->net_addr,
		sb->net_internet, sb->idle_action[0] ? sb->idle_action : "kill",
		(long long)sb->paused_at, sb->net_allow, sb->boot, sb->boot_why, sb->forked_from,
		sb->fork, sb->pool);
	if (omr_write_file_atomic_at(dfd, RECORD, text, strlen(text), 0600, &e) < 0) {
		/* A full filesystem must not leave a record that lies: the
		 * reserve gives back what this write needs. */
		if ((e->errnum != ENOSPC && e->errnum != EDQUOT) || unlinkat(dfd, RESERVE, 0) < 0)
			return pass(err, &e);
		omr_err_free(&e);
		if (omr_write_file_atomic_at(dfd, RECORD, text, strlen(text), 0600, err) < 0)
			return -1;
	}
	/* A stopped sandbox is written no more (but by gc): no reserve. */
	if (sb->state == OMR_SB_STOPPED)
		unlinkat(dfd, RESERVE, 0);
	return 0;
}

/* flock LOCK_EX on dfd/name, waiting at most timeout_ms.  Returns the fd. */
static int lock_at(int dfd, const char *name, int timeout_ms, const char *what,
		   struct omr_err **err)
{
	/* Read-only is enough for flock. */
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	uint64_t deadline = omr_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);

	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open the lock of %s", what);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return omr_steal_fd(fd);
		if (errno != EWOULDBLOCK)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot lock %s", what);
		if (omr_now_ms() >= deadline)
			return omr_err_setx(err, OMR_E_STATE, EBUSY, "%s is locked by another operation", what);
		poll(NULL, 0, 10);
	}
}

int omr_sandbox_lock(const struct omr_config *c, const char *id, int timeout_ms,
		     struct omr_err **err)
{
	_cleanup_close_ int dfd = id_dir(c, id, err);
	_cleanup_free_ char *what = omr_strdup_printf("sandbox %s", id);

	if (dfd < 0)
		return dfd;
	return lock_at(dfd, "lock", timeout_ms, what, err);
}

int omr_sandbox_create_lock(const struct omr_config *c, int timeout_ms, struct omr_err **err)
{
	_cleanup_close_ int root = omr_state_sandboxes_dir(c, 1, err);

	if (root < 0)
		return -1;
	/* Not a valid id, so never taken for a sandbox's directory. */
	return lock_at(root, ".create.lock", timeout_ms, "sandbox creation", err);
}

static int cmp_created(const void *a, const void *b)
{
	const struct omr_sandbox *x = a, *y = b;
	if (x->created_at != y->created_at)
		return x->created_at < y->created_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

int omr_sandbox_list(const struct omr_config *c, struct omr_sandbox **out, size_t *n,
		     struct omr_err **err)
{
	struct omr_err *e = NULL;
	int root = omr_state_sandboxes_dir(c, 0, &e);
	struct omr_sandbox *v = NULL;
	size_t cnt = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	*n = 0;
	if (root < 0) {
		if (omr_err_kind(e) == OMR_E_NOT_FOUND) {
			omr_err_free(&e);
			return 0; /* nothing was ever created */
		}
		return pass(err, &e);
	}
	d = fdopendir(root);
	if (!d) {
		close(root);
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot list sandboxes");
	}
	while ((de = readdir(d))) {
		struct omr_sandbox sb = { 0 };

		if (!omr_id_valid(de->d_name))
			continue;
		if (omr_sandbox_load(c, de->d_name, &sb, &e) < 0 && sb.state != OMR_SB_CORRUPT) {
			omr_err_free(&e); /* being created or removed right now */
			continue;
		}
		omr_err_free(&e);
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			v = omr_xrealloc(v, cap * sizeof(*v));
		}
		v[cnt++] = sb;
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_created);
	*out = v;
	*n = cnt;
	return 0;
}

static json_t *time_json(int64_t secs)
{
	char buf[32];

	if (secs <= 0)
		return json_null();
	omr_format_time(secs, buf);
	return json_string(buf);
}

json_t *omr_sandbox_network_json(const struct omr_sandbox *sb)
{
	json_t *allow = json_array();
	char gw[OMR_ADDR4_MAX] = "";
	const char *p = sb->net_allow;

	while (*p) {
		size_t len = strcspn(p, ",");
		if (len)
			json_array_append_new(allow, json_stringn(p, len));
		p += len + (p[len] == ',');
	}
	if (sb->net_addr[0] && omr_net_gateway_of(sb->net_addr, gw) < 0)
		gw[0] = 0;
	return json_pack("{s:s?, s:s?, s:i, s:b, s:o, s:s}", "address",
			 sb->net_addr[0] ? sb->net_addr : NULL, "gateway", gw[0] ? gw : NULL,
			 "prefix", 30, "internet", sb->net_internet, "allow", allow, "mode",
			 sb->net_internet ? "internet" : json_array_size(allow) ? "allow-list"
			 : "air-gapped");
}

json_t *omr_sandbox_json(const struct omr_sandbox *sb)
{
	json_t *j = json_object();

	json_object_set_new(j, "sandbox_id", json_string(sb->id));
	json_object_set_new(j, "template", json_string(sb->template_name));
	json_object_set_new(j, "state", json_string(omr_sb_state_name(sb->state)));
	json_object_set_new(j, "created_at", time_json(sb->created_at));
	json_object_set_new(j, "expires_at", time_json(sb->expires_at));
	json_object_set_new(j, "cpus", json_integer(sb->cpus));
	json_object_set_new(j, "memory_mb", json_integer(sb->memory_mb));
	json_object_set_new(j, "disk_mb", json_integer(sb->disk_mb));
	json_object_set_new(j, "processes", json_integer(sb->processes));
	json_object_set_new(j, "timeout", json_integer(sb->timeout_s));
	json_object_set_new(j, "idle_timeout", json_integer(sb->idle_timeout_s));
	json_object_set_new(j, "idle_action",
			    json_string(sb->idle_action[0] ? sb->idle_action : "kill"));
	if (sb->state == OMR_SB_PAUSED || sb->state == OMR_SB_PERSISTED)
		json_object_set_new(j, "paused_at", time_json(sb->paused_at));
	json_object_set_new(j, "accel", json_string(sb->accel));
	json_object_set_new(j, "boot", sb->boot[0] ? json_string(sb->boot) : json_null());
	if (sb->boot_why[0])
		json_object_set_new(j, "boot_why", json_string(sb->boot_why));
	if (sb->forked_from[0])
		json_object_set_new(j, "forked_from", json_string(sb->forked_from));
	/* Waiting in a pool; or taken from one by its create. */
	json_object_set_new(j, "pooled", json_boolean(omr_sandbox_pooled(sb)));
	if (!strcmp(sb->pool, "claimed"))
		json_object_set_new(j, "from_pool", json_true());
	json_object_set_new(j, "pid", sb->vmm_pid > 0 ? json_integer(sb->vmm_pid) : json_null());
	json_object_set_new(j, "monitor_pid",
			    sb->monitor_pid > 0 ? json_integer(sb->monitor_pid) : json_null());
	json_object_set_new(j, "network", omr_sandbox_network_json(sb));
	if (sb->state == OMR_SB_STOPPED) {
		json_object_set_new(j, "ended_at", time_json(sb->ended_at));
		json_object_set_new(j, "end_reason", json_string(sb->end_reason));
	}
	return j;
}

char *omr_sandbox_file_tail(const struct omr_config *c, const char *id, const char *file,
			    size_t max)
{
	_cleanup_free_ char *path = omr_sandbox_state_path(c, id, file);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = omr_xmalloc(max + 1);
	off_t size;
	ssize_t n;

	buf[0] = 0;
	if (fd < 0)
		return buf;
	size = lseek(fd, 0, SEEK_END);
	if (size < 0)
		return buf;
	n = pread(fd, buf, max, size > (off_t)max ? size - (off_t)max : 0);
	buf[n > 0 ? n : 0] = 0;
	/* Drop the partial first line and NULs for a readable tail. */
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == 0)
			buf[i] = ' ';
	if (size > (off_t)max) {
		char *nl = strchr(buf, '\n');
		if (nl)
			memmove(buf, nl + 1, strlen(nl + 1) + 1);
	}
	return buf;
}

/* ---- processes -------------------------------------------------------- */

/* The realpath of the monitor or of QEMU, as /proc/PID/exe shows it. */
static char *monitor_exe(const struct omr_config *c)
{
	return omr_program_realpath(omr_strdup_printf("%s/sbx-monitor", c->libexec_dir));
}

/* Is pid, as /proc shows it now, exe run by root or us, with mark in its
 * command line (the sandbox it serves; set by us when we spawned it)? */
static int proc_matches(pid_t pid, const char *exe, const char *mark)
{
	_cleanup_free_ char *cmd = NULL;

	if (pid <= 1 || !exe || !omr_proc_is(pid, exe))
		return 0;
	cmd = omr_proc_cmdline(pid);
	return cmd && strstr(cmd, mark);
}

/* SIGKILLs pid through a pidfd (a reused pid is never signalled) if it
 * is exe serving mark, and waits until it has exited.  Returns 1 if it
 * killed it. */
static int kill_and_wait(pid_t pid, const char *exe, const char *mark)
{
	_cleanup_close_ int pfd = pid > 1 ? omr_pidfd_open(pid) : -1;

	/* Checked after the pidfd is open: while it lives, /proc/PID is it. */
	if (pfd < 0 || !proc_matches(pid, exe, mark) || omr_pidfd_signal(pfd, SIGKILL) < 0)
		return 0;
	omr_pidfd_wait(pfd, 3000);
	return 1;
}

int omr_sandbox_monitor_alive(const struct omr_config *c, const struct omr_sandbox *sb)
{
	_cleanup_free_ char *exe = monitor_exe(c);

	/* pids are reused: it must be a monitor, and of this sandbox. */
	return proc_matches(sb->monitor_pid, exe, sb->id);
}

pid_t omr_sandbox_find_monitor(const struct omr_config *c, const char *id)
{
	_cleanup_free_ char *path = omr_sandbox_run_path(c, id, "monitor.sock");
	_cleanup_free_ char *exe = monitor_exe(c);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (fd < 0 || omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return proc_matches(cred.pid, exe, id) ? cred.pid : 0;
}

/* Kills the monitor of sandbox id, and waits for its QEMU too: the monitor
 * leads its own process group, which QEMU shares until it dies (by
 * PDEATHSIG, with the monitor). */
void omr_sandbox_kill_monitor(const struct omr_config *c, pid_t pid, const char *id)
{
	_cleanup_free_ char *exe = monitor_exe(c);

	if (!kill_and_wait(pid, exe, id))
		return;
	for (int i = 0; i < 300 && kill(-pid, 0) == 0; i++)
		poll(NULL, 0, 10);
}

int omr_sandbox_reap(const struct omr_config *c, struct omr_sandbox *sb,
		     const char *reason, struct omr_err **err)
{
	_cleanup_free_ char *run = omr_sandbox_run_path(c, sb->id, NULL);
	_cleanup_free_ char *mark = omr_strdup_printf("/sandboxes/%s/", sb->id);
	_cleanup_free_ char *qemu = omr_program_realpath(omr_qemu_find(c));
	pid_t found;

	omr_sandbox_kill_monitor(c, sb->monitor_pid, sb->id);
	/* A record that cannot be trusted (or a monitor that never wrote its
	 * pid) still has a monitor to find: the peer of its socket. */
	found = omr_sandbox_find_monitor(c, sb->id);
	if (found)
		omr_sandbox_kill_monitor(c, found, sb->id);
	kill_and_wait(sb->vmm_pid, qemu, mark);
	omr_rm_rf_at(AT_FDCWD, run);
	{
		/* A persisted image (memory, disk) ends with the sandbox. */
		_cleanup_free_ char *dir = omr_sandbox_state_path(c, sb->id, NULL);
		_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (dfd >= 0)
			omr_rm_rf_at(dfd, OMR_PERSIST_DIR);
	}
	if (sb->state == OMR_SB_CORRUPT) {
		/* Nothing of the old record can be believed: a fresh one. */
		char id[OMR_ID_MAX];
		omr_strlcpy(id, sb->id, sizeof(id));
		memset(sb, 0, sizeof(*sb));
		omr_strlcpy(sb->id, id, sizeof(sb->id));
	}
	sb->state = OMR_SB_STOPPED;
	sb->monitor_pid = 0;
	sb->vmm_pid = 0;
	if (!sb->ended_at)
		sb->ended_at = (int64_t)(omr_wall_ms() / 1000);
	if (!sb->end_reason[0])
		omr_strlcpy(sb->end_reason, reason, sizeof(sb->end_reason));
	return omr_sandbox_save(c, sb, err);
}

int omr_sandbox_reserve(const struct omr_config *c, const char *id, struct omr_err **err)
{
	_cleanup_close_ int dfd = id_dir(c, id, err);
	_cleanup_close_ int fd = -1;
	int rc;

	if (dfd < 0)
		return -1;
	fd = openat(dfd, RESERVE, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create the reserve of %s", id);
	rc = posix_fallocate(fd, 0, RESERVE_BYTES);
	if (rc)
		return omr_err_set(err, rc == ENOSPC ? OMR_E_LIMIT : OMR_E_FAIL, rc,
				   "cannot reserve space for %s", id);
	return 0;
}

int omr_sandbox_creator_hold(const struct omr_config *c, const char *id, struct omr_err **err)
{
	int dfd = id_dir(c, id, err);

	if (dfd < 0)
		return -1;
	if (flock(dfd, LOCK_SH) < 0) {
		int rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot lock sandbox %s", id);
		close(dfd);
		return rc;
	}
	return dfd;
}

int omr_sandbox_creator_alive(const struct omr_config *c, const char *id)
{
	_cleanup_close_ int dfd = id_dir(c, id, NULL);

	if (dfd < 0)
		return 0;
	if (flock(dfd, LOCK_EX | LOCK_NB) == 0) {
		flock(dfd, LOCK_UN);
		return 0;
	}
	return errno == EWOULDBLOCK;
}

const char *omr_sandbox_shown_state(const struct omr_config *c, const struct omr_sandbox *sb)
{
	/* A persisted sandbox has no monitor, by design. */
	if (sb->state == OMR_SB_STOPPED || sb->state == OMR_SB_CORRUPT ||
	    sb->state == OMR_SB_PERSISTED || omr_sandbox_monitor_alive(c, sb))
		return omr_sb_state_name(sb->state);
	if (sb->state == OMR_SB_STARTING && omr_sandbox_creator_alive(c, sb->id))
		return "starting";
	return "lost";
}
