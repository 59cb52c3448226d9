/* Forks (issue 9, client/fork.c): both sides of one.
 *
 * The source's monitor (mon_fork_save, op "fork_save"): stops the guest,
 * migrates it whole (memory and devices) into RUN_DIR/fork/KEY/state,
 * copies its data disk once per child into STATE_DIR/fork/KEY/disk-I,
 * writes the NIC's MAC and the RAM's kind into meta, and lets the guest
 * go on (a paused source stays paused).  The loop waits meanwhile: the
 * guest is stopped, so nobody is kept from anything but the monitor's
 * other clients, for as long as the copy takes (bounded by QEMU's save).
 *
 * A child's monitor (mon_fork_take): its record names KEY.INDEX; it takes
 * disk-I as its own data disk (opened, then unlinked: nameless as any
 * disk) and the state as its VMM's incoming state.  Its boot is then a
 * restore (-incoming, no kernel) with a fresh identity, but no new disk
 * key: the guest's dm-crypt mapping is in the memory it inherits. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/net/net.h"
#include "omnirun/state/fork.h"


/* The root image QEMU has open is still the template's file: a rebuilt
 * template would give the child another root under the same memory. */
void mon_fork_note_rootfs(struct mon *m)
{
	m->rootfs_known = m->tpl->rootfs && stat(m->tpl->rootfs, &m->rootfs_st) == 0;
}

static int rootfs_same(struct mon *m)
{
	struct stat st;

	if (!m->tpl->rootfs)
		return 1;
	return m->rootfs_known && stat(m->tpl->rootfs, &st) == 0 &&
	       st.st_dev == m->rootfs_st.st_dev && st.st_ino == m->rootfs_st.st_ino &&
	       st.st_size == m->rootfs_st.st_size &&
	       st.st_mtim.tv_sec == m->rootfs_st.st_mtim.tv_sec &&
	       st.st_mtim.tv_nsec == m->rootfs_st.st_mtim.tv_nsec;
}

/* The stopped guest into the fork's files. */
static int save_into(struct mon *m, const char *key, unsigned n, struct omr_err **err)
{
	_cleanup_free_ char *rdir = omr_fork_path(m->c, 1, key, NULL);
	_cleanup_free_ char *sdir = omr_fork_path(m->c, 0, key, NULL);
	_cleanup_close_ int rfd = open(rdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_close_ int sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_close_ int state = -1;
	_cleanup_free_ char *meta = NULL;

	if (rfd < 0 || sfd < 0)
		return omr_err_set(err, OMR_E_STATE, errno, "fork %s: no such fork directory", key);
	state = openat(rfd, "state", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (state < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot create the fork's state");
	if (omr_vmm_save(&m->vmm, state, err) < 0)
		return -1;
	for (unsigned i = 0; i < n && m->disk_fd >= 0; i++) {
		char name[32];
		_cleanup_close_ int out = -1;

		snprintf(name, sizeof(name), "disk-%u", i);
		out = openat(sfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (out < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot create a copy of the disk");
		if (omr_copy_sparse(m->disk_fd, out, err) < 0)
			return omr_err_wrap(err, "cannot copy the data disk");
	}
	meta = mon_saved_meta(m);
	return omr_write_file_atomic_at(rfd, "meta", meta, strlen(meta), 0600, err);
}

char *mon_saved_meta(const struct mon *m)
{
	/* RAM under the id "mem": a clone of a snapshot, and whatever was
	 * started from a saved one (a fork's child, a resumed persist). */
	return omr_strdup_printf("mac=%s\nram=%s\n", m->net ? omr_net_mac(m->net) : "",
				 m->snap || m->fork_ram_mem ? "mem" : "anon");
}

json_t *mon_fork_save(struct mon *m, json_t *req)
{
	const char *key = json_string_value(json_object_get(req, "key"));
	json_t *jn = json_object_get(req, "count");
	json_int_t n = json_is_integer(jn) ? json_integer_value(jn) : 0;
	struct omr_err *e = NULL;
	int was_running = m->run == MON_RUN_RUNNING;
	uint64_t t0 = omr_now_ms();

	if (!key || !omr_id_valid(key) || n < 1 || n > OMR_FORK_MAX)
		omr_err_setx(&e, OMR_E_USAGE, EINVAL, "fork_save needs a key and a count "
			     "(1 to %d)", OMR_FORK_MAX);
	else if (m->run != MON_RUN_RUNNING && m->run != MON_RUN_PAUSED)
		omr_err_setx(&e, OMR_E_STATE, EBUSY, "sandbox %s is being %s", m->sb.id,
			     m->run == MON_RUN_PAUSING ? "paused" : "resumed");
	else if (m->vmm.pid <= 0)
		omr_err_setx(&e, OMR_E_STATE, ESRCH, "sandbox %s has no VMM", m->sb.id);
	else if (!rootfs_same(m))
		omr_err_setx(&e, OMR_E_STATE, ESTALE, "template %s was rebuilt since sandbox %s "
			     "started: a fork would see another root image", m->sb.template_name,
			     m->sb.id);
	if (e)
		return mon_error_json(e);
	if (was_running && omr_vmm_pause(&m->vmm, &e) < 0)
		return mon_error_json(e);
	save_into(m, key, (unsigned)n, &e);
	/* The source goes on whatever happened to the copy. */
	if (was_running) {
		struct omr_err *ce = NULL;
		if (omr_vmm_resume(&m->vmm, &ce) < 0) {
			omr_log(OMR_LOG_ERR, "fork: %s", ce->msg);
			if (!e)
				e = ce;
			else
				omr_err_free(&ce);
		} else {
			/* Its clock stood still while it was copied. */
			mon_clock_sync(m);
		}
	}
	if (e) {
		omr_log(OMR_LOG_ERR, "fork of %s: %s", m->sb.id, e->msg);
		return mon_error_json(e);
	}
	mon_router_touch(m->router, omr_now_ms());
	omr_log(OMR_LOG_INFO, "sandbox %s saved for %lld fork%s in %llu ms", m->sb.id, (long long)n,
		n == 1 ? "" : "s", (unsigned long long)(omr_now_ms() - t0));
	return json_pack("{s:b, s:I}", "ok", 1, "ms", (json_int_t)(omr_now_ms() - t0));
}

/* --- the child's side --- */


int mon_fork_take(struct mon *m, struct omr_err **err)
{
	char key[OMR_ID_MAX], name[32];
	unsigned idx;
	_cleanup_free_ char *rdir = NULL, *sdir = NULL, *meta = NULL, *ram = NULL;
	_cleanup_close_ int rfd = -1, sfd = -1;
	struct stat st;

	if (omr_fork_ref_parse(m->sb.fork, key, &idx) < 0)
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "invalid fork reference '%s'",
				    m->sb.fork);
	rdir = omr_fork_path(m->c, 1, key, NULL);
	sdir = omr_fork_path(m->c, 0, key, NULL);
	rfd = open(rdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	sfd = open(sdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (rfd < 0 || sfd < 0 || omr_read_file_at(rfd, "meta", 4096, &meta, NULL, NULL) < 0)
		return omr_err_set(err, OMR_E_STATE, errno ? errno : ENOENT,
				   "the copy of %s for this fork is gone", m->sb.forked_from);
	m->fork_mac = mon_meta_get(meta, "mac");
	ram = mon_meta_get(meta, "ram");
	m->fork_ram_mem = ram && !strcmp(ram, "mem");
	snprintf(name, sizeof(name), "disk-%u", idx);
	m->disk_fd = openat(sfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (m->disk_fd < 0)
		return omr_err_set(err, OMR_E_STATE, errno, "the disk copy of %s for this fork "
				   "is gone", m->sb.forked_from);
	/* Nameless from now on, as every data disk. */
	unlinkat(sfd, name, 0);
	if (fstat(m->disk_fd, &st) < 0 || st.st_size != (off_t)m->sb.disk_mb << 20)
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "the disk copy of %s has the wrong "
				    "size", m->sb.forked_from);
	m->incoming_fd = openat(rfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (m->incoming_fd < 0)
		return omr_err_set(err, OMR_E_STATE, errno, "the saved state of %s is gone",
				   m->sb.forked_from);
	omr_strlcpy(m->sb.boot, "fork", sizeof(m->sb.boot));
	snprintf(m->sb.boot_why, sizeof(m->sb.boot_why), "a copy of %s", m->sb.forked_from);
	return 0;
}
