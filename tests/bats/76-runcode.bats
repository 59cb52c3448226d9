#!/usr/bin/env bats
# Issue 14 item 3: runCode of E2B's @e2b/code-interpreter SDK (doc/e2b.md),
# the real SDK from the npm registry (pinned: tests/e2b/package-lock.json)
# through sbx-shim's E2B endpoint, against the code-interpreter server that
# the playground template starts (guest/templates/common/omnirun-interpreter).
# E2B's "code-interpreter-v1" (the SDK's default template) maps to
# playground, built here unless the run has it already (65-templates.bats
# builds it too).  The last test runs the server on the host, no VM.
load helpers
load api

bats_require_minimum_version 1.5.0

setup_file() {
	omr_setup_file
	if ! sbx-template ls --json | jq -e '.[] | select(.name == "playground")' >/dev/null; then
		sbx-template build playground >"$BATS_FILE_TMPDIR/playground.log" 2>&1 ||
			{ cat "$BATS_FILE_TMPDIR/playground.log" >&2; return 1; }
	fi
	local conf=$BATS_FILE_TMPDIR/omnirun.conf
	{ cat "$OMNIRUN_CONF" 2>/dev/null
	  printf '[api]\nrate = 200\nrate_burst = 400\n'
	  printf '[e2b]\ntemplates = base=tiny,code-interpreter-v1=playground\n'
	} >"$conf"
	export OMNIRUN_CONF=$conf OMNIRUN_DEBUG=1 SHIM_LOG=$BATS_FILE_TMPDIR/shim.log
	# make check-e2b-latest: the newest SDKs instead of the pinned ones.
	local e2b
	e2b=$("$OMNIRUN_SRC/tests/e2b/install" ${E2B_LATEST:+--latest}) || return 1
	export CI_MODULE=${e2b%/e2b/dist/index.mjs}/@e2b/code-interpreter/dist/index.mjs
	[ -e "$CI_MODULE" ] || { echo "no $CI_MODULE" >&2; return 1; }
	sbx-shim -l 127.0.0.1:0 -p "$BATS_FILE_TMPDIR/port" --e2b-listen 127.0.0.1:0 \
		--e2b-port-file "$BATS_FILE_TMPDIR/e2b-port" 2>>"$SHIM_LOG" &
	echo $! >"$BATS_FILE_TMPDIR/shim.pid"
	disown
	for _ in $(seq 100); do
		[ -s "$BATS_FILE_TMPDIR/e2b-port" ] && break
		sleep 0.05
	done
	export URL=http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/e2b-port")
	export E2B_API_URL=$URL E2B_SANDBOX_URL=$URL
	export ALICE=$(sbx-user token "alice-$RANDOM$RANDOM@runcode.test")
	export E2B_API_KEY=$ALICE
}

teardown_file() {
	kill "$(cat "$BATS_FILE_TMPDIR/shim.pid")" 2>/dev/null
	omr_teardown_file
}
setup() { omr_setup; }
teardown() {
	[ -z "${SERVER_PID:-}" ] || { kill "$SERVER_PID"; wait "$SERVER_PID"; } 2>/dev/null
	omr_teardown
}

sdk() {
	run --separate-stderr timeout 300 node "$OMNIRUN_SRC/tests/e2b/runcode.mjs" "$@"
	echo "$output"
	[ -z "$stderr" ] || echo "stderr: $stderr"
	[ "$status" -eq 0 ] || fail "runcode.mjs $* failed (status $status)"
	! grep -q '^FAIL' <<<"$output" || fail "runcode.mjs $*: $(grep '^FAIL' <<<"$output")"
}

@test "SDK runCode, Python: a variable kept across calls, streamed stdout and stderr, errors, envs, the SDK's timeout interrupts" {
	sdk python
}

@test "SDK runCode, JavaScript (node): let/const kept across calls, console.log, await, errors; an unknown language" {
	sdk javascript
}

@test "SDK code contexts: create (language, cwd), list, restart, remove; a removed one is NotFoundError" {
	sdk contexts
}

@test "curl through the shim: runCode's wire format (NDJSON lines), 404 and 400 as JSON" {
	local id
	call "" POST /v2/sandboxes -H "X-API-KEY: $ALICE" -H 'Content-Type: application/json' \
		-d '{"templateID": "code-interpreter-v1", "timeout": 600}'
	assert_eq "$STATUS" 201
	id=$(jq -r .sandboxID <<<"$BODY")
	echo "$id" >>"$OMR_TRACK"
	assert_eq "$(jq -r .templateID <<<"$BODY")" playground
	ci() {  # ci METHOD PATH [curl args]: to the interpreter, as the SDK sends it
		curl -sS -m 60 -w '\n%{http_code}' -X "$1" -H "E2b-Sandbox-Id: $id" -H 'E2b-Sandbox-Port: 49999' \
			-H "X-Access-Token: $ALICE" -H 'Content-Type: application/json' "$URL$2" "${@:3}"
	}
	run -0 ci POST /execute -d '{"code": "print(\"hi\")\n6 * 7"}'
	assert_eq "${lines[-1]}" 200
	assert_eq "$(printf '%s\n' "${lines[@]:0:${#lines[@]}-1}" | jq -sc '[.[] | select(.type != "keepalive")]')" \
		'[{"type":"number_of_executions","execution_count":1},{"type":"stdout","text":"hi\n"},{"type":"result","text":"42","is_main_result":true},{"type":"end_of_execution"}]'
	run -0 ci POST /execute -d '{"code": "1", "context_id": "nope"}'
	assert_eq "${lines[-1]}" 404
	assert_eq "$(jq -c . <<<"${lines[0]}")" '{"code":404,"message":"context nope not found"}'
	run -0 ci POST /execute -d '{"code": '
	assert_eq "${lines[-1]}" 400
	assert_contains "$(jq -r .message <<<"${lines[0]}")" "not JSON"
	run -0 ci GET /health
	assert_eq "${lines[-1]}" 200
}

# The server on the host's loopback: what the SDK tests cannot reach.
@test "the server alone (host): one execution at a time a context, a crash starts it afresh, code deaf to SIGINT is killed, limits" {
	local url t0 first
	"$OMNIRUN_SRC/guest/templates/common/omnirun-interpreter" --listen 127.0.0.1:0 \
		--port-file "$BATS_TEST_TMPDIR/port" 2>"$BATS_TEST_TMPDIR/server.log" &
	SERVER_PID=$!
	wait_file "$BATS_TEST_TMPDIR/port" 100
	url=http://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/port")
	ex() {  # ex BODY: the lines but keepalives; curl's status
		local out rc=0
		out=$(curl -sS -m "${T:-30}" -X POST "$url/execute" -d "$1") || rc=$?
		jq -c 'select(.type != "keepalive")' <<<"$out"
		return $rc
	}
	# Two requests to one context: the second waits for the first.
	ex '{"code": "import time\ntime.sleep(2)\nv = 1"}' >"$BATS_TEST_TMPDIR/first" &
	first=$!
	sleep 0.5
	t0=$SECONDS
	run -0 ex '{"code": "v + 1"}'
	assert_contains "$output" '{"type":"result","text":"2","is_main_result":true}'
	[ $((SECONDS - t0)) -ge 1 ] || fail "the second execution did not wait for the first"
	wait "$first"
	assert_contains "$(cat "$BATS_TEST_TMPDIR/first")" end_of_execution
	# The context's process dies: told, and the next execution starts afresh.
	run -0 ex '{"code": "import os\nos._exit(3)"}'
	assert_contains "$output" '"name":"ContextRestarting"'
	run -0 ex '{"code": "str(\"v\" in globals())"}'
	assert_contains "$output" '"text":"False"'
	run -0 ex '{"code": "v = 5"}'
	# A client gone while its code ignores SIGINT: the context is killed
	# 2 s later, and the server goes on.
	T=2 run ex '{"code": "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"}'
	assert_eq "$status" 28
	sleep 4
	grep -q "did not stop on SIGINT: killed" "$BATS_TEST_TMPDIR/server.log" ||
		fail "not killed: $(cat "$BATS_TEST_TMPDIR/server.log")"
	run -0 ex '{"code": "str(\"v\" in globals())"}'
	assert_contains "$output" '"text":"False"'
	# Limits and refusals.
	run -0 curl -sS -o /dev/null -w '%{http_code}' -X POST "$url/execute" --data-binary @<(head -c 9000000 /dev/zero)
	assert_eq "$output" 413
	run -0 curl -sS -o /dev/null -w '%{http_code}' -X PUT "$url/execute"
	assert_eq "$output" 405
	run -0 curl -sS -o /dev/null -w '%{http_code}' -X POST "$url/contexts" -d '{"cwd": "relative"}'
	assert_eq "$output" 400
	run -0 curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$url/contexts/nope"
	assert_eq "$output" 404
	run -0 curl -sS -w ' %{http_code}' -X POST "$url/execute" -d '{"code": "1", "language": "python", "context_id": "x"}'
	assert_eq "$output" '{"code": 400, "message": "give context_id or language, not both"} 400'
}
