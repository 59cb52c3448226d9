/* The functions behind the cleanup attributes of omnirun/cleanup.h. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"

void omr_freep(void *p)
{
	free(*(void **)p);
}

void omr_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
	*fd = -1;
}

void omr_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
	*f = NULL;
}

void omr_killp(pid_t *pid)
{
	if (*pid > 0) {
		int saved = errno;
		kill(*pid, SIGKILL);
		while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = saved;
	}
	*pid = -1;
}
