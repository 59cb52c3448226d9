#!/usr/bin/env bats
# Issue 14: sbx-shim's E2B-compatible endpoint (doc/e2b.md), driven by the
# real E2B SDK from the npm registry (pinned: tests/e2b/package-lock.json)
# and by curl, against tiny sandboxes, on loopback.  E2B's "base" template
# maps to tiny here ([e2b] templates).
load helpers
load api

bats_require_minimum_version 1.5.0

setup_file() {
	omr_setup_file
	local conf=$BATS_FILE_TMPDIR/omnirun.conf
	{ cat "$OMNIRUN_CONF" 2>/dev/null
	  printf '[api]\nconnection_timeout = 5\nmax_body_kb = 64\nrate = 200\nrate_burst = 400\n'
	  printf '[e2b]\ntemplates = base=tiny\n'
	} >"$conf"
	export OMNIRUN_CONF=$conf OMNIRUN_DEBUG=1 SHIM_LOG=$BATS_FILE_TMPDIR/shim.log
	# make check-e2b-latest: the newest SDK instead of the pinned one.
	E2B_MODULE=$("$OMNIRUN_SRC/tests/e2b/install" ${E2B_LATEST:+--latest}) || return 1
	export E2B_MODULE
	sbx-shim -l 127.0.0.1:0 -p "$BATS_FILE_TMPDIR/port" --e2b-listen 127.0.0.1:0 \
		--e2b-port-file "$BATS_FILE_TMPDIR/e2b-port" 2>>"$SHIM_LOG" &
	echo $! >"$BATS_FILE_TMPDIR/shim.pid"
	disown
	for _ in $(seq 100); do
		[ -s "$BATS_FILE_TMPDIR/port" ] && break
		sleep 0.05
	done
	export URL=http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/e2b-port")
	export E2B_API_URL=$URL E2B_SANDBOX_URL=$URL
	export ALICE_EMAIL=alice-$RANDOM$RANDOM@e2b.test
	export ALICE=$(sbx-user token "$ALICE_EMAIL") BOB=$(sbx-user token "bob-$RANDOM$RANDOM@e2b.test")
	export E2B_API_KEY=$ALICE RUN_TAG=run$RANDOM$RANDOM
	# The SDK's own sandboxes are killed by it; these are for curl.
	call_e2b "$ALICE" POST /sandboxes -d '{"templateID": "base", "timeout": 900}'
	[ "$STATUS" = 201 ] || { echo "create: $STATUS $BODY" >&2; return 1; }
	export ID=$(jq -r .sandboxID <<<"$BODY") SHARED_ID=$(jq -r .sandboxID <<<"$BODY")
	echo "$ID" >>"$OMR_TRACK"
}

teardown_file() {
	kill "$(cat "$BATS_FILE_TMPDIR/shim.pid")" 2>/dev/null
	omr_teardown_file
}
setup() { omr_setup; }
teardown() { omr_teardown; }

# call_e2b KEY METHOD PATH [curl args...]: as call, with the key in X-API-KEY.
call_e2b() {
	local key=$1
	shift
	call "" "$@" ${key:+-H "X-API-KEY: $key"} -H 'Content-Type: application/json'
}

sdk() {
	run --separate-stderr timeout 240 node "$OMNIRUN_SRC/tests/e2b/sdk.mjs" "$@"
	echo "$output"
	[ -z "$stderr" ] || echo "stderr: $stderr"
	[ "$status" -eq 0 ] || fail "sdk.mjs $* failed (status $status)"
	! grep -q '^FAIL' <<<"$output" || fail "sdk.mjs $*: $(grep '^FAIL' <<<"$output")"
}

@test "SDK: create, getInfo, list with X-Next-Token and metadata, connect, kill" {
	sdk lifecycle
	# The same accounts, history and audit as OmniRun's API.
	sbx-user audit "$ALICE_EMAIL" --json | jq -e '[.[].action] | index("create") and index("destroy")' >/dev/null ||
		fail "no create/destroy in the audit log"
}

@test "SDK: commands.run streams output and exit codes; background, list, connect by pid, kill" {
	sdk commands
}

@test "SDK: files write (multipart, several at once), read, list, makeDir, rename, getInfo, remove, watchDir" {
	sdk files
}

@test "SDK: getHost(port) reaches the guest's port through the Host header; protected with allowPublicTraffic: false" {
	BOB_KEY=$BOB sdk ports
}

@test "curl: E2B's ports are an exposure of every port (WebSocket too), which the owner sees and may withdraw" {
	local omr=http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/port") host=8000-$SHARED_ID.localhost eid
	sbx-exec -c 'mkdir -p /tmp/w && echo shared >/tmp/w/index.html' "$SHARED_ID"
	sbx-exec -b -- "$SHARED_ID" httpd -f -p 127.0.0.1:8000 -h /tmp/w >/dev/null
	sbx-files "$SHARED_ID" put -m 0755 "$OMNIRUN_BUILD/tests/wsecho" /bin/wsecho >/dev/null
	sbx-exec -b -- "$SHARED_ID" wsecho 8080 >/dev/null
	# The request head it got, as the body of its answer.
	printf '#!/bin/sh\nprintf "HTTP/1.0 200 OK\\r\\n\\r\\n"\ncr=$(printf "\\r")\nwhile IFS= read -r l; do [ "$l" = "$cr" ] && break; echo "$l"; done\n' |
		sbx-files "$SHARED_ID" put -p -m 0755 - /tmp/dump >/dev/null
	sbx-exec -b -- "$SHARED_ID" nc -ll -p 8002 -e /tmp/dump >/dev/null
	for _ in $(seq 50); do
		curl -sf -m 10 -H "Host: $host" "$URL/index.html" >/dev/null && break
		sleep 0.2
	done
	run -0 curl -sS -m 10 -H "Host: $host" "$URL/index.html"
	assert_eq "$output" shared
	# A WebSocket through the E2B listener's upgrade.
	run -0 python3 "$OMNIRUN_SRC/tests/fixtures/wsclient.py" "${URL#http://}" "8080-$SHARED_ID.localhost"
	assert_eq "$output" ok
	# runCode's way: E2B_SANDBOX_URL with E2b-Sandbox-Id and a port
	# other than envd's in E2b-Sandbox-Port; the owner's token in
	# X-Access-Token never reaches the guest.
	run -0 curl -sS -m 10 -X POST -d '{}' -H "E2b-Sandbox-Id: $SHARED_ID" -H "E2b-Sandbox-Port: 8002" \
		-H "X-Access-Token: $ALICE" -H "E2B-Traffic-Access-Token: $ALICE" "$URL/execute?x=1"
	assert_contains "$output" "POST /execute?x=1 HTTP/1.0"
	assert_contains "$output" "Content-Length: 2"
	[[ "$output" != *"$ALICE"* ]] || fail "the guest got the owner's token: $output"
	# OmniRun's listener routes the same host (and OmniRun's spelling, without "_").
	run -0 curl -sS -m 10 -H "Host: 8000-${SHARED_ID/_/}.localhost" "$omr/index.html"
	assert_eq "$output" shared
	run -0 curl -sS -m 10 -H "Authorization: Bearer $ALICE" "$omr/sandboxes/$SHARED_ID/exposures"
	assert_eq "$(jq -c '[.[] | {port, protected}]' <<<"$output")" '[{"port":0,"protected":false}]'
	assert_eq "$(jq -r '.[0].url' <<<"$output")" "http://*-${SHARED_ID/_/}.localhost/"
	eid=$(jq -r '.[0].id' <<<"$output")
	run -0 curl -sS -m 10 -o /dev/null -w '%{http_code}' -X DELETE \
		-H "Authorization: Bearer $ALICE" "$omr/sandboxes/$SHARED_ID/exposures/$eid"
	assert_eq "$output" 204
	run -0 curl -sS -m 10 -o /dev/null -w '%{http_code}' -H "Host: $host" "$URL/index.html"
	assert_eq "$output" 404
}

@test "SDK: bad key, unknown id, setTimeout (the lifetime from now) and the sandbox limit (429) as the SDK reports them" {
	local email=lim-$RANDOM$RANDOM@e2b.test
	LIMITED_KEY=$(sbx-user token "$email")
	sbx-user limit "$email" 1
	LIMITED_KEY=$LIMITED_KEY sdk errors
}

@test "curl: an unknown route is 501 with a JSON error; an unknown envd method a Connect error" {
	call_e2b "$ALICE" GET /templates
	assert_eq "$STATUS" 501
	assert_eq "$(jq -r .code <<<"$BODY")" 501
	assert_contains "$(jq -r .message <<<"$BODY")" "not supported"
	call_e2b "$ALICE" POST /process.Process/StreamInput -d '{}'
	assert_eq "$STATUS" 501
	assert_eq "$(jq -r .code <<<"$BODY")" unimplemented
	# The OmniRun listener does not serve E2B's routes, nor this one OmniRun's.
	call_e2b "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "true"}'
	assert_eq "$STATUS" 501
}

@test "curl: no key or a bad one is 401; another user's sandbox is 404, on REST and envd routes" {
	call_e2b "" GET /v2/sandboxes
	assert_eq "$STATUS" 401
	assert_eq "$(jq -r .code <<<"$BODY")" 401
	call_e2b omr_bad GET "/sandboxes/$ID"
	assert_eq "$STATUS" 401
	call_e2b "$ALICE" GET "/sandboxes/$ID"
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .sandboxID <<<"$BODY")" "$ID"
	call_e2b "$BOB" GET "/sandboxes/$ID"
	assert_eq "$STATUS" 404
	assert_eq "$(jq -r .code <<<"$BODY")" 404
	call_e2b "$BOB" DELETE "/sandboxes/$ID"
	assert_eq "$STATUS" 404
	call "" POST /filesystem.Filesystem/Stat -H "X-Access-Token: $BOB" -H "E2b-Sandbox-Id: $ID" \
		-H 'Content-Type: application/json' -d '{"path": "/"}'
	assert_eq "$STATUS" 404
	assert_eq "$(jq -r .code <<<"$BODY")" not_found
	call "" GET "/files?path=/etc/passwd" -H "X-Access-Token: $BOB" -H "E2b-Sandbox-Id: $ID"
	assert_eq "$STATUS" 404
	# Alice's own token reaches it.
	call "" POST /filesystem.Filesystem/Stat -H "X-Access-Token: $ALICE" -H "E2b-Sandbox-Id: $ID" \
		-H 'Content-Type: application/json' -d '{"path": "/"}'
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .entry.type <<<"$BODY")" FILE_TYPE_DIRECTORY
}

@test "curl: a body over [api] max_body_kb is 413; bad input is 400" {
	head -c 70000 /dev/zero | tr '\0' ' ' >"$BATS_TEST_TMPDIR/big"
	call_e2b "$ALICE" POST /v2/sandboxes --data-binary @"$BATS_TEST_TMPDIR/big"
	assert_eq "$STATUS" 413
	assert_eq "$(jq -r .code <<<"$BODY")" 413
	call_e2b "$ALICE" POST /v2/sandboxes -d '{"templateID": 5}'
	assert_eq "$STATUS" 400
	call_e2b "$ALICE" POST /v2/sandboxes -d '{"templateID": "base", "envVars": {"A": "1"}}'
	assert_eq "$STATUS" 501
	# A Connect stream whose body is no envelope.
	call "" POST /process.Process/Start -H "X-Access-Token: $ALICE" -H "E2b-Sandbox-Id: $ID" \
		-H 'Content-Type: application/connect+json' -d '{"process": {"cmd": "true"}}'
	assert_eq "$STATUS" 200
	assert_contains "$BODY" '"invalid_argument"'
}

@test "curl: Process/Start answers Connect envelopes: start, base64 data, end, end of stream" {
	local msg='{"process":{"cmd":"/bin/sh","args":["-c","echo hi; exit 4"]}}'
	python3 -c 'import sys, struct; m = sys.argv[1].encode(); sys.stdout.buffer.write(b"\0" + struct.pack(">I", len(m)) + m)' \
		"$msg" >"$BATS_TEST_TMPDIR/req"
	curl -sS -m 60 -o "$BATS_TEST_TMPDIR/resp" -H "X-Access-Token: $ALICE" -H "E2b-Sandbox-Id: $ID" \
		-H 'Content-Type: application/connect+json' --data-binary @"$BATS_TEST_TMPDIR/req" \
		"$URL/process.Process/Start"
	# Split the envelopes: flag byte, 4-byte length, JSON.
	python3 - "$BATS_TEST_TMPDIR/resp" >"$BATS_TEST_TMPDIR/msgs" <<'EOF'
import sys, struct
b = open(sys.argv[1], 'rb').read()
while b:
    flags, n = b[0], struct.unpack('>I', b[1:5])[0]
    print(flags, b[5:5 + n].decode())
    b = b[5 + n:]
EOF
	cat "$BATS_TEST_TMPDIR/msgs"
	grep -v '"keepalive"' "$BATS_TEST_TMPDIR/msgs" >"$BATS_TEST_TMPDIR/m"
	head -n1 "$BATS_TEST_TMPDIR/m" | grep -q '^0 {"event":{"start":{"pid":[0-9]*}}}$' || fail "no start first"
	assert_eq "$(sed -n 2p "$BATS_TEST_TMPDIR/m")" "0 {\"event\":{\"data\":{\"stdout\":\"$(printf 'hi\n' | base64)\"}}}"
	sed -n 3p "$BATS_TEST_TMPDIR/m" | grep -q '"end":{"exitCode":4,"exited":true,"status":"exit status 4"}' ||
		fail "no end with exit code 4"
	assert_eq "$(tail -n1 "$BATS_TEST_TMPDIR/m")" "2 {}"
}

@test "curl: connect resumes a paused sandbox; list filters by state; timeout sets the lifetime" {
	run -0 sbx-pause "$SHARED_ID"
	call_e2b "$ALICE" GET "/v2/sandboxes?state=paused"
	[ "$STATUS" = 200 ]
	run -0 jq -r --arg id "$SHARED_ID" '[.[] | select(.sandboxID == $id) | .state] | join(",")' <<<"$BODY"
	[ "$output" = paused ]
	call_e2b "$ALICE" GET "/v2/sandboxes?state=running"
	run -0 jq --arg id "$SHARED_ID" '[.[] | select(.sandboxID == $id)] | length' <<<"$BODY"
	[ "$output" = 0 ]
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/connect" -d '{"timeout": 700}'
	[ "$STATUS" = 200 ] || fail "connect: $STATUS $BODY"
	run -0 sbx-ls --json "$SHARED_ID"
	[ "$(jq -r 'if type == "array" then .[0].state else .state end' <<<"$output")" = running ]
	run -0 sbx-exec "$SHARED_ID" -- echo awake
	[ "$output" = awake ]
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/timeout" -d '{"timeout": 300}'
	[ "$STATUS" = 204 ] || fail "timeout: $STATUS $BODY"
	call_e2b "$ALICE" GET "/sandboxes/$SHARED_ID"
	local left=$(( $(date -d "$(jq -r .endAt <<<"$BODY")" +%s) - $(date +%s) ))
	[ "$left" -gt 290 ] && [ "$left" -le 301 ] || fail "endAt is $left s away, not 300"
	call_e2b "$BOB" POST "/sandboxes/$SHARED_ID/timeout" -d '{"timeout": 30}'
	[ "$STATUS" = 404 ]
}

@test "curl: E2B's pause is a persist (nothing of the sandbox runs); resume and connect bring it back as it was" {
	run -0 sbx-exec "$SHARED_ID" -- sh -c 'echo before-pause >/data/e2b-pause'
	call_e2b "$BOB" POST "/sandboxes/$SHARED_ID/pause"
	[ "$STATUS" = 404 ] || fail "bob's pause: $STATUS"
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/resume" -d '{}'
	[ "$STATUS" = 409 ] || fail "resume of a running one: $STATUS $BODY"
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/pause"
	[ "$STATUS" = 204 ] || fail "pause: $STATUS $BODY"
	[ "$(sb_field "$SHARED_ID" state)" = persisted ] || fail "not persisted: $(sb_field "$SHARED_ID" state)"
	! pgrep -f "$SHARED_ID" >/dev/null || fail "a process of the paused sandbox runs"
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/pause"
	[ "$STATUS" = 409 ] || fail "pause of a paused one: $STATUS"
	call_e2b "$ALICE" GET "/sandboxes/$SHARED_ID"
	[ "$(jq -r .state <<<"$BODY")" = paused ] || fail "state: $BODY"
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/resume" -d '{"timeout": 600}'
	[ "$STATUS" = 201 ] || fail "resume: $STATUS $BODY"
	run -0 sbx-exec "$SHARED_ID" -- cat /data/e2b-pause
	[ "$output" = before-pause ]
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/pause"
	[ "$STATUS" = 204 ]
	call_e2b "$ALICE" POST "/sandboxes/$SHARED_ID/connect" -d '{}'
	[ "$STATUS" = 200 ] || fail "connect: $STATUS $BODY"
	[ "$(sb_field "$SHARED_ID" state)" = running ]
	run -0 sbx-exec "$SHARED_ID" -- cat /data/e2b-pause
	[ "$output" = before-pause ]
}

@test "the E2B listener is off unless asked for" {
	run sbx-shim -l 127.0.0.1:0 --e2b-port-file "$BATS_TEST_TMPDIR/x"
	assert_eq "$status" 2
	assert_contains "$output" "needs an E2B listener"
}
