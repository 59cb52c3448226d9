/* Cleanup attributes, the way crun and systemd do it. */
#ifndef OMNIRUN_CLEANUP_H
#define OMNIRUN_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

void omr_freep(void *p);
void omr_closep(int *fd);
void omr_fclosep(FILE **f);
/* Kills (SIGKILL) and reaps the child whose pid is *pid, if > 0. */
void omr_killp(pid_t *pid);

#define _cleanup_free_ __attribute__((cleanup(omr_freep)))
#define _cleanup_close_ __attribute__((cleanup(omr_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(omr_fclosep)))
#define _cleanup_kill_ __attribute__((cleanup(omr_killp)))

/* Hands ownership on: returns the value and empties the variable. */
#define omr_steal_ptr(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })
#define omr_steal_fd(fd) ({ int _t = (fd); (fd) = -1; _t; })

#endif
