#!/usr/bin/env bats
# Issue 13, items 7 and 8: port forwards through the agent channel,
# exposures (preview URLs).  One air-gapped guest serves HTTP (busybox
# httpd) and a byte echo (busybox nc -e cat) on its loopback only; the
# host reaches them through `sbx-net ID forward`, never through a
# network route (the guest has none to the host).
load helpers

setup_file() {
	omr_setup_file
	export ID=$(new_sandbox --timeout 900 --memory 256 --disk 64)
	[ -n "$ID" ]
	sbx-exec -c 'mkdir -p /srv && echo hello-from-guest >/srv/index.html' "$ID"
	sbx-exec -b -- "$ID" httpd -f -p 127.0.0.1:8000 -h /srv >/dev/null
	sbx-exec -b -- "$ID" nc -ll -p 9000 -e /bin/cat >/dev/null
	# Both listen once a forward connects (bounded wait).
	for _ in $(seq 50); do
		printf 'GET / HTTP/1.0\r\n\r\n' | sbx-net "$ID" forward 8000 2>/dev/null | grep -q 200 && break
		sleep 0.2
	done
}
teardown_file() { omr_teardown_file; }
setup() { omr_setup; }
teardown() { omr_teardown; }

@test "the guest is air-gapped" {
	assert_eq "$(sb_field "$ID" network.mode)" air-gapped
}

@test "forward: an HTTP request reaches httpd on the guest's loopback" {
	run sbx-net "$ID" forward 8000 < <(printf 'GET /index.html HTTP/1.0\r\n\r\n')
	assert_eq "$status" 0 "$output"
	assert_contains "$output" "200 OK"
	assert_contains "$output" "hello-from-guest"
}

@test "forward: 4 MiB both ways through an echo, in order, half-close ends it" {
	head -c 4194304 /dev/urandom >"$BATS_TEST_TMPDIR/in"
	run -0 timeout 60 sh -c "sbx-net '$ID' forward 9000 <'$BATS_TEST_TMPDIR/in' >'$BATS_TEST_TMPDIR/out'"
	assert_eq "$(sha256sum <"$BATS_TEST_TMPDIR/out")" "$(sha256sum <"$BATS_TEST_TMPDIR/in")"
}

@test "forward: several at once" {
	for i in 1 2 3 4; do
		printf 'GET / HTTP/1.0\r\n\r\n' | sbx-net "$ID" forward 8000 >"$BATS_TEST_TMPDIR/o$i" &
	done
	wait
	for i in 1 2 3 4; do assert_contains "$(cat "$BATS_TEST_TMPDIR/o$i")" "hello-from-guest"; done
}

@test "forward: a port nobody listens on is refused" {
	run sbx-net "$ID" forward 8999 </dev/null
	assert_eq "$status" 1 "$output"
	assert_contains "$output" "refused"
	run sbx-net "$ID" forward 0 </dev/null
	assert_eq "$status" 2
	run sbx-net "$ID" forward 65536 </dev/null
	assert_eq "$status" 2
}

@test "exposures: expose, list, unexpose" {
	run -0 sbx-net --json "$ID" expose 8000
	local eid url
	eid=$(jq -r .id <<<"$output")
	url=$(jq -r .url <<<"$output")
	[[ "$eid" == ex_* ]] || fail "id $eid"
	assert_eq "$url" "http://8000-${ID/_/}.localhost/"
	assert_eq "$(jq -r .protected <<<"$output")" false
	run -0 sbx-net "$ID" expose 9000 --protected
	assert_eq "$output" "http://9000-${ID/_/}.localhost/"
	run sbx-net "$ID" expose 8000
	assert_eq "$status" 4 "$output"
	assert_contains "$output" "$eid"
	run -0 sbx-net --json "$ID" exposures
	assert_eq "$(jq -r 'map(.port) | join(",")' <<<"$output")" "8000,9000"
	assert_eq "$(jq -r '.[1].protected' <<<"$output")" true
	run -0 sbx-net "$ID" exposures
	assert_contains "$output" "protected"
	run -0 sbx-net "$ID" unexpose "$eid"
	run sbx-net "$ID" unexpose "$eid"
	assert_eq "$status" 3 "$output"
	run -0 sbx-net --json "$ID" exposures
	assert_eq "$(jq -r 'map(.port) | join(",")' <<<"$output")" "9000"
	run sbx-net "$ID" unexpose 'ex_../../x'
	assert_eq "$status" 2
	run sbx-net "$ID" expose 70000
	assert_eq "$status" 2
}
