/* Exit codes are an interface: every man page lists them; never renumber.
 * A libcore error's exit code comes from its kind (omr_err_kind_info). */
#ifndef OMNIRUN_BASE_EXITCODES_H
#define OMNIRUN_BASE_EXITCODES_H

enum {
	OMR_EXIT_OK = 0,
	OMR_EXIT_FAILURE = 1,     /* anything not listed below */
	OMR_EXIT_USAGE = 2,       /* bad arguments */
	OMR_EXIT_NOT_FOUND = 3,   /* unknown sandbox, template or file */
	OMR_EXIT_STATE = 4,       /* sandbox not running / state conflict */
	OMR_EXIT_LIMIT = 5,       /* a configured limit refused the request */
	OMR_EXIT_BOOT = 6,        /* the VMM failed or the guest did not answer */
	/* sbx-exec passes the command's own status through: 124 timeout,
	 * 126 not executable, 127 not found, 128+N killed by signal N. */
	OMR_EXIT_TIMEOUT = 124,
};

#endif
