/* Sandbox ids: "sb_" + OMR_ID_RAND_LEN lowercase base32 characters drawn
 * from the kernel's CSPRNG (getrandom). */
#ifndef OMNIRUN_IDS_H
#define OMNIRUN_IDS_H

#include "omnirun/base/err.h"

#define OMR_ID_PREFIX "sb_"
#define OMR_ID_RAND_LEN 10
#define OMR_ID_MAX 40  /* buffer size for an id (ids from elsewhere may be longer) */

/* Fills out with a new id.  Returns 0 or < 0. */
int omr_id_new(char out[OMR_ID_MAX], struct omr_err **err);

/* Returns 1 if s is a well-formed sandbox id: "sb_" then 8..32 characters
 * of [a-z2-7]. */
int omr_id_valid(const char *s);

#endif
