/* Small, bounded helpers used everywhere. */
#ifndef OMNIRUN_UTIL_H
#define OMNIRUN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/base/err.h"
#include "omnirun/base/io.h"

#define OMR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Strict decimal parse: whole string, no sign, within [min, max].
 * Returns 0 or -ERANGE/-EINVAL with *err filled (what names the value). */
int omr_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		  const char *what, struct omr_err **err);

/* Copies src into dst of size n; fails (-ENAMETOOLONG) on truncation. */
int omr_strlcpy(char *dst, const char *src, size_t n);

/* asprintf that aborts on out of memory (the one place libcore exits). */
char *omr_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *omr_xstrdup(const char *s);
void *omr_xmalloc(size_t n);
void *omr_xcalloc(size_t n, size_t m);
void *omr_xrealloc(void *p, size_t n);



/* Reads a whole file (at most max bytes, else -EFBIG) relative to dirfd.
 * The result is NUL-terminated; *len gets its length when len is not NULL. */
int omr_read_file_at(int dirfd, const char *name, size_t max, char **out,
		     size_t *len, struct omr_err **err);

/* Creates a temporary file .NAME.RANDOM under dirfd with O_EXCL (so it is
 * never one that existed; NAME cut to 200 bytes).  Returns the fd (O_CLOEXEC) and its name in
 * *tmp (malloc'ed), or < 0. */
int omr_open_temp_at(int dirfd, const char *name, mode_t mode, char **tmp, struct omr_err **err);

/* Writes name atomically under dirfd: a temporary file of this write's own
 * (omr_open_temp_at), fsync, renameat, fsync dir.  A full filesystem is
 * kind limit with errnum ENOSPC or EDQUOT. */
int omr_write_file_atomic_at(int dirfd, const char *name, const void *data,
			     size_t len, mode_t mode, struct omr_err **err);

/* Monotonic and wall clocks in milliseconds. */
uint64_t omr_now_ms(void);
uint64_t omr_wall_ms(void);
/* RFC 3339 UTC ("2026-11-26T13:42:32Z") for a wall time in seconds. */
void omr_format_time(int64_t secs, char buf[32]);
/* A byte count for people: "512B", "18.1M", "1.2G". */
void omr_format_size(uint64_t n, char buf[16]);

/* mkdir -p with mode for the directories it creates.  Something other
 * than a directory in the way (at the end too) is -ENOTDIR.  Returns 0 or
 * -errno with *err. */
int omr_mkdir_p(const char *path, mode_t mode, struct omr_err **err);
/* Opens (with create, first makes it and its parents 0700) a directory
 * that must be ours: owned by our euid and writable by nobody else, or
 * refused (denied).  Returns the fd (O_CLOEXEC) or < 0. */
int omr_dir_private(const char *path, int create, struct omr_err **err);

/* Copies file in to out at the same offsets, data ranges only (holes
 * stay holes), out sized as in.  Returns 0 or < 0 with *err. */
int omr_copy_sparse(int in, int out, struct omr_err **err);

/* rm -rf of name under dirfd, never following a symlink (one is removed,
 * not walked).  A missing name is success, as for rm -rf: callers clean
 * up with it, and an entry that vanishes meanwhile is not a failure; a
 * caller that must report a missing path (the guest's remove op) looks
 * first.  On an error it removes what it can and returns the first
 * error.  Returns 0 or -errno. */
int omr_rm_rf_at(int dirfd, const char *name);

/* Lexically normalized path, malloc'ed: repeated '/' and "." components
 * dropped, "x/.." removed, ".." at the root is the root, no trailing '/'
 * ("/data/.." is "/", "a/./b/" is "a/b", "" is ".").  Symlinks are not
 * looked at: "/l/.." is "/" whatever l points to.  Every check on a path
 * (is it "/"?) is made on this form. */
char *omr_path_clean(const char *path);

/* UTF-8: the length (1..4) of the well-formed sequence at s, looking at
 * no more than n bytes, or 0 if there is none (overlong forms, surrogates
 * and code points past U+10FFFF are not well formed); whether all n bytes
 * are well formed. */
size_t omr_utf8_seq(const char *s, size_t n);
int omr_utf8_valid(const char *s, size_t n);

/* Base64 (RFC 4648, with padding): the encoding of n bytes (malloc'ed),
 * and the bytes of s in a malloc'ed buffer with a NUL after them (*n
 * excludes it).  decode returns 0 or -EINVAL for what is not base64. */
char *omr_b64_encode(const void *p, size_t n);
int omr_b64_decode(const char *s, char **out, size_t *n);

/* A copy of s that is safe to print on a terminal: C0 and C1 control
 * characters other than \n and \t, DEL and bytes that are not UTF-8 are
 * written as \xNN.  Returns a malloc'ed string. */
char *omr_str_escape_ctl(const char *s);
/* The same for a message that must stay one line: \n and \t escaped too
 * (a guest's error text must not forge lines of ours). */
char *omr_str_escape_line(const char *s);
/* s escaped as one line and cut to about max bytes, with its length said
 * when cut ("sb_aaaa... (100000 bytes)"): for echoing input in errors. */
char *omr_str_quote_short(const char *s, size_t max);

/* /proc/PID/cmdline with its NULs as spaces (malloc'ed), or NULL. */
char *omr_proc_cmdline(pid_t pid);
/* What /proc/PID/exe names (" (deleted)" dropped: a rebuilt binary),
 * malloc'ed, or NULL. */
char *omr_proc_exe(pid_t pid);
/* The real uid of pid, or -1. */
long omr_proc_uid(pid_t pid);
/* realpath() of path_owned (which it frees), malloc'ed, or NULL. */
char *omr_program_realpath(char *path_owned);
/* Is pid running the executable exe (a realpath), as root or as us?  A
 * command line is anyone's to choose; these two are not. */
int omr_proc_is(pid_t pid, const char *exe);

/* pidfds, so that a reused pid is never signalled: open one, check what
 * /proc/PID says, then signal through the pidfd (which fails with -ESRCH
 * if the process it names is gone; while it lives, /proc/PID was it).
 * open returns the fd (O_CLOEXEC) or -errno; signal 0 or -errno; wait
 * returns 1 once the process has exited, 0 at the timeout. */
int omr_pidfd_open(pid_t pid);
int omr_pidfd_signal(int pidfd, int sig);
int omr_pidfd_wait(int pidfd, int timeout_ms);

/* Finds an executable regular file called name in $PATH (or
 * /usr/local/bin:/usr/bin:/bin when PATH is unset or empty), then in
 * extra_dirs (colon-separated, may be NULL); relative directories are
 * skipped.  A name with a '/' is checked as is.  Returns a malloc'ed path
 * (absolute unless name was a relative path) or NULL. */
char *omr_find_program(const char *name, const char *extra_dirs);

/* Sets O_NONBLOCK / FD_CLOEXEC on fd. Return 0 or -errno. */
int omr_fd_set_nonblock(int fd, int on);
int omr_fd_set_cloexec(int fd, int on);
/* dup2(fd, to) for a child about to exec: when fd is already `to`, dup2
 * would do nothing and leave O_CLOEXEC set, so that is cleared instead.
 * Returns 0 or -errno. */
int omr_fd_move(int fd, int to);

#endif
