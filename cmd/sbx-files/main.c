/* sbx-files: move files in and out of a sandbox, and look around in it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omnirun/base/cleanup.h"
#include "cli.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/client/files.h"
#include "omnirun/base/json.h"
#include "omnirun/base/util.h"

static void usage(void)
{
	printf("Usage: sbx-files [--json] ID COMMAND [options] ARGS\n\n"
	       "Commands:\n"
	       "  put [-m MODE] [-p] SRC DST  upload SRC (host, - for stdin) to DST (guest)\n"
	       "  get [-f] SRC DST            download SRC (guest) to DST (host, - for stdout;\n"
	       "                              -f replaces a read-only DST)\n"
	       "  ls [-l] PATH                list a directory\n"
	       "  stat PATH                   show a file's metadata\n"
	       "  rm [-r] PATH                remove a file (-r: a tree)\n"
	       "  mkdir [-p] PATH             make a directory (-p: with parents)\n"
	       "  mv SRC DST                  rename within the guest\n"
	       "  watch [-r] PATH             print changes under PATH until interrupted\n\n"
	       "Options:\n"
	       "  -j, --json     JSON output (ls, stat, watch)\n"
	       "  -h, --help     show this help\n"
	       "  -V, --version  show the version\n\n"
	       "Modes are preserved both ways.  Files stream in chunks; a download is\n"
	       "written to a temporary file and renamed into place when complete, except\n"
	       "onto a device or FIFO, which is written in place; a symbolic link or a\n"
	       "directory as DST is refused.  Downloads stop at the size the guest\n"
	       "announced, at [files] max_download_mb, and before the host's filesystem\n"
	       "keeps less than [files] host_reserve_mb free; a call that moves nothing\n"
	       "for [files] timeout seconds fails.\n\n"
	       "Exit status: 0 ok, 1 failure (also a read-only DST without -f), 2 usage,\n"
	       "3 no such sandbox or file, 4 sandbox not running, 5 a size or space\n"
	       "limit stopped the transfer, 6 the guest did not answer in time.\n");
	exit(OMR_EXIT_OK);
}

static int json_out;

/* Prints a guest-chosen name, escaped: it must not drive our terminal. */
static void print_name(const char *prefix, const char *name, const char *suffix)
{
	_cleanup_free_ char *safe = omr_str_escape_ctl(name ? name : "?");

	printf("%s%s%s\n", prefix, safe, suffix);
}

static void print_entry(json_t *e, int lng)
{
	const char *type = json_string_value(json_object_get(e, "type"));
	_cleanup_free_ char *t = omr_str_escape_ctl(type ? type : "?"), *head = NULL, *name = NULL;
	char when[32];

	omr_json_get_bytes(e, "name", &name); /* the exact bytes, escaped below */
	if (!lng) {
		print_name("", name, type && !strcmp(type, "dir") ? "/" : "");
		return;
	}
	omr_format_time(json_integer_value(json_object_get(e, "mtime")), when);
	head = omr_strdup_printf("%-7s %04llo %12lld %s ", t,
				 (unsigned long long)json_integer_value(json_object_get(e, "mode")) & 07777,
				 json_integer_value(json_object_get(e, "size")), when);
	print_name(head, name, "");
}

static int print_event(void *user, json_t *ev)
{
	(void)user;
	if (json_out) {
		char *s = omr_cli_json_dumps(ev, JSON_COMPACT);
		printf("%s\n", s ? s : "{}");
		free(s);
	} else {
		const char *event = json_string_value(json_object_get(ev, "event"));
		_cleanup_free_ char *path = NULL, *line = NULL;

		omr_json_get_bytes(ev, "path", &path);
		line = omr_strdup_printf("%s%s%s", event ? event : "?", path ? " " : "",
					 path ? path : "");
		print_name("", line, "");
	}
	return fflush(stdout) == 0 ? 0 : -EPIPE;
}

static int get_to(struct omr_config *c, const char *id, const char *src, const char *dst,
		  int force, struct omr_err **err)
{
	struct omr_download_opts o = { .force = force, .sig_fd = omr_cli_signalfd(0) };
	int rc;

	if (!strcmp(dst, "-"))
		rc = omr_files_get_ex(c, id, src, 1, o.sig_fd, NULL, NULL, err);
	else
		rc = omr_files_download(c, id, src, dst, &o, NULL, err);
	if (o.sig_fd >= 0)
		close(o.sig_fd);
	return rc;
}

static int put_from(struct omr_config *c, const char *id, const char *src, const char *dst,
		    int mode, int parents, struct omr_err **err)
{
	struct stat st;
	int fd = 0, rc;

	if (strcmp(src, "-")) {
		fd = open(src, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return omr_err_set(err, omr_err_kind_missing(errno), errno, "cannot open %s", src);
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			close(fd);
			return omr_err_set(err, OMR_E_FAIL, EISDIR, "cannot upload %s", src);
		}
		if (mode < 0)
			mode = (int)(st.st_mode & 07777);
	}
	rc = omr_files_put(c, id, fd, dst, mode, parents, NULL, err);
	if (fd > 0)
		close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_err *err = NULL;
	struct omr_config *c;
	const char *id, *cmd;
	int ch, flag = 0, force = 0, mode = -1, rc = 0, nargs;
	json_t *out = NULL;

	omr_cli_init(argv[0]);
	while ((ch = getopt_long(argc, argv, "+jhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json_out = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (argc - optind < 2)
		omr_cli_usage_error(OMR_EXIT_USAGE, "expected a sandbox id and a command");
	id = argv[optind++];
	cmd = argv[optind];
	/* Options of the command (-m MODE, -p, -l, -r) come after it. */
	optind++;
	while ((ch = getopt(argc, argv, "+m:prlf")) != -1) {
		switch (ch) {
		case 'm': mode = (int)strtol(optarg, NULL, 8);
			if (mode <= 0 || mode > 07777 || strspn(optarg, "01234567") != strlen(optarg))
				omr_cli_usage_error(OMR_EXIT_USAGE, "invalid mode '%s'", optarg);
			break;
		case 'p': case 'r': case 'l': flag = 1; break;
		case 'f': force = 1; break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	nargs = argc - optind;
	char **a = argv + optind;
	struct { const char *name; int nargs; } cmds[] = {
		{ "put", 2 }, { "get", 2 }, { "ls", 1 }, { "stat", 1 }, { "rm", 1 },
		{ "mkdir", 1 }, { "mv", 2 }, { "watch", 1 },
	};
	size_t k;
	for (k = 0; k < OMR_ARRAY_SIZE(cmds) && strcmp(cmd, cmds[k].name); k++)
		;
	if (k == OMR_ARRAY_SIZE(cmds))
		omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s'", cmd);
	if (nargs != cmds[k].nargs)
		omr_cli_usage_error(OMR_EXIT_USAGE, "%s takes %d argument%s", cmd, cmds[k].nargs,
				    cmds[k].nargs > 1 ? "s" : "");
	c = omr_cli_config();
	if (!strcmp(cmd, "put"))
		rc = put_from(c, id, a[0], a[1], mode, flag, &err);
	else if (!strcmp(cmd, "get"))
		rc = get_to(c, id, a[0], a[1], force, &err);
	else if (!strcmp(cmd, "ls") && (rc = omr_files_list(c, id, a[0], &out, &err)) == 0) {
		if (json_out)
			omr_cli_print_json(out);
		else {
			for (size_t i = 0; i < json_array_size(out); i++)
				print_entry(json_array_get(out, i), flag);
			json_decref(out);
		}
	} else if (!strcmp(cmd, "stat") && (rc = omr_files_stat(c, id, a[0], &out, &err)) == 0) {
		if (json_out)
			omr_cli_print_json(out);
		else {
			print_entry(out, 1);
			json_decref(out);
		}
	} else if (!strcmp(cmd, "rm"))
		rc = omr_files_remove(c, id, a[0], flag, &err);
	else if (!strcmp(cmd, "mkdir"))
		rc = omr_files_mkdir(c, id, a[0], flag, &err);
	else if (!strcmp(cmd, "mv"))
		rc = omr_files_rename(c, id, a[0], a[1], &err);
	else if (!strcmp(cmd, "watch"))
		rc = omr_files_watch(c, id, a[0], flag, omr_cli_signalfd(0), print_event, NULL, &err);
	omr_config_free(c);
	return rc < 0 ? omr_cli_fail(&err) : OMR_EXIT_OK;
}
