/* One error convention for all of libcore.
 *
 * A fallible function returns < 0 and fills *err (when err is not NULL).
 * The caller adds context with omr_err_wrap() while the error travels up,
 * and the program prints it once.  libcore never prints and never exits. */
#ifndef OMNIRUN_ERR_H
#define OMNIRUN_ERR_H

#include <stdarg.h>

struct omr_err {
	int errnum;   /* errno-like status; 0 if none applies */
	char *msg;    /* full human message, context first */
};

/* Sets *err (if err and *err is NULL) to a message built from fmt, followed
 * by ": strerror(errnum)" when errnum > 0.  Returns -errnum, or -1 when
 * errnum is 0, so callers can "return omr_err_set(...)". */
int omr_err_set(struct omr_err **err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like omr_err_set, but fmt is the whole message: no strerror suffix
 * (for errors that are not system calls failing: bad input, limits). */
int omr_err_setx(struct omr_err **err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes "context: " to an existing error.  Returns the error's negative
 * status (-1 when err is NULL or empty). */
int omr_err_wrap(struct omr_err **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Frees *err and sets it to NULL. */
void omr_err_free(struct omr_err **err);

#endif
