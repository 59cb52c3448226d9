#!/usr/bin/env bats
# Issue "Network: air-gapped by default, internet on demand, domain
# allow-lists that cannot be bypassed".  Real VMs; every address lives in
# namespaces this file makes: "$H" plays the host (the monitors run in it
# through `ip netns exec`, its uplink is a veth) and "$I" a fake internet
# (tests/fixtures/fake-internet.py: HTTP, TLS for a.test and b.test, UDP
# echo, DNS), whose log shows what arrived.  Nothing leaves the machine.
load helpers
. "$OMNIRUN_SRC/tests/fixtures/fake-net.sh"

# Runs a command in the fake host's namespace (and its /etc/netns files).
h() { fakenet_host "$@"; }
# What the fake internet logged since mark_log.
mark_log() { MARK=$(wc -l <"$ILOG"); }
new_log() { tail -n +"$((MARK + 1))" "$ILOG"; }
# A guest's monitor pid and its network namespace ("net:[N]").
sb_netns() {
	local mon
	mon=$(monitor_pid "$1")
	for f in /proc/"$mon"/fd/*; do
		l=$(readlink "$f" 2>/dev/null) || continue
		case $l in net:*) [ "$l" != "$(readlink /proc/"$mon"/ns/net)" ] && { echo "$l"; return; } ;; esac
	done
}
# Creates a sandbox in the fake host, copies netprobe in, prints its id.
mk() {
	local id
	id=$(h sbx-create --timeout 600 "$@") || return 1
	sbx-files "$id" put -m 0755 "$OMNIRUN_BUILD/tests/netprobe" /bin/netprobe >/dev/null || return 1
	echo "$id"
}
probe() { sbx-exec "$1" -- netprobe "${@:2}"; }

setup_file() {
	. "$OMNIRUN_SRC/tests/fixtures/fake-net.sh"
	fakenet_up "$BATS_FILE_TMPDIR"
	# Services on the fake host, on every address of it (10.1.2.3, where
	# priv.test points, too): no guest, and not the proxy, may reach them.
	export HLOG=$BATS_FILE_TMPDIR/host.log
	: >"$HLOG"
	ip -n "$H" addr add 10.1.2.3/32 dev lo
	for port in 9999 80; do
		ip netns exec "$H" socat -u TCP-LISTEN:$port,fork,reuseaddr OPEN:"$HLOG",append 3>&- &
		echo $! >>"$BATS_FILE_TMPDIR/hostsvc.pid"
	done
	export BASE_CONF=$OMNIRUN_CONF OMNIRUN_CONF=$FAKENET_CONF
}

# A failed test's sandboxes go with it, not on into the next tests.
setup() { omr_setup; }
teardown() { omr_teardown; }

teardown_file() {
	for id in $(sbx-ls -q); do sbx-kill "$id" >/dev/null 2>&1; done
	kill $(cat "$BATS_FILE_TMPDIR/hostsvc.pid" 2>/dev/null) 2>/dev/null
	. "$OMNIRUN_SRC/tests/fixtures/fake-net.sh"
	fakenet_down
	export OMNIRUN_CONF=$BASE_CONF
}

@test "air-gapped: the guest has a link, and nothing it sends arrives anywhere" {
	id=$(mk)
	run sbx-ls --json "$id"
	assert_contains "$output" '"mode": "air-gapped"'
	assert_contains "$output" '"address": "10.'
	# A link to its gateway: address from the agent, the gateway answers.
	gw=$(sbx-exec "$id" -c "ip route | awk '/default/{print \$3}'")
	[ -n "$gw" ] || fail "no default route in the guest"
	sbx-exec "$id" -- ping -c 1 -W 3 "$gw"
	mark_log
	run probe "$id" raw 198.51.100.2 80 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'
	[ "$status" -ne 0 ] || fail "HTTP got through: $output"
	run probe "$id" tls 198.51.100.2 443 a.test
	[ "$status" -ne 0 ] || fail "TLS got through: $output"
	run probe "$id" udp 198.51.100.2 7
	[ "$status" -ne 0 ] || fail "UDP got through: $output"
	run sbx-exec "$id" -- nslookup a.test 198.51.100.2
	[ "$status" -ne 0 ] || fail "DNS to the outside answered: $output"
	run sbx-exec "$id" -- nslookup a.test
	assert_contains "$output" "REFUSED"
	run sbx-exec "$id" -- ping -c 1 -W 2 198.51.100.2
	[ "$status" -ne 0 ] || fail "ICMP got through"
	# IPv6: no address beyond link-local, nothing leaves either.
	run sbx-exec "$id" -c "ip -6 addr show scope global"
	assert_eq "$output" ""
	sleep 1
	assert_eq "$(new_log)" "" "the fake internet's log"
	sbx-kill "$id"
}

@test "--internet: the guest reaches the fake internet through the uplink's NAT" {
	id=$(mk --internet)
	run sbx-ls --json "$id"
	assert_contains "$output" '"mode": "internet"'
	mark_log
	run probe "$id" raw 198.51.100.2 80 'GET /i HTTP/1.1\r\nHost: a.test\r\n\r\n'
	assert_eq "$status" 0 "$output"
	assert_contains "$output" "200 OK"
	run probe "$id" udp 198.51.100.2 7
	assert_eq "$output" "echo"
	# DNS through the gateway is relayed from the host.
	run sbx-exec "$id" -- nslookup b.test
	assert_contains "$output" "198.51.100.3"
	sleep 0.5
	run new_log
	assert_contains "$output" "path=/i from=198.51.100.1"
	assert_contains "$output" "udp from=198.51.100.1"
	assert_contains "$output" "dns q=b.test"
	sbx-kill "$id"
}

@test "--allow a.test: HTTP and TLS to a.test work, nothing else does" {
	id=$(mk --allow a.test --allow '*.wild.test')
	run sbx-ls --json "$id"
	assert_contains "$output" '"mode": "allow-list"'
	assert_contains "$output" '"a.test"'
	mark_log
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- http://a.test/plain'
	assert_eq "$output" "hello from a.test sni=None"
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- --no-check-certificate https://a.test/tls'
	assert_eq "$output" "hello from a.test sni=a.test"
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- http://x.wild.test/'
	assert_eq "$output" "hello from x.wild.test sni=None"
	# The guest only ever sees the gateway's address.
	run sbx-exec "$id" -- nslookup a.test
	assert_contains "$output" "Address: 10."
	# b.test: refused by DNS, and over HTTP and TLS by the proxy.
	run sbx-exec "$id" -- nslookup b.test
	assert_contains "$output" "REFUSED"
	run probe "$id" raw a.test 80 'GET / HTTP/1.1\r\nHost: b.test\r\n\r\n'
	assert_eq "$output" "closed"
	run probe "$id" tls a.test 443 b.test
	assert_eq "$output" "closed"
	# IP literals, another port, UDP, ICMP.
	run probe "$id" raw 198.51.100.2 80 'GET / HTTP/1.1\r\nHost: 198.51.100.2\r\n\r\n'
	assert_eq "$output" "closed"
	run probe "$id" tls 198.51.100.2 443 198.51.100.2
	assert_eq "$output" "closed"
	run probe "$id" tls a.test 8443 a.test
	[ "$status" -ne 0 ] || fail "port 8443 got through: $output"
	run probe "$id" tls 198.51.100.2 8443 a.test
	[ "$status" -ne 0 ] || fail "port 8443 got through: $output"
	run probe "$id" udp 198.51.100.2 7
	[ "$status" -ne 0 ] || fail "UDP got through: $output"
	run probe "$id" udp 198.51.100.2 443
	[ "$status" -ne 0 ] || fail "UDP 443 (QUIC) got through: $output"
	run sbx-exec "$id" -- ping -c 1 -W 2 198.51.100.2
	[ "$status" -ne 0 ] || fail "ICMP got through"
	# ECH, no SNI, CONNECT, a ClientHello on the HTTP port.
	run probe "$id" tls a.test 443 a.test --ech
	assert_eq "$output" "closed"
	run probe "$id" tls a.test 443 a.test --no-sni
	assert_eq "$output" "closed"
	run probe "$id" raw a.test 80 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n'
	assert_eq "$output" "closed"
	run probe "$id" tls a.test 80 a.test
	assert_eq "$output" "closed"
	sleep 0.5
	run new_log
	assert_contains "$output" "http port=80 host=a.test sni=None path=/plain from=198.51.100.1"
	assert_contains "$output" "tls port=443 sni=a.test"
	assert_contains "$output" "path=/tls"
	# Nothing for b.test arrived, not even its DNS query; no 8443, no UDP.
	[[ "$output" != *b.test* ]] || fail "b.test reached the fake internet: $output"
	[[ "$output" != *8443* ]] || fail "8443 reached the fake internet: $output"
	[[ "$output" != *udp* ]] || fail "UDP reached the fake internet: $output"
	[[ "$output" != *"host=198.51.100.2"* ]] || fail "an IP literal got through: $output"
	[[ "$output" != *CONNECT* ]] || fail "CONNECT got through: $output"
	# The refusals are counted and in the event log, with their reasons.
	run sbx-net "$id" stats --json
	assert_contains "$output" '"name": "b.test"'
	run cat "$OMNIRUN_STATE_DIR/sandboxes/$id/events.jsonl"
	assert_contains "$output" '"reason":"not on the allow-list"'
	assert_contains "$output" '"reason":"IP literal"'
	assert_contains "$output" '"reason":"Encrypted Client Hello"'
	assert_contains "$output" '"reason":"no SNI"'
	assert_contains "$output" '"reason":"CONNECT"'
	assert_contains "$output" '"reason":"TLS on the HTTP port"'
	sbx-kill "$id"
}

@test "--allow: /etc/hosts in the guest changes nothing; private and loopback answers are refused" {
	id=$(mk --allow a.test --allow priv.test --allow lo.test --allow meta.test --allow mixed.test)
	sbx-exec "$id" -c 'echo "198.51.100.3 a.test" >> /etc/hosts'
	mark_log
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- http://a.test/hosts'
	assert_eq "$output" "hello from a.test sni=None"
	run probe "$id" tls a.test 443 a.test
	assert_eq "$output" "server"
	for name in priv.test lo.test meta.test; do
		run probe "$id" raw "$name" 80 "GET / HTTP/1.1\r\nHost: $name\r\n\r\n"
		assert_eq "$output" "closed" "$name"
	done
	# One private address among public ones: only the public one is used.
	run probe "$id" raw mixed.test 80 'GET /mixed HTTP/1.1\r\nHost: mixed.test\r\n\r\n'
	assert_contains "$output" "200 OK"
	sleep 0.5
	assert_eq "$(cat "$HLOG")" "" "the host services' log"
	run new_log
	assert_contains "$output" "host=a.test sni=None path=/hosts"
	assert_contains "$output" "path=/mixed"
	run cat "$OMNIRUN_STATE_DIR/sandboxes/$id/events.jsonl"
	assert_contains "$output" '"name":"priv.test","reason":"resolves to a private address (10.1.2.3)"'
	assert_contains "$output" '"name":"lo.test","reason":"resolves to a loopback address (127.0.0.1)"'
	assert_contains "$output" '"name":"meta.test","reason":"resolves to a metadata address (169.254.169.254)"'
	sbx-kill "$id"
}

@test "the proxy: a split ClientHello, a 16 KiB one, one that never comes, 1000 connections at once" {
	id=$(mk --allow a.test)
	other=$(mk --allow a.test)
	run probe "$id" tls a.test 443 a.test --split 1
	assert_eq "$output" "server" "one byte per segment"
	run probe "$id" tls a.test 443 a.test --pad 16400
	assert_eq "$output" "server" "a 16 KiB ClientHello"
	run probe "$id" tls a.test 443 a.test --pad 16400 --split 700
	assert_eq "$output" "server" "a 16 KiB ClientHello in 700-byte segments"
	# Nothing sent: closed after the head timeout (5 s), not held.
	run probe "$id" idle a.test 443
	secs=${output%.*}
	[ "$secs" -ge 4 ] && [ "$secs" -le 8 ] || fail "an idle connection lived ${output}s"
	mon=$(monitor_pid "$id")
	rss0=$(awk '/VmRSS/{print $2}' /proc/"$mon"/status)
	# 1000 idle connections, then a real one from the same guest, while
	# the 1000 are held: the monitor holds at most its bound of them.
	out=$BATS_TEST_TMPDIR/flood
	probe "$id" flood a.test 443 1000 a.test 3 >"$out" 2>&1 &
	for _ in $(seq 300); do grep -qE "server|closed" "$out" && break; sleep 0.1; done
	fds=$(ls /proc/"$mon"/fd | wc -l)
	rss1=$(awk '/VmRSS/{print $2}' /proc/"$mon"/status)
	wait
	run cat "$out"
	assert_contains "$output" "opened 1000"
	assert_contains "$output" "server"
	[ "$fds" -lt 400 ] || fail "the monitor held $fds fds"
	[ $((rss1 - rss0)) -lt 65536 ] || fail "the monitor grew by $((rss1 - rss0)) KiB"
	# Its other traffic and the other sandbox kept working.
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- http://a.test/after'
	assert_eq "$output" "hello from a.test sni=None"
	run sbx-exec "$other" -c 'timeout 20 wget -q -O- http://a.test/other'
	assert_eq "$output" "hello from a.test sni=None"
	# Past the bound the oldest idle ones were closed, each a refusal.
	# Its events say so; the stats' last refusal may be a later one (the
	# held connections' head timeout, 5 s after the flood).
	run sbx-net "$id" stats --json
	[ "$(jq '.connections.refused' <<<"$output")" -gt 0 ] || fail "no refusal counted: $output"
	grep -q '"reason":"too many connections' "$OMNIRUN_STATE_DIR/sandboxes/$id/events.jsonl" ||
		fail "no 'too many connections' refusal in the events"
	sbx-kill "$id" "$other"
}

@test "sandboxes never reach each other, the host's services or its loopback" {
	a=$(mk --internet)
	b=$(mk --internet --allow a.test)
	baddr=$(sbx-ls --json "$b" | sed -n 's/.*"address": "\([0-9.]*\)".*/\1/p')
	agw=$(sbx-ls --json "$a" | sed -n 's/.*"gateway": "\([0-9.]*\)".*/\1/p')
	[ -n "$baddr" ] && [ -n "$agw" ]
	sbx-exec -b "$b" -c 'nc -ll -p 8080 -e echo b-answered' >/dev/null
	for _ in $(seq 20); do sbx-exec "$b" -c 'netstat -ltn' | grep -q :8080 && break; sleep 0.2; done
	run sbx-exec "$b" -c "echo x | nc -w 3 127.0.0.1 8080"
	assert_eq "$output" "b-answered" "B's own listener"
	run sbx-exec "$a" -c "echo x | nc -w 3 $baddr 8080"
	[[ "$output" != *b-answered* ]] || fail "A reached B"
	# The fake host's service on 9999 listens on all its addresses.
	for target in 198.51.100.1 "$agw" 169.254.0.1; do
		run sbx-exec "$a" -c "echo from-guest-$target | nc -w 3 $target 9999"
		[ "$status" -ne 0 ] || fail "reached the host at $target:9999"
	done
	run probe "$a" udp 198.51.100.1 53
	[ "$status" -ne 0 ] || fail "UDP to the host"
	for target in 198.51.100.1 "$agw"; do
		run sbx-exec "$b" -c "echo from-guest | nc -w 3 $target 9999"
		[ "$status" -ne 0 ] || fail "B reached the host at $target:9999"
	done
	sleep 0.5
	assert_eq "$(cat "$HLOG")" "" "the host service's log"
	# The proxy never dials the host's own addresses either.
	sbx-kill "$a" "$b"
}

@test "private ranges stay unreachable unless [network] exceptions lists them" {
	a=$(mk --internet --allow ex.test)
	run probe "$a" raw 172.16.5.2 80 'GET /private HTTP/1.1\r\nHost: x\r\n\r\n'
	[ "$status" -ne 0 ] || fail "--internet reached a private range: $output"
	sbx-net "$a" policy --internet off >/dev/null
	run probe "$a" raw ex.test 80 'GET /private HTTP/1.1\r\nHost: ex.test\r\n\r\n'
	assert_eq "$output" "closed"
	sbx-kill "$a"
	with_conf "$(cat "$OMNIRUN_CONF")" "exceptions = 172.16.5.0/24"
	b=$(mk --internet --allow ex.test)
	mark_log
	run probe "$b" raw 172.16.5.2 80 'GET /exc-nat HTTP/1.1\r\nHost: x\r\n\r\n'
	assert_contains "$output" "200 OK"
	sbx-net "$b" policy --internet off >/dev/null
	run probe "$b" raw ex.test 80 'GET /exc-proxy HTTP/1.1\r\nHost: ex.test\r\n\r\n'
	assert_contains "$output" "200 OK"
	sleep 0.5
	run new_log
	assert_contains "$output" "path=/exc-nat"
	assert_contains "$output" "path=/exc-proxy"
	sbx-kill "$b"
}

@test "sbx-net policy: a change on a running sandbox takes effect, refused connections close" {
	id=$(mk --allow a.test)
	run sbx-net "$id" policy --json
	assert_contains "$output" '"mode": "allow-list"'
	assert_contains "$output" '"changed": false'
	run probe "$id" tls a.test 443 b.test
	assert_eq "$output" "closed"
	run sbx-net "$id" policy --allow b.test
	assert_eq "$status" 0 "$output"
	assert_contains "$output" "a.test b.test"
	run sbx-exec "$id" -c 'timeout 20 wget -q -O- http://b.test/now'
	assert_eq "$output" "hello from b.test sni=None"
	run sbx-ls --json "$id"
	assert_contains "$output" '"b.test"'
	# A long download through the proxy is cut when a.test is denied.
	sbx-exec "$id" -c 'timeout 60 wget -q -O /dev/null http://a.test/bytes/4000000000; echo $? > /tmp/rc' &
	sleep 3
	run sbx-net "$id" policy --deny a.test
	assert_eq "$status" 0 "$output"
	wait
	run sbx-exec "$id" -- cat /tmp/rc
	[ "$output" != 0 ] && [ "$output" != 124 ] || fail "the download was not closed (rc $output)"
	run sbx-exec "$id" -- nslookup a.test
	assert_contains "$output" "REFUSED"
	gw=$(sbx-ls --json "$id" | sed -n 's/.*"gateway": "\([0-9.]*\)".*/\1/p')
	run probe "$id" tls "$gw" 443 a.test
	assert_eq "$output" "closed"
	# Internet on: UDP goes out; off again: refused again.
	run probe "$id" udp 198.51.100.2 7
	[ "$status" -ne 0 ] || fail "UDP before --internet on"
	run sbx-net "$id" policy --internet on
	assert_eq "$status" 0 "$output"
	run probe "$id" udp 198.51.100.2 7
	assert_eq "$output" "echo"
	run sbx-net "$id" policy --internet off --json
	assert_contains "$output" '"internet": false'
	run probe "$id" udp 198.51.100.2 7
	[ "$status" -ne 0 ] || fail "UDP after --internet off"
	run cat "$OMNIRUN_STATE_DIR/sandboxes/$id/events.jsonl"
	assert_contains "$output" '"type":"net_policy"'
	assert_contains "$output" '"reason":"the policy changed"'
	sbx-kill "$id"
}

@test "teardown leaves no namespace, link or rule; nor does a killed monitor" {
	before=$(ip -n "$H" -o link | grep -c omr || true)
	for how in kill monitor; do
		id=$(mk --internet --allow a.test)
		ns=$(sb_netns "$id")
		[ -n "$ns" ] || fail "no namespace found for $id"
		run ip -n "$H" -o link
		assert_contains "$output" "omr"
		if [ "$how" = kill ]; then
			sbx-kill "$id"
		else
			kill -9 "$(monitor_pid "$id")"
			for _ in $(seq 50); do [ -z "$(pgrep -f "sandboxes/$id/")" ] && break; sleep 0.1; done
			h sbx-gc >/dev/null
		fi
		for _ in $(seq 30); do
			left=$(ls -l /proc/[0-9]*/ns/net /proc/[0-9]*/fd/* 2>/dev/null | grep -cF "$ns" || true)
			[ "$left" = 0 ] && break
			sleep 0.1
		done
		assert_eq "$left" 0 "references to $ns after $how"
		assert_eq "$(ip -n "$H" -o link | grep -c omr || true)" "$before" "omr links after $how"
		run h sbx-gc --check
		assert_eq "$status" 0 "$output"
	done
	# The one table on the host stays, with no per-sandbox rule in it.
	run ip netns exec "$H" nft list table inet omnirun
	[[ "$output" != *sb_* ]] || fail "a per-sandbox rule on the host: $output"
}

@test "bad input: a non-host allow entry, a used-up pool, a missing uplink" {
	run -2 h sbx-create --allow 'http://a.test/'
	assert_contains "$output" "'http://a.test/' is not a valid host name"
	run -2 h sbx-create --allow '198.51.100.2'
	assert_contains "$output" "is an IP address"
	run -2 h sbx-create --allow 'a.*.test'
	id=$(mk)
	run -2 sbx-net "$id" policy --allow 'no spaces.test'
	with_conf "$(cat "$OMNIRUN_CONF")" "pool = 10.77.0.0/30"
	one=$(h sbx-create --timeout 600)
	run -5 h sbx-create --timeout 600
	assert_contains "$output" "address pool is used up"
	sbx-kill "$one"
	sbx-kill "$id"
	with_conf "$(cat "$BASE_CONF")" "[network]" "uplink = nope0"
	run -3 h sbx-create --internet
	assert_contains "$output" "network.uplink 'nope0' does not exist"
	id=$(mk)
	run -3 sbx-net "$id" policy --internet on
	assert_contains "$output" "nope0"
	run sbx-net "$id" policy --json
	assert_contains "$output" '"internet": false'
	sbx-kill "$id"
}

@test "sbx-doctor reports the uplink, NAT and the pool; sbx-gc --check finds a left link" {
	id=$(mk)
	run h sbx-doctor
	assert_contains "$output" "NAT        nat, redirect and reject work"
	assert_contains "$output" "uplink     upl 198.51.100.1"
	assert_contains "$output" "IPv4 forwarding on"
	run h sbx-doctor --json
	assert_contains "$output" '"range": "10.231.0.0/16"'
	assert_contains "$output" '"used": 1'
	ip netns exec "$H" sysctl -qw net.ipv4.conf.upl.forwarding=0
	run h sbx-doctor
	assert_contains "$output" "IPv4 forwarding is off on it"
	run -4 h sbx-create --internet
	assert_contains "$output" "forwarding is off on the uplink upl"
	ip netns exec "$H" sysctl -qw net.ipv4.conf.upl.forwarding=1
	sbx-kill "$id"
	# A link named like a sandbox's veth, whose sandbox is stopped.
	ip -n "$H" link add omrleft type veth peer name omrleftp
	ip -n "$H" link set omrleft alias "$id"
	run h sbx-gc --check
	[ "$status" -ne 0 ] || fail "sbx-gc --check found nothing"
	assert_contains "$output" "stale_link $id"
	h sbx-gc >/dev/null
	run ip -n "$H" link show omrleft
	[ "$status" -ne 0 ] || fail "sbx-gc left the link"
	h sbx-gc --check
}
