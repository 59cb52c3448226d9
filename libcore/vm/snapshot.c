/* Template snapshots (omnirun/vm/snapshot.h): made by booting the template
 * once with its RAM in a file, checked field by field before a clone
 * uses one. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/snapshot.h"
#include "omnirun/vm/vmm.h"
#include "template-internal.h"

#define SNAP_DIR "snapshot"
#define SNAP_CONF "snapshot.conf"
#define SNAP_CONF_MAX 8192
#define SNAP_STATE_MAX (64u << 20)   /* a device state is ~66 KB */
#define SNAP_QMP_MS 5000

int omr_snapshot_qemu_ok(const char *version)
{
	const char *p = version ? strstr(version, "version ") : NULL;
	unsigned major = 0, minor = 0;

	if (!p || sscanf(p + 8, "%u.%u", &major, &minor) != 2)
		return 0;
	return major > 8 || (major == 8 && minor >= 2);
}

char *omr_vm_kernel_cmdline(const struct omr_config *c, const struct omr_template *t,
			    enum omr_accel accel, const char *id, int disk)
{
	unsigned khz = accel == OMR_ACCEL_TCG ? omr_tcg_tsc_khz(c) : 0;
	_cleanup_free_ char *tsc = khz ? omr_strdup_printf("tsc_early_khz=%u ", khz)
				       : omr_xstrdup("");

	/* quiet + panic=-1 + reboot=t: a guest crash ends QEMU (-no-reboot)
	 * instead of hanging; init_on_alloc=0 keeps untouched memory free. */
	return omr_strdup_printf("console=ttyS0 quiet panic=-1 reboot=t tsc=reliable "
				 "init_on_alloc=0 %srdinit=/init omnirun.id=%s "
				 "omnirun.hostname=%s %s%s",
				 tsc, id, id, disk ? "" : "omnirun.disk=premap ",
				 t->cmdline ? t->cmdline : "");
}

/* "dev:ino:size:mtime_ns" of path: a rebuilt kernel or an upgraded QEMU
 * changes it, and checking it costs one stat. */
static char *file_identity(const char *path)
{
	struct stat st;

	if (!path || stat(path, &st) < 0)
		return NULL;
	return omr_strdup_printf("%llu:%llu:%lld:%lld%09ld", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino, (long long)st.st_size,
				 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static int sha256_fd(int fd, char out[65])
{
	crypto_hash_sha256_state h;
	unsigned char buf[65536], d[crypto_hash_sha256_BYTES];
	ssize_t n;

	if (sodium_init() < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return -EIO;
	crypto_hash_sha256_init(&h);
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		crypto_hash_sha256_update(&h, buf, (size_t)n);
	}
	crypto_hash_sha256_final(&h, d);
	sodium_bin2hex(out, 65, d, sizeof(d));
	return 0;
}

/* --- making one --- */

struct maker {
	const struct omr_config *c;
	struct omr_template *t;
	char *qemu, *version, *firmware, *tmp, *agent_sock, *qmp_sock;
	enum omr_accel accel;
	pid_t pid;
	int agent_fd;
};

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (omr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Waits for the agent's HELLO (it comes once the guest's init is done). */
static int wait_hello(struct maker *mk, struct omr_err **err)
{
	uint64_t end = omr_now_ms() + (uint64_t)mk->c->boot_timeout_s * 1000;
	struct omr_frame_reader r;
	int rc = -1;

	while ((mk->agent_fd = connect_unix(mk->agent_sock)) < 0) {
		int st;
		if (waitpid(mk->pid, &st, WNOHANG) == mk->pid) {
			mk->pid = -1; /* reaped: never signalled again */
			return omr_err_setx(err, OMR_E_BOOT, ECHILD, "QEMU exited (status 0x%x) "
					    "before it opened the agent channel", st);
		}
		if (omr_now_ms() > end)
			return omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT,
					    "QEMU never opened the agent channel");
		usleep(20 * 1000);
	}
	if (omr_frame_reader_init(&r) < 0)
		return omr_err_set(err, OMR_E_FAIL, ENOMEM, "frame reader");
	omr_fd_set_nonblock(mk->agent_fd, 1);
	while (rc < 0) {
		struct pollfd p = { .fd = mk->agent_fd, .events = POLLIN };
		struct omr_frame_hdr h;
		const uint8_t *pl;
		uint64_t now = omr_now_ms();
		ssize_t n;
		int k;

		if (now >= end) {
			rc = omr_err_setx(err, OMR_E_BOOT, ETIMEDOUT, "the template's agent did not "
					  "answer within %u s", mk->c->boot_timeout_s);
			break;
		}
		if (poll(&p, 1, (int)(end - now)) < 0 && errno != EINTR) {
			rc = omr_err_set(err, OMR_E_FAIL, errno, "poll");
			break;
		}
		n = omr_frame_reader_fill(&r, mk->agent_fd);
		if (n == 0 || (n < 0 && n != -EAGAIN)) {
			rc = omr_err_setx(err, OMR_E_BOOT, EPIPE, "the template's agent channel "
					  "closed during boot");
			break;
		}
		while ((k = omr_frame_reader_next(&r, &h, &pl)) > 0)
			if (h.type == OMR_F_HELLO)
				rc = 0;
		if (k < 0) {
			rc = omr_err_setx(err, OMR_E_BOOT, EPROTO, "bad frame from the agent");
			break;
		}
	}
	omr_frame_reader_free(&r);
	return rc;
}

/* stop, then the device state into tmp/state (shared RAM skipped). */
static int save_state(struct maker *mk, struct omr_err **err)
{
	_cleanup_free_ char *uri = omr_strdup_printf("file:%s/state", mk->tmp);

	if (omr_qmp_command(mk->qmp_sock, "stop", NULL, SNAP_QMP_MS, NULL, err) < 0 ||
	    omr_vmm_qemu_set_ignore_shared(mk->qmp_sock, SNAP_QMP_MS, err) < 0 ||
	    omr_qmp_command(mk->qmp_sock, "migrate", json_pack("{s:s}", "uri", uri),
			    SNAP_QMP_MS, NULL, err) < 0 ||
	    omr_vmm_qemu_wait_migrated(mk->qmp_sock, SNAP_QMP_MS, err) < 0)
		return omr_err_wrap(err, "cannot save the template's state");
	return 0;
}

static int write_conf(struct maker *mk, char **argv, long long ms, struct omr_err **err)
{
	_cleanup_free_ char *qid = file_identity(mk->qemu), *kid = file_identity(mk->t->kernel);
	_cleanup_free_ char *iid = file_identity(mk->t->initrd), *args = NULL, *text = NULL;
	_cleanup_free_ char *fid = file_identity(mk->firmware);
	_cleanup_close_ int dfd = open(mk->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int sfd = -1;
	char sum[65];
	struct stat st;
	size_t len = 0;

	if (dfd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "%s", mk->tmp);
	sfd = openat(dfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (sfd < 0 || fstat(sfd, &st) < 0 || sha256_fd(sfd, sum) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot read the saved state");
	if (st.st_size <= 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "QEMU saved an empty state");
	/* The arguments, for whoever wonders what a snapshot needs (a
	 * clone's are built by the same code from the same spec). */
	for (char **a = argv; *a; a++)
		len += strlen(*a) + 1;
	args = omr_xcalloc(1, len + 1);
	for (char **a = argv; *a; a++) {
		if (a != argv)
			strcat(args, " ");
		strcat(args, *a);
	}
	for (char *p = args; *p; p++)
		if (*p == '\n')
			*p = ' ';
	/* The firmware's ROM is part of the saved state (its size must
	 * match): a clone boots the same file. */
	text = omr_strdup_printf("qemu=%s\nqemu_id=%s\nqemu_version=%s\nfirmware=%s\n"
				 "firmware_id=%s\nkernel_id=%s\n"
				 "initrd_id=%s\naccel=%s\ncpus=%u\nmemory_mb=%u\ndisk_mb=%u\n"
				 "state_size=%lld\nstate_sha256=%s\nmade_ms=%lld\nargs=%s\n",
				 mk->qemu, qid ? qid : "", mk->version,
				 mk->firmware ? mk->firmware : "", fid ? fid : "", kid ? kid : "",
				 iid ? iid : "", mk->accel == OMR_ACCEL_KVM ? "kvm" : "tcg",
				 mk->t->cpus, mk->t->memory_mb, mk->t->disk_mb,
				 (long long)st.st_size, sum, ms, args);
	if (fsync(sfd) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "fsync state");
	return omr_write_file_atomic_at(dfd, SNAP_CONF, text, strlen(text), 0644, err);
}

static void maker_stop(struct maker *mk)
{
	if (mk->agent_fd >= 0)
		close(mk->agent_fd);
	mk->agent_fd = -1;
	if (mk->pid > 0) {
		kill(mk->pid, SIGKILL);
		while (waitpid(mk->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	mk->pid = -1;
}

/* Boots, waits, saves: everything into mk->tmp. */
static int make_in(struct maker *mk, omr_progress_fn progress, void *user, struct omr_err **err)
{
	_cleanup_free_ char *ram = omr_strdup_printf("%s/ram", mk->tmp);
	_cleanup_free_ char *cmdline = omr_vm_kernel_cmdline(mk->c, mk->t, mk->accel, "template", 0);
	_cleanup_free_ char *log = omr_strdup_printf("%s/console.log", mk->tmp);
	_cleanup_close_ int rfd = -1, lfd = -1;
	struct omr_vmm_spec s = {
		.qemu = mk->qemu, .accel = mk->accel, .tb_size_mb = mk->c->tb_size_mb,
		.cpus = mk->t->cpus, .memory_mb = mk->t->memory_mb, .kernel = mk->t->kernel,
		.initrd = mk->t->initrd, .cmdline = cmdline, .firmware = mk->firmware,
		.agent_sock = mk->agent_sock,
		.qmp_sock = mk->qmp_sock, .disk_fd = -1, .tap_fd = -1, .console_fd = -1,
		.mem_path = ram, .mem_shared = 1, .incoming_fd = -1,
		.disk_placeholder_mb = mk->t->disk_mb, .nic_placeholder = 1,
	};
	char **argv;
	uint64_t t0;
	int rc;

	rfd = open(ram, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (rfd < 0 || ftruncate(rfd, (off_t)mk->t->memory_mb << 20) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot make %s", ram);
	lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	s.console_fd = lfd;
	argv = omr_vmm_argv(&s);
	if (progress)
		progress(user, "booting the template to snapshot it");
	mk->pid = omr_spawn(argv, lfd, NULL, NULL, 0, err);
	if (mk->pid < 0) {
		omr_argv_free(argv);
		return -1;
	}
	rc = wait_hello(mk, err);
	if (rc < 0) {
		/* QEMU's own words, or the guest's last console lines. */
		_cleanup_free_ char *text = NULL;
		maker_stop(mk);
		if (omr_read_file_at(AT_FDCWD, log, 1 << 20, &text, NULL, NULL) == 0 && *text) {
			size_t n = strlen(text);
			const char *tail = n > 400 ? text + n - 400 : text;
			omr_err_wrap(err, "console: %s", tail);
		}
	}
	if (rc == 0) {
		if (progress)
			progress(user, "saving the snapshot");
		t0 = omr_now_ms();
		rc = save_state(mk, err);
		maker_stop(mk);
		/* The RAM as the guest left it, on disk before it is used. */
		if (rc == 0 && fsync(rfd) < 0)
			rc = omr_err_set(err, OMR_E_FAIL, errno, "fsync %s", ram);
		if (rc == 0)
			rc = write_conf(mk, argv, (long long)(omr_now_ms() - t0), err);
		/* Read-only to everyone: a clone's QEMU opens it read-only
		 * and maps it private. */
		if (rc == 0 && fchmod(rfd, 0444) < 0)
			rc = omr_err_set(err, OMR_E_FAIL, errno, "chmod %s", ram);
	}
	omr_argv_free(argv);
	maker_stop(mk);
	unlinkat(AT_FDCWD, mk->agent_sock, 0);
	unlinkat(AT_FDCWD, mk->qmp_sock, 0);
	return rc;
}

int omr_snapshot_make(const struct omr_config *c, const char *name, omr_progress_fn progress,
		      void *user, struct omr_err **err)
{
	struct maker mk = { .c = c, .pid = -1, .agent_fd = -1 };
	_cleanup_free_ char *tdir = tpl_dir(c), *dir = NULL, *old = NULL, *tmp_name = NULL;
	_cleanup_close_ int tfd = -1, lock = -1, dfd = -1;
	const char *why = NULL;
	int rc = -1;

	if (omr_template_load(c, name, &mk.t, err) < 0)
		return -1;
	mk.qemu = omr_qemu_find(c);
	if (!mk.qemu) {
		rc = omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "QEMU (%s) not found", c->qemu);
		goto out;
	}
	if (omr_qemu_version(mk.qemu, &mk.version, err) < 0)
		goto out;
	mk.firmware = omr_vmm_firmware(mk.qemu);
	if (!omr_snapshot_qemu_ok(mk.version)) {
		rc = omr_err_setx(err, OMR_E_UNSUPPORTED, ENOTSUP,
				  "%s cannot clone from a read-only RAM file (8.2 or later can): "
				  "sandboxes boot cold", mk.version);
		goto out;
	}
	if (!mk.t->cpus || !mk.t->memory_mb || !mk.t->disk_mb) {
		rc = omr_err_setx(err, OMR_E_USAGE, EINVAL, "template '%s' names no cpus, memory "
				  "and disk size to snapshot with", name);
		goto out;
	}
	/* Its root is an overlay whose upper half lives on the data disk,
	 * set up at boot: a snapshot would need the disk before the clone
	 * has one. */
	if (mk.t->rootfs) {
		rc = omr_err_setx(err, OMR_E_UNSUPPORTED, ENOTSUP, "template '%s' has a root image: "
				  "no snapshots of those yet (sandboxes boot cold)", name);
		goto out;
	}
	if (omr_accel_resolve(c, &mk.accel, &why, err) < 0)
		goto out;
	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "%s", tdir);
		goto out;
	}
	if ((lock = tpl_lock(tfd, name, err)) < 0)
		goto out;
	dir = omr_strdup_printf("%s/%s", tdir, name);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "%s", dir);
		goto out;
	}
	tmp_name = omr_xstrdup(".snapshot.new");
	omr_rm_rf_at(dfd, tmp_name);
	omr_rm_rf_at(dfd, ".snapshot.old");
	if (mkdirat(dfd, tmp_name, 0755) < 0) {
		rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot create %s/%s", dir, tmp_name);
		goto out;
	}
	mk.tmp = omr_strdup_printf("%s/%s", mk.t->dir, tmp_name);
	mk.agent_sock = omr_strdup_printf("%s/agent.sock", mk.tmp);
	mk.qmp_sock = omr_strdup_printf("%s/qmp.sock", mk.tmp);
	rc = make_in(&mk, progress, user, err);
	if (rc == 0) {
		/* Old out, new in: clones of the old one keep their mapping. */
		if (renameat(dfd, SNAP_DIR, dfd, ".snapshot.old") < 0 && errno != ENOENT)
			rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot move the old snapshot");
		else if (renameat(dfd, tmp_name, dfd, SNAP_DIR) < 0)
			rc = omr_err_set(err, OMR_E_FAIL, errno, "cannot install the snapshot");
		fsync(dfd);
	}
	omr_rm_rf_at(dfd, ".snapshot.old");
	if (rc < 0)
		omr_rm_rf_at(dfd, tmp_name);
out:
	omr_template_free(mk.t);
	free(mk.qemu);
	free(mk.version);
	free(mk.firmware);
	free(mk.tmp);
	free(mk.agent_sock);
	free(mk.qmp_sock);
	return rc;
}

int omr_snapshot_remove(const struct omr_config *c, const char *name, struct omr_err **err)
{
	_cleanup_free_ char *tdir = tpl_dir(c), *dir = NULL;
	_cleanup_close_ int tfd = -1, lock = -1, dfd = -1;

	if (tpl_check_name(name, err) < 0)
		return -1;
	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dir = omr_strdup_printf("%s/%s", tdir, name);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (tfd < 0 || dfd < 0)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "unknown template '%s'", name);
	if ((lock = tpl_lock(tfd, name, err)) < 0)
		return -1;
	if (faccessat(dfd, SNAP_DIR, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "template '%s' has no snapshot",
				    name);
	if (renameat(dfd, SNAP_DIR, dfd, ".snapshot.old") < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot remove the snapshot");
	omr_rm_rf_at(dfd, ".snapshot.old");
	return 0;
}

/* --- finding one that fits --- */

void omr_snapshot_free(struct omr_snapshot *s)
{
	if (!s)
		return;
	free(s->dir);
	free(s->ram);
	free(s->state);
	free(s->qemu_version);
	free(s->accel);
	free(s);
}

/* The value of key in conf text (malloc'ed), or NULL. */
static char *conf_get(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		if (!strncmp(l, key, kl) && l[kl] == '=') {
			const char *v = l + kl + 1, *e = strchr(v, '\n');
			size_t n = e ? (size_t)(e - v) : strlen(v);
			char *out = omr_xmalloc(n + 1);
			memcpy(out, v, n);
			out[n] = 0;
			return out;
		}
	}
	return NULL;
}

static unsigned conf_uint(const char *text, const char *key)
{
	_cleanup_free_ char *v = conf_get(text, key);

	return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

/* 0 when the conf's key equals want, else sets *why. */
static int same(const char *text, const char *key, const char *want, const char *what,
		char **why)
{
	_cleanup_free_ char *v = conf_get(text, key);

	if (v && want && !strcmp(v, want))
		return 0;
	*why = omr_strdup_printf("the snapshot was made with another %s", what);
	return -1;
}

int omr_snapshot_find(const struct omr_config *c, const struct omr_template *t,
		      const char *accel, unsigned cpus, unsigned memory_mb, unsigned disk_mb,
		      struct omr_snapshot **out, char **why)
{
	_cleanup_free_ char *dir = omr_strdup_printf("%s/" SNAP_DIR, t->dir);
	_cleanup_free_ char *text = NULL, *qemu = omr_qemu_find(c), *qid = NULL;
	_cleanup_free_ char *kid = file_identity(t->kernel), *iid = file_identity(t->initrd);
	_cleanup_free_ char *sum = NULL, *ssize = NULL;
	_cleanup_free_ char *firmware = qemu ? omr_vmm_firmware(qemu) : NULL;
	_cleanup_free_ char *fid = file_identity(firmware);
	_cleanup_close_ int dfd = -1, sfd = -1;
	struct omr_snapshot *s;
	struct stat st;
	char got[65];
	int rc;

	*out = NULL;
	*why = NULL;
	if (t->rootfs) {
		*why = omr_strdup_printf("template '%s' has a root image (no snapshots yet)", t->name);
		return 0;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0) {
		*why = omr_strdup_printf("template '%s' has no snapshot", t->name);
		return 0;
	}
	rc = omr_read_file_at(dfd, SNAP_CONF, SNAP_CONF_MAX, &text, NULL, NULL);
	if (rc < 0) {
		*why = omr_xstrdup("the snapshot has no readable snapshot.conf");
		return 0;
	}
	qid = file_identity(qemu);
	if (same(text, "qemu_id", qid, "QEMU binary", why) < 0 ||
	    same(text, "firmware_id", fid ? fid : "", "firmware", why) < 0 ||
	    same(text, "kernel_id", kid, "kernel", why) < 0 ||
	    same(text, "initrd_id", iid, "initrd (agent)", why) < 0 ||
	    same(text, "accel", accel, "accelerator", why) < 0)
		return 0;
	if (c->bench_channel) {
		*why = omr_xstrdup("the bench channel changes the device layout");
		return 0;
	}
	if ((cpus && cpus != conf_uint(text, "cpus")) ||
	    (memory_mb && memory_mb != conf_uint(text, "memory_mb")) ||
	    (disk_mb && disk_mb != conf_uint(text, "disk_mb"))) {
		*why = omr_strdup_printf("the snapshot has %u vCPUs, %u MB memory and a %u MB disk",
					 conf_uint(text, "cpus"), conf_uint(text, "memory_mb"),
					 conf_uint(text, "disk_mb"));
		return 0;
	}
	/* Whole files only: a truncated RAM file or a state that is not
	 * what was saved is refused before QEMU sees it. */
	if (fstatat(dfd, "ram", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != (uint64_t)conf_uint(text, "memory_mb") << 20) {
		*why = omr_xstrdup("the snapshot's RAM file is missing or truncated");
		return 0;
	}
	ssize = conf_get(text, "state_size");
	sum = conf_get(text, "state_sha256");
	sfd = openat(dfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (sfd < 0 || fstat(sfd, &st) < 0 || !ssize || !sum || st.st_size > SNAP_STATE_MAX ||
	    st.st_size != strtoll(ssize, NULL, 10) || sha256_fd(sfd, got) < 0 ||
	    strcmp(got, sum)) {
		*why = omr_xstrdup("the snapshot's device state is missing, truncated or corrupt");
		return 0;
	}
	s = omr_xcalloc(1, sizeof(*s));
	s->dir = omr_xstrdup(dir);
	s->ram = omr_strdup_printf("%s/ram", dir);
	s->state = omr_strdup_printf("%s/state", dir);
	s->cpus = conf_uint(text, "cpus");
	s->memory_mb = conf_uint(text, "memory_mb");
	s->disk_mb = conf_uint(text, "disk_mb");
	s->qemu_version = conf_get(text, "qemu_version");
	s->accel = conf_get(text, "accel");
	{
		_cleanup_free_ char *ms = conf_get(text, "made_ms");
		s->made_ms = ms ? strtoll(ms, NULL, 10) : 0;
	}
	*out = s;
	return 1;
}
