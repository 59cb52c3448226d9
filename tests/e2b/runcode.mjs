// Drives runCode (E2B's @e2b/code-interpreter SDK) through sbx-shim's E2B
// endpoint against the code-interpreter server of a playground sandbox
// (guest/templates/common/omnirun-interpreter; tests/bats/76-runcode.bats).
//   node runcode.mjs SCENARIO
// with CI_MODULE (the SDK's index.mjs, beside e2b's from tests/e2b/install),
// E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY set; E2B's template
// "code-interpreter-v1" (the SDK's default) maps to playground.  Prints "ok
// WHAT" per check and exits 0, or prints "FAIL: WHY" and exits 1.  Every
// sandbox it makes it kills.
const ci = await import(process.env.CI_MODULE);
const { Sandbox, NotFoundError, TimeoutError } = ci;

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
async function rejection(p, what) {
	try {
		const v = await p;
		fail(`${what}: expected an error, got ${JSON.stringify(v)}`);
	} catch (err) {
		if (err.message.startsWith(`${what}: expected an error`)) throw err;
		return err;
	}
}
async function create() {
	const sbx = await Sandbox.create({ timeoutMs: 600_000 });
	made.push(sbx);
	return sbx;
}
const sorted = (a) => [...a].sort((x, y) => x - y);
const pct = (a, p) => sorted(a)[Math.min(a.length - 1, Math.ceil(p / 100 * a.length) - 1)];

const scenarios = {
	// Python: state kept, the trailing expression's value, output
	// streamed as it comes, errors, env, the server surviving bad code.
	async python() {
		const sbx = await create();
		let ex = await sbx.runCode('x = 41');
		eq([ex.error, ex.results.length], [undefined, 0], 'an assignment has no result and no error');
		ex = await sbx.runCode('x + 1');
		eq(ex.text, '42', 'runCode keeps x between calls: x + 1 is 42');
		eq([ex.results.length, ex.results[0].isMainResult], [1, true], 'one main result');
		check(ex.executionCount > 1, `the execution count goes up (${ex.executionCount})`);
		eq((await sbx.runCode('"a" + "b"')).text, 'ab', 'a string result is its text without quotes');

		const got = [];
		ex = await sbx.runCode('import time, sys\nfor i in range(3):\n    print("line", i)\n    time.sleep(1)\n' +
			'sys.stderr.write("warn\\n")', {
			onStdout: (m) => got.push([m.line, Date.now()]),
			onStderr: (m) => got.push(['stderr:' + m.line, Date.now()]),
		});
		eq(got.map((g) => g[0]), ['line 0\n', 'line 1\n', 'line 2\n', 'stderr:warn\n'],
			'onStdout and onStderr get each line');
		check(got[2][1] - got[0][1] > 1500, `stdout is streamed, not sent at the end (${got[2][1] - got[0][1]} ms apart)`);
		eq([ex.logs.stdout.join(''), ex.logs.stderr], ['line 0\nline 1\nline 2\n', ['warn\n']],
			'execution.logs has stdout and stderr');

		let onErr = null;
		ex = await sbx.runCode('def f():\n    return 1 / 0\nf()', { onError: (e) => { onErr = e; } });
		eq([ex.error.name, ex.error.value], ['ZeroDivisionError', 'division by zero'], 'an exception is execution.error');
		check(ex.error.traceback.includes('in f') && !ex.error.traceback.includes('omnirun-interpreter'),
			'its traceback is the cell\'s frames');
		check(onErr && onErr.name === 'ZeroDivisionError', 'onError is called');
		ex = await sbx.runCode('def broken(:');
		eq(ex.error.name, 'SyntaxError', 'a syntax error is execution.error');
		ex = await sbx.runCode('import sys\nsys.exit(3)');
		eq(ex.error.name, 'SystemExit', 'sys.exit is an error, not the end of the context');
		eq((await sbx.runCode('x')).text, '41', 'after the errors x is still 41');

		eq((await sbx.runCode('import os\nos.environ.get("RC_VAR")', { envs: { RC_VAR: 'v1' } })).text, 'v1',
			'envs are the environment of that execution');
		eq((await sbx.runCode('str(os.environ.get("RC_VAR"))')).text, 'None', '... and only of that one');
		eq((await sbx.runCode('import os, pwd\n(pwd.getpwuid(os.getuid()).pw_name, os.getcwd())')).text,
			'(\'user\', \'/workspace\')', 'the code runs as the template\'s user in its workdir');

		// Code that runs on after the SDK's timeout is interrupted; the
		// context keeps its state.
		const err = await rejection(sbx.runCode('while True:\n    pass', { timeoutMs: 3000 }), 'an endless loop');
		check(err instanceof TimeoutError, `the SDK's timeout is a TimeoutError (${err.name}: ${err.message})`);
		ex = await sbx.runCode('x');
		eq([ex.text, ex.error], ['41', undefined], 'the loop was interrupted and x is still 41');
	},

	// JavaScript through node, a context of its own.
	async javascript() {
		const sbx = await create();
		let ex = await sbx.runCode('let y = 20; const k = 2', { language: 'js' });
		eq(ex.error, undefined, 'let and const in a JS cell');
		ex = await sbx.runCode('console.log("from node"); y * k + 2', { language: 'javascript' });
		eq([ex.text, ex.logs.stdout], ['42', ['from node\n']], 'JS keeps let/const between calls; console.log is stdout');
		ex = await sbx.runCode('await new Promise((r) => setTimeout(() => r(y + 1), 100))', { language: 'js' });
		eq(ex.text, '21', 'a top-level await\'s value is the result');
		ex = await sbx.runCode('null.foo', { language: 'js' });
		eq(ex.error && ex.error.name, 'TypeError', 'a JS exception is execution.error');
		ex = await sbx.runCode('y', { language: 'js' });
		eq(ex.text, '20', 'and y is still there');
		eq((await sbx.runCode('y')).error.name, 'NameError', 'Python and JS contexts are apart');
		ex = await sbx.runCode('1', { language: 'r' });
		check(ex.error && ex.error.value.includes('not supported'), `an unknown language is an error (${ex.error && ex.error.value})`);
	},

	// createCodeContext, listCodeContexts, restartCodeContext, removeCodeContext.
	async contexts() {
		const sbx = await create();
		const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/tmp' });
		eq([typeof ctx.id, ctx.language, ctx.cwd], ['string', 'python', '/tmp'], 'createCodeContext answers id, language, cwd');
		await sbx.runCode('z = 7', { context: ctx });
		eq((await sbx.runCode('z', { context: ctx })).text, '7', 'a context keeps its variables');
		eq((await sbx.runCode('import os\nos.getcwd()', { context: ctx })).text, '/tmp', 'in its cwd');
		eq((await sbx.runCode('z')).error.name, 'NameError', 'the default context does not see them');
		const js = await sbx.createCodeContext({ language: 'javascript' });
		eq(js.language, 'javascript', 'a JS context');
		eq((await sbx.runCode('var w = 3; w', { context: js })).text, '3', 'runs JS');
		const ids = (await sbx.listCodeContexts()).map((c) => c.id);
		check(ids.includes(ctx.id) && ids.includes(js.id), 'listCodeContexts has both');
		await sbx.restartCodeContext(ctx);
		eq((await sbx.runCode('z', { context: ctx })).error.name, 'NameError', 'restartCodeContext clears its state');
		await sbx.removeCodeContext(ctx);
		await sbx.removeCodeContext(js.id);
		const left = (await sbx.listCodeContexts()).map((c) => c.id);
		check(!left.includes(ctx.id) && !left.includes(js.id), 'removeCodeContext removes them');
		const err = await rejection(sbx.runCode('1', { context: ctx }), 'a removed context');
		check(err instanceof NotFoundError, `runCode in a removed context is a NotFoundError (${err.name}: ${err.message})`);
		eq((await sbx.runCode('1 + 1')).text, '2', 'the default context still runs');
	},

	// runCode('1+1') against commands.run('true'), same sandbox, same run
	// (bench/e2b; N samples, 20 by default).
	async bench() {
		const n = Number(process.env.N || 20);
		const sbx = await create();
		await sbx.runCode('1+1');
		await sbx.commands.run('true');
		const rc = [], cmd = [];
		for (let i = 0; i < n; i++) {
			let t0 = performance.now();
			const ex = await sbx.runCode('1+1');
			rc.push(performance.now() - t0);
			if (ex.text !== '2') fail(`runCode('1+1') gave ${ex.text}`);
			t0 = performance.now();
			await sbx.commands.run('true');
			cmd.push(performance.now() - t0);
		}
		// One line a sample for bench/e2b, then the summary.
		for (const v of rc) console.log(`runcode ${v.toFixed(1)}`);
		for (const v of cmd) console.log(`run ${v.toFixed(1)}`);
		const f = (a) => `median ${pct(a, 50).toFixed(1)} ms, p95 ${pct(a, 95).toFixed(1)} ms`;
		console.log(`# runCode('1+1'): ${f(rc)} (n=${n})`);
		console.log(`# commands.run('true'): ${f(cmd)} (n=${n})`);
	},
};

const name = process.argv[2];
if (!scenarios[name]) {
	console.log(`FAIL: no scenario ${name}`);
	process.exit(1);
}
let code = 0;
try {
	await scenarios[name]();
} catch (err) {
	console.log(`FAIL: ${err.message}`);
	code = 1;
}
for (const s of made) await s.kill().catch(() => {});
process.exit(code);
