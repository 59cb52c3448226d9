/* Users from /etc/passwd and /etc/group, parsed by hand: a static musl
 * binary has no NSS, and the guest's files are all there is. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define MAX_GROUPS 64

/* Strict decimal id (no sign, no spaces, < 2^31). */
static int parse_id(const char *s, unsigned *out)
{
	unsigned long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > 0x7fffffff)
			return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* Splits a passwd/group line into at most n fields at ':'. */
static int split(char *line, char **f, int n)
{
	int i = 0;

	line[strcspn(line, "\n")] = 0;
	f[i++] = line;
	for (char *p = line; *p && i < n; p++)
		if (*p == ':') {
			*p = 0;
			f[i++] = p + 1;
		}
	return i;
}

static void add_groups(struct user_info *u)
{
	_cleanup_fclose_ FILE *f = fopen("/etc/group", "re");
	char *line = NULL, *fld[4];
	size_t cap = 0;
	unsigned gid;

	u->groups = calloc(MAX_GROUPS, sizeof(gid_t));
	if (!u->groups)
		return;
	u->groups[u->ngroups++] = u->gid;
	while (f && u->name && getline(&line, &cap, f) > 0 && u->ngroups < MAX_GROUPS) {
		if (split(line, fld, 4) < 4 || parse_id(fld[2], &gid) < 0 || gid == u->gid)
			continue;
		for (char *m = strtok(fld[3], ","); m; m = strtok(NULL, ","))
			if (!strcmp(m, u->name)) {
				u->groups[u->ngroups++] = gid;
				break;
			}
	}
	free(line);
}

/* Finds the passwd entry by name (name != NULL) or by uid. */
static int passwd_find(const char *name, uid_t uid, struct user_info *u)
{
	_cleanup_fclose_ FILE *f = fopen("/etc/passwd", "re");
	char *line = NULL, *fld[7];
	size_t cap = 0;
	unsigned id, gid;
	int rc = -ENOENT;

	while (f && getline(&line, &cap, f) > 0) {
		if (split(line, fld, 7) < 7 || parse_id(fld[2], &id) < 0 ||
		    parse_id(fld[3], &gid) < 0)
			continue;
		if (name ? strcmp(fld[0], name) != 0 : id != uid)
			continue;
		u->uid = id;
		u->gid = gid;
		u->name = strdup(fld[0]);
		u->home = strdup(*fld[5] ? fld[5] : "/");
		rc = u->name && u->home ? 0 : -ENOMEM;
		break;
	}
	free(line);
	return rc;
}

int user_lookup(const char *spec, struct user_info *u)
{
	unsigned id;
	int rc;

	memset(u, 0, sizeof(*u));
	if (parse_id(spec, &id) == 0) {
		user_lookup_uid(id, u);
		return u->home ? 0 : -ENOMEM;
	}
	rc = passwd_find(spec, 0, u);
	if (rc < 0)
		return rc;
	add_groups(u);
	return 0;
}

void user_lookup_uid(uid_t uid, struct user_info *u)
{
	memset(u, 0, sizeof(*u));
	if (passwd_find(NULL, uid, u) < 0) {
		/* A uid without an entry runs with gid = uid, like Docker. */
		user_info_free(u);
		u->uid = uid;
		u->gid = uid;
		u->home = strdup("/");
	}
	add_groups(u);
}

void user_info_free(struct user_info *u)
{
	free(u->name);
	free(u->home);
	free(u->groups);
	memset(u, 0, sizeof(*u));
}
