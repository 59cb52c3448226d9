/* One error convention for all of libcore.
 *
 * A fallible function returns < 0 and fills *err (when err is not NULL).
 * The error carries a kind, set where the failure is understood (a missing
 * sandbox is not_found, a full pool is limit); errno only ever adds detail
 * to the message.  One table maps a kind to the exit code a program
 * returns, the HTTP status the shim answers and the protocol's error code.
 * The caller adds context with omr_err_wrap() while the error travels up,
 * and the program prints it once.  libcore never prints and never exits. */
#ifndef OMNIRUN_BASE_ERR_H
#define OMNIRUN_BASE_ERR_H

#include <stdarg.h>

enum omr_err_kind {
	OMR_E_FAIL = 0,     /* anything not listed below */
	OMR_E_USAGE,        /* bad input from the caller */
	OMR_E_NOT_FOUND,    /* unknown sandbox, template, file, process */
	OMR_E_STATE,        /* the object is not in a state that allows it */
	OMR_E_LIMIT,        /* a configured limit refused the request */
	OMR_E_BOOT,         /* the VMM failed or the guest never answered */
	OMR_E_TIMEOUT,      /* the guest or a peer did not answer in time */
	OMR_E_DENIED,       /* not allowed (permissions, policy) */
	OMR_E_TOO_LARGE,    /* a size bound was exceeded */
	OMR_E_UNSUPPORTED,  /* not implemented on this host or backend */
	OMR_E_KIND_COUNT
};

struct omr_err {
	enum omr_err_kind kind;
	int errnum;   /* errno behind the failure, for the message; 0 if none */
	char *msg;    /* full human message, context first */
};

/* What a kind means to the outside: name (also the protocol's error code
 * for it), the exit code of a program and the HTTP status of the shim. */
struct omr_err_kind_info {
	const char *name;
	int exit_code;
	int http_status;
};
/* The row of kind k (OMR_E_FAIL's for a value out of range). */
const struct omr_err_kind_info *omr_err_kind_info(enum omr_err_kind k);
/* The kind that a protocol error code stands for (the kind names, plus
 * the finer codes of omnirun/base/proto.h); OMR_E_FAIL when unknown. */
enum omr_err_kind omr_err_kind_from_code(const char *code);

/* Sets *err (if err and *err is NULL) to kind and a message built from
 * fmt, followed by ": strerror(errnum)" when errnum > 0.  Returns
 * -errnum, or -1 when errnum is 0, so callers can "return
 * omr_err_set(...)". */
int omr_err_set(struct omr_err **err, enum omr_err_kind kind, int errnum,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Like omr_err_set, but fmt is the whole message: no strerror suffix
 * (for errors that are not system calls failing: bad input, limits). */
int omr_err_setx(struct omr_err **err, enum omr_err_kind kind, int errnum,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Prefixes "context: " to an existing error.  Returns the error's negative
 * status (-1 when err is NULL or empty). */
int omr_err_wrap(struct omr_err **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* For a site that opens an object the caller named: a missing one is
 * not_found, any other errno a plain failure. */
static inline enum omr_err_kind omr_err_kind_missing(int errnum)
{
	return errnum == 2 /* ENOENT */ ? OMR_E_NOT_FOUND : OMR_E_FAIL;
}

/* The kind of e (OMR_E_FAIL for NULL). */
enum omr_err_kind omr_err_kind(const struct omr_err *e);

/* Frees *err and sets it to NULL. */
void omr_err_free(struct omr_err **err);

#endif
