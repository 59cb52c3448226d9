/* Shared inside vm/ (and with its unit test): the uid claims of jail.c
 * and the seccomp allow-lists (seccomp.c) it installs. */
#ifndef OMNIRUN_VM_JAIL_INTERNAL_H
#define OMNIRUN_VM_JAIL_INTERNAL_H

#include <linux/filter.h>
#include <stddef.h>

#include <sys/types.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

/* Claims a uid of [jail] uid_base/uid_count for owner (a sandbox id): an
 * flock on run_dir/jail/uid-N, held while the returned fd is open (the
 * monitor's life), so that no two live sandboxes share one.  Returns the
 * fd with *uid, or < 0 with *err (OMR_E_LIMIT: all are held). */
int omr_jail_uid_claim(const struct omr_config *c, const char *owner, uid_t *uid,
		       struct omr_err **err);
/* How many uids of the range are held now. */
unsigned omr_jail_uids_taken(const struct omr_config *c);

struct omr_seccomp_refusal {
	const char *name;
	int err;                     /* the errno the call gets */
};

/* One allow-list: the system calls one QEMU release makes here (doc/jail.md
 * says how each was derived). */
struct omr_seccomp_list {
	const char *qemu;            /* "7.2": the major.minor it was made on */
	const char *const *allow;    /* NULL-terminated names */
	const struct omr_seccomp_refusal *refuse;  /* answered with an errno
						      (QEMU copes), NULL-ended */
};

/* The list for a `qemu --version` line: the one made for that major.minor
 * (*exact = 1), else the newest one older than it, else the oldest
 * (*exact = 0: the doctor warns).  Never NULL. */
const struct omr_seccomp_list *omr_seccomp_list_for(const char *version, int *exact);
size_t omr_seccomp_list_len(const struct omr_seccomp_list *l);
int omr_seccomp_listed(const struct omr_seccomp_list *l, const char *name);

/* Builds the BPF program for l: mode "kill" (default action: kill the
 * process) or "log" (allow, but the kernel logs each call not listed).  clone
 * is allowed for threads only, execve only with exec_path as its
 * pathname pointer (the jail's own exec: QEMU cannot name that address
 * by chance).  *out's filter is malloc'ed (free it).  Returns 0 or < 0. */
int omr_seccomp_build(const struct omr_seccomp_list *l, const char *mode, const char *exec_path,
		      struct sock_fprog *out, struct omr_err **err);

/* The name of system call nr on this architecture (malloc'ed), or NULL. */
char *omr_seccomp_name(int nr);

/* libseccomp's version, "2.5.4" (static). */
const char *omr_seccomp_lib_version(void);

#endif
