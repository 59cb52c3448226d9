/* Signed file URLs (issue 13, item 8): a URL that reads or writes files
 * of one sandbox without a bearer token, until it expires.
 *
 * The signature is HMAC-SHA256 (libsodium) with a server key over a
 * length-prefixed canonical string of the op, the sandbox id, the
 * normalized path and the expiry:
 *
 *   "omnirun-file-url-v1" + for each field: decimal length, ":", bytes
 *
 * so no two different tuples give the same string.  A path ending in
 * a path ending in a slash and a star covers every file below that directory
 * (an upload token for /tmp/upload/ and below), never the directory itself.  Keys are 32 random bytes
 * in $state_dir/keys/sign/KID (0600, in a 0700 directory), made on first
 * use; the key id is in the URL, so keys rotate: a new key signs, the old
 * ones still verify until they are removed.  Checks run in constant time
 * (crypto_auth_hmacsha256_verify). */
#ifndef OMNIRUN_API_SIGN_H
#define OMNIRUN_API_SIGN_H

#include <stdint.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

#define OMR_SIGN_PATH_MAX 4096      /* longest path, its final star included */
#define OMR_SIGN_KID_LEN 10         /* key ids: 10 of [a-z2-7] */

enum omr_sign_op { OMR_SIGN_READ, OMR_SIGN_WRITE };

/* "read" / "write", and back (-1 for anything else). */
const char *omr_sign_op_name(enum omr_sign_op op);
int omr_sign_op_parse(const char *s);

/* Checks a path for signing or for a request and normalizes it: absolute,
 * no NUL (len bytes given), no ".." component, at most OMR_SIGN_PATH_MAX
 * bytes; a final slash and star only when pattern is set (kept as is).
 * Returns a malloc'ed normalized path, or NULL with a usage error. */
char *omr_sign_path(const char *path, size_t len, int pattern, struct omr_err **err);

struct omr_signed_url {
	char *url;           /* PUBLIC_URL/files/signed/ID?op=&path=&exp=&kid=&sig=
				(pattern= instead of path= for a pattern: the
				caller appends path=FILE) */
	char *path;          /* the normalized path signed */
	int64_t expires_at;  /* seconds since the epoch */
};
void omr_signed_url_free(struct omr_signed_url *u);

/* Signs op on path of sandbox id for ttl_s seconds from now (ttl_s >= 1;
 * more than [api] sign_ttl_max is cut to it).  The URL starts with base
 * ("http://host:port"; NULL: [api] public_url, else a URL relative to
 * the server).  Makes the first key when there is none.  Returns 0 or
 * < 0. */
int omr_sign_url(const struct omr_config *c, enum omr_sign_op op, const char *id,
		 const char *path, int64_t ttl_s, int64_t now, const char *base,
		 struct omr_signed_url *out, struct omr_err **err);

/* What a signed request carries (the URL's query), and what it asks. */
struct omr_sign_claim {
	const char *op;       /* op= */
	const char *path;     /* pattern=, else path= (decoded): what was signed */
	const char *exp;      /* exp= */
	const char *kid;      /* kid= */
	const char *sig;      /* sig= (base64url, no padding) */
};

/* Verifies a claim for a request of op on file `target` of sandbox id at
 * time now: the signature (constant time, with the key it names), the
 * expiry, and that op, id and target are what was signed (target equal to
 * the signed path, or below the directory of a pattern).  Every
 * failure is kind denied with one message ("invalid or expired
 * signature"), so that the answer tells nothing about which part failed;
 * a malformed target path is a usage error.  Returns 0 or < 0. */
int omr_sign_verify(const struct omr_config *c, const struct omr_sign_claim *cl,
		    enum omr_sign_op op, const char *id, const char *target, int64_t now,
		    struct omr_err **err);

/* Key management: a new key that signs from now on (*kid gets its id);
 * the ids of the keys kept, current first (a NULL-terminated malloc'ed
 * array of malloc'ed strings); removing one (never the current one: rotate
 * first).  Return 0 or < 0. */
int omr_sign_rotate(const struct omr_config *c, char kid[OMR_SIGN_KID_LEN + 1],
		    struct omr_err **err);
int omr_sign_keys(const struct omr_config *c, char ***kids, struct omr_err **err);
int omr_sign_key_remove(const struct omr_config *c, const char *kid, struct omr_err **err);

#endif
