#!/usr/bin/env bats
# Issue 13, items 7 and 8: port forwards through the agent channel,
# exposures (preview URLs routed by sbx-shim from their Host header) and
# signed file URLs.  One air-gapped guest of alice's serves HTTP (busybox
# httpd, CGI included), a byte echo (nc -e cat), a header dump and a
# WebSocket echo (tests/fixtures/wsecho.c), all on its loopback; the host
# reaches them only through forwards (the guest has no route to it).
load helpers
load api

bats_require_minimum_version 1.5.0

# A preview URL's host for PORT of the shared sandbox.
phost() { echo "$1-${ID/_/}.localhost"; }

setup_file() {
	omr_setup_file
	local conf=$BATS_FILE_TMPDIR/omnirun.conf d=$BATS_FILE_TMPDIR
	{ cat "$OMNIRUN_CONF" 2>/dev/null
	  printf '[api]\nrate = 500\nrate_burst = 1000\nsign_ttl_max = 600\n'
	  printf 'mail_outbox = %s\n' "$d/outbox"
	} >"$conf"
	mkdir -p "$d/outbox"
	export OMNIRUN_CONF=$conf
	sbx-shim -l 127.0.0.1:0 -p "$d/port" 2>>"$d/shim.log" &
	echo $! >"$d/shim.pid"
	for _ in $(seq 100); do [ -s "$d/port" ] && break; sleep 0.05; done
	export URL=http://127.0.0.1:$(cat "$d/port")
	export ALICE=$(sbx-user token "alice-$RANDOM$RANDOM@expose.test")
	export BOB=$(sbx-user token "bob-$RANDOM$RANDOM@expose.test")
	call "$ALICE" POST /sandboxes -d '{"timeout": 900}'
	[ "$STATUS" = 201 ] || { echo "create: $STATUS $BODY" >&2; return 1; }
	export ID=$(jq -r .sandboxId <<<"$BODY")
	echo "$ID" >>"$OMR_TRACK"
	# What the guest serves.
	head -c 4194304 /dev/urandom >"$d/big"
	sbx-files "$ID" put -p "$d/big" /srv/big >/dev/null
	sbx-files "$ID" put -m 0755 "$OMNIRUN_BUILD/tests/wsecho" /bin/wsecho >/dev/null
	printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho first\nsleep 2\necho second\n' |
		sbx-files "$ID" put -p -m 0755 - /srv/cgi-bin/slow >/dev/null
	printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\nhead -c "$CONTENT_LENGTH" | sha256sum\n' |
		sbx-files "$ID" put -p -m 0755 - /srv/cgi-bin/sum >/dev/null
	# The request head it got, as the body of its answer.
	printf '#!/bin/sh\nprintf "HTTP/1.0 200 OK\\r\\n\\r\\n"\ncr=$(printf "\\r")\nwhile IFS= read -r l; do [ "$l" = "$cr" ] && break; echo "$l"; done\n' |
		sbx-files "$ID" put -p -m 0755 - /srv/dump >/dev/null
	sbx-exec -c 'echo hello-from-guest >/srv/index.html' "$ID"
	sbx-exec -b -- "$ID" httpd -f -p 127.0.0.1:8000 -h /srv >/dev/null
	sbx-exec -b -- "$ID" nc -ll -p 9000 -e /bin/cat >/dev/null
	sbx-exec -b -- "$ID" nc -ll -p 8002 -e /srv/dump >/dev/null
	sbx-exec -b -- "$ID" wsecho 8080 >/dev/null
	for _ in $(seq 50); do
		printf 'GET / HTTP/1.0\r\n\r\n' | sbx-net "$ID" forward 8000 2>/dev/null | grep -q 200 && break
		sleep 0.2
	done
}
teardown_file() {
	local pid
	pid=$(cat "$BATS_FILE_TMPDIR/shim.pid" 2>/dev/null) && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	omr_teardown_file
}
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
	run -0 timeout 60 sh -c "sbx-net '$ID' forward 9000 <'$BATS_FILE_TMPDIR/big' >'$BATS_TEST_TMPDIR/out'"
	assert_eq "$(sha256sum <"$BATS_TEST_TMPDIR/out")" "$(sha256sum <"$BATS_FILE_TMPDIR/big")"
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

@test "sbx-net: expose, exposures, unexpose" {
	run -0 sbx-net --json "$ID" expose 7000
	local eid url
	eid=$(jq -r .id <<<"$output")
	url=$(jq -r .url <<<"$output")
	[[ "$eid" == ex_* ]] || fail "id $eid"
	assert_eq "$url" "http://7000-${ID/_/}.localhost/"
	assert_eq "$(jq -r .protected <<<"$output")" false
	run -0 sbx-net "$ID" expose 7001 --protected
	assert_eq "$output" "http://7001-${ID/_/}.localhost/"
	run sbx-net "$ID" expose 7000
	assert_eq "$status" 4 "$output"
	assert_contains "$output" "$eid"
	run -0 sbx-net --json "$ID" exposures
	assert_eq "$(jq -r 'map(.port) | join(",")' <<<"$output")" "7000,7001"
	assert_eq "$(jq -r '.[1].protected' <<<"$output")" true
	run -0 sbx-net "$ID" exposures
	assert_contains "$output" "protected"
	run -0 sbx-net "$ID" unexpose "$eid"
	run sbx-net "$ID" unexpose "$eid"
	assert_eq "$status" 3 "$output"
	run -0 sbx-net "$ID" unexpose "$(sbx-net --json "$ID" exposures | jq -r '.[0].id')"
	run -0 sbx-net --json "$ID" exposures
	assert_eq "$output" "[]"
	run sbx-net "$ID" unexpose 'ex_../../x'
	assert_eq "$status" 2
	run sbx-net "$ID" expose 70000
	assert_eq "$status" 2
}

@test "API: exposures are created, listed and removed by their owner only" {
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 8000}'
	assert_eq "$STATUS" 201 "$BODY"
	assert_eq "$(jq -r .url <<<"$BODY")" "http://$(phost 8000)/"
	assert_eq "$(jq -r .protected <<<"$BODY")" false
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 8000}'
	assert_eq "$STATUS" 409 "$BODY"
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 0}'
	assert_eq "$STATUS" 400 "$BODY"
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 80, "bogus": 1}'
	assert_eq "$STATUS" 400 "$BODY"
	call "$BOB" POST "/sandboxes/$ID/exposures" -d '{"port": 8001}'
	assert_eq "$STATUS" 404 "$BODY"
	call "$BOB" GET "/sandboxes/$ID/exposures"
	assert_eq "$STATUS" 404 "$BODY"
	call "" GET "/sandboxes/$ID/exposures"
	assert_eq "$STATUS" 401 "$BODY"
	for p in 8080 9000; do
		call "$ALICE" POST "/sandboxes/$ID/exposures" -d "{\"port\": $p}"
		assert_eq "$STATUS" 201 "$BODY"
	done
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 8002, "protected": true}'
	assert_eq "$STATUS" 201 "$BODY"
	call "$ALICE" GET "/sandboxes/$ID/exposures"
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r 'map("\(.port):\(.protected)") | join(",")' <<<"$BODY")" \
		"8000:false,8080:false,9000:false,8002:true"
}

@test "preview: a public exposure serves the guest's httpd, no token needed" {
	call "" GET "/index.html" -H "Host: $(phost 8000)"
	assert_eq "$STATUS" 200 "$BODY"
	assert_eq "$BODY" "hello-from-guest"
	# 4 MiB, intact, with its length.
	curl -sS -m 60 -H "Host: $(phost 8000)" -D "$BATS_TEST_TMPDIR/h" "$URL/big" >"$BATS_TEST_TMPDIR/big"
	assert_eq "$(sha256sum <"$BATS_TEST_TMPDIR/big")" "$(sha256sum <"$BATS_FILE_TMPDIR/big")"
	grep -qi '^content-length: 4194304' "$BATS_TEST_TMPDIR/h" || fail "no length: $(cat "$BATS_TEST_TMPDIR/h")"
	# A request body (1 MiB) reaches a CGI.
	head -c 1048576 /dev/urandom >"$BATS_TEST_TMPDIR/body"
	call "" POST "/cgi-bin/sum" -H "Host: $(phost 8000)" --data-binary @"$BATS_TEST_TMPDIR/body"
	assert_eq "$STATUS" 200 "$BODY"
	assert_eq "${BODY%% *}" "$(sha256sum <"$BATS_TEST_TMPDIR/body" | cut -d' ' -f1)"
	# A 404 of the guest's is the guest's.
	call "" GET "/nope" -H "Host: $(phost 8000)"
	assert_eq "$STATUS" 404
}

@test "preview: an answer is streamed as the guest writes it" {
	local t1 t2
	while IFS= read -r l; do
		case $l in first) t1=$(date +%s%N) ;; second) t2=$(date +%s%N) ;; esac
	done < <(curl -sSN -m 30 -H "Host: $(phost 8000)" "$URL/cgi-bin/slow")
	[ -n "$t1" ] && [ -n "$t2" ] || fail "lines missing"
	# The first line came before the guest wrote the second (2 s later).
	[ $(((t2 - t1) / 1000000)) -ge 1500 ] || fail "not streamed: $(((t2 - t1) / 1000000)) ms apart"
}

@test "preview: a WebSocket echo in the guest, through the shim's upgrade" {
	run -0 python3 "$OMNIRUN_SRC/tests/fixtures/wsclient.py" "${URL#http://}" "$(phost 8080)"
	assert_eq "$output" ok
}

@test "preview: protected exposures need the owner's token, which the guest never sees" {
	call "" GET "/x" -H "Host: $(phost 8002)"
	assert_eq "$STATUS" 401 "$BODY"
	call "$BOB" GET "/x" -H "Host: $(phost 8002)"
	assert_eq "$STATUS" 404 "$BODY"
	call "$ALICE" GET "/x?a=1&b=%20" -H "Host: $(phost 8002)"
	assert_eq "$STATUS" 200 "$BODY"
	assert_contains "$BODY" "GET /x?a=1&b=%20 HTTP/1.0"
	assert_contains "$BODY" "X-Forwarded-For: 127.0.0.1"
	[[ "$BODY" != *"$ALICE"* && "$BODY" != *uthorization* ]] || fail "the token reached the guest: $BODY"
	# An answer that is not HTTP (the echo sends the request back) is 502.
	call "" GET "/" -H "Host: $(phost 9000)"
	assert_eq "$STATUS" 502 "$BODY"
}

@test "preview: unknown hosts and ports are 404, a closed port 502" {
	call "" GET "/" -H "Host: $(phost 8999)"
	assert_eq "$STATUS" 404 "$BODY"
	call "" GET "/" -H "Host: 8000-sbaaaaaaaaaa.localhost"
	assert_eq "$STATUS" 404 "$BODY"
	call "" GET "/" -H "Host: 08000-${ID/_/}.localhost"
	# Not a preview host: the API's own routes answer.
	assert_eq "$STATUS" 404 "$BODY"
	call "$ALICE" POST "/sandboxes/$ID/exposures" -d '{"port": 8999}'
	assert_eq "$STATUS" 201 "$BODY"
	call "" GET "/" -H "Host: $(phost 8999)"
	assert_eq "$STATUS" 502 "$BODY"
	assert_contains "$BODY" "refused"
	# Removing the exposure ends the preview.
	call "$ALICE" GET "/sandboxes/$ID/exposures"
	local eid
	eid=$(jq -r '.[] | select(.port == 8999) | .id' <<<"$BODY")
	call "$ALICE" DELETE "/sandboxes/$ID/exposures/$eid"
	assert_eq "$STATUS" 204 "$BODY"
	call "$ALICE" DELETE "/sandboxes/$ID/exposures/$eid"
	assert_eq "$STATUS" 404 "$BODY"
	call "" GET "/" -H "Host: $(phost 8999)"
	assert_eq "$STATUS" 404 "$BODY"
}

@test "signed URLs: read without a token; expired, tampered, other sandbox or op refused" {
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read", "ttl": 60}'
	assert_eq "$STATUS" 201 "$BODY"
	local url=$(jq -r .url <<<"$BODY")
	[[ "$url" == "$URL/files/signed/$ID?"* ]] || fail "url $url"
	run -0 curl -sS -f -m 30 "$url"
	assert_eq "$output" hello-from-guest
	# Tampered: the signature, the path, the expiry, the op.
	local sig=${url##*sig=}
	local bad=${url%sig=*}sig=$( [ "${sig:0:1}" = A ] && echo B || echo A )${sig:1}
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "$bad"
	assert_eq "$output" 403
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "${url/index.html/big}"
	assert_eq "$output" 403
	local exp=${url#*exp=}
	exp=${exp%%&*}
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "${url/exp=$exp/exp=$((exp + 1000))}"
	assert_eq "$output" 403
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' -X POST --data-binary x "${url/op=read/op=write}"
	assert_eq "$output" 403
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' -X POST --data-binary x "$url"
	assert_eq "$output" 403
	# Another sandbox: bob's own, same path.
	call "$BOB" POST /sandboxes -d '{"timeout": 300}'
	assert_eq "$STATUS" 201 "$BODY"
	local other=$(jq -r .sandboxId <<<"$BODY")
	echo "$other" >>"$OMR_TRACK"
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "${url/$ID/$other}"
	assert_eq "$output" 403
	# bob cannot sign for alice's sandbox.
	call "$BOB" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read", "ttl": 60}'
	assert_eq "$STATUS" 404 "$BODY"
	# Expiry: mandatory, and it passes.
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read"}'
	assert_eq "$STATUS" 400 "$BODY"
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/../etc/passwd", "op": "read", "ttl": 5}'
	assert_eq "$STATUS" 400 "$BODY"
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read", "ttl": 1}'
	url=$(jq -r .url <<<"$BODY")
	sleep 2.2
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "$url"
	assert_eq "$output" 403
	# Keys rotate: an old URL works until its key is removed.
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read", "ttl": 60}'
	url=$(jq -r .url <<<"$BODY")
	local old=${url#*kid=}
	old=${old%%&*}
	run -0 sbx-shim --rotate-sign-key
	local new=$output
	[ "$new" != "$old" ] || fail "the same key"
	run -0 curl -sS -f -m 30 "$url"
	run sbx-shim --remove-sign-key "$new"
	assert_eq "$status" 4 "$output"
	run -0 sbx-shim --remove-sign-key "$old"
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "$url"
	assert_eq "$output" 403
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/srv/index.html", "op": "read", "ttl": 60}'
	assert_contains "$(jq -r .url <<<"$BODY")" "kid=$new&"
	run -0 curl -sS -f -m 30 "$(jq -r .url <<<"$BODY")"
	# The ttl is cut to [api] sign_ttl_max (600 here).
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/x", "op": "read", "ttl": 99999}'
	assert_eq "$STATUS" 201 "$BODY"
	[ $(($(jq -r .expiresAtUnix <<<"$BODY") - $(date +%s))) -le 601 ] || fail "ttl not capped: $BODY"
}

@test "signed URLs: an upload token for a directory writes below it, nowhere else" {
	call "$ALICE" POST "/sandboxes/$ID/files/sign" -d '{"path": "/tmp/upload/*", "op": "write", "ttl": 60}'
	assert_eq "$STATUS" 201 "$BODY"
	local url=$(jq -r .url <<<"$BODY")
	assert_contains "$url" "pattern=/tmp/upload/%2A"
	run curl -sS -m 30 -w '\n%{http_code}' -X POST --data-binary @"$BATS_FILE_TMPDIR/big" "$url&path=/tmp/upload/a.bin"
	assert_eq "${output##*$'\n'}" 201 "$output"
	run -0 sbx-exec "$ID" -- sha256sum /tmp/upload/a.bin
	assert_eq "${output%% *}" "$(sha256sum <"$BATS_FILE_TMPDIR/big" | cut -d' ' -f1)"
	for p in /tmp/upload2/x /tmp/upload /etc/passwd; do
		run curl -sS -m 30 -o /dev/null -w '%{http_code}' -X POST --data-binary x "$url&path=$p"
		assert_eq "$output" 403 "$p"
	done
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' -X POST --data-binary x "$url&path=/tmp/upload/../../etc/passwd"
	assert_eq "$output" 400
	run curl -sS -m 30 -o /dev/null -w '%{http_code}' "$url&path=/tmp/upload/a.bin"
	assert_eq "$output" 403
}
