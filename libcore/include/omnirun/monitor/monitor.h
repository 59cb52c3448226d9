/* sbx-monitor: one per sandbox, like conmon.  It owns the QEMU child, the
 * one agent channel, monitor.sock, the console log and the sandbox's
 * lifetime, and tears everything down when the VMM dies. */
#ifndef OMNIRUN_MONITOR_H
#define OMNIRUN_MONITOR_H

#include "omnirun/state/config.h"
#include <stddef.h>
#include "omnirun/base/err.h"

/* Boots sandbox `id` (its record must exist in state "starting"), reports
 * on ready_fd one JSON line ({"ok":true,...} or {"ok":false,"error":...})
 * and closes it, then serves until the sandbox ends.  Returns 0 after a
 * clean teardown, < 0 if the boot failed (everything already cleaned). */
int omr_monitor_run(const struct omr_config *c, const char *id, int ready_fd,
		    struct omr_err **err);

/* Reports a failure that came before omr_monitor_run could ({"ok":false,
 * "error":MSG,"errno":N}; e may be NULL) and closes ready_fd. */
void omr_monitor_report_failure(int ready_fd, const struct omr_err *e);


#endif
