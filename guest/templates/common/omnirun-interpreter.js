// A JavaScript context of omnirun-interpreter (see there):
//   node omnirun-interpreter.js CMD_FD MSG_FD
// reads {"code", "env"} a line on CMD_FD, runs the code as a script in
// this process's own context (so top-level var, let, const, function and
// class declarations stay for the next executions, as in node's REPL),
// and writes {"type": "result" | "error" | "done", ...} a line on MSG_FD.
// A script's completion value is its result; a promise is awaited first.
// Code with a top-level await runs as the body of an async function: its
// declarations are its own, and its result is what it returns.
// SIGINT interrupts the running script (vm's breakOnSigint) or stops
// waiting for its promise.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const util = require('node:util');
const vm = require('node:vm');
const { createRequire } = require('node:module');

const [cmdFd, msgFd] = process.argv.slice(2).map(Number);
let onInterrupt = null;

function send(msg) {
	fs.writeSync(msgFd, JSON.stringify(msg) + '\n');
}

// require() as in a script in the working directory (its node_modules).
globalThis.require = createRequire(path.join(process.cwd(), '[cell]'));

// What the code leaves running must not end the context.
process.on('uncaughtException', (e) => process.stderr.write(`${e && e.stack || e}\n`));
process.on('unhandledRejection', (e) => process.stderr.write(`Unhandled rejection: ${e && e.stack || e}\n`));
process.on('SIGINT', () => onInterrupt && onInterrupt());

function compile(code) {
	try {
		return new vm.Script(code, { filename: '<cell>' });
	} catch (e) {
		if (!(e instanceof SyntaxError) || !/\bawait\b/.test(code))
			throw e;
		// An expression's value is returned; statements are the body.
		try {
			return new vm.Script(`(async () => (\n${code}\n))()`, { filename: '<cell>', lineOffset: -1 });
		} catch {
			return new vm.Script(`(async () => {\n${code}\n})()`, { filename: '<cell>', lineOffset: -1 });
		}
	}
}

// A stack without the frames of this file and of node's own.
function cellFrames(stack) {
	return stack.split('\n').filter((l) => !/^\s+at .*(node:|omnirun-interpreter\.js|sigintHandlersWrap)/.test(l))
		.join('\n');
}

function errorMessage(e) {
	if (e instanceof Error || (e && typeof e === 'object' && 'message' in e))
		return { type: 'error', name: String(e.name || 'Error'), value: String(e.message),
			traceback: cellFrames(String(e.stack || '')) };
	return { type: 'error', name: 'Error', value: util.inspect(e), traceback: '' };
}

async function run(req) {
	const env = req.env || {};
	const saved = {};
	for (const k of Object.keys(env)) {
		saved[k] = process.env[k];
		process.env[k] = env[k];
	}
	try {
		let value = compile(req.code).runInThisContext({ breakOnSigint: true });
		if (value && typeof value.then === 'function') {
			value = await new Promise((resolve, reject) => {
				onInterrupt = () => reject(Object.assign(new Error('Script execution interrupted.'),
					{ name: 'KeyboardInterrupt' }));
				value.then(resolve, reject);
			});
		}
		if (value !== undefined) {
			let text = util.inspect(value);
			if (text.length > 1 << 20)
				text = text.slice(0, 1 << 20) + '...';
			send({ type: 'result', text });
		}
	} catch (e) {
		send(errorMessage(e));
	} finally {
		onInterrupt = null;
		for (const k of Object.keys(saved)) {
			if (saved[k] === undefined)
				delete process.env[k];
			else
				process.env[k] = saved[k];
		}
		send({ type: 'done' });
	}
}

// One execution at a time, in the order they came.
const lines = readline.createInterface({ input: fs.createReadStream(null, { fd: cmdFd }) });
let queue = Promise.resolve();
lines.on('line', (line) => {
	queue = queue.then(() => run(JSON.parse(line)));
});
lines.on('close', () => process.exit(0));
