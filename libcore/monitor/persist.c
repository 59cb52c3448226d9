/* Persist and its resume (issue 9, omnirun/vm/persist.h).
 *
 * mon_persist: the guest is stopped, QEMU streams it whole into a pipe,
 * and the monitor seals what comes out, chunk by chunk, into the state
 * dir's persist/state under a key of the sandbox's own (sealed in turn by
 * the host key); the data disk, which had no name, gets one there
 * (linkat of the open file); meta last.  Only then does the record say
 * persisted, and the monitor ends: QEMU killed, the network gone, no CPU
 * and no memory left.  Any failure before that removes what was written
 * and lets the guest go on as it was.
 *
 * mon_persist_take: a monitor started for a record whose persist/ holds
 * a complete image (sbx-resume) opens the state into a memfd (the
 * plaintext never lands on a disk), takes the disk, and boots as a fork
 * child does: -incoming, then the host's clock and its new NIC's MAC.
 * Once it runs, persist/ goes; if it fails first, the image stays and the
 * record says persisted again (teardown). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "monitor-internal.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/log.h"
#include "omnirun/base/util.h"
#include "omnirun/net/net.h"
#include "omnirun/vm/persist.h"

/* QEMU's own bound on a save is 2 min; the sealing shares it. */
#define PERSIST_SAVE_MS 120000


static int sync_close(int *fd)
{
	int rc = fsync(*fd);

	close(*fd);
	*fd = -1;
	return rc;
}

static int save_image(struct mon *m, struct omr_err **err)
{
	unsigned char key[OMR_PERSIST_KEY_BYTES];
	_cleanup_close_ int dfd = -1, state = -1, rp = -1;
	_cleanup_free_ char *self = NULL, *meta = NULL;
	int p[2], rc;

	omr_rm_rf_at(m->state_fd, OMR_PERSIST_DIR);
	/* (It may be left as an empty directory: a mount point, say.) */
	if ((mkdirat(m->state_fd, OMR_PERSIST_DIR, 0700) < 0 && errno != EEXIST) ||
	    (dfd = openat(m->state_fd, OMR_PERSIST_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
			  O_NOFOLLOW)) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot make the persist directory");
	if (omr_persist_key_new(m->c, dfd, key, err) < 0)
		return -1;
	state = openat(dfd, "state", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (state < 0 || pipe2(p, O_CLOEXEC) < 0) {
		explicit_bzero(key, sizeof(key));
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot write the persisted state");
	}
	rp = p[0];
	rc = omr_vmm_save_start(&m->vmm, p[1], err);
	close(p[1]);
	if (rc < 0) {
		explicit_bzero(key, sizeof(key));
		return -1;
	}
	rc = omr_persist_seal(rp, state, key, PERSIST_SAVE_MS, err);
	explicit_bzero(key, sizeof(key));
	/* QEMU sees the pipe close: a save cut short fails, never hangs. */
	omr_closep(&rp);
	if (omr_vmm_save_wait(&m->vmm, rc < 0 ? NULL : err) < 0 || rc < 0)
		return -1;
	if (sync_close(&state) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot write the persisted state");
	/* The disk had no name; now it has one, in persist/. */
	self = omr_strdup_printf("/proc/self/fd/%d", m->disk_fd);
	if (m->disk_fd >= 0 && linkat(AT_FDCWD, self, dfd, "disk", AT_SYMLINK_FOLLOW) < 0) {
		/* An unlinked (not O_TMPFILE) disk cannot be linked: copy it. */
		_cleanup_close_ int out = openat(dfd, "disk", O_WRONLY | O_CREAT | O_EXCL |
						 O_CLOEXEC | O_NOFOLLOW, 0600);
		if (out < 0 || omr_copy_sparse(m->disk_fd, out, err) < 0)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot keep the data disk");
	}
	if (m->disk_fd >= 0 && fsync(m->disk_fd) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot write the data disk");
	meta = mon_saved_meta(m);
	if (omr_write_file_atomic_at(dfd, "meta", meta, strlen(meta), 0600, err) < 0)
		return -1;
	if (fsync(dfd) < 0 || fsync(m->state_fd) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot write the persist directory");
	return 0;
}

json_t *mon_persist(struct mon *m)
{
	struct omr_err *e = NULL;
	int was_running = m->run == MON_RUN_RUNNING;
	uint64_t t0 = omr_now_ms();
	int64_t paused_at = m->sb.paused_at;

	if (m->run != MON_RUN_RUNNING && m->run != MON_RUN_PAUSED)
		omr_err_setx(&e, OMR_E_STATE, EBUSY, "sandbox %s is being %s", m->sb.id,
			     m->run == MON_RUN_PAUSING ? "paused" : "resumed");
	else if (m->vmm.pid <= 0)
		omr_err_setx(&e, OMR_E_STATE, ESRCH, "sandbox %s has no VMM", m->sb.id);
	if (e || (was_running && omr_vmm_pause(&m->vmm, &e) < 0))
		return mon_error_json(e);
	if (save_image(m, &e) == 0) {
		_cleanup_close_ int lock = omr_sandbox_lock(m->c, m->sb.id, 10000, &e);
		if (lock >= 0) {
			m->sb.state = OMR_SB_PERSISTED;
			m->sb.paused_at = was_running ? (int64_t)(omr_wall_ms() / 1000) : paused_at;
			m->sb.vmm_pid = 0;
			m->sb.monitor_pid = 0;
			if (omr_sandbox_save(m->c, &m->sb, &e) == 0) {
				m->persisted = 1;
				mon_end(m, "persisted");
				omr_log(OMR_LOG_INFO, "sandbox %s persisted in %llu ms", m->sb.id,
					(unsigned long long)(omr_now_ms() - t0));
				return omr_sandbox_json(&m->sb);
			}
			m->sb.state = was_running ? OMR_SB_RUNNING : OMR_SB_PAUSED;
			m->sb.paused_at = paused_at;
			m->sb.vmm_pid = m->vmm.pid;
			m->sb.monitor_pid = getpid();
		}
	}
	/* Nothing half written stays; the guest goes on as it was. */
	omr_log(OMR_LOG_ERR, "persist of %s: %s", m->sb.id, e->msg);
	omr_rm_rf_at(m->state_fd, OMR_PERSIST_DIR);
	if (was_running) {
		struct omr_err *ce = NULL;
		if (omr_vmm_resume(&m->vmm, &ce) < 0) {
			omr_log(OMR_LOG_ERR, "persist: %s", ce->msg);
			omr_err_free(&ce);
		} else {
			mon_clock_sync(m);
		}
	}
	return mon_error_json(e);
}

/* --- resume --- */

int mon_persist_present(struct mon *m)
{
	_cleanup_free_ char *meta = omr_strdup_printf("%s/meta", OMR_PERSIST_DIR);

	return faccessat(m->state_fd, meta, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}


int mon_persist_take(struct mon *m, struct omr_err **err)
{
	unsigned char key[OMR_PERSIST_KEY_BYTES];
	_cleanup_close_ int dfd = -1, state = -1, mem = -1;
	_cleanup_free_ char *meta = NULL, *ram = NULL;
	struct stat st;
	int rc;

	m->from_persist = 1;
	dfd = openat(m->state_fd, OMR_PERSIST_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0 || omr_read_file_at(dfd, "meta", 4096, &meta, NULL, NULL) < 0)
		return omr_err_set(err, OMR_E_STATE, ENOENT, "the persisted image is gone");
	m->fork_mac = mon_meta_get(meta, "mac");
	ram = mon_meta_get(meta, "ram");
	m->fork_ram_mem = ram && !strcmp(ram, "mem");
	m->disk_fd = openat(dfd, "disk", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (m->disk_fd < 0 || fstat(m->disk_fd, &st) < 0 || st.st_size != (off_t)m->sb.disk_mb << 20)
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "the persisted data disk is missing or "
				    "has the wrong size");
	state = openat(dfd, "state", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	mem = memfd_create("omnirun-persisted", MFD_CLOEXEC);
	if (state < 0 || mem < 0)
		return omr_err_set(err, OMR_E_STATE, errno, "cannot open the persisted state");
	if (omr_persist_key_read(m->c, dfd, key, err) < 0)
		return -1;
	rc = omr_persist_open(state, mem, key, err);
	explicit_bzero(key, sizeof(key));
	if (rc < 0)
		return omr_err_wrap(err, "cannot resume %s", m->sb.id);
	if (lseek(mem, 0, SEEK_SET) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot rewind the restored state");
	m->incoming_fd = omr_steal_fd(mem);
	return 0;
}

/* Once the resumed sandbox runs: its image goes (the disk keeps its open
 * file, nameless again). */
void mon_persist_done(struct mon *m)
{
	if (m->from_persist)
		omr_rm_rf_at(m->state_fd, OMR_PERSIST_DIR);
	m->from_persist = 0;
}
