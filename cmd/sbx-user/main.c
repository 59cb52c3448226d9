/* sbx-user: accounts and API tokens, for operators (DESIGN.md §7). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "omnirun/acct/acct.h"
#include "omnirun/base/cleanup.h"
#include "omnirun/base/exitcodes.h"
#include "omnirun/base/util.h"

static void usage(void)
{
	printf("Usage: sbx-user add EMAIL [--admin]\n"
	       "       sbx-user token EMAIL [--name NAME] [--admin]\n"
	       "       sbx-user ls [--json]\n"
	       "       sbx-user revoke TOKEN_ID\n"
	       "       sbx-user rm EMAIL\n"
	       "       sbx-user limit EMAIL N|default|none\n"
	       "       sbx-user audit [EMAIL] [--json]\n\n"
	       "Manage the accounts of the REST API (sbx-shim) in the database.\n\n"
	       "  add      add a user\n"
	       "  token    make an API token for a user (made if missing) and print it\n"
	       "           alone on stdout; it is shown this once\n"
	       "  ls       list users, then their tokens (--json: {users, tokens})\n"
	       "  revoke   revoke a token by its id (from ls), at once\n"
	       "  rm       remove a user and every trace of them (tokens, history, audit)\n"
	       "  limit    set a user's concurrent sandbox limit: N, the config's\n"
	       "           default, or none\n"
	       "  audit    print the audit log, of one user or all\n\n"
	       "Options:\n"
	       "  -n, --name NAME  the token's name (token)\n"
	       "  -a, --admin      the user is an administrator (add, token)\n"
	       "  -j, --json       print JSON (ls, audit)\n"
	       "  -h, --help       show this help\n"
	       "  -V, --version    show the version\n\n"
	       "Exit status: 0 ok, 1 failure, 2 usage, 3 no such user or token,\n"
	       "4 the user exists already.\n");
	exit(OMR_EXIT_OK);
}

static void print_ls(json_t *users, json_t *tokens, int json)
{
	size_t i;
	json_t *o;

	if (json) {
		omr_cli_print_json(json_pack("{s:O, s:O}", "users", users, "tokens", tokens));
		return;
	}
	printf("%-6s %-40s %-5s %-8s %6s %5s\n", "ID", "EMAIL", "ADMIN", "LIMIT", "TOKENS", "LIVE");
	json_array_foreach(users, i, o) {
		json_t *lim = json_object_get(o, "maxSandboxes");
		char l[24];

		if (json_is_integer(lim))
			snprintf(l, sizeof(l), "%lld", (long long)json_integer_value(lim));
		else
			snprintf(l, sizeof(l), "%s", json_string_value(lim));
		printf("%-6lld %-40s %-5s %-8s %6lld %5lld\n",
		       (long long)json_integer_value(json_object_get(o, "id")),
		       json_string_value(json_object_get(o, "email")),
		       json_is_true(json_object_get(o, "admin")) ? "yes" : "no", l,
		       (long long)json_integer_value(json_object_get(o, "tokens")),
		       (long long)json_integer_value(json_object_get(o, "liveSandboxes")));
	}
	if (!json_array_size(tokens))
		return;
	printf("\n%-8s %-40s %-18s %-20s %s\n", "TOKEN_ID", "EMAIL", "PREFIX", "LAST_USED", "NAME");
	json_array_foreach(tokens, i, o) {
		json_t *lu = json_object_get(o, "lastUsedAt");
		char when[32] = "never";
		_cleanup_free_ char *name = omr_str_escape_line(
			json_string_value(json_object_get(o, "name")));

		if (json_is_integer(lu))
			omr_format_time(json_integer_value(lu), when);
		printf("%-8lld %-40s %-18s %-20s %s\n",
		       (long long)json_integer_value(json_object_get(o, "id")),
		       json_string_value(json_object_get(o, "email")),
		       json_string_value(json_object_get(o, "prefix")), when, name);
	}
}

static void print_audit(json_t *a, int json)
{
	size_t i;
	json_t *o;

	if (json) {
		omr_cli_print_json(json_incref(a));
		return;
	}
	json_array_foreach(a, i, o) {
		const char *t = json_string_value(json_object_get(o, "target"));
		const char *d = json_string_value(json_object_get(o, "detail"));
		printf("%s %s %s%s%s%s%s\n", json_string_value(json_object_get(o, "at")),
		       json_string_value(json_object_get(o, "email")),
		       json_string_value(json_object_get(o, "action")), t ? " " : "", t ? t : "",
		       d ? " " : "", d ? d : "");
	}
}

static int64_t parse_limit(const char *s)
{
	if (!strcmp(s, "default"))
		return OMR_LIMIT_DEFAULT;
	if (!strcmp(s, "none"))
		return OMR_LIMIT_NONE;
	return (int64_t)omr_cli_number(s, 0, 100000, "limit");
}

/* Runs verb on db; returns 0 or < 0 with *err. */
static int run(struct omr_db *db, const struct omr_config *c, const char *verb, char **args,
	       int nargs, const char *name, int admin, int json, struct omr_err **err)
{
	struct omr_user u;
	json_t *a = NULL, *b = NULL;
	int64_t id;

#define NEED(n) do { if (nargs != (n)) omr_cli_usage_error(OMR_EXIT_USAGE, \
		"'%s' takes %d argument%s", verb, (n), (n) == 1 ? "" : "s"); } while (0)
	if (!strcmp(verb, "add")) {
		NEED(1);
		if (omr_user_add(db, args[0], admin, &u, err) < 0)
			return -1;
		return omr_audit(db, u.id, "user_added", u.email, admin ? "admin" : NULL, err);
	}
	if (!strcmp(verb, "token")) {
		char *tok = NULL;
		NEED(1);
		if (omr_user_ensure(db, args[0], admin, OMR_LIMIT_DEFAULT, &u, err) < 0)
			return -1;
		if (admin && !u.admin && omr_user_set_admin(db, u.email, 1, err) < 0)
			return -1;
		if (omr_token_create(db, u.id, name ? name : "cli", &tok, &id, err) < 0)
			return -1;
		if (omr_audit(db, u.id, "token_created", NULL, "by the operator", err) < 0) {
			omr_token_revoke(db, id, 0, NULL, NULL);
			explicit_bzero(tok, strlen(tok));
			free(tok);
			return -1;
		}
		printf("%s\n", tok);
		explicit_bzero(tok, strlen(tok));
		free(tok);
		return 0;
	}
	if (!strcmp(verb, "ls")) {
		NEED(0);
		if (omr_owner_sync(db, c, 0, NULL) < 0) {
			/* Counts may be stale; the list is still right. */
		}
		if (omr_user_list(db, &a, err) < 0 || omr_token_list(db, 0, &b, err) < 0) {
			json_decref(a);
			return -1;
		}
		print_ls(a, b, json);
		json_decref(a);
		json_decref(b);
		return 0;
	}
	if (!strcmp(verb, "revoke")) {
		int64_t owner = 0;
		NEED(1);
		id = (int64_t)omr_cli_number(args[0], 1, INT64_MAX, "token id");
		if (omr_token_revoke(db, id, 0, &owner, err) < 0)
			return -1;
		return omr_audit(db, owner, "token_revoked", args[0], "by the operator", err);
	}
	if (!strcmp(verb, "rm")) {
		NEED(1);
		return omr_user_rm(db, args[0], err);
	}
	if (!strcmp(verb, "limit")) {
		NEED(2);
		int64_t lim = parse_limit(args[1]);
		if (omr_user_set_limit(db, args[0], lim, err) < 0 ||
		    omr_user_get(db, args[0], &u, err) < 0)
			return -1;
		return omr_audit(db, u.id, "limit_set", NULL, args[1], err);
	}
	if (!strcmp(verb, "audit")) {
		if (nargs > 1)
			omr_cli_usage_error(OMR_EXIT_USAGE, "'audit' takes at most one argument");
		if (nargs == 1 && omr_user_get(db, args[0], &u, err) < 0)
			return -1;
		if (omr_audit_list(db, nargs ? u.id : 0, &a, err) < 0)
			return -1;
		print_audit(a, json);
		json_decref(a);
		return 0;
	}
	omr_cli_usage_error(OMR_EXIT_USAGE, "unknown command '%s'", verb);
#undef NEED
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "admin", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct omr_err *err = NULL;
	struct omr_config *c;
	struct omr_db *db = NULL;
	const char *name = NULL;
	int admin = 0, json = 0, ch, rc;

	omr_cli_init(argv[0]);
	/* Options may follow the command and its arguments. */
	while ((ch = getopt_long(argc, argv, "n:ajhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': name = optarg; break;
		case 'a': admin = 1; break;
		case 'j': json = 1; break;
		case 'h': usage(); break;
		case 'V': omr_cli_version(); break;
		default: omr_cli_usage_error(OMR_EXIT_USAGE, NULL);
		}
	}
	if (optind >= argc)
		omr_cli_usage_error(OMR_EXIT_USAGE, "a command is needed");
	c = omr_cli_config();
	if (omr_db_open(c, NULL, &db, &err) < 0) {
		omr_config_free(c);
		return omr_cli_fail(&err);
	}
	rc = run(db, c, argv[optind], argv + optind + 1, argc - optind - 1, name, admin, json, &err);
	omr_db_close(db);
	omr_config_free(c);
	return rc < 0 ? omr_cli_fail(&err) : OMR_EXIT_OK;
}
