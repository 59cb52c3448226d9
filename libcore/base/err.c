/* The error object of omnirun/err.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omnirun/base/err.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/util.h"

int omr_err_set(struct omr_err **err, enum omr_err_kind kind, int errnum,
		const char *fmt, ...)
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
	(*err)->kind = kind < OMR_E_KIND_COUNT ? kind : OMR_E_FAIL;
	(*err)->errnum = errnum > 0 ? errnum : 0;
	(*err)->msg = msg;
	return status;
}

int omr_err_setx(struct omr_err **err, enum omr_err_kind kind, int errnum,
		 const char *fmt, ...)
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
	(*err)->kind = kind < OMR_E_KIND_COUNT ? kind : OMR_E_FAIL;
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

enum omr_err_kind omr_err_kind(const struct omr_err *e)
{
	return e ? e->kind : OMR_E_FAIL;
}

/* The one table: kind -> name (= protocol code), exit code, HTTP status. */
static const struct omr_err_kind_info kinds[OMR_E_KIND_COUNT] = {
	[OMR_E_FAIL]        = { "failed",        OMR_EXIT_FAILURE,   500 },
	[OMR_E_USAGE]       = { "bad_request",   OMR_EXIT_USAGE,     400 },
	[OMR_E_NOT_FOUND]   = { "not_found",     OMR_EXIT_NOT_FOUND, 404 },
	[OMR_E_STATE]       = { "not_running",   OMR_EXIT_STATE,     409 },
	[OMR_E_LIMIT]       = { "limit_reached", OMR_EXIT_LIMIT,     429 },
	[OMR_E_BOOT]        = { "boot_failed",   OMR_EXIT_BOOT,      503 },
	[OMR_E_TIMEOUT]     = { "timeout",       OMR_EXIT_BOOT,      504 },
	[OMR_E_DENIED]      = { "denied",        OMR_EXIT_FAILURE,   403 },
	[OMR_E_TOO_LARGE]   = { "too_large",     OMR_EXIT_LIMIT,     413 },
	[OMR_E_UNSUPPORTED] = { "unsupported",   OMR_EXIT_FAILURE,   501 },
};

const struct omr_err_kind_info *omr_err_kind_info(enum omr_err_kind k)
{
	return &kinds[(unsigned)k < OMR_E_KIND_COUNT ? k : OMR_E_FAIL];
}

/* The finer codes a guest answers with (omr_proto_code) and their kind. */
static const struct {
	const char *code;
	enum omr_err_kind kind;
} code_kinds[] = {
	{ "is_directory", OMR_E_USAGE }, { "not_directory", OMR_E_USAGE },
	{ "exists", OMR_E_STATE }, { "permission_denied", OMR_E_DENIED },
	{ "no_space", OMR_E_LIMIT }, { "busy", OMR_E_STATE },
	{ "not_empty", OMR_E_STATE }, { "cross_device", OMR_E_USAGE },
	{ "name_too_long", OMR_E_USAGE }, { "too_many_links", OMR_E_USAGE },
	{ "read_only", OMR_E_DENIED }, { "agent_restarted", OMR_E_STATE },
};

enum omr_err_kind omr_err_kind_from_code(const char *code)
{
	if (!code)
		return OMR_E_FAIL;
	for (int k = 0; k < OMR_E_KIND_COUNT; k++)
		if (!strcmp(kinds[k].name, code))
			return (enum omr_err_kind)k;
	for (size_t i = 0; i < OMR_ARRAY_SIZE(code_kinds); i++)
		if (!strcmp(code_kinds[i].code, code))
			return code_kinds[i].kind;
	return OMR_E_FAIL;
}
