/* Spawning children (omnirun/base/spawn.c). */
#ifndef OMNIRUN_BASE_SPAWN_H
#define OMNIRUN_BASE_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include "omnirun/base/err.h"

/* Frees a NULL-terminated argv of malloc'ed strings. */
void omr_argv_free(char **argv);


/* Spawns argv with stdin /dev/null, stdout+stderr to out_fd (or ours when
 * out_fd < 0), and keep_from[i] dup2'ed to keep_to[i] in the child (at most
 * 16); every other fd is closed at exec, even one our caller left without
 * O_CLOEXEC.  The child gets PR_SET_PDEATHSIG(SIGKILL) so it never outlives
 * its parent.  Returns the pid or < 0. */
pid_t omr_spawn(char *const argv[], int out_fd, const int *keep_from,
		const int *keep_to, size_t nkeep, struct omr_err **err);

/* omr_spawn with more choices.  The zero value of every field but out_fd
 * means "as omr_spawn". */
struct omr_spawn_opts {
	int out_fd;                     /* stdout+stderr, or < 0 for ours */
	const int *keep_from, *keep_to; /* dup2'ed in the child (at most 16) */
	size_t nkeep;
	char *const *envp;              /* the child's environment, NULL: ours */
	const char *cwd;                /* its working directory, NULL: ours */
	int new_pgroup;                 /* setpgid(0, 0): its own process group */
};
pid_t omr_spawn_ex(char *const argv[], const struct omr_spawn_opts *o, struct omr_err **err);

/* How omr_capture reads a child's output.  sink gets each chunk and
 * returns nonzero when it wants no more. */
struct omr_capture_opts {
	unsigned timeout_ms;
	int until_exit;   /* after EOF, wait on for the child to exit */
	int group;        /* at the end kill its process group, not just it */
	int (*sink)(void *user, const char *buf, size_t n);
	void *user;
};

/* Feeds fd (made non-blocking) to o->sink until EOF (or, with until_exit,
 * until pid exits: what is left in fd is read then), until the sink has
 * enough, or until timeout_ms have passed; then SIGKILLs pid (or its
 * group) and reaps it.  *status gets its wait status, or -1 when it was
 * reaped behind our back.  Returns 0, or -ETIMEDOUT when time ran out. */
int omr_capture(pid_t pid, int fd, const struct omr_capture_opts *o, int *status);

#endif
