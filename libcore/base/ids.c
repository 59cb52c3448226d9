/* Sandbox ids; see omnirun/ids.h. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "omnirun/base/ids.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

int omr_id_new(char out[OMR_ID_MAX], struct omr_err **err)
{
	unsigned char r[OMR_ID_RAND_LEN];
	size_t n = strlen(OMR_ID_PREFIX);
	ssize_t got;

	do
		got = getrandom(r, sizeof(r), 0);
	while (got < 0 && errno == EINTR);
	if (got != (ssize_t)sizeof(r))
		return omr_err_set(err, OMR_E_FAIL, got < 0 ? errno : EIO, "cannot draw a random id");
	memcpy(out, OMR_ID_PREFIX, n);
	/* 32 symbols: the low 5 bits of each byte are uniform. */
	for (size_t i = 0; i < sizeof(r); i++)
		out[n + i] = b32[r[i] & 31];
	out[n + sizeof(r)] = 0;
	return 0;
}

int omr_id_valid(const char *s)
{
	size_t n = strlen(OMR_ID_PREFIX), len;

	if (!s || strncmp(s, OMR_ID_PREFIX, n))
		return 0;
	len = strlen(s + n);
	if (len < 8 || len > 32)
		return 0;
	for (const char *p = s + n; *p; p++)
		if (!strchr(b32, *p) || !*p)
			return 0;
	return 1;
}
