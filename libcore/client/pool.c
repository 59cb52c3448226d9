/* The warm pool: claim, fill, drain, list; see omnirun/client/pool.h. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/client/client.h"
#include "omnirun/client/pool.h"
#include "omnirun/client/sandbox.h"
#include "omnirun/vm/template.h"

/* A claim is a record write and maybe new nft rules: far below this. */
#define CLAIM_CALL_MS 15000
/* A background filler does not start again this soon after a failure. */
#define RETRY_S 60
/* The background filler's log is rotated past this. */
#define LOG_MAX (1 << 20)
/* How long fill --wait and drain wait for a filler at work; how long a
 * background filler waits for the lock (someone may only be looking:
 * sbx-pool ls) before it leaves the work to the one that holds it. */
#define FILLER_WAIT_MS 600000
#define FILLER_GRACE_MS 1000

/* $state_dir/pool, made 0700 when create (else -1 when missing). */
static int pool_dir(const struct omr_config *c, int create, struct omr_err **err)
{
	_cleanup_free_ char *p = omr_strdup_printf("%s/pool", c->state_dir);
	_cleanup_close_ int top = omr_dir_private(c->state_dir, create, err);

	if (top < 0)
		return -1;
	return omr_dir_private(p, create, err);
}

/* Takes NAME.lock: waits at most wait_ms.  Returns the fd, -EWOULDBLOCK
 * when a filler holds it still, or another < 0 with *err. */
static int pool_lock(const struct omr_config *c, const char *name, int wait_ms,
		     struct omr_err **err)
{
	_cleanup_close_ int dir = pool_dir(c, 1, err);
	_cleanup_free_ char *file = omr_strdup_printf("%s.lock", name);
	_cleanup_close_ int fd = -1;
	uint64_t deadline = omr_now_ms() + (uint64_t)wait_ms;

	if (dir < 0)
		return -1;
	fd = openat(dir, file, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open the lock of pool %s", name);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot lock pool %s", name);
		if (omr_now_ms() >= deadline)
			return -EWOULDBLOCK;
		poll(NULL, 0, 50);
	}
	return omr_steal_fd(fd);
}

/* The pool's last failure: written (msg) or cleared (NULL). */
static void status_write(const struct omr_config *c, const char *name, const char *msg)
{
	_cleanup_close_ int dir = pool_dir(c, 1, NULL);
	_cleanup_free_ char *file = omr_strdup_printf("%s.status", name);
	json_t *j;
	char *s;

	if (dir < 0)
		return;
	if (!msg) {
		unlinkat(dir, file, 0);
		return;
	}
	j = json_pack("{s:s, s:I}", "error", msg, "at", (json_int_t)(omr_wall_ms() / 1000));
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s)
		omr_write_file_atomic_at(dir, file, s, strlen(s), 0600, NULL);
	free(s);
}

/* The status object, or NULL when the last fill went well. */
static json_t *status_read(const struct omr_config *c, const char *name)
{
	_cleanup_close_ int dir = pool_dir(c, 0, NULL);
	_cleanup_free_ char *file = omr_strdup_printf("%s.status", name);
	_cleanup_free_ char *text = NULL;
	size_t len;

	if (dir < 0 || omr_read_file_at(dir, file, 65536, &text, &len, NULL) < 0)
		return NULL;
	return json_loads(text, 0, NULL);
}

/* Waiting in name's pool (or any when name is NULL), and live. */
static int pooled_live(const struct omr_config *c, const struct omr_sandbox *sb, const char *name)
{
	if (!omr_sandbox_pooled(sb) || (name && strcmp(sb->template_name, name)))
		return 0;
	if (sb->state != OMR_SB_STARTING && sb->state != OMR_SB_RUNNING)
		return 0;
	return strcmp(omr_sandbox_shown_state(c, sb), "lost") != 0;
}

/* Asks sandbox id's monitor for it (op pool_claim, with want's terms,
 * or none when want is NULL).  Returns 0 once it is the caller's. */
static int ask_claim(const struct omr_config *c, const char *id, const struct omr_sandbox *want,
		     struct omr_err **err)
{
	_cleanup_close_ int fd = omr_client_connect(c, id, err);
	json_t *req = json_pack("{s:s}", "op", "pool_claim"), *ans = NULL, *allow;
	int rc;

	if (fd < 0) {
		json_decref(req);
		return -1;
	}
	if (want) {
		allow = json_array();
		for (const char *p = want->net_allow; *p;) {
			size_t n = strcspn(p, ",");
			if (n)
				json_array_append_new(allow, json_stringn(p, n));
			p += n + (p[n] == ',');
		}
		json_object_set_new(req, "timeout", json_integer(want->timeout_s));
		json_object_set_new(req, "idle_timeout", json_integer(want->idle_timeout_s));
		json_object_set_new(req, "idle_action", json_string(want->idle_action[0]
								   ? want->idle_action : "kill"));
		json_object_set_new(req, "internet", json_boolean(want->net_internet));
		json_object_set_new(req, "allow", allow);
	}
	rc = omr_client_call(fd, 1, req, CLAIM_CALL_MS, &ans, err);
	json_decref(req);
	json_decref(ans);
	return rc;
}

/* Takes pooled sandbox id and kills it.  Returns 1 if it was killed, 0
 * when another claim took it first. */
static int take_and_kill(const struct omr_config *c, const char *id)
{
	struct omr_err *e = NULL;

	/* A monitor that does not answer has a sandbox nobody can claim:
	 * it goes too. */
	if (ask_claim(c, id, NULL, &e) < 0 && omr_err_kind(e) == OMR_E_STATE) {
		omr_err_free(&e);
		return 0;
	}
	omr_err_free(&e);
	omr_sandbox_kill(c, id, "killed", NULL);
	return 1;
}

static int fits(const struct omr_config *c, const struct omr_sandbox *sb,
		const struct omr_sandbox *want)
{
	return sb->state == OMR_SB_RUNNING && omr_sandbox_pooled(sb) &&
	       !strcmp(sb->template_name, want->template_name) && sb->cpus == want->cpus &&
	       sb->memory_mb == want->memory_mb && sb->disk_mb == want->disk_mb &&
	       sb->processes == want->processes && !strcmp(sb->accel, want->accel) &&
	       omr_sandbox_monitor_alive(c, sb);
}

int omr_pool_claim(const struct omr_config *c, const struct omr_sandbox *want,
		   struct omr_sandbox *out)
{
	unsigned size = omr_config_pool_size(c, want->template_name), live = 0;
	struct omr_sandbox *v = NULL;
	size_t n = 0;
	int got = 0;

	if (!size || omr_sandbox_list(c, &v, &n, NULL) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		live += pooled_live(c, &v[i], want->template_name);
	/* The longest waiting first. */
	for (size_t i = 0; i < n && !got; i++) {
		struct omr_err *e = NULL;

		if (!fits(c, &v[i], want))
			continue;
		if (ask_claim(c, v[i].id, want, &e) == 0) {
			got = omr_sandbox_load(c, v[i].id, out, NULL) == 0;
			live--;
			if (!got) /* claimed, but its record cannot be read */
				omr_sandbox_kill(c, v[i].id, "killed", NULL);
		} else if (omr_err_kind(e) != OMR_E_STATE) {
			/* Broken, or half claimed: nobody may have it.  The
			 * create boots one instead. */
			_cleanup_free_ char *msg = omr_strdup_printf("claim of %s failed (%s); it was "
								     "killed", v[i].id, e->msg);
			status_write(c, want->template_name, msg);
			omr_sandbox_kill(c, v[i].id, "killed", NULL);
			live--;
			omr_err_free(&e);
			break;
		}
		omr_err_free(&e); /* another create took it first */
	}
	free(v);
	if (live < size)
		omr_pool_refill_background(c, want->template_name);
	return got;
}

/* The live pooled sandboxes of name, oldest first: *ids (malloc'ed). */
static size_t pooled_ids(const struct omr_config *c, const char *name,
			 char (**ids)[OMR_ID_MAX])
{
	struct omr_sandbox *v = NULL;
	size_t n = 0, k = 0;

	*ids = NULL;
	if (omr_sandbox_list(c, &v, &n, NULL) < 0)
		return 0;
	*ids = omr_xcalloc(n ? n : 1, sizeof(**ids));
	for (size_t i = 0; i < n; i++)
		if (pooled_live(c, &v[i], name))
			memcpy((*ids)[k++], v[i].id, OMR_ID_MAX);
	free(v);
	return k;
}

static int named(const struct omr_config *c, const char *name)
{
	for (unsigned i = 0; i < c->npool; i++)
		if (!strcmp(c->pool[i].name, name))
			return 1;
	return 0;
}

int omr_pool_fill(const struct omr_config *c, const char *name, int wait,
		  void (*progress)(void *user, const char *msg), void *user, unsigned *made,
		  struct omr_err **err)
{
	unsigned size = omr_config_pool_size(c, name);
	_cleanup_close_ int lock = -1;
	char (*ids)[OMR_ID_MAX] = NULL;
	size_t have;

	*made = 0;
	if (!omr_template_name_valid(name))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid template name '%s'", name);
	if (!size && !named(c, name))
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no pool for template '%s' in %s "
				    "([pool] %s = N)", name, c->conf_path ? c->conf_path
				    : OMR_DEFAULT_CONF, name);
	lock = pool_lock(c, name, wait ? FILLER_WAIT_MS : FILLER_GRACE_MS, err);
	if (lock == -EWOULDBLOCK && !wait)
		return 0; /* a filler is at work */
	if (lock == -EWOULDBLOCK)
		return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT, "pool %s: another filler is "
				    "still at work", name);
	if (lock < 0)
		return -1;
	have = pooled_ids(c, name, &ids);
	/* The newest go first when the pool shrank. */
	while (have > size)
		take_and_kill(c, ids[--have]);
	free(ids);
	while (have < size) {
		struct omr_create_opts o = { .template_name = name, .pool = 1 };
		struct omr_sandbox sb;
		struct omr_err *e = NULL;

		if (omr_sandbox_create(c, &o, &sb, &e) < 0) {
			omr_err_wrap(&e, "pool %s: cannot start sandbox %zu of %u", name, have + 1,
				     size);
			status_write(c, name, e->msg);
			if (err && !*err)
				*err = omr_steal_ptr(e);
			omr_err_free(&e);
			return -1;
		}
		have++;
		(*made)++;
		if (progress) {
			_cleanup_free_ char *msg = omr_strdup_printf("pool %s: %s started (%s), %zu of %u",
								     name, sb.id, sb.boot, have, size);
			progress(user, msg);
		}
	}
	status_write(c, name, NULL);
	return 0;
}

static int drain_one(const struct omr_config *c, const char *name, unsigned *killed,
		     struct omr_err **err)
{
	_cleanup_close_ int lock = pool_lock(c, name, FILLER_WAIT_MS, err);
	char (*ids)[OMR_ID_MAX] = NULL;
	size_t n;

	if (lock == -EWOULDBLOCK)
		return omr_err_setx(err, OMR_E_TIMEOUT, ETIMEDOUT, "pool %s: a filler is still at "
				    "work", name);
	if (lock < 0)
		return -1;
	n = pooled_ids(c, name, &ids);
	for (size_t i = 0; i < n; i++)
		*killed += (unsigned)take_and_kill(c, ids[i]);
	free(ids);
	return 0;
}

/* Every template that has a pool in the config or pooled sandboxes:
 * names (malloc'ed array of n), with each one's sandboxes listed. */
static size_t pool_names(const struct omr_config *c, const struct omr_sandbox *v, size_t n,
			 char (**names)[33])
{
	size_t k = 0;

	*names = omr_xcalloc(c->npool + n + 1, sizeof(**names));
	for (unsigned i = 0; i < c->npool; i++)
		memcpy((*names)[k++], c->pool[i].name, sizeof(c->pool[i].name));
	for (size_t i = 0; i < n; i++) {
		size_t j;
		if (!pooled_live(c, &v[i], NULL))
			continue;
		for (j = 0; j < k && strcmp((*names)[j], v[i].template_name); j++)
			;
		if (j == k && omr_strlcpy((*names)[k], v[i].template_name, 33) == 0)
			k++;
	}
	return k;
}

int omr_pool_drain(const struct omr_config *c, const char *name, unsigned *killed,
		   struct omr_err **err)
{
	struct omr_sandbox *v = NULL;
	char (*names)[33] = NULL;
	size_t n = 0, k;
	int rc = 0;

	*killed = 0;
	if (name && !omr_template_name_valid(name))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid template name '%s'", name);
	if (name)
		return drain_one(c, name, killed, err);
	if (omr_sandbox_list(c, &v, &n, err) < 0)
		return -1;
	k = pool_names(c, v, n, &names);
	free(v);
	for (size_t i = 0; i < k && rc == 0; i++)
		rc = drain_one(c, names[i], killed, err);
	free(names);
	return rc;
}

/* Does a filler hold name's lock now? */
static int filling(const struct omr_config *c, const char *name)
{
	int fd = pool_lock(c, name, 0, NULL);

	if (fd >= 0)
		close(fd);
	return fd == -EWOULDBLOCK;
}

json_t *omr_pool_json(const struct omr_config *c, struct omr_err **err)
{
	struct omr_sandbox *v = NULL;
	char (*names)[33] = NULL;
	size_t n = 0, k;
	json_t *arr;

	if (omr_sandbox_list(c, &v, &n, err) < 0)
		return NULL;
	k = pool_names(c, v, n, &names);
	arr = json_array();
	for (size_t i = 0; i < k; i++) {
		json_t *ids = json_array(), *st = status_read(c, names[i]);
		unsigned ready = 0, starting = 0;

		for (size_t j = 0; j < n; j++) {
			if (!pooled_live(c, &v[j], names[i]))
				continue;
			json_array_append_new(ids, json_string(v[j].id));
			if (v[j].state == OMR_SB_RUNNING)
				ready++;
			else
				starting++;
		}
		json_array_append_new(arr, json_pack("{s:s, s:i, s:i, s:i, s:o, s:b, s:O?, s:O?}",
			"template", names[i], "size", omr_config_pool_size(c, names[i]),
			"ready", ready, "starting", starting, "sandboxes", ids,
			"filling", filling(c, names[i]), "last_error", json_object_get(st, "error"),
			"last_error_at", json_object_get(st, "at")));
		json_decref(st);
	}
	free(names);
	free(v);
	return arr;
}

void omr_pool_refill_background(const struct omr_config *c, const char *name)
{
	_cleanup_free_ char *prog = omr_strdup_printf("%s/sbx-monitor", c->libexec_dir);
	_cleanup_free_ char *logp = omr_strdup_printf("%s/pool/%s.log", c->state_dir, name);
	_cleanup_free_ char *old = omr_strdup_printf("%s.1", logp);
	char *argv[] = { prog, "--fill-pool", (char *)name, NULL };
	json_t *st = status_read(c, name);
	json_int_t failed = json_integer_value(json_object_get(st, "at"));
	struct stat sb;
	pid_t mid;

	json_decref(st);
	if (failed && (json_int_t)(omr_wall_ms() / 1000) - failed < RETRY_S)
		return;
	if (filling(c, name))
		return;
	if (stat(logp, &sb) == 0 && sb.st_size > LOG_MAX)
		rename(logp, old);
	/* Double fork, as for a monitor: nobody's child but init's, so that
	 * the create returns at once.  Nothing but async-signal-safe calls
	 * between fork and exec (the shim has threads). */
	mid = fork();
	if (mid == 0) {
		if (fork() == 0) {
			int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
			int log = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
			sigset_t none;

			setsid();
			sigemptyset(&none);
			sigprocmask(SIG_SETMASK, &none, NULL);
			if (nul < 0 || log < 0 || omr_fd_move(nul, 0) < 0 || omr_fd_move(log, 1) < 0 ||
			    dup2(1, 2) < 0)
				_exit(127);
			close_range(3, ~0U, 0);
			execv(prog, argv);
			_exit(127);
		}
		_exit(0);
	}
	if (mid > 0)
		while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
			;
}
