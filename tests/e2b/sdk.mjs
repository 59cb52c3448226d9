// Drives sbx-shim's E2B endpoint with the real E2B SDK (tests/bats/75-e2b.bats).
//   node sdk.mjs SCENARIO
// with E2B_MODULE (the SDK's index.mjs, from tests/e2b/install), E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY set.  Prints "ok WHAT" per check and exits
// 0, or prints "FAIL: WHY" and exits 1.  Every sandbox it makes it kills.
const e2b = await import(process.env.E2B_MODULE);
const http = await import('node:http');
const { Sandbox, CommandExitError } = e2b;

const made = [];
function fail(why) {
	throw new Error(why);
}
function eq(got, want, what) {
	const g = JSON.stringify(got), w = JSON.stringify(want);
	if (g !== w) fail(`${what}: expected ${w}, got ${g}`);
	console.log(`ok ${what}`);
}
function check(cond, what) {
	if (!cond) fail(what);
	console.log(`ok ${what}`);
}
// The error a promise rejects with (fails if it resolves).
async function rejection(p, what) {
	try {
		const v = await p;
		fail(`${what}: expected an error, got ${JSON.stringify(v)}`);
	} catch (err) {
		if (err.message.startsWith(`${what}: expected an error`)) throw err;
		return err;
	}
}
async function create(opts = {}) {
	const sbx = await Sandbox.create('base', { timeoutMs: 600_000, ...opts });
	made.push(sbx);
	return sbx;
}

// GET path of getHost()'s host through the shim (E2B_SANDBOX_URL, on
// loopback: the Host header routes it) -> {status, body, headers}.
function hostGet(host, path, headers = {}) {
	const u = new URL(process.env.E2B_SANDBOX_URL);
	return new Promise((resolve, reject) => {
		const req = http.request({ host: u.hostname, port: u.port, path,
			headers: { Host: host, ...headers } }, (res) => {
			const parts = [];
			res.on('data', (d) => parts.push(d));
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
				body: Buffer.concat(parts).toString() }));
			res.on('error', reject);
		});
		req.on('error', reject);
		req.setTimeout(60_000, () => req.destroy(new Error(`GET ${host}${path} timed out`)));
		req.end();
	});
}

// Serves /tmp/www with busybox httpd on port in the guest's loopback and
// waits until it answers (through the shim).
async function serve(sbx, port, text, headers = {}) {
	await sbx.files.write('/tmp/www/index.html', text);
	await sbx.commands.run(`busybox httpd -f -p 127.0.0.1:${port} -h /tmp/www`, { background: true });
	let r;
	for (let i = 0; i < 50; i++) {
		r = await hostGet(sbx.getHost(port), '/index.html', headers);
		if (r.status === 200) return r;
		await new Promise((res) => setTimeout(res, 200));
	}
	return r;
}

const scenarios = {
	// getHost(port): every port of an E2B sandbox, through the Host
	// header, public by default; protected with allowPublicTraffic: false.
	async ports() {
		const sbx = await create();
		const host = sbx.getHost(8000);
		eq(host, `8000-${sbx.sandboxId}.localhost`, 'getHost is PORT-ID.DOMAIN, the shim\'s domain');
		const r = await serve(sbx, 8000, 'hello-port\n');
		eq([r.status, r.body], [200, 'hello-port\n'], 'a request to getHost(8000) reaches httpd in the guest');
		const big = 'x'.repeat(300_000) + '\n';
		await sbx.files.write('/tmp/www/big.txt', big);
		const b = await hostGet(host, '/big.txt');
		eq([b.status, b.body.length], [200, big.length], '300 kB come back whole');
		const none = await hostGet(sbx.getHost(8999), '/');
		eq(none.status, 502, 'a port nobody listens on is a 502');
		check(/8999|refused|connect/i.test(JSON.parse(none.body).message),
			`the 502 says why (${none.body})`);
		const other = await hostGet(`8000-sb_aaaaaaaaaaaa.localhost`, '/');
		eq(other.status, 404, 'an unknown sandbox is a 404');
		eq(sbx.trafficAccessToken, undefined, 'a public sandbox has no traffic token');

		const sec = await create({ network: { allowPublicTraffic: false } });
		check(typeof sec.trafficAccessToken === 'string' && sec.trafficAccessToken.length > 0,
			'allowPublicTraffic: false gives a trafficAccessToken');
		await sec.files.write('/tmp/www/index.html', 'secret\n');
		await sec.commands.run('busybox httpd -f -p 127.0.0.1:8000 -h /tmp/www', { background: true });
		const tok = { 'e2b-traffic-access-token': sec.trafficAccessToken };
		let s;
		for (let i = 0; i < 50; i++) {
			s = await hostGet(sec.getHost(8000), '/index.html', tok);
			if (s.status === 200) break;
			await new Promise((res) => setTimeout(res, 200));
		}
		eq([s.status, s.body], [200, 'secret\n'], 'with its traffic token a protected port answers');
		eq((await hostGet(sec.getHost(8000), '/index.html')).status, 401,
			'without it a protected port is a 401');
		if (process.env.BOB_KEY)
			eq((await hostGet(sec.getHost(8000), '/index.html',
				{ 'e2b-traffic-access-token': process.env.BOB_KEY })).status, 404,
				'another user\'s token finds no such port');
	},

	// create, info, list (paginated, filtered), connect, kill.
	async lifecycle() {
		const sbx = await create({ metadata: { suite: 'e2b', run: process.env.RUN_TAG } });
		check(/^sb_[a-z2-7]+$/.test(sbx.sandboxId), 'the sandbox id is an OmniRun id');
		const info = await sbx.getInfo();
		eq(info.sandboxId, sbx.sandboxId, 'getInfo names the sandbox');
		eq(info.state, 'running', 'getInfo says running');
		eq(info.metadata.run, process.env.RUN_TAG, 'getInfo has the metadata');
		eq(info.templateId, 'tiny', 'base maps to the configured template');
		check(info.endAt > info.startedAt, 'endAt is after startedAt');
		const other = await create();
		const p = Sandbox.list({ limit: 1 });
		const seen = [];
		while (p.hasNext) for (const s of await p.nextItems()) seen.push(s.sandboxId);
		const live = [sbx.sandboxId, other.sandboxId];
		if (process.env.SHARED_ID) live.push(process.env.SHARED_ID);
		eq(seen.sort(), live.sort(),
			'list pages one at a time (X-Next-Token) through every live sandbox');
		const filtered = await Sandbox.list({ query: { metadata: { run: process.env.RUN_TAG } } }).nextItems();
		eq(filtered.map((s) => s.sandboxId), [sbx.sandboxId], 'list filters by metadata');
		const again = await Sandbox.connect(sbx.sandboxId);
		eq((await again.commands.run('echo again')).stdout, 'again\n',
			'a connected handle runs commands');
		eq(await other.kill(), true, 'kill() ends a sandbox');
		eq(await Sandbox.kill(other.sandboxId), false, 'killing it again answers false');
		const gone = await rejection(Sandbox.getInfo(other.sandboxId), 'getInfo of a killed sandbox');
		eq(gone.name, 'SandboxNotFoundError', 'getInfo of a killed sandbox is not found');
		const c = await rejection(Sandbox.connect(other.sandboxId), 'connect to a killed sandbox');
		eq(c.name, 'SandboxNotFoundError', 'connect to a killed sandbox is not found');
		check(await sbx.isRunning(), 'isRunning() of a live sandbox');
	},

	// Foreground with streamed output and exit codes; background, list,
	// reconnect by pid, kill.
	async commands() {
		const sbx = await create();
		const chunks = [];
		const r = await sbx.commands.run('echo one; sleep 1; echo two; echo err >&2',
			{ onStdout: (d) => chunks.push(d) });
		eq([r.exitCode, r.stdout, r.stderr], [0, 'one\ntwo\n', 'err\n'], 'run: exit code, stdout, stderr');
		check(chunks.length >= 2 && chunks[0] === 'one\n', 'stdout is streamed as it comes');
		const e = await rejection(sbx.commands.run('echo bad >&2; exit 3'), 'a failing command');
		check(e instanceof CommandExitError, 'a non-zero exit raises CommandExitError');
		eq([e.exitCode, e.stderr], [3, 'bad\n'], 'the error carries exit code and stderr');
		const env = await sbx.commands.run('echo "$FOO $PWD"', { envs: { FOO: 'bar' }, cwd: '/tmp' });
		eq(env.stdout, 'bar /tmp\n', 'envs and cwd reach the command');
		const bin = await sbx.commands.run('printf "\\377\\000ok"');
		check(bin.stdout.endsWith('ok'), 'output that is not UTF-8 arrives');
		const h = await sbx.commands.run('echo started; sleep 300', { background: true });
		check(h.pid > 0, 'a background command has a pid');
		const list = await sbx.commands.list();
		check(list.some((p) => p.pid === h.pid), 'commands.list shows it');
		await h.disconnect();
		const again = await sbx.commands.connect(h.pid);
		eq(again.pid, h.pid, 'connect by pid after a disconnect');
		// Its buffered output is replayed on connect.
		for (let i = 0; i < 50 && !again.stdout.includes('started'); i++)
			await new Promise((res) => setTimeout(res, 100));
		eq(again.stdout, 'started\n', 'connect replays the output so far');
		eq(await sbx.commands.kill(h.pid), true, 'commands.kill kills it');
		const k = await rejection(again.wait(), 'waiting for a killed command');
		eq(k.exitCode, -1, 'a killed command ends with exit code -1');
		eq(await sbx.commands.kill(h.pid), false, 'killing it again answers false');
		const c = await sbx.commands.run('cat; echo done', { background: true, stdin: true });
		await c.sendStdin('hello ');
		await c.sendStdin('stdin\n');
		await c.closeStdin();
		eq((await c.wait()).stdout, 'hello stdin\ndone\n',
			'sendStdin and closeStdin reach a command started with stdin');
		const si = await rejection(sbx.commands.sendStdin(h.pid, 'x'), 'stdin to a command without');
		eq(si.name, 'NotFoundError', 'stdin to a command started without it is not found');
		const nf = await rejection(sbx.commands.connect(999999), 'connect to no command');
		eq(nf.name, 'NotFoundError', 'connect to an unknown pid is not found');
	},

	// Every file operation of files, and watchDir.
	async files() {
		const sbx = await create();
		const w = await sbx.files.write('/tmp/e2b/a.txt', 'hello files\n');
		eq([w.name, w.path, w.type], ['a.txt', '/tmp/e2b/a.txt', 'file'], 'write answers the entry');
		eq(await sbx.files.read('/tmp/e2b/a.txt'), 'hello files\n', 'read gives back what was written');
		const bytes = new Uint8Array(256 * 1024);
		for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 255;
		await sbx.files.write('/tmp/e2b/bin', bytes);
		const back = await sbx.files.read('/tmp/e2b/bin', { format: 'bytes' });
		check(back.length === bytes.length && back.every((b, i) => b === bytes[i]),
			'256 KiB of binary round-trips');
		const many = await sbx.files.write([{ path: '/tmp/e2b/m1', data: '1' },
			{ path: '/tmp/e2b/m2', data: '22' }]);
		eq(many.map((f) => f.path), ['/tmp/e2b/m1', '/tmp/e2b/m2'], 'several files in one upload');
		eq(await sbx.files.read('/tmp/e2b/m2'), '22', 'each has its content');
		const ls = await sbx.files.list('/tmp/e2b');
		eq(ls.map((e) => e.name).sort(), ['a.txt', 'bin', 'm1', 'm2'], 'list names the entries');
		const a = ls.find((e) => e.name === 'a.txt');
		eq([a.type, a.size, a.path], ['file', 12, '/tmp/e2b/a.txt'], 'an entry has type, size, path');
		eq(await sbx.files.makeDir('/tmp/e2b/d/e'), true, 'makeDir makes a directory and its parents');
		eq(await sbx.files.makeDir('/tmp/e2b/d/e'), false, 'makeDir of an existing one answers false');
		const deep = await sbx.files.list('/tmp/e2b', { depth: 2 });
		check(deep.some((e) => e.path === '/tmp/e2b/d/e'), 'list with depth 2 goes one level down');
		const mv = await sbx.files.rename('/tmp/e2b/a.txt', '/tmp/e2b/d/b.txt');
		eq(mv.path, '/tmp/e2b/d/b.txt', 'rename answers the new entry');
		eq(await sbx.files.exists('/tmp/e2b/a.txt'), false, 'the old name is gone');
		const info = await sbx.files.getInfo('/tmp/e2b/d/b.txt');
		eq([info.type, info.size, info.permissions.length], ['file', 12, 10], 'getInfo of a file');
		await sbx.files.remove('/tmp/e2b/d');
		eq(await sbx.files.exists('/tmp/e2b/d'), false, 'remove takes a directory with its contents');
		const events = [];
		const wh = await sbx.files.watchDir('/tmp/e2b', (e) => events.push(e));
		await sbx.files.write('/tmp/e2b/w.txt', 'watched');
		await sbx.commands.run('rm /tmp/e2b/w.txt');
		const seen = (type) => events.some((e) => e.name === 'w.txt' && e.type === type);
		for (let i = 0; i < 100 && !(seen('create') && seen('remove')); i++)
			await new Promise((res) => setTimeout(res, 100));
		await wh.stop();
		check(seen('create') && seen('remove'),
			`watchDir reports a file made and removed (${JSON.stringify(events)})`);
		const r = await rejection(sbx.files.read('/tmp/e2b/nothing'), 'reading a missing file');
		eq(r.name, 'FileNotFoundError', 'reading a missing file is FileNotFoundError');
	},

	// What the SDK reports for the endpoint's refusals.
	async errors() {
		const bad = await rejection(Sandbox.create('base', { apiKey: 'omr_notavalidtokenatall' }),
			'create with a bad key');
		eq(bad.name, 'AuthenticationError', 'a bad key is an AuthenticationError');
		const nf = await rejection(Sandbox.connect('sb_aaaaaaaaaaaa'), 'connect to an unknown id');
		eq(nf.name, 'SandboxNotFoundError', 'an unknown id is SandboxNotFoundError');
		const sbx = await create();
		// setTimeout is the lifetime from now, as sbx-timeout sets it.
		const before = Date.now();
		await sbx.setTimeout(120_000);
		const end = new Date((await sbx.getInfo()).endAt).getTime();
		check(Math.abs(end - (before + 120_000)) < 5_000, `setTimeout moves endAt to now + 120 s (${end - before} ms)`);
		if (process.env.LIMITED_KEY) {
			const one = await Sandbox.create('base', { apiKey: process.env.LIMITED_KEY });
			made.push(one);
			const lim = await rejection(Sandbox.create('base', { apiKey: process.env.LIMITED_KEY }),
				'a create past the limit');
			eq(lim.name, 'RateLimitError', 'a create past the limit is a RateLimitError (429)');
		}
	},
};

const name = process.argv[2];
let rc = 0;
try {
	if (!scenarios[name]) fail(`no scenario '${name}'`);
	await scenarios[name]();
} catch (err) {
	console.log(`FAIL: ${err.name}: ${err.message}`);
	rc = 1;
} finally {
	for (const s of made) await s.kill().catch(() => {});
}
process.exit(rc);
