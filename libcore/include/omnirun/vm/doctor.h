/* The host report behind sbx-doctor. */
#ifndef OMNIRUN_DOCTOR_H
#define OMNIRUN_DOCTOR_H

#include <jansson.h>

#include "omnirun/state/config.h"

/* Probes KVM (the self-test guest), QEMU/TCG, tun, nftables, cgroups,
 * dm-crypt and musl-gcc, and says what OmniRun will use.  Returns a new
 * JSON object; never fails. */
json_t *omr_doctor_report(const struct omr_config *c);

#endif
