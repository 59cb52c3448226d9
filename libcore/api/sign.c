/* Signed file URLs; see omnirun/api/sign.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/api/sign.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/ids.h"
#include "omnirun/base/util.h"

#define SIGN_DOMAIN "omnirun-file-url-v1"
#define KEY_LEN crypto_auth_hmacsha256_KEYBYTES
#define SIG_LEN crypto_auth_hmacsha256_BYTES
#define CURRENT "current"
#define DENIED "invalid or expired signature"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

const char *omr_sign_op_name(enum omr_sign_op op)
{
	return op == OMR_SIGN_WRITE ? "write" : "read";
}

int omr_sign_op_parse(const char *s)
{
	if (s && !strcmp(s, "read"))
		return OMR_SIGN_READ;
	if (s && !strcmp(s, "write"))
		return OMR_SIGN_WRITE;
	return -1;
}

static int kid_valid(const char *s)
{
	return s && strlen(s) == OMR_SIGN_KID_LEN && strspn(s, b32) == OMR_SIGN_KID_LEN;
}

char *omr_sign_path(const char *path, size_t len, int pattern, struct omr_err **err)
{
	_cleanup_free_ char *copy = NULL, *clean = NULL;
	int is_pattern;

	if (!path || len == 0 || path[0] != '/') {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "a path must be absolute");
		return NULL;
	}
	if (len > OMR_SIGN_PATH_MAX) {
		omr_err_setx(err, OMR_E_USAGE, ENAMETOOLONG, "a path is at most %d bytes",
			     OMR_SIGN_PATH_MAX);
		return NULL;
	}
	if (memchr(path, 0, len)) {
		omr_err_setx(err, OMR_E_USAGE, EINVAL, "a path must not contain NUL");
		return NULL;
	}
	copy = omr_xmalloc(len + 1);
	memcpy(copy, path, len);
	copy[len] = 0;
	/* ".." is refused, not resolved: a URL for /tmp/a/.. must not
	 * silently mean /tmp. */
	for (const char *p = copy; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			omr_err_setx(err, OMR_E_USAGE, EINVAL, "a path must not contain '..'");
			return NULL;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	is_pattern = pattern && len >= 2 && !strcmp(copy + len - 2, "/*");
	if (is_pattern)
		copy[len - 1] = 0; /* the directory, with its "/" */
	clean = omr_path_clean(copy);
	if (!is_pattern)
		return omr_steal_ptr(clean);
	return omr_strdup_printf("%s%s*", clean, strcmp(clean, "/") ? "/" : "");
}

void omr_signed_url_free(struct omr_signed_url *u)
{
	free(u->url);
	free(u->path);
	u->url = u->path = NULL;
}

static int is_pattern(const char *p)
{
	size_t n = strlen(p);

	return n >= 2 && !strcmp(p + n - 2, "/*");
}

/* --- keys --- */

/* $state_dir/keys/sign, made 0700 when missing; its fd. */
static int keys_dir(const struct omr_config *c, int create, struct omr_err **err)
{
	_cleanup_free_ char *keys = omr_strdup_printf("%s/keys", c->state_dir);
	_cleanup_free_ char *sign = omr_strdup_printf("%s/keys/sign", c->state_dir);

	if (create && omr_mkdir_p(keys, 0700, err) < 0)
		return -1;
	return omr_dir_private(sign, create, err);
}

static int dir_lock(int dfd, struct omr_err **err)
{
	int fd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot lock the signing keys");
	}
	return fd;
}

/* Reads key kid into key (KEY_LEN bytes): a regular file of ours, 0600,
 * exactly KEY_LEN bytes.  -ENOENT when there is none. */
static int key_read(int dfd, const char *kid, unsigned char *key, struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	ssize_t n;

	if (!kid_valid(kid))
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no signing key '%.16s'", kid);
	fd = openat(dfd, kid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "signing key %s", kid);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) || st.st_size != KEY_LEN)
		return omr_err_setx(err, OMR_E_DENIED, EPERM,
				    "signing key %s: not a %u-byte 0600 file of ours", kid, KEY_LEN);
	n = pread(fd, key, KEY_LEN, 0);
	if (n != KEY_LEN)
		return omr_err_set(err, OMR_E_FAIL, n < 0 ? errno : EIO, "cannot read signing key %s",
				   kid);
	return 0;
}

/* Makes a key and makes it current; the caller holds the lock. */
static int key_new(int dfd, char kid[OMR_SIGN_KID_LEN + 1], struct omr_err **err)
{
	unsigned char *key = sodium_malloc(KEY_LEN);
	char sb[OMR_ID_MAX], line[OMR_SIGN_KID_LEN + 2];
	int rc;

	if (!key)
		return omr_err_set(err, OMR_E_FAIL, ENOMEM, "cannot make a signing key");
	if (omr_id_new(sb, err) < 0) {
		sodium_free(key);
		return -1;
	}
	memcpy(kid, sb + strlen(OMR_ID_PREFIX), OMR_SIGN_KID_LEN);
	kid[OMR_SIGN_KID_LEN] = 0;
	crypto_auth_hmacsha256_keygen(key);
	rc = omr_write_file_atomic_at(dfd, kid, key, KEY_LEN, 0600, err);
	sodium_free(key);
	if (rc < 0)
		return -1;
	snprintf(line, sizeof(line), "%s\n", kid);
	return omr_write_file_atomic_at(dfd, CURRENT, line, strlen(line), 0600, err);
}

/* The current key's id; made (under the lock) on first use. */
static int key_current(int dfd, int make, char kid[OMR_SIGN_KID_LEN + 1], struct omr_err **err)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_close_ int lock = -1;
	struct omr_err *e = NULL;

	for (int pass = 0; pass < 2; pass++) {
		if (omr_read_file_at(dfd, CURRENT, 64, &text, NULL, &e) == 0) {
			text[strcspn(text, "\n")] = 0;
			if (!kid_valid(text))
				return omr_err_setx(err, OMR_E_FAIL, EINVAL,
						    "the current signing key id is malformed");
			memcpy(kid, text, OMR_SIGN_KID_LEN + 1);
			return 0;
		}
		omr_err_free(&e);
		if (!make)
			return omr_err_setx(err, OMR_E_NOT_FOUND, ENOENT, "no signing key yet");
		if (pass == 0 && (lock = dir_lock(dfd, err)) < 0)
			return -1;
	}
	return key_new(dfd, kid, err);
}

int omr_sign_rotate(const struct omr_config *c, char kid[OMR_SIGN_KID_LEN + 1],
		    struct omr_err **err)
{
	_cleanup_close_ int dfd = keys_dir(c, 1, err), lock = -1;

	if (sodium_init() < 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libsodium cannot start");
	if (dfd < 0 || (lock = dir_lock(dfd, err)) < 0)
		return -1;
	return key_new(dfd, kid, err);
}

static int by_mtime_desc(const void *a, const void *b)
{
	const struct { char *kid; int64_t t; } *x = a, *y = b;

	return x->t < y->t ? 1 : x->t > y->t ? -1 : strcmp(x->kid, y->kid);
}

int omr_sign_keys(const struct omr_config *c, char ***kids, struct omr_err **err)
{
	_cleanup_close_ int dfd = keys_dir(c, 1, err);
	struct { char *kid; int64_t t; } *v = NULL;
	char cur[OMR_SIGN_KID_LEN + 1] = "";
	size_t n = 0;
	struct dirent *d;
	DIR *dir;
	int dup;

	*kids = NULL;
	if (dfd < 0 || (dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0)) < 0 || !(dir = fdopendir(dup)))
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot list the signing keys");
	key_current(dfd, 0, cur, NULL);
	while ((d = readdir(dir))) {
		struct stat st;
		if (!kid_valid(d->d_name) || fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		v = omr_xrealloc(v, (n + 1) * sizeof(*v));
		v[n].kid = omr_xstrdup(d->d_name);
		v[n].t = strcmp(d->d_name, cur) ? (int64_t)st.st_mtime : INT64_MAX;
		n++;
	}
	closedir(dir);
	if (n)
		qsort(v, n, sizeof(*v), by_mtime_desc);
	*kids = omr_xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		(*kids)[i] = v[i].kid;
	free(v);
	return 0;
}

int omr_sign_key_remove(const struct omr_config *c, const char *kid, struct omr_err **err)
{
	_cleanup_close_ int dfd = keys_dir(c, 0, err), lock = -1;
	char cur[OMR_SIGN_KID_LEN + 1] = "";

	if (!kid_valid(kid))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid key id '%.16s'", kid);
	if (dfd < 0 || (lock = dir_lock(dfd, err)) < 0)
		return -1;
	if (key_current(dfd, 0, cur, NULL) == 0 && !strcmp(cur, kid))
		return omr_err_setx(err, OMR_E_STATE, EBUSY,
				    "key %s signs new URLs: rotate before removing it", kid);
	if (unlinkat(dfd, kid, 0) < 0)
		return omr_err_set(err, omr_err_kind_missing(errno), errno, "signing key %s", kid);
	return 0;
}

/* --- signatures --- */

static void put_field(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	int k = snprintf(NULL, 0, "%zu:", n);

	*buf = omr_xrealloc(*buf, *len + (size_t)k + n + 1);
	snprintf(*buf + *len, (size_t)k + 1, "%zu:", n);
	memcpy(*buf + *len + k, s, n);
	*len += (size_t)k + n;
}

/* The canonical string of the tuple (malloc'ed, *len bytes). */
static char *canonical(const char *op, const char *id, const char *path, int64_t exp, size_t *len)
{
	char *buf = NULL, num[32];

	*len = 0;
	snprintf(num, sizeof(num), "%lld", (long long)exp);
	put_field(&buf, len, SIGN_DOMAIN);
	put_field(&buf, len, op);
	put_field(&buf, len, id);
	put_field(&buf, len, path);
	put_field(&buf, len, num);
	return buf;
}

/* Percent-encodes all but unreserved characters and "/". */
static char *url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = omr_xmalloc(strlen(s) * 3 + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = 0;
	return out;
}

int omr_sign_url(const struct omr_config *c, enum omr_sign_op op, const char *id,
		 const char *path, int64_t ttl_s, int64_t now, const char *base,
		 struct omr_signed_url *out, struct omr_err **err)
{
	_cleanup_close_ int dfd = -1;
	_cleanup_free_ char *enc = NULL;
	char kid[OMR_SIGN_KID_LEN + 1], sig64[sodium_base64_ENCODED_LEN(
		SIG_LEN, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	unsigned char sig[SIG_LEN], *key = NULL;

	memset(out, 0, sizeof(*out));
	if (sodium_init() < 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libsodium cannot start");
	if (!omr_id_valid(id))
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "invalid sandbox id");
	if (ttl_s < 1)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "a signed URL needs a ttl of 1 s or more");
	if (ttl_s > c->api_sign_ttl_max)
		ttl_s = c->api_sign_ttl_max;
	if (!path || !(out->path = omr_sign_path(path, strlen(path), 1, err)))
		return path ? -1 : omr_err_setx(err, OMR_E_USAGE, EINVAL, "a path is required");
	if ((dfd = keys_dir(c, 1, err)) < 0 || key_current(dfd, 1, kid, err) < 0)
		goto fail;
	if (!(key = sodium_malloc(KEY_LEN))) {
		omr_err_set(err, OMR_E_FAIL, ENOMEM, "cannot sign");
		goto fail;
	}
	if (key_read(dfd, kid, key, err) < 0)
		goto fail;
	out->expires_at = now + ttl_s;
	{
		size_t len;
		char *buf = canonical(omr_sign_op_name(op), id, out->path, out->expires_at, &len);
		crypto_auth_hmacsha256(sig, (const unsigned char *)buf, len, key);
		free(buf);
	}
	sodium_free(key);
	key = NULL;
	sodium_bin2base64(sig64, sizeof(sig64), sig, sizeof(sig),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	enc = url_encode(out->path);
	/* A pattern is "pattern=": the caller adds the file as "path=". */
	out->url = omr_strdup_printf("%s/files/signed/%s?op=%s&%s=%s&exp=%lld&kid=%s&sig=%s",
				     base ? base : c->api_public_url ? c->api_public_url : "",
				     id, omr_sign_op_name(op),
				     is_pattern(out->path) ? "pattern" : "path", enc,
				     (long long)out->expires_at, kid, sig64);
	return 0;
fail:
	sodium_free(key);
	omr_signed_url_free(out);
	return -1;
}

static int deny(struct omr_err **err)
{
	return omr_err_setx(err, OMR_E_DENIED, EACCES, DENIED);
}

int omr_sign_verify(const struct omr_config *c, const struct omr_sign_claim *cl,
		    enum omr_sign_op op, const char *id, const char *target, int64_t now,
		    struct omr_err **err)
{
	_cleanup_free_ char *signed_path = NULL, *want = NULL;
	_cleanup_close_ int dfd = -1;
	unsigned char sig[SIG_LEN], *key = NULL;
	size_t siglen = 0, plen;
	uint64_t exp;
	int ok;

	if (sodium_init() < 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libsodium cannot start");
	/* The file asked for: a malformed one is the request's fault. */
	if (!target || !(want = omr_sign_path(target, strlen(target), 0, err)))
		return target ? -1 : omr_err_setx(err, OMR_E_USAGE, EINVAL, "a path is required");
	if (!cl->op || !cl->path || !cl->exp || !cl->kid || !cl->sig || !omr_id_valid(id) ||
	    omr_sign_op_parse(cl->op) != (int)op || !kid_valid(cl->kid) ||
	    omr_parse_u64(cl->exp, 1, INT64_MAX, &exp, "exp", NULL) < 0 || (int64_t)exp < now)
		return deny(err);
	/* What was signed is a normalized path: anything else is forged. */
	signed_path = omr_sign_path(cl->path, strlen(cl->path), 1, NULL);
	if (!signed_path || strcmp(signed_path, cl->path))
		return deny(err);
	if (sodium_base642bin(sig, sizeof(sig), cl->sig, strlen(cl->sig), NULL, &siglen, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) < 0 || siglen != SIG_LEN)
		return deny(err);
	if ((dfd = keys_dir(c, 0, NULL)) < 0 || !(key = sodium_malloc(KEY_LEN)))
		return deny(err);
	/* A key that was removed (rotated away) no longer verifies. */
	if (key_read(dfd, cl->kid, key, NULL) < 0) {
		sodium_free(key);
		return deny(err);
	}
	{
		size_t len;
		char *buf = canonical(cl->op, id, signed_path, (int64_t)exp, &len);
		/* Constant time: crypto_auth_hmacsha256_verify. */
		ok = crypto_auth_hmacsha256_verify(sig, (const unsigned char *)buf, len, key) == 0;
		free(buf);
	}
	sodium_free(key);
	if (!ok)
		return deny(err);
	plen = strlen(signed_path);
	if (plen >= 2 && !strcmp(signed_path + plen - 2, "/*")) {
		/* Below the directory, never the directory itself. */
		if (strncmp(want, signed_path, plen - 1) || strlen(want) <= plen - 1)
			return deny(err);
	} else if (strcmp(want, signed_path)) {
		return deny(err);
	}
	return 0;
}
