/* The guest's network.  Loopback always.  The host sends the rest over the
 * agent channel (op "net_config": the NIC by MAC, address, prefix,
 * gateway, DNS, MTU), because a guest restored from a snapshot has no
 * kernel command line of its own; the older omnirun.ip=A.B.C.D/N
 * (omnirun.iface, omnirun.gw, omnirun.dns, omnirun.mtu) on the command
 * line still works.  Plain ioctls: no netlink needed for one static IPv4
 * address. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

static in_addr_t prefix_mask(unsigned long prefix)
{
	return htonl(prefix ? ~0u << (32 - prefix) : 0);
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
	*mask = prefix_mask(prefix);
	return 0;
}

/* Writes resolv.conf with the servers of a comma-separated list. */
static int write_resolv(const char *dns)
{
	_cleanup_free_ char *copy = strdup(dns);
	FILE *f = fopen("/etc/resolv.conf", "we");

	if (!f)
		f = fopen("/run/resolv.conf", "we"); /* read-only root */
	if (!f || !copy) {
		int e = errno;
		if (f)
			fclose(f);
		return -e;
	}
	for (char *d = strtok(copy, ","); d; d = strtok(NULL, ","))
		fprintf(f, "nameserver %s\n", d);
	return fclose(f) == 0 ? 0 : -errno;
}

struct iface_cfg {
	const char *iface;
	in_addr_t addr, mask;
	int mtu;          /* 0: leave it */
	const char *gw;   /* NULL: no default route */
};

/* Address, mask, MTU, up, default route.  Returns 0, or -errno with what
 * failed in *what. */
static int iface_apply(int s, const struct iface_cfg *c, const char **what)
{
	struct ifreq ifr;
	char path[64];
	uint64_t end = omr_now_ms() + IFACE_WAIT_MS;

	*what = "interface name";
	if (ifreq_for(&ifr, c->iface) < 0)
		return -ENAMETOOLONG;
	snprintf(path, sizeof(path), "/sys/class/net/%s", c->iface);
	while (access(path, F_OK) < 0 && omr_now_ms() < end)
		usleep(20 * 1000);
	set_in(&ifr.ifr_addr, c->addr);
	*what = "address";
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		return -errno;
	set_in(&ifr.ifr_netmask, c->mask);
	*what = "netmask";
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		return -errno;
	if (c->mtu) {
		ifr.ifr_mtu = c->mtu;
		*what = "mtu";
		if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
			return -errno;
	}
	*what = "link up";
	if (if_up(s, c->iface) < 0)
		return -errno;
	if (c->gw) {
		struct rtentry rt = { .rt_flags = RTF_UP | RTF_GATEWAY };
		struct in_addr g;
		*what = "gateway";
		if (inet_pton(AF_INET, c->gw, &g) != 1)
			return -EINVAL;
		set_in(&rt.rt_dst, INADDR_ANY);
		set_in(&rt.rt_genmask, INADDR_ANY);
		set_in(&rt.rt_gateway, g.s_addr);
		/* A restored guest may carry the template's route. */
		ioctl(s, SIOCDELRT, &rt);
		*what = "default route";
		if (ioctl(s, SIOCADDRT, &rt) < 0)
			return -errno;
	}
	return 0;
}

void net_setup(void)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	const char *ip = kernel_param("ip"), *dns = kernel_param("dns");
	const char *iface = kernel_param("iface"), *mtu = kernel_param("mtu");
	struct iface_cfg c = { .iface = iface ? iface : "eth0", .gw = kernel_param("gw"),
			       .mtu = mtu ? atoi(mtu) : 0 };
	const char *what;
	int rc;

	if (s < 0) {
		omr_log(OMR_LOG_ERR, "socket: %s", strerror(errno));
		return;
	}
	if (if_up(s, "lo") < 0)
		omr_log(OMR_LOG_ERR, "lo up: %s", strerror(errno));
	if (ip) {
		if (parse_cidr(ip, &c.addr, &c.mask) < 0)
			omr_log(OMR_LOG_ERR, "bad omnirun.ip");
		else if ((rc = iface_apply(s, &c, &what)) < 0)
			omr_log(OMR_LOG_ERR, "%s %s: %s", c.iface, what, strerror(-rc));
	}
	if (dns && (rc = write_resolv(dns)) < 0)
		omr_log(OMR_LOG_ERR, "resolv.conf: %s", strerror(-rc));
}

/* The interface whose MAC is mac (case-insensitive), waiting a little for
 * the driver.  Returns 0 with its name in out. */
static int iface_by_mac(const char *mac, char *out, size_t n)
{
	uint64_t end = omr_now_ms() + IFACE_WAIT_MS;

	do {
		DIR *d = opendir("/sys/class/net");
		struct dirent *de;

		while (d && (de = readdir(d))) {
			char path[300];
			if (de->d_name[0] == '.')
				continue;
			_cleanup_free_ char *addr = NULL;

			snprintf(path, sizeof(path), "/sys/class/net/%s/address", de->d_name);
			if (omr_read_file_at(AT_FDCWD, path, 64, &addr, NULL, NULL) < 0)
				continue;
			addr[strcspn(addr, "\n")] = 0;
			if (!strcasecmp(addr, mac) && strlen(de->d_name) < n) {
				memcpy(out, de->d_name, strlen(de->d_name) + 1);
				closedir(d);
				return 0;
			}
		}
		if (d)
			closedir(d);
		usleep(20 * 1000);
	} while (omr_now_ms() < end);
	return -ENODEV;
}

int net_set_mac(const char *was, const char *mac)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned int b[6];
	struct ifreq ifr;
	char iface[IFNAMSIZ];
	int rc;

	if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6 ||
	    strlen(mac) != 17)
		return -EINVAL;
	if (s < 0)
		return -errno;
	if ((rc = iface_by_mac(was, iface, sizeof(iface))) < 0)
		return rc;
	if (ifreq_for(&ifr, iface) < 0)
		return -ENAMETOOLONG;
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	for (int i = 0; i < 6; i++)
		ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
	/* virtio-net tells QEMU (its MAC filter) through the control queue. */
	return ioctl(s, SIOCSIFHWADDR, &ifr) < 0 ? -errno : 0;
}

void op_net_config(uint32_t id, json_t *req)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	const char *mac, *addr, *gw, *what;
	char iface[IFNAMSIZ], dns[256] = "";
	struct iface_cfg c = { .iface = iface };
	struct in_addr a;
	int64_t prefix, mtu;
	struct jerr e;
	json_t *d = json_object_get(req, "dns"), *v;
	size_t i;
	int rc;

	if (jget_str(req, "mac", true, &mac, &e) < 0 || jget_str(req, "address", true, &addr, &e) < 0 ||
	    jget_str(req, "gateway", false, &gw, &e) < 0 ||
	    jget_int(req, "prefix", 1, 32, 24, &prefix, &e) < 0 ||
	    jget_int(req, "mtu", 576, 65535, 1500, &mtu, &e) < 0) {
		send_bad_request(id, &e);
		return;
	}
	if (inet_pton(AF_INET, addr, &a) != 1) {
		send_error(id, EINVAL, NULL, "\"address\" is not an IPv4 address");
		return;
	}
	json_array_foreach(d, i, v) {
		struct in_addr x;
		if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &x) != 1 ||
		    strlen(dns) + 20 > sizeof(dns)) {
			send_error(id, EINVAL, NULL, "\"dns\" must list IPv4 addresses");
			return;
		}
		snprintf(dns + strlen(dns), sizeof(dns) - strlen(dns), "%s%s", *dns ? "," : "",
			 json_string_value(v));
	}
	if (s < 0) {
		send_error(id, errno, NULL, "socket");
		return;
	}
	if ((rc = iface_by_mac(mac, iface, sizeof(iface))) < 0) {
		send_error(id, -rc, NULL, "no network interface with MAC %.32s", mac);
		return;
	}
	c.addr = a.s_addr;
	c.mask = prefix_mask((unsigned long)prefix);
	c.mtu = (int)mtu;
	c.gw = gw;
	if ((rc = iface_apply(s, &c, &what)) < 0) {
		send_error(id, -rc, NULL, "%s %s", iface, what);
		return;
	}
	if (*dns && (rc = write_resolv(dns)) < 0) {
		send_error(id, -rc, NULL, "cannot write resolv.conf");
		return;
	}
	omr_log(OMR_LOG_INFO, "network: %s %s/%d via %s", iface, addr, (int)prefix, gw ? gw : "-");
	send_json(OMR_F_END, id, json_pack("{s:s}", "iface", iface));
}
