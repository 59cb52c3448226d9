/* Unit tests for the template store, libcore/vm/template-*.c (TAP). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/state/config.h"
#include "omnirun/vm/snapshot.h"
#include "omnirun/vm/template.h"
#include "omnirun/base/util.h"

#include "tap.h"
#include "../../libcore/vm/template-internal.h"

static char root[] = "/tmp/omr-test-template.XXXXXX";
static struct omr_config *cfg;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		exit(99);
	}
	chmod(path, mode);
}

static char *tpath(const char *name, const char *file)
{
	return omr_strdup_printf("%s/state/templates/%s%s%s", root, name, file ? "/" : "",
				 file ? file : "");
}

/* A hand-made template: vmlinuz, initrd.img and the given template.conf. */
static void make_template(const char *name, const char *conf)
{
	char *d = tpath(name, NULL), *p;
	struct omr_err *err = NULL;

	if (omr_mkdir_p(d, 0755, &err) < 0) {
		fprintf(stderr, "%s\n", err->msg);
		exit(99);
	}
	p = tpath(name, "vmlinuz");
	write_file(p, "kernel bytes\n", 0644);
	free(p);
	p = tpath(name, "initrd.img");
	write_file(p, "initrd\n", 0644);
	free(p);
	p = tpath(name, "template.conf");
	write_file(p, conf, 0644);
	free(p);
	free(d);
}

static const char good_conf[] =
	"kernel=vmlinuz\ninitrd=initrd.img\nkernel_version=6.1.0-56-cloud-amd64\n"
	"cmdline=foo=1 bar\ncpus=2\nmemory_mb=256\ndisk_mb=512\n";

/* Loads name expecting failure; returns 1 when the message contains want. */
static int load_fails(const char *name, const char *want)
{
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	int r = omr_template_load(cfg, name, &t, &err);
	int good = r < 0 && err && strstr(err->msg, want);

	if (!good)
		fprintf(stderr, "# load %s: r=%d msg=%s\n", name, r, err ? err->msg : "(none)");
	omr_template_free(t);
	omr_err_free(&err);
	return good;
}

static int bad_conf(const char *conf, const char *want)
{
	make_template("bad", conf);
	return load_fails("bad", want);
}

static void test_names(void)
{
	static const char *const good[] = { "tiny", "a", "0", "a-b-c", "python3",
		"abcdefghijklmnopqrstuvwxyz012345" };
	static const char *const bad[] = { "", "A", "-a", "_a", "a.b", "a/b", "a_b", "..", ".", "tiny ",
		"abcdefghijklmnopqrstuvwxyz0123456", "Tiny", "a:b" };

	for (size_t i = 0; i < OMR_ARRAY_SIZE(good); i++)
		is_int(omr_template_name_valid(good[i]), 1, "name '%s' is valid", good[i]);
	for (size_t i = 0; i < OMR_ARRAY_SIZE(bad); i++)
		is_int(omr_template_name_valid(bad[i]), 0, "name '%s' is invalid", bad[i]);
	is_int(omr_template_name_valid(NULL), 0, "NULL name is invalid");
}

static void test_load(void)
{
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	char *p;
	int r;

	make_template("tiny", good_conf);
	r = omr_template_load(cfg, "tiny", &t, &err);
	ok(r == 0 && t, "hand-made template loads%s%s", err ? ": " : "", err ? err->msg : "");
	if (t) {
		p = tpath("tiny", "vmlinuz");
		ok(t->kernel[0] == '/' && !strcmp(t->kernel, p), "kernel path is absolute (%s)",
		   t->kernel);
		free(p);
		ok(strstr(t->initrd, "/templates/tiny/initrd.img") != NULL, "initrd path");
		is_str(t->rootfs, NULL, "no rootfs");
		ok(!strcmp(t->name, "tiny") && !strcmp(t->kernel_version, "6.1.0-56-cloud-amd64"),
		   "name and kernel_version");
		is_str(t->cmdline, "foo=1 bar", "cmdline kept verbatim");
		ok(t->cpus == 2 && t->memory_mb == 256 && t->disk_mb == 512, "numbers parsed");
		ok(t->size_bytes == 13 + 7, "size is the files' sum when not recorded (%llu)",
		   (unsigned long long)t->size_bytes);
		is_int(t->built_at, 0, "built_at 0 when not recorded");
	}
	omr_template_free(t);
	omr_err_free(&err);

	r = omr_template_load(cfg, "nope", &t, &err);
	ok(r == -ENOENT && err && err->errnum == ENOENT &&
	   !strcmp(err->msg, "unknown template 'nope'"), "unknown template is ENOENT");
	omr_err_free(&err);
	r = omr_template_load(cfg, "../tiny", &t, &err);
	ok(r == -EINVAL && err && strstr(err->msg, "invalid template name"),
	   "path-like name is rejected");
	omr_err_free(&err);
}

static void test_bad_templates(void)
{
	char *p, *q;

	ok(bad_conf("kernel=../vmlinuz\ninitrd=initrd.img\n", "plain file name"),
	   "kernel=../x is rejected");
	ok(bad_conf("kernel=sub/vmlinuz\ninitrd=initrd.img\n", "plain file name"),
	   "kernel with a slash is rejected");
	ok(bad_conf("kernel=/etc/passwd\ninitrd=initrd.img\n", "plain file name"),
	   "absolute kernel path is rejected");
	ok(bad_conf("kernel=.hidden\ninitrd=initrd.img\n", "plain file name"),
	   "dot file is rejected");
	ok(bad_conf("kernel=missing\ninitrd=initrd.img\n", "kernel missing: No such file"),
	   "missing kernel file is rejected");
	ok(bad_conf("initrd=initrd.img\n", "no kernel= given"), "conf without kernel");
	ok(bad_conf("kernel=vmlinuz\n", "no initrd= given"), "conf without initrd");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\nfoo=bar\n", "unknown key 'foo'"),
	   "unknown key is rejected");
	ok(bad_conf("kernel=vmlinuz\nkernel=vmlinuz\ninitrd=initrd.img\n", "given twice"),
	   "duplicate key is rejected");
	ok(bad_conf("[x]\nkernel=vmlinuz\ninitrd=initrd.img\n", "unexpected section [x]"),
	   "sections are rejected");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\ncpus=65\n", "cpus"),
	   "cpus out of range is rejected");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\nmemory_mb=lots\n", "not a number"),
	   "non-numeric memory_mb is rejected");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\nname=other\n", "does not match"),
	   "name= differing from the directory is rejected");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\ncmdline=a\tb\n", "invalid cmdline"),
	   "control characters in cmdline are rejected");
	ok(bad_conf("kernel=vmlinuz\ninitrd=initrd.img\nthis is not ini\n", "syntax error"),
	   "syntax error is reported");
	{
		char conf[400];
		snprintf(conf, sizeof(conf), "kernel=vmlinuz\ninitrd=initrd.img\ncmdline=%0250d\n", 0);
		ok(bad_conf(conf, "line 3 longer than"), "over-long line is rejected");
	}

	/* The files themselves. */
	make_template("bad", good_conf);
	p = tpath("bad", "vmlinuz");
	unlink(p);
	ok(symlink("/etc/passwd", p) == 0 && load_fails("bad", "not a regular file"),
	   "symlinked kernel is rejected");
	unlink(p);
	ok(mkdir(p, 0755) == 0 && load_fails("bad", "not a regular file"),
	   "directory as kernel is rejected");
	rmdir(p);
	write_file(p, "", 0644);
	ok(load_fails("bad", "is empty"), "empty kernel is rejected");
	free(p);

	/* A template directory that is a symlink (to a good one) is refused. */
	p = tpath("linked", NULL);
	q = tpath("tiny", NULL);
	ok(symlink(q, p) == 0 && load_fails("linked", "Not a directory"),
	   "symlinked template directory is rejected");
	unlink(p);
	free(p);
	free(q);
	p = tpath("bad", NULL);
	omr_rm_rf_at(AT_FDCWD, p);
	free(p);
}

static void test_list_remove(void)
{
	struct omr_template **v = NULL;
	struct omr_err *err = NULL;
	size_t n = 99;
	char *p;
	int r;

	make_template("zeta", good_conf);
	make_template("alpha", good_conf);
	make_template("broken", "kernel=nothere\ninitrd=initrd.img\n");
	p = omr_strdup_printf("%s/state/templates/.tiny.build.abc", root);
	mkdir(p, 0700);
	free(p);
	r = omr_template_list(cfg, &v, &n, &err);
	p = omr_strdup_printf("%s/state/templates/.tiny.build.abc", root);
	rmdir(p);
	free(p);
	ok(r == 0 && n == 3, "list finds the 3 loadable templates (n=%zu)", n);
	ok(n == 3 && !strcmp(v[0]->name, "alpha") && !strcmp(v[1]->name, "tiny") &&
	   !strcmp(v[2]->name, "zeta"), "list is sorted by name");
	omr_template_list_free(v, n);

	r = omr_template_remove(cfg, "zeta", 0, &err);
	is_int(r, 0, "remove zeta%s%s", err ? ": " : "", err ? err->msg : "");
	omr_err_free(&err);
	p = tpath("zeta", NULL);
	ok(access(p, F_OK) < 0 && errno == ENOENT, "zeta's directory is gone");
	free(p);
	r = omr_template_remove(cfg, "zeta", 0, &err);
	ok(r == -ENOENT && err && err->errnum == ENOENT, "removing it again is ENOENT");
	omr_err_free(&err);
	r = omr_template_remove(cfg, "broken", 0, &err);
	is_int(r, 0, "a broken template can be removed");
	omr_err_free(&err);
	r = omr_template_remove(cfg, "../x", 0, &err);
	is_int(r, -EINVAL, "remove refuses a bad name");
	omr_err_free(&err);
	r = omr_template_list(cfg, &v, &n, &err);
	ok(r == 0 && n == 2, "list after removal has 2 (n=%zu)", n);
	omr_template_list_free(v, n);
}

/* ---- building with fake recipes ---- */

struct progress_log {
	char lines[1024];
};

static void on_progress(void *user, const char *what)
{
	struct progress_log *l = user;
	size_t n = strlen(l->lines);
	snprintf(l->lines + n, sizeof(l->lines) - n, "%s|", what);
}

static void write_recipe(const char *name, const char *body)
{
	char *d = omr_strdup_printf("%s/recipes/%s", root, name);
	char *p = omr_strdup_printf("%s/recipe", d);
	char *text = omr_strdup_printf("#!/bin/sh\nset -e\n%s", body);
	struct omr_err *err = NULL;

	omr_mkdir_p(d, 0755, &err);
	write_file(p, text, 0755);
	free(text);
	free(p);
	free(d);
}

static int leftovers(void)
{
	char *p = omr_strdup_printf("%s/state/templates", root);
	DIR *d = opendir(p);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		if (strstr(de->d_name, ".build.") || strstr(de->d_name, ".old."))
			n++;
	if (d)
		closedir(d);
	free(p);
	return n;
}

static const char make_files[] =
	"echo 'progress: making kernel'\n"
	"printf kernel >\"$OUT/vmlinuz\"\n"
	"echo 'progress: making initrd'\n"
	"printf initrd >\"$OUT/initrd.img\"\n"
	"printf 'kernel=vmlinuz\\ninitrd=initrd.img\\nkernel_version=v2\\ncmdline=\\n' >\"$OUT/template.conf\"\n";

static void test_build(void)
{
	struct progress_log log = { "" };
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	char *p, *text = NULL;
	uint64_t t0;
	int r;

	/* Fds this test inherited without CLOEXEC (from make, the shell, ...)
	 * pass on to the recipe, but they are not ours to judge. */
	char inherited[512] = " ";
	for (int fd = 3; fd < 1024; fd++) {
		int fl = fcntl(fd, F_GETFD);
		size_t n = strlen(inherited);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			snprintf(inherited + n, sizeof(inherited) - n, "%d ", fd);
	}

	setenv("OMR_TEST_SECRET", "leak", 1);
	write_recipe("good",
		     "VER=1\n"
		     "env >\"$OUT/env.txt\"\n"
		     "ls -l /proc/$$/fd/ >\"$OUT/fds.txt\"\n"
		     "pwd >\"$OUT/pwd.txt\"\n"
		     "sleep 1000 &\n"  /* left running: the build must not wait for it */
		     "exec </dev/null\n"
		     "cat >/dev/null\n"
		     "echo 'progress: making kernel'\n"
		     "printf kernel >\"$OUT/vmlinuz\"\n"
		     "echo 'progress: making initrd'\n"
		     "printf initrd >\"$OUT/initrd.img\"\n"
		     "printf 'kernel=vmlinuz\\ninitrd=initrd.img\\nkernel_version=v1\\ncmdline=\\n"
		     "memory_mb=128\\n' >\"$OUT/template.conf\"\n");
	t0 = omr_now_ms();
	r = omr_template_build(cfg, "good", on_progress, &log, &err);
	is_int(r, 0, "good recipe builds%s%s", err ? ": " : "", err ? err->msg : "");
	omr_err_free(&err);
	ok(omr_now_ms() - t0 < 5000, "build does not wait for the recipe's background job");
	ok(strstr(log.lines, "running recipe|making kernel|making initrd|validating|installing|") != NULL,
	   "progress lines reach the callback (%s)", log.lines);
	r = omr_template_load(cfg, "good", &t, &err);
	ok(r == 0 && t && t->memory_mb == 128 && !strcmp(t->kernel_version, "v1"),
	   "built template loads");
	ok(t && t->built_at > 0 && t->size_bytes > 12, "built_at and size recorded");
	omr_template_free(t);
	t = NULL;
	omr_err_free(&err);
	p = tpath("good", "template.conf");
	omr_read_file_at(AT_FDCWD, p, 4096, &text, NULL, NULL);
	ok(text && strstr(text, "name=good\n") && strstr(text, "built_at=") &&
	   strstr(text, "size_bytes="), "template.conf stamped with name, built_at, size_bytes");
	free(text);
	text = NULL;
	free(p);
	p = tpath("good", "env.txt");
	omr_read_file_at(AT_FDCWD, p, 65536, &text, NULL, NULL);
	ok(text && strstr(text, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
	   "recipe gets a clean PATH");
	ok(text && strstr(text, "\nOUT=/") && strstr(text, "/.good.build.") &&
	   strstr(text, "\nCACHE=/") && strstr(text, "/omnirun-agent\n"),
	   "recipe gets OUT, CACHE and AGENT");
	ok(text && !strstr(text, "OMR_TEST_SECRET"), "recipe does not inherit our environment");
	free(text);
	text = NULL;
	free(p);
	p = tpath("good", "fds.txt");
	omr_read_file_at(AT_FDCWD, p, 4096, &text, NULL, NULL);
	/* The shell's own script fd aside, nothing of ours may show: not the
	 * lock, not the templates directory, no pipe beyond stdout/stderr. */
	{
		int leak = 0, lines = 0, fds[64];
		char *targets[64], *fd2 = "";
		char *save = NULL;
		for (char *l = strtok_r(text ? text : (char[]){ 0 }, "\n", &save); l && lines < 64;
		     l = strtok_r(NULL, "\n", &save)) {
			char *arrow = strstr(l, " -> "), *num;
			if (!arrow)
				continue;
			*arrow = 0;
			if (!(num = strrchr(l, ' ')))
				continue;
			fds[lines] = atoi(num + 1);
			targets[lines] = arrow + 4;
			if (fds[lines] == 2)
				fd2 = targets[lines];
			lines++;
		}
		/* The shell keeps a copy of stdout (same pipe as stderr) while
		 * it redirects; any other pipe, the lock or the directory
		 * would be ours. */
		for (int i = 0; i < lines; i++) {
			char pat[16];
			snprintf(pat, sizeof(pat), " %d ", fds[i]);
			if (fds[i] <= 2 || strstr(inherited, pat))
				continue;
			if (strstr(targets[i], ".lock") || strstr(targets[i], "/state/templates") ||
			    (strstr(targets[i], "pipe:") && strcmp(targets[i], fd2))) {
				fprintf(stderr, "# leaked fd %d -> %s\n", fds[i], targets[i]);
				leak = 1;
			}
		}
		ok(lines >= 3 && !leak, "recipe inherits none of our fds");
	}
	free(text);
	text = NULL;
	free(p);
	p = omr_strdup_printf("%s/cache", root);
	is_int(access(p, F_OK), 0, "cache directory created");
	free(p);
	is_int(leftovers(), 0, "no build directory left behind");

	/* A rebuild replaces the old one. */
	write_recipe("good", make_files);
	r = omr_template_build(cfg, "good", NULL, NULL, &err);
	is_int(r, 0, "rebuild succeeds%s%s", err ? ": " : "", err ? err->msg : "");
	omr_err_free(&err);
	p = tpath("good", "env.txt");
	ok(access(p, F_OK) < 0, "rebuild replaced the whole directory");
	free(p);
	is_int(leftovers(), 0, "no old directory left behind");

	/* A failing recipe: error has its last lines, the old build stays. */
	write_recipe("good",
		     "i=1; while [ $i -le 15 ]; do echo \"output line $i\"; i=$((i+1)); done\n"
		     "echo 'going to fail' >&2\n"
		     "exit 3\n");
	r = omr_template_build(cfg, "good", NULL, NULL, &err);
	ok(r < 0 && err && strstr(err->msg, "exit status 3"), "failing recipe reports its status");
	ok(err && strstr(err->msg, "going to fail") && strstr(err->msg, "output line 15") &&
	   !strstr(err->msg, "output line 5\n"), "error carries the last lines only");
	if (err)
		fprintf(stderr, "# %s\n", err->msg);
	omr_err_free(&err);
	is_int(leftovers(), 0, "failed build removed");
	r = omr_template_load(cfg, "good", &t, &err);
	is_int(r, 0, "previous build still loads after a failed build");
	omr_template_free(t);
	t = NULL;
	omr_err_free(&err);

	/* A recipe that succeeds but leaves no initrd. */
	write_recipe("good", "printf k >\"$OUT/vmlinuz\"\n"
			     "printf 'kernel=vmlinuz\\ninitrd=initrd.img\\n' >\"$OUT/template.conf\"\n");
	r = omr_template_build(cfg, "good", NULL, NULL, &err);
	ok(r < 0 && err && strstr(err->msg, "invalid template") && strstr(err->msg, "initrd"),
	   "incomplete output is refused");
	omr_err_free(&err);
	is_int(leftovers(), 0, "refused build removed");

	/* Killed by a signal. */
	write_recipe("good", "kill -9 $$\n");
	r = omr_template_build(cfg, "good", NULL, NULL, &err);
	ok(r < 0 && err && strstr(err->msg, "killed by signal 9"), "recipe killed by a signal");
	omr_err_free(&err);

	/* Recipes that cannot run. */
	r = omr_template_build(cfg, "nosuch", NULL, NULL, &err);
	ok(r == -ENOENT && err && strstr(err->msg, "no recipe"), "missing recipe is ENOENT");
	omr_err_free(&err);
	write_recipe("noexec", make_files);
	p = omr_strdup_printf("%s/recipes/noexec/recipe", root);
	chmod(p, 0644);
	r = omr_template_build(cfg, "noexec", NULL, NULL, &err);
	ok(r < 0 && err && strstr(err->msg, "not executable"), "non-executable recipe refused");
	omr_err_free(&err);
	chmod(p, 0777);
	r = omr_template_build(cfg, "noexec", NULL, NULL, &err);
	ok(r < 0 && err && strstr(err->msg, "writable by group or others"),
	   "world-writable recipe refused");
	omr_err_free(&err);
	free(p);
	r = omr_template_build(cfg, "Bad", NULL, NULL, &err);
	is_int(r, -EINVAL, "build refuses a bad name");
	omr_err_free(&err);
}

/* INI recipes: parsed whole, each mistake named. */
static void recipe_fails(const char *text, const char *want)
{
	char *p = omr_strdup_printf("%s/r.recipe", root);
	struct omr_err *err = NULL;
	struct recipe r;

	write_file(p, text, 0644);
	is_int(tpl_recipe_parse(p, &r, &err) < 0, 1, "recipe refused: %s", want);
	ok(err && strstr(err->msg, want) != NULL, "  error names it: %s", err ? err->msg : "(none)");
	is_int(omr_err_kind(err), OMR_E_USAGE, "  a usage error");
	omr_err_free(&err);
	free(p);
}

static void test_recipes(void)
{
	char *p = omr_strdup_printf("%s/r.recipe", root), *f = omr_strdup_printf("%s/x.txt", root);
	struct omr_err *err = NULL;
	struct recipe r;

	write_file(f, "x\n", 0644);
	write_file(p, "# a comment\n[template]\nsuite = bookworm\npackages = python3 git\n"
		   "    jq\nnpm = tsx@4.19.2 @scope/pkg@1.0.0\ncpus = 2\nmemory_mb = 8192\n"
		   "[env]\nLANG = C.UTF-8\n[files]\n/etc/x = x.txt\n[services]\ndb = /bin/true\n",
		   0644);
	is_int(tpl_recipe_parse(p, &r, &err), 0, "a good recipe parses");
	is_str(r.suite, "bookworm", "  suite");
	is_str(r.packages, "python3 git jq", "  packages over two lines");
	is_str(r.npm, "tsx@4.19.2 @scope/pkg@1.0.0", "  npm");
	is_int((int)r.cpus, 2, "  cpus");
	is_int((int)r.memory_mb, 8192, "  memory");
	is_str(r.workdir, "/workspace", "  workdir defaults to /workspace");
	is_int((int)r.nenv, 1, "  one env entry");
	is_str(r.nenv ? r.env[0] : NULL, "LANG=C.UTF-8", "  env");
	is_str(r.nfiles ? r.files_src[0] : NULL, f, "  file source relative to the recipe");
	is_str(r.nservices ? r.services[0] : NULL, "/bin/true", "  service");
	tpl_recipe_clear(&r);
	ok(tpl_recipe_is_ini(p), "an INI recipe is not a script");
	write_file(p, "#!/bin/sh\n", 0755);
	ok(!tpl_recipe_is_ini(p), "a #! recipe is a script");

	recipe_fails("[template]\nsuite = bookworm\npackages = jq\ncolour = blue\n",
		     "unknown key 'colour' in [template]");
	recipe_fails("[template]\nsuite = bookworm\n", "[template] needs 'packages'");
	recipe_fails("[template]\npackages = jq\n", "[template] needs 'suite'");
	recipe_fails("suite = bookworm\n", "outside a section");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\n[other]\na = b\n",
		     "unknown section [other]");
	recipe_fails("[template]\nsuite = bookworm\nsuite = trixie\npackages = jq\n",
		     "key 'suite' given twice");
	recipe_fails("[template]\nsuite = bookworm\npackages = Bad_Name\n",
		     "invalid Debian package name 'Bad_Name'");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\nnpm = tsx\n",
		     "must be NAME@VERSION");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\ncpus = 0\n", "cpus");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\nworkdir = rel\n",
		     "invalid workdir");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\n[files]\n/etc/y = nope.txt\n",
		     "nope.txt for /etc/y is not a readable file");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\n[files]\nrel = x.txt\n",
		     "must be an absolute path");
	recipe_fails("[template]\nsuite = bookworm\npackages = jq\n[env]\n1X = y\n",
		     "invalid environment variable '1X'");
	free(p);
	free(f);
}

static char *identity(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return omr_xstrdup("");
	return omr_strdup_printf("%llu:%llu:%lld:%lld%09ld", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino, (long long)st.st_size,
				 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* 1 when t's snapshot fits (cpus 2, 256 MB, disk 512), else 0 with the
 * reason checked against want. */
static int fits(const struct omr_template *t, unsigned cpus, const char *want)
{
	struct omr_snapshot *s = NULL;
	char *why = NULL;
	int r = omr_snapshot_find(cfg, t, "tcg", cpus, 256, 512, &s, &why);
	int good = want ? (r == 0 && why && strstr(why, want)) : (r == 1 && s);

	if (!good)
		fprintf(stderr, "# snapshot: r=%d why=%s\n", r, why ? why : "(none)");
	omr_snapshot_free(s);
	free(why);
	return good;
}

/* A hand-made snapshot: a RAM file of the right size, a state and its
 * SHA-256, identities of a fake QEMU and the template's files. */
static void test_snapshot_fit(void)
{
	struct omr_template *t = NULL;
	struct omr_err *err = NULL;
	char *dir, *p, *qemu, *conf, *qid, *kid, *iid, *fw, *fid, *sum;
	FILE *f;

	make_template("snap", good_conf);
	if (omr_template_load(cfg, "snap", &t, &err) < 0) {
		fprintf(stderr, "%s\n", err->msg);
		exit(99);
	}
	/* A QEMU prefix of its own: bin/ and share/qemu/qboot.rom, the
	 * firmware a clone must boot like its template. */
	p = omr_strdup_printf("%s/bin", root);
	mkdir(p, 0755);
	free(p);
	p = omr_strdup_printf("%s/share", root);
	mkdir(p, 0755);
	free(p);
	p = omr_strdup_printf("%s/share/qemu", root);
	mkdir(p, 0755);
	free(p);
	qemu = omr_strdup_printf("%s/bin/qemu-system-x86_64", root);
	write_file(qemu, "#!/bin/sh\n", 0755);
	fw = omr_strdup_printf("%s/share/qemu/qboot.rom", root);
	write_file(fw, "qboot\n", 0644);
	free(cfg->qemu);
	cfg->qemu = omr_xstrdup(qemu);
	ok(fits(t, 2, "has no snapshot"), "snapshot: none is said");
	dir = tpath("snap", "snapshot");
	mkdir(dir, 0755);
	p = omr_strdup_printf("%s/ram", dir);
	f = fopen(p, "w");
	fclose(f);
	truncate(p, 256 << 20);
	free(p);
	p = omr_strdup_printf("%s/state", dir);
	write_file(p, "device state\n", 0644);
	free(p);
	qid = identity(qemu);
	kid = identity(t->kernel);
	iid = identity(t->initrd);
	fid = identity(fw);
	/* The real checksum, computed as sbx-template does. */
	{
		char *cmd = omr_strdup_printf("sha256sum %s/state", dir), line[128] = "";
		FILE *pp = popen(cmd, "r");
		if (!pp || !fgets(line, sizeof(line), pp))
			exit(99);
		pclose(pp);
		line[64] = 0;
		free(cmd);
		sum = omr_xstrdup(line);
	}
#define SNAP_CONF_FMT "qemu=%s\nqemu_id=%s\nqemu_version=QEMU emulator version 10.0.2\n" \
		      "firmware=%s\nfirmware_id=%s\n" \
		      "kernel_id=%s\ninitrd_id=%s\naccel=tcg\ncpus=2\nmemory_mb=256\n" \
		      "disk_mb=512\nstate_size=13\nstate_sha256=%s\nmade_ms=12\nargs=x\n"
	conf = omr_strdup_printf(SNAP_CONF_FMT, qemu, qid, fw, fid, kid, iid, sum);
	p = omr_strdup_printf("%s/snapshot.conf", dir);
	write_file(p, conf, 0644);
	ok(fits(t, 2, NULL), "snapshot: a whole one that matches fits");
	ok(fits(t, 1, "the snapshot has 2 vCPUs, 256 MB memory and a 512 MB disk"),
	   "snapshot: another vCPU count boots cold, and says the snapshot's shape");
	/* Corrupt state: same size, one byte changed. */
	{
		char *sp = omr_strdup_printf("%s/state", dir);
		write_file(sp, "device stat3\n", 0644);
		ok(fits(t, 2, "truncated or corrupt"), "snapshot: a corrupt state is refused");
		write_file(sp, "device\n", 0644);
		ok(fits(t, 2, "truncated or corrupt"), "snapshot: a truncated state is refused");
		write_file(sp, "device state\n", 0644);
		free(sp);
	}
	ok(fits(t, 2, NULL), "snapshot: put back, it fits again");
	{
		char *rp = omr_strdup_printf("%s/ram", dir);
		truncate(rp, 1 << 20);
		ok(fits(t, 2, "RAM file is missing or truncated"), "snapshot: a truncated RAM file is refused");
		truncate(rp, 256 << 20);
		free(rp);
	}
	/* Another initrd (a rebuilt agent), then another QEMU (an upgrade). */
	{
		char *ip = omr_xstrdup(t->initrd);
		rename(ip, "/tmp/omr-initrd-aside") == 0 ? (void)0 : (void)0;
		write_file(ip, "initrd v2\n", 0644);
		ok(fits(t, 2, "another initrd"), "snapshot: another initrd's is refused");
		rename("/tmp/omr-initrd-aside", ip);
		free(ip);
	}
	ok(fits(t, 2, NULL), "snapshot: the initrd back, it fits again");
	/* Another firmware (its ROM is in the saved state). */
	write_file(fw, "qboot v2, a longer ROM\n", 0644);
	ok(fits(t, 2, "another firmware"), "snapshot: another firmware's is refused");
	free(fid);
	fid = identity(fw);
	free(conf);
	conf = omr_strdup_printf(SNAP_CONF_FMT, qemu, qid, fw, fid, kid, iid, sum);
	write_file(p, conf, 0644);
	ok(fits(t, 2, NULL), "snapshot: made with that firmware, it fits");
	write_file(qemu, "#!/bin/sh\n# upgraded\n", 0755);
	ok(fits(t, 2, "another QEMU binary"), "snapshot: another QEMU's is refused");
	ok(omr_snapshot_qemu_ok("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)") &&
		   omr_snapshot_qemu_ok("QEMU emulator version 8.2.0") &&
		   !omr_snapshot_qemu_ok("QEMU emulator version 8.1.5") &&
		   !omr_snapshot_qemu_ok("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)") &&
		   !omr_snapshot_qemu_ok(NULL),
	   "snapshot: QEMU 8.2 and later clone, 7.2 does not");
	free(p);
	free(conf);
	free(qid);
	free(kid);
	free(iid);
	free(fid);
	free(fw);
	free(sum);
	free(dir);
	free(qemu);
	omr_template_free(t);
}

int main(void)
{
	struct omr_err *err = NULL;
	char *p;

	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 99;
	}
	p = omr_strdup_printf("%s/empty.conf", root);
	write_file(p, "", 0644);
	setenv("OMNIRUN_CONF", p, 1);
	free(p);
	p = omr_strdup_printf("%s/state", root);
	setenv("OMNIRUN_STATE_DIR", p, 1);
	free(p);
	p = omr_strdup_printf("%s/cache", root);
	setenv("OMNIRUN_CACHE_DIR", p, 1);
	free(p);
	p = omr_strdup_printf("%s/recipes", root);
	setenv("OMNIRUN_RECIPES_DIR", p, 1);
	free(p);
	setenv("OMNIRUN_LIBEXEC_DIR", root, 1);
	if (omr_config_load(&cfg, &err) < 0) {
		fprintf(stderr, "config: %s\n", err->msg);
		return 99;
	}

	test_names();
	test_load();
	test_bad_templates();
	test_list_remove();
	test_build();
	test_recipes();
	test_snapshot_fit();

	omr_config_free(cfg);
	omr_rm_rf_at(AT_FDCWD, root);
	return done_testing();
}
