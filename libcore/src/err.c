/* The error object of omnirun/err.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/err.h"
#include "omnirun/exitcodes.h"
#include "omnirun/util.h"

int omr_err_set(struct omr_err **err, int errnum, const char *fmt, ...)
{
	int status = errnum > 0 ? -errnum : -1;
	char *msg = NULL;
	va_list ap;

	if (!err || *err)
		return status; /* keep the first, most precise error */
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	if (errnum > 0) {
		char *full = omr_strdup_printf("%s: %s", msg, strerror(errnum));
		free(msg);
		msg = full;
	}
	*err = omr_xmalloc(sizeof(**err));
	(*err)->errnum = errnum > 0 ? errnum : 0;
	(*err)->msg = msg;
	return status;
}

int omr_err_setx(struct omr_err **err, int errnum, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	if (!err || *err)
		return errnum > 0 ? -errnum : -1;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	*err = omr_xmalloc(sizeof(**err));
	(*err)->errnum = errnum > 0 ? errnum : 0;
	(*err)->msg = msg;
	return errnum > 0 ? -errnum : -1;
}

int omr_err_wrap(struct omr_err **err, const char *fmt, ...)
{
	char *ctx = NULL, *full;
	va_list ap;

	if (!err || !*err)
		return -1;
	va_start(ap, fmt);
	if (vasprintf(&ctx, fmt, ap) < 0)
		abort();
	va_end(ap);
	full = omr_strdup_printf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = full;
	return (*err)->errnum ? -(*err)->errnum : -1;
}

void omr_err_free(struct omr_err **err)
{
	if (!err || !*err)
		return;
	free((*err)->msg);
	free(*err);
	*err = NULL;
}

int omr_exit_code(int errnum)
{
	switch (errnum) {
	case ENOENT: case ESRCH: return OMR_EXIT_NOT_FOUND;
	case EINVAL: case ERANGE: return OMR_EXIT_USAGE;
	case ENOTCONN: case ECONNREFUSED: case EBUSY: return OMR_EXIT_STATE;
	case EUSERS: case EDQUOT: return OMR_EXIT_LIMIT;
	case ETIMEDOUT: case ECHILD: return OMR_EXIT_BOOT;
	default: return OMR_EXIT_FAILURE;
	}
}
