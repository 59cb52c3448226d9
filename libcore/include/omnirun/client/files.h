/* Files in a sandbox (sbx-files, the shim's /files), streamed in chunks
 * with bounded memory at every hop. */
#ifndef OMNIRUN_FILES_H
#define OMNIRUN_FILES_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/state/config.h"
#include "omnirun/base/err.h"

/* Guest paths: absolute, at most 4096 bytes, no NUL.  Returns 0 or -EINVAL. */
int omr_files_path_check(const char *path, struct omr_err **err);

/* Uploads in_fd to path (mode: permission bits, or -1 for 0644); the guest
 * writes a temp file and renames it into place.  *size gets bytes sent. */
int omr_files_put(const struct omr_config *c, const char *id, int in_fd, const char *path,
		  int mode, int parents, uint64_t *size, struct omr_err **err);
/* Downloads path to out_fd; *mode (may be NULL) gets the file's mode. */
int omr_files_get(const struct omr_config *c, const char *id, const char *path, int out_fd,
		  int *mode, uint64_t *size, struct omr_err **err);
/* Directory listing: a JSON array of {name,type,size,mode,mtime}. */
int omr_files_list(const struct omr_config *c, const char *id, const char *path,
		   json_t **out, struct omr_err **err);
int omr_files_stat(const struct omr_config *c, const char *id, const char *path,
		   json_t **out, struct omr_err **err);
int omr_files_mkdir(const struct omr_config *c, const char *id, const char *path,
		    int parents, struct omr_err **err);
int omr_files_remove(const struct omr_config *c, const char *id, const char *path,
		     int recursive, struct omr_err **err);
int omr_files_rename(const struct omr_config *c, const char *id, const char *from,
		     const char *to, struct omr_err **err);

/* Streams inotify events under path to on_event until sig_fd fires (the
 * watch is then cancelled cleanly) or the sandbox stops. */
int omr_files_watch(const struct omr_config *c, const char *id, const char *path,
		    int recursive, int sig_fd, int (*on_event)(void *user, json_t *ev),
		    void *user, struct omr_err **err);

#endif
