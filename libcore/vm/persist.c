/* A persisted sandbox's image at rest: omnirun/vm/persist.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/io.h"
#include "omnirun/base/util.h"
#include "omnirun/vm/persist.h"

#define CHUNK (64 * 1024)
#define SEALED_KEY (crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + OMR_PERSIST_KEY_BYTES)

int omr_persist_host_key(const struct omr_config *c, int create,
			 unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	ssize_t n;

	if (sodium_init() < 0)
		return omr_err_setx(err, OMR_E_FAIL, EIO, "libsodium cannot start");
	fd = open(c->host_key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && create) {
		_cleanup_free_ char *dir = omr_xstrdup(c->host_key);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			if (omr_mkdir_p(dir, 0700, err) < 0)
				return -1;
		}
		randombytes_buf(key, OMR_PERSIST_KEY_BYTES);
		fd = open(c->host_key, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
		if (fd >= 0) {
			int rc = omr_write_all(fd, key, OMR_PERSIST_KEY_BYTES);
			if (rc < 0 || fsync(fd) < 0) {
				sodium_memzero(key, OMR_PERSIST_KEY_BYTES);
				unlink(c->host_key);
				return omr_err_set(err, OMR_E_FAIL, rc < 0 ? -rc : errno,
						   "cannot write the host key %s", c->host_key);
			}
			return 0;
		}
		if (errno != EEXIST)
			return omr_err_set(err, OMR_E_FAIL, errno, "cannot make the host key %s",
					   c->host_key);
		fd = open(c->host_key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW); /* made meanwhile */
	}
	if (fd < 0)
		return omr_err_set(err, errno == ENOENT ? OMR_E_NOT_FOUND : OMR_E_FAIL, errno,
				   "cannot read the host key %s", c->host_key);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) ||
	    st.st_uid != geteuid())
		return omr_err_setx(err, OMR_E_DENIED, EPERM, "the host key %s must be a file of "
				    "ours that nobody else can read or write", c->host_key);
	n = read(fd, key, OMR_PERSIST_KEY_BYTES);
	if (n != OMR_PERSIST_KEY_BYTES || read(fd, (char[1]){ 0 }, 1) != 0) {
		sodium_memzero(key, OMR_PERSIST_KEY_BYTES);
		return omr_err_setx(err, OMR_E_FAIL, EINVAL, "the host key %s is not %d bytes",
				    c->host_key, OMR_PERSIST_KEY_BYTES);
	}
	return 0;
}

int omr_persist_key_new(const struct omr_config *c, int dirfd,
			unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err)
{
	unsigned char host[OMR_PERSIST_KEY_BYTES], sealed[SEALED_KEY];
	_cleanup_close_ int fd = -1;
	int rc;

	if (omr_persist_host_key(c, 1, host, err) < 0)
		return -1;
	crypto_secretstream_xchacha20poly1305_keygen(key);
	randombytes_buf(sealed, crypto_secretbox_NONCEBYTES);
	crypto_secretbox_easy(sealed + crypto_secretbox_NONCEBYTES, key, OMR_PERSIST_KEY_BYTES,
			      sealed, host);
	sodium_memzero(host, sizeof(host));
	fd = openat(dirfd, "key", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot write the sandbox's key");
	rc = omr_write_all(fd, sealed, sizeof(sealed));
	if (rc < 0 || fsync(fd) < 0)
		return omr_err_set(err, OMR_E_FAIL, rc < 0 ? -rc : errno,
				   "cannot write the sandbox's key");
	return 0;
}

int omr_persist_key_read(const struct omr_config *c, int dirfd,
			 unsigned char key[OMR_PERSIST_KEY_BYTES], struct omr_err **err)
{
	unsigned char host[OMR_PERSIST_KEY_BYTES], sealed[SEALED_KEY + 1];
	_cleanup_close_ int fd = openat(dirfd, "key", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;
	int bad;

	if (fd < 0)
		return omr_err_set(err, OMR_E_STATE, errno, "the persisted sandbox has no key");
	n = read(fd, sealed, sizeof(sealed));
	if (n != SEALED_KEY)
		return omr_err_setx(err, OMR_E_STATE, EINVAL, "the persisted sandbox's key is "
				    "damaged");
	if (omr_persist_host_key(c, 0, host, err) < 0)
		return -1;
	bad = crypto_secretbox_open_easy(key, sealed + crypto_secretbox_NONCEBYTES,
					 SEALED_KEY - crypto_secretbox_NONCEBYTES, sealed, host);
	sodium_memzero(host, sizeof(host));
	if (bad)
		return omr_err_setx(err, OMR_E_STATE, EBADMSG, "the persisted sandbox's key does "
				    "not open with the host key %s (another host's?)", c->host_key);
	return 0;
}

/* Reads up to n bytes (fewer only at the end), waiting at most until
 * deadline (omr_now_ms). */
static ssize_t read_full(int fd, unsigned char *p, size_t n, uint64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t now = omr_now_ms();
		ssize_t r;

		if (now >= deadline)
			return -ETIMEDOUT;
		r = poll(&pf, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int omr_persist_seal(int in, int out, const unsigned char key[OMR_PERSIST_KEY_BYTES],
		     uint64_t deadline_ms, struct omr_err **err)
{
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	unsigned char *buf = omr_xmalloc(2 * CHUNK), *next = omr_xmalloc(CHUNK);
	unsigned char *sealed = omr_xmalloc(4 + CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES);
	uint64_t deadline = omr_now_ms() + deadline_ms;
	ssize_t n, m;
	int rc = -1;

	crypto_secretstream_xchacha20poly1305_init_push(&st, hdr, key);
	if ((rc = omr_write_all(out, hdr, sizeof(hdr))) < 0) {
		omr_err_set(err, OMR_E_FAIL, -rc, "cannot write the persisted state");
		goto out;
	}
	rc = -1;
	/* One chunk ahead, so that the last one is known as such. */
	n = read_full(in, buf, CHUNK, deadline);
	for (;;) {
		unsigned long long len = 0;
		unsigned char tag;

		if (n < 0) {
			omr_err_set(err, n == -ETIMEDOUT ? OMR_E_TIMEOUT : OMR_E_FAIL, (int)-n,
				    "cannot read the VM's state");
			goto out;
		}
		m = n == CHUNK ? read_full(in, next, CHUNK, deadline) : 0;
		if (m < 0) {
			n = m;
			continue;
		}
		tag = m == 0 ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
		crypto_secretstream_xchacha20poly1305_push(&st, sealed + 4, &len, buf, (size_t)n,
							   NULL, 0, tag);
		sealed[0] = (unsigned char)(len >> 24);
		sealed[1] = (unsigned char)(len >> 16);
		sealed[2] = (unsigned char)(len >> 8);
		sealed[3] = (unsigned char)len;
		if ((rc = omr_write_all(out, sealed, (size_t)len + 4)) < 0) {
			omr_err_set(err, OMR_E_FAIL, -rc, "cannot write the persisted state");
			rc = -1;
			goto out;
		}
		rc = -1;
		if (m == 0)
			break;
		memcpy(buf, next, (size_t)m);
		n = m;
	}
	rc = 0;
out:
	sodium_memzero(buf, 2 * CHUNK);
	sodium_memzero(next, CHUNK);
	sodium_memzero(&st, sizeof(st));
	free(buf);
	free(next);
	free(sealed);
	return rc;
}

int omr_persist_open(int in, int out, const unsigned char key[OMR_PERSIST_KEY_BYTES],
		     struct omr_err **err)
{
	crypto_secretstream_xchacha20poly1305_state st;
	unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES], lenb[4];
	size_t cap = CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES;
	unsigned char *sealed = omr_xmalloc(cap), *plain = omr_xmalloc(CHUNK);
	uint64_t forever = UINT64_MAX;
	int rc = -1, final = 0;

	if (read_full(in, hdr, sizeof(hdr), forever) != (ssize_t)sizeof(hdr) ||
	    crypto_secretstream_xchacha20poly1305_init_pull(&st, hdr, key) != 0) {
		omr_err_setx(err, OMR_E_STATE, EBADMSG, "the persisted state is damaged (header)");
		goto out;
	}
	while (!final) {
		unsigned long long plen = 0;
		unsigned char tag = 0;
		size_t len;
		int wr;

		if (read_full(in, lenb, 4, forever) != 4) {
			omr_err_setx(err, OMR_E_STATE, EBADMSG, "the persisted state is cut short");
			goto out;
		}
		len = (size_t)lenb[0] << 24 | (size_t)lenb[1] << 16 | (size_t)lenb[2] << 8 | lenb[3];
		if (len < crypto_secretstream_xchacha20poly1305_ABYTES || len > cap ||
		    read_full(in, sealed, len, forever) != (ssize_t)len ||
		    crypto_secretstream_xchacha20poly1305_pull(&st, plain, &plen, &tag, sealed, len,
							       NULL, 0) != 0) {
			omr_err_setx(err, OMR_E_STATE, EBADMSG, "the persisted state is damaged or "
				     "cut short");
			goto out;
		}
		final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
		if ((wr = omr_write_all(out, plain, (size_t)plen)) < 0) {
			omr_err_set(err, OMR_E_FAIL, -wr, "cannot write the restored state");
			goto out;
		}
	}
	if (read(in, lenb, 1) != 0) {
		omr_err_setx(err, OMR_E_STATE, EBADMSG, "the persisted state has bytes past its end");
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(plain, CHUNK);
	sodium_memzero(&st, sizeof(st));
	free(sealed);
	free(plain);
	return rc;
}
