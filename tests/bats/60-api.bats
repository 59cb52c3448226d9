#!/usr/bin/env bats
# Issue 13: the REST API through sbx-shim, with curl and jq, on loopback.
# One shim for the file (a free port, its own log) and one sandbox of
# alice's shared by the tests that only look or run commands; tests that
# count sandboxes use users of their own.
load helpers
load api

bats_require_minimum_version 1.5.0

start_shim() {
	rm -f "$BATS_FILE_TMPDIR/port"
	sbx-shim -l "127.0.0.1:${1:-0}" -p "$BATS_FILE_TMPDIR/port" 2>>"$SHIM_LOG" &
	echo $! >"$BATS_FILE_TMPDIR/shim.pid"
	# Not a job of the test: teardown kills those, and the shim is the
	# file's.
	disown
	for _ in $(seq 100); do
		[ -s "$BATS_FILE_TMPDIR/port" ] && break
		sleep 0.05
	done
	PORT=$(cat "$BATS_FILE_TMPDIR/port")
	export PORT URL=http://127.0.0.1:$PORT SHIM_PID=$(cat "$BATS_FILE_TMPDIR/shim.pid")
}

stop_shim() {
	local pid
	pid=$(cat "$BATS_FILE_TMPDIR/shim.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -f "$BATS_FILE_TMPDIR/shim.pid"
}

# A fresh user with a token: mkuser NAME prints the token.
mkuser() { sbx-user token "$1-$RANDOM$RANDOM@api.test" --name bats; }

setup_file() {
	omr_setup_file
	# The run's config plus the API's bounds, small enough to test.
	local conf=$BATS_FILE_TMPDIR/omnirun.conf
	{ cat "$OMNIRUN_CONF" 2>/dev/null
	  printf '[api]\nconnection_timeout = 3\nmax_body_kb = 64\nmax_upload_mb = 160\n'
	  printf 'rate = 200\nrate_burst = 400\nmail_outbox = %s\n' "$BATS_FILE_TMPDIR/outbox"
	} >"$conf"
	mkdir -p "$BATS_FILE_TMPDIR/outbox"
	export OMNIRUN_CONF=$conf OMNIRUN_DEBUG=1 SHIM_LOG=$BATS_FILE_TMPDIR/shim.log
	start_shim
	export ALICE_EMAIL=alice-$RANDOM$RANDOM@api.test BOB_EMAIL=bob-$RANDOM$RANDOM@api.test
	export ALICE=$(sbx-user token "$ALICE_EMAIL") BOB=$(sbx-user token "$BOB_EMAIL")
	call "$ALICE" POST /sandboxes -d '{"timeout": 900, "processes": 200, "metadata": {"k": "v"}}'
	[ "$STATUS" = 201 ] || { echo "create: $STATUS $BODY" >&2; return 1; }
	export ID=$(jq -r .sandboxId <<<"$BODY") CREATED=$BODY
	echo "$ID" >>"$OMR_TRACK"
}

teardown_file() {
	stop_shim
	omr_teardown_file
}
setup() { omr_setup; }
teardown() { omr_teardown; }

@test "every route served is in doc/openapi.yaml and every path there is served" {
	served=$(sbx-shim --print-routes | sort)
	described=$(python3 -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for p, ops in doc["paths"].items():
    for m in ops:
        if m != "parameters":
            print(m.upper(), p)' "$OMNIRUN_SRC/doc/openapi.yaml" | sort)
	diff <(echo "$served") <(echo "$described") || fail "route table and openapi.yaml differ"
	# And /openapi.json is that document.
	call "" GET /openapi.json
	assert_eq "$STATUS" 200
	python3 -c 'import sys, json, yaml; sys.exit(json.loads(sys.argv[2]) != yaml.safe_load(open(sys.argv[1])))' \
		"$OMNIRUN_SRC/doc/openapi.yaml" "$BODY" || fail "/openapi.json is not doc/openapi.yaml"
}

@test "health needs no token; everything else needs a valid, unrevoked one (401)" {
	call "" GET /healthz
	assert_eq "$STATUS" 200
	call "" GET /sandboxes
	assert_eq "$STATUS" 401
	jq -e .error <<<"$BODY" >/dev/null
	call "omr_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" GET /sandboxes
	assert_eq "$STATUS" 401
	# The right prefix, one character of the secret wrong.
	[ "${ALICE: -1}" = a ] && wrong=${ALICE%?}b || wrong=${ALICE%?}a
	call "$wrong" GET /sandboxes
	assert_eq "$STATUS" 401
	call "" GET /sandboxes -H "Authorization: Basic eDp5"
	assert_eq "$STATUS" 401
	call "$ALICE" GET /auth/me
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .email <<<"$BODY")" "$ALICE_EMAIL"
	# A token made through the API, listed without its secret, revoked.
	call "$ALICE" POST /auth/tokens -d '{"name": "ci"}'
	assert_eq "$STATUS" 201
	tok=$(jq -r .token <<<"$BODY") tid=$(jq -r .id <<<"$BODY")
	call "$tok" GET /auth/me
	assert_eq "$STATUS" 200
	call "$ALICE" GET /auth/tokens
	[[ "$BODY" != *"${tok:16}"* ]] || fail "the list shows a secret"
	assert_eq "$(jq "map(select(.id == $tid)) | length" <<<"$BODY")" 1
	call "$BOB" DELETE "/auth/tokens/$tid"
	assert_eq "$STATUS" 404
	call "$ALICE" DELETE "/auth/tokens/$tid"
	assert_eq "$STATUS" 204
	call "$tok" GET /auth/me
	assert_eq "$STATUS" 401
	# The log has one line per request and never a token.
	! grep -q "${ALICE:16}" "$SHIM_LOG" || fail "a token in the log"
	! grep -q "${tok:16}" "$SHIM_LOG" || fail "a token in the log"
	grep -q 'GET /auth/me 401 [0-9]* ms' "$SHIM_LOG" || fail "no log line: $(tail -3 "$SHIM_LOG")"
}

@test "create answers camelCase; list, status" {
	for k in sandboxId template state createdAt expiresAt network resources; do
		jq -e "has(\"$k\")" <<<"$CREATED" >/dev/null || fail "no $k in $CREATED"
	done
	assert_eq "$(jq -r .state <<<"$CREATED")" running
	assert_eq "$(jq -r .network.mode <<<"$CREATED")" air-gapped
	assert_eq "$(jq -r .metadata.k <<<"$CREATED")" v
	assert_eq "$(jq -r .resources.processes <<<"$CREATED")" 200
	call "$ALICE" GET /sandboxes
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r "map(.sandboxId) | index(\"$ID\") != null" <<<"$BODY")" true
	call "$ALICE" GET "/sandboxes/$ID"
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .resources.memoryMb <<<"$BODY")" "$(sb_field "$ID" memory_mb)"
	assert_eq "$(jq -c .metadata <<<"$BODY")" '{"k":"v"}'
}

@test "two users are isolated: another user's sandbox is 404, never 403" {
	call "$BOB" GET /sandboxes
	assert_eq "$BODY" "[]"
	for r in "GET /sandboxes/$ID" "DELETE /sandboxes/$ID" "GET /sandboxes/$ID/commands" \
		 "GET /sandboxes/$ID/files?path=/etc/hostname"; do
		call "$BOB" ${r% *} "${r#* }"
		assert_eq "$STATUS" 404 "$r"
	done
	call "$BOB" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo hi"}'
	assert_eq "$STATUS" 404
	call "$BOB" POST "/sandboxes/$ID/files?path=/tmp/x" --data-binary x
	assert_eq "$STATUS" 404
	# The same answer as for an id that never existed.
	call "$BOB" GET /sandboxes/sb_aaaaaaaaaa
	assert_eq "$STATUS" 404
	call "$ALICE" GET "/sandboxes/$ID"
	assert_eq "$(jq -r .state <<<"$BODY")" running
}

@test "commands: a JSON result, argv, env, cwd, stdin; the list" {
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo out; echo err >&2; exit 3"}'
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .stdout <<<"$BODY")" out
	assert_eq "$(jq -r .stderr <<<"$BODY")" err
	assert_eq "$(jq -r .exitCode <<<"$BODY")" 3
	jq -e '.durationMs >= 0' <<<"$BODY" >/dev/null
	call "$ALICE" POST "/sandboxes/$ID/commands" \
		-d '{"argv": ["/bin/sh", "-c", "echo $A; pwd; cat"], "env": {"A": "b c"}, "cwd": "/tmp", "stdin": "in\n"}'
	assert_eq "$(jq -r .stdout <<<"$BODY")" $'b c\n/tmp\nin'
	call "$ALICE" GET "/sandboxes/$ID/commands"
	assert_eq "$STATUS" 200
	jq -e 'length >= 2' <<<"$BODY" >/dev/null
	# Quiet for longer than the connection's idle timeout (3 s here).
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "sleep 5; echo late"}'
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .stdout <<<"$BODY")" late
	run curl -sS -N -m 30 -H "Authorization: Bearer $ALICE" -H 'Accept: text/event-stream' \
		-d '{"cmd": "sleep 5; echo late"}' "$URL/sandboxes/$ID/commands"
	assert_contains "$output" 'event: exit'
}

@test "commands: text/event-stream gives stdout and stderr events, then exit" {
	run curl -sS -N -m 30 -H "Authorization: Bearer $ALICE" -H 'Accept: text/event-stream' \
		-d '{"cmd": "echo one; sleep 1; echo two >&2; exit 5"}' "$URL/sandboxes/$ID/commands"
	assert_eq "$status" 0
	assert_contains "$output" $'event: stdout\ndata: {"data":"one\\n"}'
	assert_contains "$output" $'event: stderr\ndata: {"data":"two\\n"}'
	last=$(grep -A1 '^event: exit' <<<"$output" | sed -n 's/^data: //p')
	assert_eq "$(jq -r .exitCode <<<"$last")" 5
}

@test "commands: background returns a pid; a client that hangs up kills its command" {
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "sleep 300", "background": true}'
	assert_eq "$STATUS" 200
	pid=$(jq -r .pid <<<"$BODY")
	[ "$pid" -gt 0 ]
	sbx-exec "$ID" -- kill -0 "$pid"
	sbx-exec "$ID" -- kill "$pid"
	# Foreground, JSON and event stream: the client goes after 2 s.
	for accept in application/json text/event-stream; do
		curl -sS -m 2 -H "Authorization: Bearer $ALICE" -H "Accept: $accept" \
			-d '{"cmd": "echo $$ > /tmp/fg.pid; exec sleep 300"}' "$URL/sandboxes/$ID/commands" || true
		fg=$(sbx-exec "$ID" -- cat /tmp/fg.pid)
		for _ in $(seq 50); do
			sbx-exec "$ID" -- kill -0 "$fg" 2>/dev/null || break
			sleep 0.2
		done
		run sbx-exec "$ID" -- kill -0 "$fg"
		[ "$status" -ne 0 ] || fail "the command of a client that left still runs ($accept)"
	done
}

@test "files: upload, download byte for byte, list, remove" {
	head -c 1048577 /dev/urandom >"$BATS_TEST_TMPDIR/f"
	call "$ALICE" POST "/sandboxes/$ID/files?path=/tmp/up/f&mode=600" --data-binary @"$BATS_TEST_TMPDIR/f"
	assert_eq "$STATUS" 201
	assert_eq "$(jq -r .size <<<"$BODY")" 1048577
	curl -sS -f -H "Authorization: Bearer $ALICE" "$URL/sandboxes/$ID/files?path=/tmp/up/f" \
		-o "$BATS_TEST_TMPDIR/g"
	cmp "$BATS_TEST_TMPDIR/f" "$BATS_TEST_TMPDIR/g"
	call "$ALICE" GET "/sandboxes/$ID/files?path=/tmp/up&list=1"
	assert_eq "$(jq -r '.[] | select(.name == "f") | .size' <<<"$BODY")" 1048577
	assert_eq "$(sbx-exec "$ID" -- stat -c %a /tmp/up/f)" 600
	call "$ALICE" DELETE "/sandboxes/$ID/files?path=/tmp/up/f"
	assert_eq "$STATUS" 204
	call "$ALICE" GET "/sandboxes/$ID/files?path=/tmp/up/f"
	assert_eq "$STATUS" 404
	jq -e .error <<<"$BODY" >/dev/null
}

@test "files: paths with .., NUL, 64 KiB, relative or missing are 400" {
	long=/$(head -c 65536 /dev/zero | tr '\0' a)
	for q in "path=/tmp/../etc/passwd" "path=/tmp/a%00b" "path=tmp/x" "" "path=$long"; do
		call "$ALICE" GET "/sandboxes/$ID/files?$q"
		assert_eq "$STATUS" 400 "${q:0:40}"
		jq -e .error <<<"$BODY" >/dev/null || fail "no JSON error for ${q:0:40}"
	done
	call "$ALICE" POST "/sandboxes/$ID/files?path=/tmp/../x" --data-binary x
	assert_eq "$STATUS" 400
}

@test "files: 150 MiB both ways with bounded memory; a hang-up mid-upload leaves no file" {
	big=$BATS_TEST_TMPDIR/big
	head -c $((150 << 20)) /dev/urandom >"$big"
	before=$(awk '/^VmHWM/ {print $2}' /proc/$SHIM_PID/status)
	call "$ALICE" POST "/sandboxes/$ID/files?path=/data/big" --data-binary @"$big"
	assert_eq "$STATUS" 201
	curl -sS -f -H "Authorization: Bearer $ALICE" "$URL/sandboxes/$ID/files?path=/data/big" |
		cmp - "$big"
	peak=$(awk '/^VmHWM/ {print $2}' /proc/$SHIM_PID/status)
	echo "# shim peak RSS $before -> $peak kB" >&3
	[ "$peak" -lt $((before + 40000)) ] || fail "the shim's peak RSS grew by $((peak - before)) kB"
	# A client that hangs up after 8 of the 150 MiB it announced: nothing
	# is left.  (A raw socket: curl, timed out, ends a chunked upload
	# cleanly, which is a complete upload to any server.)
	python3 - "$PORT" "$ALICE" "$ID" "$big" <<'PY'
import socket, sys
port, tok, sid, big = sys.argv[1:]
s = socket.create_connection(("127.0.0.1", int(port)))
s.sendall(("POST /sandboxes/%s/files?path=/data/cut HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (sid, tok, 150 << 20)).encode())
with open(big, "rb") as f:
    s.sendall(f.read(8 << 20))
s.close()
PY
	for _ in $(seq 50); do
		grep -q 'cut after' "$SHIM_LOG" && break
		sleep 0.1
	done
	sleep 1
	run sbx-exec "$ID" -- ls /data
	[[ "$output" != *cut* ]] || fail "a cut upload left a file: $output; $(grep files "$SHIM_LOG" | tail -5)"
	sbx-exec "$ID" -- rm -f /data/big
}

@test "bad input: malformed JSON, wrong types, unknown fields listed, too large, 501s" {
	call "$ALICE" POST /sandboxes -d '{"template": '
	assert_eq "$STATUS" 400
	call "$ALICE" POST /sandboxes -d '[1]'
	assert_eq "$STATUS" 400
	call "$ALICE" POST /sandboxes -d '{"cpu": "two", "colour": 1, "shape": 2}'
	assert_eq "$STATUS" 400
	assert_eq "$(jq -c .unknownFields <<<"$BODY")" '["colour","shape"]'
	call "$ALICE" POST /sandboxes -d '{"cpu": "two"}'
	assert_eq "$STATUS" 400
	assert_contains "$(jq -r .error <<<"$BODY")" "cpu must be an integer"
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": 5}'
	assert_eq "$STATUS" 400
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "true", "argv": ["true"]}'
	assert_eq "$STATUS" 400
	head -c 70000 /dev/zero | tr '\0' ' ' >"$BATS_TEST_TMPDIR/body"
	call "$ALICE" POST /sandboxes --data-binary @"$BATS_TEST_TMPDIR/body"
	assert_eq "$STATUS" 413
	call "$ALICE" POST "/sandboxes/$ID/files?path=/tmp/x" -H 'Content-Length: 999999999999' -d x
	assert_eq "$STATUS" 413
	call "$ALICE" POST /sandboxes -d '{"vaultInject": ["OPENAI"]}'
	assert_eq "$STATUS" 501
	call "$ALICE" POST /sandboxes -d '{"persistent": true, "idleAction": "kill"}'
	assert_eq "$STATUS" 400
	call "$ALICE" POST /sandboxes -d '{"idleAction": "nap"}'
	assert_eq "$STATUS" 400
	call "$ALICE" POST "/sandboxes/$ID/fork" -d '{"count": 2, "colour": 1}'
	assert_eq "$STATUS" 400
	assert_eq "$(jq -c .unknownFields <<<"$BODY")" '["colour"]'
	call "$ALICE" GET /vault/credentials
	assert_eq "$STATUS" 501
	call "$ALICE" PATCH /sandboxes
	assert_eq "$STATUS" 405
	call "$ALICE" GET /nowhere
	assert_eq "$STATUS" 404
}

@test "the per-user limit: four creates at once give three 201 and one 429" {
	local tok out
	tok=$(mkuser carol)
	for i in 1 2 3 4; do
		api "$tok" POST /sandboxes -d '{"timeout": 300}' >"$BATS_TEST_TMPDIR/c$i" &
	done
	wait
	for i in 1 2 3 4; do
		tail -n1 "$BATS_TEST_TMPDIR/c$i"
		echo
		head -n -1 "$BATS_TEST_TMPDIR/c$i" | jq -r '.sandboxId // empty' >>"$OMR_TRACK"
	done >"$BATS_TEST_TMPDIR/codes"
	assert_eq "$(sort "$BATS_TEST_TMPDIR/codes" | tr '\n' ' ')" "201 201 201 429 "
	grep -h '"error"' "$BATS_TEST_TMPDIR"/c? | grep -q '"concurrent sandbox limit reached"' ||
		fail "no limit error: $(cat "$BATS_TEST_TMPDIR"/c?)"
	# One more, sequentially: still 429; the operator raises the limit: 201.
	call "$tok" POST /sandboxes -d '{}'
	assert_eq "$STATUS" 429
	email=$(call "$tok" GET /auth/me; jq -r .email <<<"$BODY")
	sbx-user limit "$email" 4
	call "$tok" POST /sandboxes -d '{"timeout": 300}'
	assert_eq "$STATUS" 201
	echo "$(jq -r .sandboxId <<<"$BODY")" >>"$OMR_TRACK"
	# A deleted one frees its place; it is in the history.
	victim=$(jq -r .sandboxId <<<"$BODY")
	call "$tok" DELETE "/sandboxes/$victim"
	assert_eq "$STATUS" 204
	call "$tok" GET /sandboxes/history
	assert_eq "$(jq -r ".[] | select(.sandboxId == \"$victim\") | .endReason" <<<"$BODY")" killed
	jq -e ".[] | select(.sandboxId == \"$victim\") | .cpuSeconds > 0" <<<"$BODY" >/dev/null
	call "$tok" POST /sandboxes -d '{"timeout": 300}'
	assert_eq "$STATUS" 201
	echo "$(jq -r .sandboxId <<<"$BODY")" >>"$OMR_TRACK"
	call "$tok" GET /sandboxes
	assert_eq "$(jq length <<<"$BODY")" 4
	for id in $(jq -r '.[].sandboxId' <<<"$BODY"); do
		call "$tok" DELETE "/sandboxes/$id"
		assert_eq "$STATUS" 204
	done
}

@test "sbx-create --owner: a CLI-made sandbox shows up for that user" {
	id=$(new_sandbox --owner "$BOB_EMAIL" --timeout 300)
	call "$BOB" GET /sandboxes
	assert_eq "$(jq -r '.[].sandboxId' <<<"$BODY")" "$id"
	call "$BOB" POST "/sandboxes/$id/commands" -d '{"cmd": "echo mine"}'
	assert_eq "$(jq -r .stdout <<<"$BODY")" mine
	call "$ALICE" GET "/sandboxes/$id"
	assert_eq "$STATUS" 404
	run sbx-create --owner nobody@api.test
	assert_eq "$status" 3
}

@test "the request rate per token: 429 with Retry-After" {
	tok=$(mkuser dave)
	out=$(for i in $(seq 600); do printf 'url = "%s"\noutput = /dev/null\n' "$URL/auth/me"; done |
		curl -sS -Z --parallel-max 50 -K - -H "Authorization: Bearer $tok" \
			-w '%{http_code} %header{retry-after}\n' 2>/dev/null | sort | uniq -c)
	echo "# $out" >&3
	[[ "$out" =~ [0-9]+\ 429\ [1-9] ]] || fail "no 429 with Retry-After in: $out"
}

@test "500 concurrent requests and a slow client: each answered, nobody blocked" {
	# A client that sends a byte a second is cut after connection_timeout.
	(
		trap '' PIPE
		t=$SECONDS
		exec 3<>/dev/tcp/127.0.0.1/$PORT
		for c in G E T ' ' / h e a l t h z; do printf %s "$c" >&3 2>/dev/null || break; sleep 1; done
		echo $((SECONDS - t)) >"$BATS_TEST_TMPDIR/slow"
	) &
	slow=$!
	out=$(for i in $(seq 500); do printf 'url = "%s"\noutput = /dev/null\n' "$URL/sandboxes"; done |
		curl -sS -Z --parallel-max 500 -K - -H "Authorization: Bearer $BOB" \
			-w '%{http_code}\n' 2>/dev/null | sort | uniq -c)
	echo "# $out" >&3
	[[ "$out" =~ ^[[:space:]]*[0-9]+\ 200([[:space:]]+[0-9]+\ 429)?$ ]] || fail "statuses: $out"
	call "" GET /healthz
	assert_eq "$STATUS" 200
	wait "$slow" || true
	[ "$(cat "$BATS_TEST_TMPDIR/slow")" -le 7 ] || fail "the slow client was not cut in time"
	kill -0 "$SHIM_PID"
}

@test "magic link: always 202, a code by mail, an httpOnly SameSite=Strict cookie, single use" {
	call "" POST /auth/magic-link/request -d '{"email": "nobody@api.test"}'
	assert_eq "$STATUS" 202
	[ -z "$(ls "$BATS_FILE_TMPDIR/outbox")" ] || fail "mail for an unknown address"
	call "" POST /auth/magic-link/request -d "{\"email\": \"$BOB_EMAIL\"}"
	assert_eq "$STATUS" 202
	mail=$(cat "$BATS_FILE_TMPDIR"/outbox/*)
	code=$(sed -n 's/.*login code is \([0-9]\{6\}\).*/\1/p' <<<"$mail")
	[ -n "$code" ] || fail "no code in: $mail"
	call "" POST /auth/otp/verify -d "{\"email\": \"$BOB_EMAIL\", \"code\": \"000000x\"}"
	assert_eq "$STATUS" 401
	run curl -sS -i -c "$BATS_TEST_TMPDIR/jar" -d "{\"email\": \"$BOB_EMAIL\", \"code\": \"$code\"}" \
		"$URL/auth/otp/verify"
	assert_contains "$output" "HTTP/1.1 200"
	cookie=$(grep -i '^set-cookie:' <<<"$output")
	assert_contains "$cookie" "HttpOnly"
	assert_contains "$cookie" "SameSite=Strict"
	[[ "$cookie" != *Secure* ]] || fail "Secure without TLS"
	call "" GET /auth/me -b "$BATS_TEST_TMPDIR/jar"
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .email <<<"$BODY")" "$BOB_EMAIL"
	call "" POST /auth/otp/verify -d "{\"email\": \"$BOB_EMAIL\", \"code\": \"$code\"}"
	assert_eq "$STATUS" 401
	# Rate-limited per email: the sixth request within the hour sends nothing.
	for i in 1 2 3 4 5; do
		call "" POST /auth/magic-link/request -d "{\"email\": \"$BOB_EMAIL\"}"
		assert_eq "$STATUS" 202
	done
	assert_eq "$(ls "$BATS_FILE_TMPDIR/outbox" | wc -l)" 5
}

@test "kill -9 of the shim, during writes too: the restart finds the sandboxes and the database" {
	for i in $(seq 200); do printf 'url = "%s"\noutput = /dev/null\n' "$URL/auth/tokens"; done >"$BATS_TEST_TMPDIR/k"
	curl -sS -Z --parallel-max 20 -K "$BATS_TEST_TMPDIR/k" -H "Authorization: Bearer $ALICE" \
		-d '{"name": "load"}' -o /dev/null 2>/dev/null &
	sleep 0.5
	kill -9 "$SHIM_PID"
	wait "$SHIM_PID" 2>/dev/null || true
	wait
	assert_eq "$(sqlite3 "$OMNIRUN_STATE_DIR/omnirun.db" 'PRAGMA integrity_check')" ok
	start_shim "$PORT"
	call "$ALICE" GET /sandboxes
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r "map(.sandboxId) | index(\"$ID\") != null" <<<"$BODY")" true
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo alive"}'
	assert_eq "$(jq -r .stdout <<<"$BODY")" alive
}

@test "pause, resume, timeout, persist do what the programs do; another user's id is 404; audited" {
	for r in pause resume timeout; do
		call "$BOB" POST "/sandboxes/$ID/$r" -d '{"timeout": 60}'
		assert_eq "$STATUS" 404 "bob: $r"
		call "$ALICE" POST "/sandboxes/sb_aaaaaaaaaa/$r" -d '{"timeout": 60}'
		assert_eq "$STATUS" 404 "unknown id: $r"
	done
	call "$ALICE" POST "/sandboxes/$ID/pause"
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .state <<<"$BODY")" paused
	assert_eq "$(sb_field "$ID" state)" paused
	call "$ALICE" GET "/sandboxes/$ID"
	assert_eq "$(jq -r .state <<<"$BODY")" paused
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "true"}'
	assert_eq "$STATUS" 409
	assert_contains "$(jq -r .error <<<"$BODY")" "is paused"
	call "$ALICE" POST "/sandboxes/$ID/pause" -d '{}'
	assert_eq "$STATUS" 409
	call "$ALICE" POST "/sandboxes/$ID/resume" -d '{}'
	assert_eq "$STATUS" 200
	assert_eq "$(jq -r .state <<<"$BODY")" running
	call "$ALICE" POST "/sandboxes/$ID/resume" -d '{}'
	assert_eq "$STATUS" 409
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo back"}'
	assert_eq "$(jq -r .stdout <<<"$BODY")" back
	now=$(date +%s)
	call "$ALICE" POST "/sandboxes/$ID/timeout" -d '{"timeout": 1200}'
	assert_eq "$STATUS" 200
	exp=$(date -d "$(jq -r .expiresAt <<<"$BODY")" +%s)
	[ "$exp" -ge $((now + 1199)) ] && [ "$exp" -le $((now + 1203)) ] ||
		fail "expiresAt $exp, asked $now + 1200"
	for bad in '{"timeout": 0}' '{}' '{"timeout": "x"}' '{"timeout": 99999999}' '{"timeout": -1}'; do
		call "$ALICE" POST "/sandboxes/$ID/timeout" -d "$bad"
		assert_eq "$STATUS" 400 "$bad"
	done
	# Frozen to disk and back: what sbx-pause --persist and sbx-resume do.
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo frozen >/data/frozen"}'
	call "$ALICE" POST "/sandboxes/$ID/pause" -d '{"persist": true}'
	assert_eq "$STATUS" 200 "persist: $BODY"
	assert_eq "$(jq -r .state <<<"$BODY")" persisted
	call "$ALICE" GET "/sandboxes/$ID"
	assert_eq "$(jq -r .state <<<"$BODY")" persisted
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "true"}'
	assert_eq "$STATUS" 409
	call "$ALICE" POST "/sandboxes/$ID/pause" -d '{"persist": true}'
	assert_eq "$STATUS" 409
	call "$BOB" POST "/sandboxes/$ID/resume" -d '{}'
	assert_eq "$STATUS" 404
	call "$ALICE" POST "/sandboxes/$ID/resume" -d '{}'
	assert_eq "$STATUS" 200 "resume: $BODY"
	assert_eq "$(jq -r .state <<<"$BODY")" running
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "cat /data/frozen"}'
	assert_eq "$(jq -r .stdout <<<"$BODY")" frozen
	audit=$(sbx-user audit "$ALICE_EMAIL")
	for a in pause resume timeout persist; do
		grep -q " $a $ID" <<<"$audit" || fail "no audit entry for $a: $audit"
	done
}

@test "fork: the children are the caller's, with the source's files and metadata; bad counts 400, another user's 404, the limit 429" {
	call "$ALICE" POST "/sandboxes/$ID/commands" -d '{"cmd": "echo api-fork-5d1 >/data/forked"}'
	assert_eq "$STATUS" 200
	for bad in '{"count": 0}' '{"count": 17}' '{"count": "2"}' '{"count": -1}' '[]'; do
		call "$ALICE" POST "/sandboxes/$ID/fork" -d "$bad"
		assert_eq "$STATUS" 400 "$bad"
	done
	call "$BOB" POST "/sandboxes/$ID/fork" -d '{}'
	assert_eq "$STATUS" 404 "bob forks alice's"
	call "$ALICE" POST /sandboxes/sb_aaaaaaaaaa/fork -d '{}'
	assert_eq "$STATUS" 404 "unknown id"
	call "$ALICE" POST "/sandboxes/$ID/fork" -d '{"count": 2}'
	assert_eq "$STATUS" 201 "fork: $BODY"
	jq -r '.[].sandboxId' <<<"$BODY" >>"$OMR_TRACK"
	assert_eq "$(jq length <<<"$BODY")" 2
	assert_eq "$(jq -r '[.[].forkedFrom] | unique | join(",")' <<<"$BODY")" "$ID"
	assert_eq "$(jq -c '[.[].metadata] | unique' <<<"$BODY")" '[{"k":"v"}]'
	assert_eq "$(jq -r '[.[].resources.processes] | unique | join(",")' <<<"$BODY")" 200
	kids=$(jq -r '.[].sandboxId' <<<"$BODY")
	for k in $kids; do
		[ "$k" != "$ID" ] || fail "a child has the source's id"
		call "$ALICE" POST "/sandboxes/$k/commands" -d '{"cmd": "cat /data/forked; hostname"}'
		assert_eq "$(jq -r .stdout <<<"$BODY")" $'api-fork-5d1\n'"$k"
		call "$BOB" GET "/sandboxes/$k"
		assert_eq "$STATUS" 404 "bob sees alice's child"
	done
	call "$ALICE" GET /sandboxes
	for k in $kids; do
		jq -e --arg k "$k" 'map(.sandboxId) | index($k)' <<<"$BODY" >/dev/null || fail "$k not in alice's list"
	done
	audit=$(sbx-user audit "$ALICE_EMAIL")
	for k in $kids; do
		grep -q " fork $k" <<<"$audit" || fail "no audit entry for the fork $k: $audit"
	done
	# Alice has three places (the default): her sandbox and its two
	# children fill them, so one more child is a 429 and starts nothing.
	call "$ALICE" POST "/sandboxes/$ID/fork" -d '{}'
	assert_eq "$STATUS" 429 "past the limit: $BODY"
	for k in $kids; do
		call "$ALICE" DELETE "/sandboxes/$k"
		assert_eq "$STATUS" 204
	done
}

@test "DELETE tears the sandbox down; it leaves the list for the history" {
	call "$ALICE" DELETE "/sandboxes/$ID"
	assert_eq "$STATUS" 204
	assert_gone "$ID"
	call "$ALICE" GET /sandboxes
	assert_eq "$(jq -r "map(.sandboxId) | index(\"$ID\")" <<<"$BODY")" null
	call "$ALICE" GET /sandboxes/history
	assert_eq "$(jq -r ".[] | select(.sandboxId == \"$ID\") | .endReason" <<<"$BODY")" killed
	call "$ALICE" DELETE "/sandboxes/$ID"
	assert_eq "$STATUS" 204
	sbx-user audit "$ALICE_EMAIL" | grep -q " destroy $ID" || fail "no audit entry"
}
