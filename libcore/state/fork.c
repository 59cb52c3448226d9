/* A fork's directories: omnirun/state/fork.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/util.h"
#include "omnirun/state/fork.h"

char *omr_fork_path(const struct omr_config *c, int run, const char *key, const char *file)
{
	const char *top = run ? c->run_dir : c->state_dir;

	return file ? omr_strdup_printf("%s/fork/%s/%s", top, key, file)
		    : omr_strdup_printf("%s/fork/%s", top, key);
}

int omr_fork_ref_parse(const char *ref, char key[OMR_ID_MAX], unsigned *index)
{
	const char *dot = ref ? strrchr(ref, '.') : NULL;
	char *end;
	unsigned long i;

	if (!dot || (size_t)(dot - ref) >= OMR_ID_MAX)
		return -1;
	memcpy(key, ref, (size_t)(dot - ref));
	key[dot - ref] = 0;
	errno = 0;
	i = strtoul(dot + 1, &end, 10);
	if (!omr_id_valid(key) || dot[1] < '0' || dot[1] > '9' || *end || errno ||
	    i >= OMR_FORK_MAX)
		return -1;
	*index = (unsigned)i;
	return 0;
}

int omr_fork_dirs_make(const struct omr_config *c, const char *key, struct omr_err **err)
{
	_cleanup_free_ char *run = omr_fork_path(c, 1, key, NULL);
	_cleanup_free_ char *st = omr_fork_path(c, 0, key, NULL);
	_cleanup_free_ char *lockp = omr_fork_path(c, 1, key, "lock");
	_cleanup_close_ int fd = -1;

	if (!omr_id_valid(key))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid fork key '%s'", key);
	if (omr_mkdir_p(run, 0700, err) < 0 || omr_mkdir_p(st, 0700, err) < 0)
		return -1;
	fd = open(lockp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot lock %s", lockp);
	return omr_steal_fd(fd);
}

void omr_fork_dirs_remove(const struct omr_config *c, const char *key)
{
	for (int run = 0; run < 2; run++) {
		_cleanup_free_ char *top = omr_strdup_printf("%s/fork", run ? c->run_dir
							      : c->state_dir);
		_cleanup_close_ int dfd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0 && omr_id_valid(key))
			omr_rm_rf_at(dfd, key);
	}
}

int omr_fork_in_progress(const struct omr_config *c, const char *key)
{
	_cleanup_free_ char *lockp = omr_fork_path(c, 1, key, "lock");
	_cleanup_close_ int fd = open(lockp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	return fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}
