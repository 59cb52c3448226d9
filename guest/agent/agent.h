/* Internals of omnirun-agent: the guest's PID 1 and its request server.
 *
 * One process tree: PID 1 (init.c) mounts, loads modules, sets up the data
 * disk (disk.c) and the network (net.c), then forks the server: a
 * single-threaded poll() loop (server.c) that multiplexes streams over one
 * frame connection (conn.c, omnirun/base/proto.h) and gets its work from
 * hooks (ops.c).  Each request op lives in its own file.  No two files use
 * each other (tests/check-agent-deps); what the host has too comes from
 * libcore/base, built for the guest with musl. */
#ifndef OMNIRUN_AGENT_H
#define OMNIRUN_AGENT_H

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "omnirun/base/cleanup.h"
#include "omnirun/base/io.h"
#include "omnirun/base/json.h"
#include "omnirun/base/log.h"
#include "omnirun/base/proto.h"
#include "omnirun/base/spawn.h"
#include "omnirun/base/util.h"

#define AGENT_VERSION "omnirun-agent 0.1"
#define AGENT_PATH_DEFAULT "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- cfg.c: configuration shared by PID 1 and the server ---- */
struct agent_cfg {
	bool pid1;              /* we are the guest's init: shutdown powers off */
	const char *env_file;   /* K=V file merged into every command's env */
	const char *cgroup;     /* cgroup v2 dir for commands, or NULL */
	const char *disk_state; /* "ready", "none" or "failed" */
	const char *data_dir;   /* where the data disk is mounted */
	const char *default_user; /* commands and files without a user run
				     as this one (a template's), else root */
};
extern struct agent_cfg agent_cfg;
/* Reads the omnirun.KEY=VALUE words of /proc/cmdline (PID 1, once). */
void cfg_read_kernel_params(void);
/* The value of omnirun.KEY, or NULL. */
const char *kernel_param(const char *key);

/* ---- util.c ---- */
/* Writes s to an existing file (sysfs, procfs). Returns 0 or -errno. */
int file_write_str(const char *path, const char *s);
/* The directory part of an absolute path; dir + "/" + name.  Malloc'ed. */
char *path_dirname(const char *path);
char *path_join(const char *dir, const char *name);
/* "/dev/vdX" of the virtio disk whose serial (QEMU's serial=) is serial,
 * waiting up to wait_ms for it to appear; NULL if none.  Malloc'ed. */
char *block_by_serial(const char *serial, unsigned wait_ms);

/* ---- req.c: request field parsing; on failure a message is left in e ---- */
struct jerr {
	char msg[256];
};
int jget_str(json_t *o, const char *key, bool required, const char **out, struct jerr *e);
/* A path: key, or key_b64 for bytes that are not UTF-8 (omnirun/base/
 * json.h).  It must be absolute; *out (malloc'ed) is its normalized form
 * (omr_path_clean), the one every check and call sees.  *dir_form (may be
 * NULL) tells whether the path as given named a directory by its form
 * (a trailing "/", "/." or "/.."). */
int jget_path(json_t *o, const char *key, bool required, char **out, bool *dir_form,
	      struct jerr *e);
int jget_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t def,
	     int64_t *out, struct jerr *e);
int jget_bool(json_t *o, const char *key, bool def, bool *out, struct jerr *e);
/* An integer (420 == 0644) or a string of octal digits ("0644"). */
int jget_mode(json_t *o, const char *key, mode_t def, mode_t *out, struct jerr *e);

/* ---- poll.c: the poll set of one round of the loop ---- */
typedef void (*poll_fn)(void *obj, int tag, short revents);
struct pollent {
	poll_fn fn;
	void *obj;
	int tag;
};
struct pollctx {
	struct pollfd *fds;
	struct pollent *ents;
	size_t n, cap;
	uint64_t wake; /* monotonic ms, 0 = none */
};
/* Calls fn(obj, tag, revents) when fd has one of events. */
void poll_add(struct pollctx *pc, int fd, short events, poll_fn fn, void *obj, int tag);
/* Makes the next poll() return no later than when (monotonic ms). */
void poll_wake_at(struct pollctx *pc, uint64_t when);
void poll_reset(struct pollctx *pc);
/* poll(), then the callbacks of the fds that are ready.  0 or -errno. */
int poll_wait(struct pollctx *pc);
void poll_free(struct pollctx *pc);

/* ---- conn.c: the connection to the host, framing, output queue ---- */
enum conn_kind { CONN_FD, CONN_SOCKET, CONN_VIRTIO };
struct conn_hooks {
	void (*frame)(const struct omr_frame_hdr *h, const uint8_t *p); /* each frame */
	void (*up)(void);   /* a host is there (on every reconnect) */
	void (*lost)(void); /* the host went away */
};
/* Serves one connection on fd (CONN_FD), listens on the socket path
 * (CONN_SOCKET) or opens the virtio port named path (CONN_VIRTIO).
 * Returns 0 or -errno. */
int conn_start(enum conn_kind kind, int fd, const char *path, const struct conn_hooks *hooks);
/* Before poll(): the connection's fd, or a wake-up to look for a host. */
void conn_poll(struct pollctx *pc);
/* After poll(): notices a host on the virtio port. */
void conn_after_poll(void);
/* Writes what is queued, as far as the host takes it. */
void conn_flush(void);
bool conn_up(void);
/* True when the output queue is short enough to queue more bulk output. */
bool conn_can_produce(void);
bool conn_flushed(void);
/* CONN_FD: the connection is gone for good; a protocol error happened. */
bool conn_done(void);
bool conn_failed(void);
void send_frame(uint8_t type, uint8_t flags, uint32_t id, const void *p, size_t n);
void send_json(uint8_t type, uint32_t id, json_t *o); /* steals o */
void send_window(uint32_t id, size_t n);
/* {"error", "code", "errno"}; code NULL means omr_proto_code(e). */
json_t *error_json(int e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void send_error(uint32_t id, int e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void send_bad_request(uint32_t id, const struct jerr *e);

/* ---- server.c: the loop, streams, and the hooks that give it work ---- */
struct stream;
struct stream_ops {
	/* DATA, EOF, RESIZE for this stream (WINDOW and SIGNAL are generic). */
	void (*frame)(struct stream *s, const struct omr_frame_hdr *h, const uint8_t *p);
	/* SIGNAL, parsed: sig is 1..64, or 0 for a cancel (an object without
	 * "signal").  NULL: a cancel ends the stream with a "cancelled" error
	 * END, a numbered signal is ignored. */
	void (*signal)(struct stream *s, int sig);
	/* Registers fds and wake-up times before each poll(). */
	void (*poll)(struct stream *s, struct pollctx *pc);
	/* Runs after each poll(): timers, producing output. */
	void (*tick)(struct stream *s);
	/* Frees the stream's resources.  conn_lost: the host went away or the
	 * stream is being torn down before its END. */
	void (*destroy)(struct stream *s, bool conn_lost);
};
struct stream {
	uint32_t id;
	const struct stream_ops *ops;
	uint64_t credit; /* bytes of DATA we may still send */
	bool dead;       /* END sent or torn down; freed after this iteration */
	bool torn;       /* ended abnormally: destroy() cleans up as on loss */
	struct stream *next;
};
/* Allocates size bytes (a struct starting with struct stream), zeroed;
 * NULL (the error END sent) past the limit of open streams. */
struct stream *stream_new(uint32_t id, size_t size, const struct stream_ops *ops);
/* Sends END with o (stolen) and closes the stream. */
void stream_end(struct stream *s, json_t *o);
struct stream *stream_find(uint32_t id);
/* Ends the stream without an END of its own (destroy(conn_lost=true)). */
void stream_teardown(struct stream *s);

/* What the server does besides streams. */
struct server_hooks {
	void (*request)(uint32_t id, json_t *req); /* a REQ opening stream id */
	json_t *(*hello)(void);                     /* the HELLO object (new) */
	void (*start)(void);                        /* before serving */
	void (*poll)(struct pollctx *pc);           /* before each poll() */
	void (*tick)(void);                         /* after it */
	void (*collect)(void);                      /* at the end of a round */
	void (*stop)(void);                         /* after serving */
};
/* Leaves the loop once the output queue is flushed (at most 2 s). */
void server_request_exit(void);
/* Serves until the connection is gone (CONN_FD) or exit is requested.
 * Returns a process exit status. */
int server_run(const struct server_hooks *hooks, enum conn_kind kind, int fd, const char *path);

/* ---- ops.c: the hooks of the agent's server: request dispatch and the
 * small ops ---- */
extern const struct server_hooks agent_hooks;

/* ---- proc.c: started commands, reaping, background output ---- */
struct ring;
struct exec_stream;
struct proc {
	pid_t pid; /* also the process group and session id */
	bool background, pty, running, timed_out, cancelled;
	int status;           /* wait status once !running */
	int fd_in;            /* stdin pipe (pty: a dup of the master) or -1 */
	int fd_out, fd_err;   /* read ends (pty: master, -1) */
	uint64_t start_mono, start_wall, end_mono;
	uint64_t deadline;    /* monotonic ms, 0 = none */
	uint64_t quiet_until; /* after exit: close pipes when quiet past this */
	json_t *what;         /* {"argv"} or {"cmd"} (bounded, for ps) */
	struct ring *ring;    /* background output */
	struct exec_stream *fg;
	char *cg;             /* the command's own cgroup, until released */
	int attached;         /* attach streams referring to us */
	bool dead;
	struct proc *next;
};
#define PROC_LINGER_MS 200

struct proc *proc_new(void);
struct proc *proc_find(pid_t pid);
/* The signalfd handler: reaps children. */
void procs_init(void);
void procs_poll(struct pollctx *pc);
void procs_tick(void);
/* Frees procs marked dead. */
void procs_collect(void);
/* Kills every command we started (the server is exiting). */
void procs_shutdown(void);
/* Orphans a foreground proc (its stream is gone); kills it if running. */
void proc_release(struct proc *p, bool kill_group);
void proc_signal(struct proc *p, int sig);
/* {"exit_code","signal","timed_out","duration_ms"} */
json_t *proc_status_json(const struct proc *p);
size_t procs_count(void);
void proc_close_fd(int *fd);
/* The proc named by req's "pid"; else sends the error END, returns -1. */
int proc_lookup(uint32_t id, json_t *req, struct proc **out);
void op_ps(uint32_t id, json_t *req);
void op_kill(uint32_t id, json_t *req);

/* ---- cgroup.c: one cgroup per command (with agent_cfg.cgroup) ---- */
/* A fresh agent_cfg.cgroup/c<N>, malloc'ed; NULL without agent_cfg.cgroup
 * or on failure (logged). */
char *cg_create(void);
/* Kills everything in the cgroup (cgroup.kill).  Returns 0 or -errno. */
int cg_kill(const char *path);
/* True when live processes are left in it. */
bool cg_populated(const char *path);
/* Takes path: kills what is left, removes the cgroup once it is empty
 * (later, from the poll loop, if need be). */
void cg_release(char *path);
/* Removes c<N> cgroups left by an earlier server. */
void cgroups_init(void);
void cgroups_poll(struct pollctx *pc);
void cgroups_tick(void);
/* Waits up to 1 s for pending removals. */
void cgroups_shutdown(void);

/* ---- attach.c ---- */
void op_attach(uint32_t id, json_t *req);

/* ---- ring.c: bounded record buffer for background output ---- */
#define RING_MAX (1u << 20)
struct ring_cursor {
	uint64_t pos;  /* absolute offset of the current record */
	uint32_t off;  /* bytes of it already read */
	uint64_t data; /* data bytes consumed, counting dropped ones */
};
struct ring *ring_new(void);
void ring_free(struct ring *r);
void ring_append(struct ring *r, uint8_t ch, const uint8_t *p, size_t n);
void ring_cursor_start(const struct ring *r, struct ring_cursor *c);
/* Copies up to max bytes of the next record part; returns its length
 * (0: nothing new).  *lost gets the data bytes dropped under the cursor. */
size_t ring_read(const struct ring *r, struct ring_cursor *c, uint8_t *dst, size_t max,
		 uint8_t *ch, uint64_t *lost);
bool ring_at_end(const struct ring *r, const struct ring_cursor *c);
uint64_t ring_dropped(const struct ring *r);

/* ---- exec.c, spawn.c, user.c ---- */
void op_exec(uint32_t id, json_t *req);

struct user_info {
	uid_t uid;
	gid_t gid;
	char *name; /* may be NULL for a bare uid */
	char *home;
	gid_t *groups;
	int ngroups;
};
/* Resolves a name or decimal uid through /etc/passwd and /etc/group. */
int user_lookup(const char *spec, struct user_info *u);
/* The passwd entry of uid, or defaults (HOME=/) when there is none. */
void user_lookup_uid(uid_t uid, struct user_info *u);
void user_info_free(struct user_info *u);

struct spawn_req {
	char **argv;
	char **envp;
	const char *cwd;
	const struct user_info *user; /* NULL: keep our identity */
	bool pty, stdin_pipe;
	unsigned short rows, cols;
};
/* Forks and execs.  Fills p->pid and p's fds.  Returns 0, or -errno with a
 * message in e when the child could not be set up (exec failures are not
 * errors: the child reports them like a shell, with status 127/126). */
int spawn_proc(const struct spawn_req *r, struct proc *p, struct jerr *e);

/* ---- env.c: the environment file ---- */
/* Appends K=V strings from the env file to a growable vector. */
struct strv {
	char **v;
	size_t n, cap;
};
void strv_free(struct strv *sv);
/* Appends a copy of s; returns 0 or -1 (out of memory). */
int strv_push(struct strv *sv, const char *s);
/* Sets KEY=VALUE, replacing an existing KEY; val NULL removes KEY. */
void strv_setenv(struct strv *sv, const char *key, const char *val);
/* A valid env name: non-empty, no '=' or newline, under 1024 bytes. */
bool env_key_ok(const char *k);
/* Merges the env file into sv (parsed once, reloaded when the file
 * changes).  Returns 0 or -errno (-EPERM: not a 0600 file of ours). */
int env_file_load(const char *path, struct strv *sv);
void op_env_set(uint32_t id, json_t *req);

/* ---- files.c, list.c, watch.c ---- */
void op_file_read(uint32_t id, json_t *req);
void op_file_write(uint32_t id, json_t *req);
void op_stat(uint32_t id, json_t *req);
void op_mkdir(uint32_t id, json_t *req);
void op_remove(uint32_t id, json_t *req);
void op_rename(uint32_t id, json_t *req);
void op_list(uint32_t id, json_t *req);
void op_watch(uint32_t id, json_t *req);
const char *file_type_name(mode_t m);
struct stat;
/* Sets o's "type", "size", "mode" and "mtime" from st. */
void stat_json(json_t *o, const struct stat *st);

/* ---- forward.c: a TCP connection to a port of the guest's loopback,
 * spliced onto a stream ---- */
void op_forward(uint32_t id, json_t *req);

/* ---- init.c, disk.c, net.c (PID 1 only) ---- */
/* Never returns. */
void init_main(void);
/* Sets agent_cfg.disk_state. */
void disk_setup(void);
/* The same for dev (NULL: /dev/vda, "none": no disk); after a restore the
 * identity op calls it, once the RNG is reseeded. */
void disk_setup_dev(const char *dev);
void net_setup(void);
/* With omnirun.root=SERIAL: the template's read-only image under an
 * overlay whose upper half is on the data disk (mounted at mnt, which
 * must be under /run) becomes the root; returns after the switch, with
 * the template's guest settings read. */
void root_setup(const char *serial, const char *mnt);
/* The template's boot services (root_setup read them), each waited for. */
void root_services(void);
/* op "net_config": the host's network settings (net.c). */
void op_net_config(uint32_t id, json_t *req);
/* A restored guest's NIC has the template's MAC (was): it takes the
 * sandbox's.  Returns 0 or -errno. */
int net_set_mac(const char *was, const char *mac);

#endif
