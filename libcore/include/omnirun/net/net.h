/* A sandbox's network (DESIGN.md §6), run by its monitor.
 *
 * Each sandbox gets a network namespace of its own: a tap for the guest
 * (its fd handed to QEMU, never its name), the gateway of the sandbox's
 * /30 on it, and nft rules that live in that namespace only.  Default:
 * air-gapped (no route out, nothing forwarded, IPv6 off).  With an
 * allow-list, a DNS responder on the gateway answers allowed names with
 * the gateway's own address (REFUSED for the rest; nothing leaves the
 * host for them) and TCP 80/443 are redirected to an egress proxy that
 * reads the TLS SNI or the HTTP Host header, checks it, resolves the name
 * from the host, refuses private/loopback/link-local/CGNAT/metadata/
 * multicast/host addresses and splices.  With internet on, a veth leads to
 * the host, which NATs it out of the configured uplink in the one nft
 * table OmniRun owns there; private ranges stay unreachable.
 *
 * Closing the last fd of the namespace (the monitor's, then QEMU's tap)
 * deletes it with every link and rule in it, so a killed monitor leaves
 * nothing; omr_net_close also deletes the host end of the veth at once. */
#ifndef OMNIRUN_NET_NET_H
#define OMNIRUN_NET_NET_H

#include <jansson.h>

#include "omnirun/base/err.h"
#include "omnirun/state/config.h"

struct omr_net;
struct omr_loop;

/* An event for the sandbox's event log (ev is borrowed). */
typedef void (*omr_net_event_fn)(void *user, json_t *ev);

struct omr_net_opts {
	const struct omr_config *c;
	const char *id;           /* sandbox id */
	const char *guest_addr;   /* the guest's address (.2 of its /30) */
	int internet;
	const char *allow;        /* normalized, comma-separated, may be "" */
	omr_net_event_fn event;   /* refusals and policy changes, or NULL */
	void *user;
};

/* Makes the namespace, the tap, the addresses and the rules, and binds
 * the DNS and proxy sockets inside the namespace.  The calling thread
 * ends in the namespace it started in.  Returns 0 or < 0 (nothing is
 * left behind). */
int omr_net_open(const struct omr_net_opts *o, struct omr_net **out, struct omr_err **err);

/* The tap's fd for QEMU (-netdev tap,fd=N), still owned by n: close it
 * with omr_net_drop_tap once QEMU holds its copy. */
int omr_net_tap_fd(const struct omr_net *n);
void omr_net_drop_tap(struct omr_net *n);
/* The guest NIC's MAC address, "52:54:00:xx:xx:xx". */
const char *omr_net_mac(const struct omr_net *n);

/* The request that configures the guest through its agent: {"op":
 * "net_config", mac, address, prefix, gateway, dns[], mtu} (new ref). */
json_t *omr_net_guest_request(const struct omr_net *n);

/* Registers the DNS responder and the proxy with the loop. */
int omr_net_attach(struct omr_net *n, struct omr_loop *l, struct omr_err **err);

/* Replaces the policy atomically (one nft transaction); proxied
 * connections the new list refuses are closed, and forwarded ones are
 * reset once internet is off.  Returns 0 or < 0 (the old policy stays). */
int omr_net_set_policy(struct omr_net *n, int internet, const char *allow,
		       struct omr_err **err);

/* {mode, internet, allow[], bytes_in, bytes_out, connections: {allowed,
 * refused}, dns: {answered, refused, relayed}, names: [{name, allowed,
 * refused, bytes_in, bytes_out, last_refusal}], forwarded: {bytes_in,
 * bytes_out}} (new ref). */
json_t *omr_net_stats(struct omr_net *n);

/* Closes every connection and socket, deletes the host end of the veth
 * and the namespace's last reference held here.  NULL is fine. */
void omr_net_close(struct omr_net *n);

#endif
