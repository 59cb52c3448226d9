/* Tests signed file URLs (omnirun/api/sign.h): what verifies, and every
 * way a signature must fail (TAP output). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/api/sign.h"
#include "omnirun/base/util.h"
#include "omnirun/state/config.h"
#include "tap.h"

#define SB "sb_abcdefgh23"
#define SB2 "sb_zzzzzzzz23"
#define NOW 1800000000

static struct omr_config *cfg;
static char root[] = "/tmp/omr-test-sign.XXXXXX";

/* The query of a signed URL, parsed (values decoded) into a claim. */
struct query {
	char *op, *path, *exp, *kid, *sig;
};

static char *decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n + 1) {
			char h[3] = { s[i + 1], s[i + 2], 0 };
			*o++ = (char)strtol(h, NULL, 16);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = 0;
	return out;
}

static void parse(const char *url, struct query *q)
{
	const char *p = strchr(url, '?');

	memset(q, 0, sizeof(*q));
	while (p && *p) {
		const char *k = p + 1, *eq = strchr(k, '='), *end = strchr(k, '&');
		char **dst = NULL;
		if (!end)
			end = k + strlen(k);
		if (!eq || eq > end)
			break;
		if (!strncmp(k, "op=", 3)) dst = &q->op;
		if (!strncmp(k, "path=", 5) || !strncmp(k, "pattern=", 8)) dst = &q->path;
		if (!strncmp(k, "exp=", 4)) dst = &q->exp;
		if (!strncmp(k, "kid=", 4)) dst = &q->kid;
		if (!strncmp(k, "sig=", 4)) dst = &q->sig;
		if (dst)
			*dst = decode(eq + 1, (size_t)(end - eq - 1));
		p = *end ? end : NULL;
	}
}

static void query_free(struct query *q)
{
	free(q->op), free(q->path), free(q->exp), free(q->kid), free(q->sig);
}

static struct omr_sign_claim claim(const struct query *q)
{
	return (struct omr_sign_claim){ q->op, q->path, q->exp, q->kid, q->sig };
}

/* Verifies q for (op, id, target) at now: 0, or the error's kind. */
static int check(const struct query *q, enum omr_sign_op op, const char *id, const char *target,
		 int64_t now)
{
	struct omr_sign_claim cl = claim(q);
	struct omr_err *err = NULL;
	int rc = omr_sign_verify(cfg, &cl, op, id, target, now, &err);
	int kind = rc < 0 ? (int)omr_err_kind(err) : 0;

	if (rc < 0 && kind == OMR_E_DENIED && strcmp(err->msg, "invalid or expired signature"))
		kind = -1; /* a denial must not say why */
	omr_err_free(&err);
	return rc == 0 ? 0 : kind;
}

static void sign(enum omr_sign_op op, const char *id, const char *path, int64_t ttl,
		 struct query *q, struct omr_signed_url *u)
{
	struct omr_err *err = NULL;

	if (omr_sign_url(cfg, op, id, path, ttl, NOW, NULL, u, &err) < 0)
		bail_out("sign %s: %s", path, err->msg);
	parse(u->url, q);
}

static void test_paths(void)
{
	struct omr_err *err = NULL;
	char *p, *longp = malloc(OMR_SIGN_PATH_MAX + 2);
	static const char nul[] = "/tmp/a\0b";
	bool all = true;

	p = omr_sign_path("/tmp//x/./y/", 12, 0, &err);
	is_str(p, "/tmp/x/y", "path: normalized");
	free(p);
	p = omr_sign_path("/tmp/upload//*", 14, 1, &err);
	is_str(p, "/tmp/upload/*", "path: a pattern keeps its star");
	free(p);
	static const char *const bad[] = { "tmp/x", "", "/tmp/../etc/passwd", "/..", "/a/b/..",
					   "/tmp/x/../../etc" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = omr_sign_path(bad[i], strlen(bad[i]), 1, &err);
		all &= !p && omr_err_kind(err) == OMR_E_USAGE;
		free(p);
		omr_err_free(&err);
	}
	ok(all, "path: relative, empty and '..' paths refused");
	p = omr_sign_path(nul, sizeof(nul) - 1, 0, &err);
	ok(!p && omr_err_kind(err) == OMR_E_USAGE, "path: NUL refused");
	omr_err_free(&err);
	memset(longp, 'a', OMR_SIGN_PATH_MAX + 1);
	longp[0] = '/';
	longp[OMR_SIGN_PATH_MAX + 1] = 0;
	p = omr_sign_path(longp, strlen(longp), 0, &err);
	ok(!p && omr_err_kind(err) == OMR_E_USAGE, "path: over %d bytes refused", OMR_SIGN_PATH_MAX);
	omr_err_free(&err);
	longp[OMR_SIGN_PATH_MAX] = 0;
	p = omr_sign_path(longp, strlen(longp), 0, &err);
	ok(p != NULL, "path: %d bytes accepted", OMR_SIGN_PATH_MAX);
	free(p);
	free(longp);
}

static void test_sign_verify(void)
{
	struct omr_signed_url u, u2;
	struct query q, q2, t;
	struct omr_err *err = NULL;
	struct stat st;
	char *keyfile;

	sign(OMR_SIGN_READ, SB, "/tmp/./out.txt", 600, &q, &u);
	ok(!strncmp(u.url, "http://127.0.0.1:8080/files/signed/" SB "?op=read&path=/tmp/out.txt&exp=",
		    strlen("http://127.0.0.1:8080/files/signed/" SB "?op=read&path=/tmp/out.txt&exp=")),
	   "sign: the URL names the sandbox, the op and the normalized path (%s)", u.url);
	is_int(u.expires_at, NOW + 600, "sign: expires ttl seconds from now");
	keyfile = omr_strdup_printf("%s/state/keys/sign/%s", root, q.kid);
	ok(stat(keyfile, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32,
	   "keys: made on first use, 32 bytes, 0600");
	free(keyfile);
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), 0, "verify: the signed request passes");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp//out.txt", NOW + 600), 0,
	   "verify: up to its expiry, the target normalized");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW + 601), OMR_E_DENIED, "verify: expired");
	is_int(check(&q, OMR_SIGN_WRITE, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "verify: other op");
	is_int(check(&q, OMR_SIGN_READ, SB2, "/tmp/out.txt", NOW), OMR_E_DENIED,
	       "verify: other sandbox");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt2", NOW), OMR_E_DENIED, "verify: other file");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/../tmp/out.txt", NOW), OMR_E_USAGE,
	       "verify: a target with '..' is a bad request");

	/* Tampering with each part of the query. */
	t = q;
	t.exp = omr_strdup_printf("%lld", (long long)NOW + 6000);
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: a later expiry");
	free(t.exp);
	t = q;
	t.path = "/tmp/other.txt";
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/other.txt", NOW), OMR_E_DENIED, "tampered: the path");
	t.path = "/tmp//out.txt";
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED,
	       "tampered: the path spelled another way");
	t = q;
	t.op = "write";
	is_int(check(&t, OMR_SIGN_WRITE, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: the op");
	t = q;
	t.sig = strdup(q.sig);
	t.sig[5] = t.sig[5] == 'A' ? 'B' : 'A';
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: the signature");
	t.sig[5] = 0;
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: a short signature");
	free(t.sig);
	t = q;
	t.kid = "aaaaaaaaaa";
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: an unknown key id");
	t.kid = "../../../x";
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "tampered: a key id that is a path");
	t = q;
	t.exp = NULL;
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "a missing expiry");
	t.exp = "-1";
	is_int(check(&t, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED, "a negative expiry");

	/* Patterns: every file below, not the directory, not a sibling. */
	sign(OMR_SIGN_WRITE, SB, "/tmp/upload/*", 60, &q2, &u2);
	is_int(check(&q2, OMR_SIGN_WRITE, SB, "/tmp/upload/a.bin", NOW), 0, "pattern: a file below");
	is_int(check(&q2, OMR_SIGN_WRITE, SB, "/tmp/upload/d/e/f", NOW), 0, "pattern: deeper");
	is_int(check(&q2, OMR_SIGN_WRITE, SB, "/tmp/upload", NOW), OMR_E_DENIED, "pattern: not the directory");
	is_int(check(&q2, OMR_SIGN_WRITE, SB, "/tmp/upload2/x", NOW), OMR_E_DENIED,
	       "pattern: not a sibling with the same prefix");
	is_int(check(&q2, OMR_SIGN_WRITE, SB, "/tmp/upload/../x", NOW), OMR_E_USAGE,
	       "pattern: no way out with '..'");
	is_int(check(&q2, OMR_SIGN_READ, SB, "/tmp/upload/a.bin", NOW), OMR_E_DENIED,
	       "pattern: a write URL does not read");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt/x", NOW), OMR_E_DENIED,
	       "a file URL is no pattern");
	omr_signed_url_free(&u2);
	query_free(&q2);

	/* TTL: mandatory, capped by the config. */
	ok(omr_sign_url(cfg, OMR_SIGN_READ, SB, "/x", 0, NOW, NULL, &u2, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_USAGE,
	   "ttl: 0 refused (an expiry is mandatory)");
	omr_err_free(&err);
	ok(omr_sign_url(cfg, OMR_SIGN_READ, SB, "/x", 1000000, NOW, NULL, &u2, &err) == 0 &&
		   u2.expires_at == NOW + 3600,
	   "ttl: cut to [api] sign_ttl_max (3600 here)");
	omr_signed_url_free(&u2);
	ok(omr_sign_url(cfg, OMR_SIGN_READ, "sb_BAD", "/x", 10, NOW, NULL, &u2, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_USAGE,
	   "sign: a malformed sandbox id refused");
	omr_err_free(&err);
	ok(omr_sign_url(cfg, OMR_SIGN_READ, SB, "/a/../x", 10, NOW, NULL, &u2, &err) < 0 &&
		   omr_err_kind(err) == OMR_E_USAGE,
	   "sign: a path with '..' refused");
	omr_err_free(&err);

	/* Rotation: the old key still verifies until it is removed. */
	char kid[OMR_SIGN_KID_LEN + 1], **kids = NULL;
	ok(omr_sign_rotate(cfg, kid, &err) == 0 && strcmp(kid, q.kid), "rotate: a new key");
	sign(OMR_SIGN_READ, SB, "/tmp/out.txt", 600, &q2, &u2);
	is_str(q2.kid, kid, "rotate: the new key signs");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), 0, "rotate: the old key still verifies");
	ok(omr_sign_keys(cfg, &kids, &err) == 0 && kids[0] && !strcmp(kids[0], kid) && kids[1] &&
		   !strcmp(kids[1], q.kid) && !kids[2],
	   "keys: listed, current first");
	for (size_t i = 0; kids && kids[i]; i++)
		free(kids[i]);
	free(kids);
	ok(omr_sign_key_remove(cfg, kid, &err) < 0 && omr_err_kind(err) == OMR_E_STATE,
	   "keys: the current key cannot be removed");
	omr_err_free(&err);
	ok(omr_sign_key_remove(cfg, q.kid, &err) == 0, "keys: an old one can");
	is_int(check(&q, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED,
	       "rotate: a rotated-away key no longer verifies");
	is_int(check(&q2, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), 0, "rotate: the new one does");

	/* A key file anyone may read is not used. */
	keyfile = omr_strdup_printf("%s/state/keys/sign/%s", root, kid);
	chmod(keyfile, 0644);
	is_int(check(&q2, OMR_SIGN_READ, SB, "/tmp/out.txt", NOW), OMR_E_DENIED,
	       "keys: a key readable by others is refused");
	chmod(keyfile, 0600);
	free(keyfile);
	omr_signed_url_free(&u2);
	query_free(&q2);
	omr_signed_url_free(&u);
	query_free(&q);
}

int main(void)
{
	struct omr_err *err = NULL;
	char *conf, *state;

	if (!mkdtemp(root))
		bail_out("mkdtemp: %s", strerror(errno));
	state = omr_strdup_printf("%s/state", root);
	conf = omr_strdup_printf("%s/omnirun.conf", root);
	mkdir(state, 0700);
	FILE *f = fopen(conf, "w");
	fprintf(f, "[api]\nsign_ttl_max = 3600\npublic_url = http://127.0.0.1:8080/\n");
	fclose(f);
	setenv("OMNIRUN_CONF", conf, 1);
	setenv("OMNIRUN_STATE_DIR", state, 1);
	if (omr_config_load(&cfg, &err) < 0)
		bail_out("config: %s", err->msg);
	test_paths();
	test_sign_verify();
	omr_config_free(cfg);
	omr_rm_rf_at(AT_FDCWD, root);
	free(conf);
	free(state);
	return done_testing();
}
