/* The network part of sbx-doctor's report. */
#ifndef OMNIRUN_NET_DOCTOR_H
#define OMNIRUN_NET_DOCTOR_H

#include <jansson.h>

#include "omnirun/state/config.h"

/* {pool: {range, size, used}, uplink: {name, present, forwarding,
 * addresses[], error}, nat: {ok, error}, namespaces: {ok, error}}: whether
 * namespaces and NAT can be made here (tried in a throwaway namespace),
 * what --internet would go out of, and how full the pool is.  Never
 * fails. */
json_t *omr_net_doctor(const struct omr_config *c);

#endif
