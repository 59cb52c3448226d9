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
/* Downloads path to out_fd; *mode (may be NULL) gets the file's mode.
 * The transfer is bounded: never more than the size the guest announced
 * nor [files] max_download_mb (too_large), never past the point where
 * out_fd's filesystem keeps [files] host_reserve_mb free (limit), and it
 * fails (timeout) when nothing moves for [files] timeout seconds. */
int omr_files_get(const struct omr_config *c, const char *id, const char *path, int out_fd,
		  int *mode, uint64_t *size, struct omr_err **err);
/* The same with a signalfd (or -1): a signal on it cancels the transfer. */
int omr_files_get_ex(const struct omr_config *c, const char *id, const char *path, int out_fd,
		     int sig_fd, int *mode, uint64_t *size, struct omr_err **err);

struct omr_download_opts {
	int force;    /* replace a read-only file */
	int sig_fd;   /* a signal here cancels (nothing partial is left), or -1 */
};

/* Downloads guest path src to the host path dst, as omr_files_get.
 * - No file or a regular file at dst: written to a temporary file made
 *   with O_EXCL under a random name next to dst, fsync'ed, given the
 *   guest's permission bits (never setuid, setgid or sticky; the umask
 *   applies) and renamed over dst only when whole.  A read-only dst is
 *   refused (denied) unless o->force.
 * - A character or block device, FIFO or socket: written in place, never
 *   replaced (so /dev/null stays /dev/null).
 * - A symbolic link or a directory: refused (usage).
 * On failure nothing of the download is left.  o may be NULL. */
int omr_files_download(const struct omr_config *c, const char *id, const char *src,
		       const char *dst, const struct omr_download_opts *o, uint64_t *size,
		       struct omr_err **err);
/* Directory listing: a JSON array of {name,type,size,mode,mtime}.  Names,
 * stat's target and watch events' path are bytes: name_b64 (and so on)
 * holds them exactly when they are not UTF-8; read them with
 * omr_json_get_bytes (omnirun/base/json.h).  Guest paths given to these
 * calls are bytes too, sent exactly. */
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
