/* Network from the kernel command line (DESIGN.md §4): loopback always;
 * with omnirun.ip=A.B.C.D/N an interface (omnirun.iface, default eth0),
 * omnirun.gw=G for the default route, omnirun.dns=X[,Y] for
 * /etc/resolv.conf and omnirun.mtu=N.  Plain ioctls: no netlink needed for
 * one static IPv4 address. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "omnirun/base/cleanup.h"

#define IFACE_WAIT_MS 2000

static int ifreq_for(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	if (strlen(name) >= sizeof(ifr->ifr_name))
		return -ENAMETOOLONG;
	memcpy(ifr->ifr_name, name, strlen(name));
	return 0;
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr;

	if (ifreq_for(&ifr, name) < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static void set_in(struct sockaddr *sa, in_addr_t a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = a };

	memcpy(sa, &sin, sizeof(sin));
}

static int parse_cidr(const char *s, in_addr_t *addr, in_addr_t *mask)
{
	char buf[32];
	const char *slash = strchr(s, '/');
	struct in_addr a;
	unsigned long prefix = 24;
	char *end;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%.*s", slash ? (int)(slash - s) : (int)strlen(s), s);
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	if (slash) {
		prefix = strtoul(slash + 1, &end, 10);
		if (!slash[1] || *end || prefix > 32)
			return -1;
	}
	*addr = a.s_addr;
	*mask = htonl(prefix ? ~0u << (32 - prefix) : 0);
	return 0;
}

static void write_resolv(const char *dns)
{
	_cleanup_free_ char *copy = strdup(dns);
	FILE *f = fopen("/etc/resolv.conf", "we");

	if (!f)
		f = fopen("/run/resolv.conf", "we"); /* read-only root */
	if (!f || !copy) {
		omr_log(OMR_LOG_ERR, "resolv.conf: %s", strerror(errno));
		if (f)
			fclose(f);
		return;
	}
	for (char *d = strtok(copy, ","); d; d = strtok(NULL, ","))
		fprintf(f, "nameserver %s\n", d);
	fclose(f);
}

static void iface_setup(int s, const char *iface, const char *ip)
{
	const char *gw = kernel_param("gw"), *mtu = kernel_param("mtu");
	in_addr_t addr, mask;
	struct ifreq ifr;
	char path[64];
	uint64_t end = omr_now_ms() + IFACE_WAIT_MS;

	if (parse_cidr(ip, &addr, &mask) < 0 || ifreq_for(&ifr, iface) < 0) {
		omr_log(OMR_LOG_ERR, "bad omnirun.ip or omnirun.iface");
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/net/%s", iface);
	while (access(path, F_OK) < 0 && omr_now_ms() < end)
		usleep(20 * 1000);
	set_in(&ifr.ifr_addr, addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		omr_log(OMR_LOG_ERR, "%s address: %s", iface, strerror(errno));
	set_in(&ifr.ifr_netmask, mask);
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		omr_log(OMR_LOG_ERR, "%s netmask: %s", iface, strerror(errno));
	if (mtu) {
		ifr.ifr_mtu = atoi(mtu);
		if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
			omr_log(OMR_LOG_ERR, "%s mtu: %s", iface, strerror(errno));
	}
	if (if_up(s, iface) < 0)
		omr_log(OMR_LOG_ERR, "%s up: %s", iface, strerror(errno));
	if (gw) {
		struct rtentry rt = { .rt_flags = RTF_UP | RTF_GATEWAY };
		struct in_addr g;
		if (inet_pton(AF_INET, gw, &g) != 1) {
			omr_log(OMR_LOG_ERR, "bad omnirun.gw");
			return;
		}
		set_in(&rt.rt_dst, INADDR_ANY);
		set_in(&rt.rt_genmask, INADDR_ANY);
		set_in(&rt.rt_gateway, g.s_addr);
		if (ioctl(s, SIOCADDRT, &rt) < 0)
			omr_log(OMR_LOG_ERR, "default route: %s", strerror(errno));
	}
}

void net_setup(void)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	const char *ip = kernel_param("ip"), *dns = kernel_param("dns");
	const char *iface = kernel_param("iface");

	if (s < 0) {
		omr_log(OMR_LOG_ERR, "socket: %s", strerror(errno));
		return;
	}
	if (if_up(s, "lo") < 0)
		omr_log(OMR_LOG_ERR, "lo up: %s", strerror(errno));
	if (ip)
		iface_setup(s, iface ? iface : "eth0", ip);
	if (dns)
		write_resolv(dns);
}
