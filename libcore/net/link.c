/* Links, addresses and routes through libnl-route-3: the tap in the
 * sandbox's namespace, and for internet a veth whose host end is the only
 * thing OmniRun adds to the host's own links (it goes with the namespace). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net-internal.h"

static int nl_fail(struct omr_err **err, int nlerr, const char *fmt, const char *what)
{
	return omr_err_setx(err, OMR_E_FAIL, 0, "%s %s: %s", fmt, what, nl_geterror(nlerr));
}

static struct nl_sock *nl_open(struct omr_err **err)
{
	struct nl_sock *sk = nl_socket_alloc();
	int rc;

	if (!sk) {
		omr_err_setx(err, OMR_E_FAIL, ENOMEM, "cannot allocate a netlink socket");
		return NULL;
	}
	rc = nl_connect(sk, NETLINK_ROUTE);
	if (rc < 0) {
		nl_fail(err, rc, "cannot open", "rtnetlink");
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

int net_links_open(struct omr_net *n, struct omr_err **err)
{
	n->nl_host = nl_open(err);
	if (!n->nl_host || net_ns_enter(n, err) < 0)
		return -1;
	n->nl_sb = nl_open(err);
	net_ns_leave(n);
	return n->nl_sb ? 0 : -1;
}

void net_links_close(struct omr_net *n)
{
	if (n->nl_sb)
		nl_socket_free(n->nl_sb);
	if (n->nl_host)
		nl_socket_free(n->nl_host);
	n->nl_sb = n->nl_host = NULL;
}

/* ifindex of name in sk's namespace, or < 0. */
static int ifindex_of(struct nl_sock *sk, const char *name)
{
	struct rtnl_link *l = NULL;
	int rc = rtnl_link_get_kernel(sk, 0, name, &l), idx;

	if (rc < 0)
		return rc;
	idx = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	return idx;
}

/* Sets a link up, and its alias when alias is not NULL. */
static int link_up(struct nl_sock *sk, int ifindex, const char *alias, unsigned mtu,
		   struct omr_err **err)
{
	struct rtnl_link *orig = rtnl_link_alloc(), *chg = rtnl_link_alloc();
	int rc;

	rtnl_link_set_ifindex(orig, ifindex);
	rtnl_link_set_flags(chg, IFF_UP);
	if (alias)
		rtnl_link_set_ifalias(chg, alias);
	if (mtu)
		rtnl_link_set_mtu(chg, mtu);
	rc = rtnl_link_change(sk, orig, chg, 0);
	rtnl_link_put(orig);
	rtnl_link_put(chg);
	return rc < 0 ? nl_fail(err, rc, "cannot set up", "a link") : 0;
}

static struct nl_addr *addr4(struct in_addr a, int prefix)
{
	struct nl_addr *na = nl_addr_build(AF_INET, &a, 4);

	if (!na)
		abort();
	nl_addr_set_prefixlen(na, prefix);
	return na;
}

static int addr_add(struct nl_sock *sk, int ifindex, struct in_addr a, int prefix,
		    struct omr_err **err)
{
	struct rtnl_addr *ra = rtnl_addr_alloc();
	struct nl_addr *local = addr4(a, prefix);
	int rc;

	rtnl_addr_set_ifindex(ra, ifindex);
	rtnl_addr_set_local(ra, local);
	rtnl_addr_set_prefixlen(ra, prefix);
	rc = rtnl_addr_add(sk, ra, 0);
	nl_addr_put(local);
	rtnl_addr_put(ra);
	return rc < 0 ? nl_fail(err, rc, "cannot add", "an address") : 0;
}

/* A scope-link route to dst/prefix out of ifindex (no gateway: the
 * other end answers ARP by proxy). */
static int route_add(struct nl_sock *sk, struct in_addr dst, int prefix, int ifindex,
		     struct omr_err **err)
{
	struct rtnl_route *r = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *d = addr4(dst, prefix);
	int rc;

	rtnl_route_set_family(r, AF_INET);
	rtnl_route_set_table(r, RT_TABLE_MAIN);
	rtnl_route_set_scope(r, RT_SCOPE_LINK);
	rtnl_route_set_protocol(r, RTPROT_STATIC);
	rtnl_route_set_dst(r, d);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_add_nexthop(r, nh); /* r owns nh now */
	rc = rtnl_route_add(sk, r, NLM_F_CREATE | NLM_F_REPLACE);
	nl_addr_put(d);
	rtnl_route_put(r);
	return rc < 0 ? nl_fail(err, rc, "cannot add", "a route") : 0;
}

int net_tap_create(struct omr_net *n, struct omr_err **err)
{
	struct ifreq ifr = { 0 };
	int idx, lo, fd;

	if (net_ns_enter(n, err) < 0)
		return -1;
	/* IPv6 stays off in the namespace: no address, nothing forwarded
	 * (the nft table drops it too). */
	if (net_sysctl("ipv6/conf/default/disable_ipv6", "1", err) < 0 ||
	    net_sysctl("ipv6/conf/all/disable_ipv6", "1", err) < 0 ||
	    net_sysctl("ipv4/ip_forward", "0", err) < 0 ||
	    net_sysctl("ipv4/conf/default/rp_filter", "1", err) < 0) {
		net_ns_leave(n);
		return -1;
	}
	/* The tap is made in the namespace it is opened in; it lives as
	 * long as an fd to it does (not persistent), and QEMU gets the fd. */
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		net_ns_leave(n);
		return omr_err_set(err, OMR_E_FAIL, errno, "cannot open /dev/net/tun");
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, NET_TAP_NAME, sizeof(NET_TAP_NAME));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		net_ns_leave(n);
		return omr_err_set(err, OMR_E_FAIL, e, "cannot create the tap");
	}
	net_ns_leave(n);
	n->tap_fd = fd;
	lo = ifindex_of(n->nl_sb, "lo");
	idx = ifindex_of(n->nl_sb, NET_TAP_NAME);
	if (lo < 0 || idx < 0)
		return omr_err_setx(err, OMR_E_FAIL, 0, "the tap or lo is missing in the namespace");
	if (link_up(n->nl_sb, lo, NULL, 0, err) < 0 ||
	    addr_add(n->nl_sb, idx, n->gw_in, 30, err) < 0 ||
	    link_up(n->nl_sb, idx, NULL, NET_MTU, err) < 0)
		return -1;
	return 0;
}

int net_uplink_check(struct omr_net *n, struct omr_err **err)
{
	const char *up = n->c->net_uplink;
	char val[16];
	_cleanup_free_ char *path = NULL;

	if (!up)
		return omr_err_setx(err, OMR_E_USAGE, EINVAL, "internet needs [network] uplink in the config");
	if (ifindex_of(n->nl_host, up) < 0)
		return omr_err_setx(err, OMR_E_NOT_FOUND, ENODEV, "network.uplink '%s' does not exist", up);
	/* Forwarding into the uplink is the host's choice, not ours to
	 * switch on: sbx-doctor reports it. */
	path = omr_strdup_printf("ipv4/conf/%s/forwarding", up);
	if (net_sysctl_read(path, val, sizeof(val)) < 0 || strcmp(val, "1"))
		return omr_err_setx(err, OMR_E_STATE, 0, "IPv4 forwarding is off on the uplink %s "
				    "(sysctl net.ipv4.conf.%s.forwarding=1)", up, up);
	return 0;
}

int net_veth_create(struct omr_net *n, struct omr_err **err)
{
	struct rtnl_link *veth, *peer;
	struct in_addr any = { 0 }, net30 = { .s_addr = n->guest_in.s_addr & htonl(~3u) };
	_cleanup_free_ char *fwd = omr_strdup_printf("ipv4/conf/%s/forwarding", n->host_if);
	_cleanup_free_ char *parp = omr_strdup_printf("ipv4/conf/%s/proxy_arp", n->host_if);
	_cleanup_free_ char *v6 = omr_strdup_printf("ipv6/conf/%s/disable_ipv6", n->host_if);
	int rc, hidx, sidx;

	if (n->veth)
		return 0;
	veth = rtnl_link_veth_alloc();
	if (!veth)
		return omr_err_setx(err, OMR_E_FAIL, ENOMEM, "cannot allocate a veth");
	rtnl_link_set_name(veth, NET_VETH_NAME);
	peer = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(peer, n->host_if);
	/* The peer is born in the host's namespace: nothing in the
	 * sandbox's can reach the host's links. */
	rtnl_link_set_ns_fd(peer, n->host_ns);
	rtnl_link_put(peer);
	rc = rtnl_link_add(n->nl_sb, veth, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_veth_release(veth);
	if (rc < 0)
		return nl_fail(err, rc, "cannot create", "the veth");
	n->veth = 1;
	hidx = ifindex_of(n->nl_host, n->host_if);
	sidx = ifindex_of(n->nl_sb, NET_VETH_NAME);
	if (hidx < 0 || sidx < 0)
		return omr_err_setx(err, OMR_E_FAIL, 0, "the veth vanished");
	/* Host end: the alias names the sandbox (sbx-gc finds leftovers by
	 * it); forwarding and proxy ARP on this link only; a route to the
	 * guest's /30. */
	if (link_up(n->nl_host, hidx, n->id, NET_MTU, err) < 0 ||
	    net_sysctl(v6, "1", err) < 0 || net_sysctl(fwd, "1", err) < 0 ||
	    net_sysctl(parp, "1", err) < 0 ||
	    route_add(n->nl_host, net30, 30, hidx, err) < 0)
		return -1;
	/* Namespace end: up, answers ARP for the guest, default route out. */
	if (link_up(n->nl_sb, sidx, NULL, NET_MTU, err) < 0 || net_ns_enter(n, err) < 0)
		return -1;
	rc = net_sysctl("ipv4/conf/" NET_VETH_NAME "/proxy_arp", "1", err);
	net_ns_leave(n);
	if (rc < 0 || route_add(n->nl_sb, any, 0, sidx, err) < 0)
		return -1;
	return 0;
}

void net_veth_delete(struct omr_net *n)
{
	struct rtnl_link *l;
	int idx;

	if (!n->veth || !n->nl_host)
		return;
	/* Deleting one end deletes both, at once (the namespace's own
	 * teardown is asynchronous). */
	idx = ifindex_of(n->nl_host, n->host_if);
	if (idx > 0 && (l = rtnl_link_alloc())) {
		rtnl_link_set_ifindex(l, idx);
		rtnl_link_delete(n->nl_host, l);
		rtnl_link_put(l);
	}
	n->veth = 0;
}
