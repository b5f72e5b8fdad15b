// Flint's Lambda runtime client for Node.js.
//
// Runs INSIDE the sandbox as `node /var/runtime/bootstrap.js`; core modules
// only. Loads the handler named by _HANDLER ("path/file.export", the file
// being .js, .mjs or .cjs under LAMBDA_TASK_ROOT; ESM through dynamic
// import), then loops over the Runtime API at AWS_LAMBDA_RUNTIME_API.
//
// Handlers may return a promise (async), call the callback, or call
// context.succeed/fail/done. Handlers wrapped in awslambda.streamifyResponse
// stream their response (see "response streaming" below). Simplification: the response is sent as soon as
// the callback (or succeed/fail/done) is called; Lambda would additionally
// wait for the event loop to empty when callbackWaitsForEmptyEventLoop is
// true. A handler that returns no promise and never calls back is answered
// with null once the event loop has nothing left to do.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { Writable, finished } = require('stream');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';
const [apiHost, apiPort] = (() => {
  const addr = process.env.AWS_LAMBDA_RUNTIME_API || '';
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
})();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: apiHost, port: apiPort, method, path: API_PREFIX + p, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function postJSON(p, doc, errorType) {
  const headers = { 'Content-Type': 'application/json' };
  if (errorType) headers['Lambda-Runtime-Function-Error-Type'] = errorType;
  return call('POST', p, JSON.stringify(doc), headers);
}

// ---- logging: console.* lines carry Lambda's prefix ----
let currentRequestId = '';
function patchConsole() {
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  for (const [name, level] of Object.entries(levels)) {
    console[name] = (...args) => {
      let msg = util.format(...args);
      if (name === 'trace') msg += '\n' + new Error().stack.split('\n').slice(2).join('\n');
      process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${msg}\n`);
    };
  }
}

// ---- errors ----
function errorDoc(err) {
  if (err instanceof Error) {
    return {
      errorType: err.name || 'Error',
      errorMessage: err.message,
      trace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
    };
  }
  if (err === undefined || err === null) {
    return { errorType: 'Error', errorMessage: String(err), trace: [] };
  }
  if (typeof err === 'object') {
    return { errorType: err.errorType || err.name || 'Error', errorMessage: err.errorMessage || err.message || JSON.stringify(err), trace: [] };
  }
  return { errorType: typeof err, errorMessage: String(err), trace: [] };
}

class InitError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.name = type;
    if (cause && cause.stack) this.stack = cause.stack;
  }
}

// ---- response streaming ----
// awslambda.streamifyResponse(handler) marks a handler that is called as
// handler(event, responseStream, context) and writes its response to
// responseStream, a Writable. The response goes to the Runtime API as it is
// written: one chunked POST in streaming mode, with an error that happens
// after the first byte reported in trailers. awslambda.HttpResponseStream.from
// (stream, {statusCode, headers, cookies}) makes the body start with that
// HTTP prelude (JSON, then 8 NUL bytes), which function URLs turn into the
// status line and headers.
const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HIGH_WATER_MARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(PRELUDE_CONTENT_TYPE);
    const metadata = Buffer.from(JSON.stringify(prelude || {}));
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(Buffer.alloc(8));
    };
    return underlyingStream;
  }
}

globalThis.awslambda = {
  streamifyResponse(handler, options) {
    handler[STREAMING] = 'response';
    if (options && options.highWaterMark) handler[HIGH_WATER_MARK] = options.highWaterMark;
    return handler;
  },
  HttpResponseStream,
};

function createResponseStream(id, highWaterMark) {
  let req = null;
  let answered = Promise.resolve();
  let contentType = 'application/octet-stream';
  let ended = false;
  const open = () => {
    if (req) return;
    answered = new Promise((resolve, reject) => {
      req = http.request(
        {
          host: apiHost, port: apiPort, method: 'POST', path: `${API_PREFIX}/invocation/${id}/response`, agent,
          headers: {
            'Content-Type': contentType,
            'Lambda-Runtime-Function-Response-Mode': 'streaming',
            'Transfer-Encoding': 'chunked',
            Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    req.flushHeaders();
    const before = stream._onBeforeFirstWrite;
    if (before) {
      stream._onBeforeFirstWrite = null;
      before((c) => req.write(c));
    }
  };
  const stream = new Writable({
    highWaterMark: highWaterMark || undefined,
    write(chunk, _enc, cb) {
      open();
      req.write(chunk, cb);
    },
    final(cb) {
      open();
      if (!ended) {
        ended = true;
        req.end();
      }
      cb();
    },
  });
  stream.setContentType = (t) => {
    contentType = t;
  };
  stream.opened = () => req !== null;
  stream.answered = () => answered;
  stream.failWith = (doc) => {
    open();
    if (ended) return;
    ended = true;
    req.addTrailers({
      'Lambda-Runtime-Function-Error-Type': doc.errorType,
      'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(doc)).toString('base64'),
    });
    req.end();
  };
  return stream;
}

async function handleStreaming(handler, event, context, id) {
  const stream = createResponseStream(id, handler[HIGH_WATER_MARK]);
  let err = null;
  try {
    await handler(event, stream, context);
  } catch (e) {
    err = e === undefined || e === null ? new Error('rejected') : e;
  }
  if (err === null && !stream.writableEnded) stream.end();
  if (err === null) {
    await new Promise((resolve) => finished(stream, () => resolve()));
  } else {
    const doc = errorDoc(err);
    console.error('Invoke Error \t' + JSON.stringify(doc));
    if (!stream.opened()) {
      stream.destroy();
      await postJSON(`/invocation/${id}/error`, doc, doc.errorType);
      return;
    }
    stream.failWith(doc);
  }
  await stream.answered();
}

// ---- handler loading ----
async function loadHandler(taskRoot, spec) {
  const slash = spec.lastIndexOf('/');
  const moduleRoot = spec.slice(0, slash + 1);
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf('.');
  if (dot <= 0 || dot === rest.length - 1) {
    throw new InitError('Runtime.MalformedHandlerName', `Bad handler ${spec}`);
  }
  const moduleName = rest.slice(0, dot);
  const handlerPath = rest.slice(dot + 1);
  const base = path.resolve(taskRoot, moduleRoot, moduleName);

  let mod;
  try {
    mod = await loadModule(base);
  } catch (e) {
    if (e instanceof InitError) throw e;
    if (e instanceof SyntaxError) {
      throw new InitError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new InitError('Runtime.ImportModuleError', `Error: ${e.message.split('\n')[0]}`, e);
    }
    throw e;
  }
  if (mod === undefined) {
    throw new InitError('Runtime.ImportModuleError', `Error: Cannot find module '${moduleRoot}${moduleName}'`);
  }
  let fn = mod;
  for (const part of handlerPath.split('.')) {
    fn = fn == null ? undefined : fn[part];
  }
  if (fn === undefined) {
    throw new InitError('Runtime.HandlerNotFound', `${moduleName}.${handlerPath} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${moduleName}.${handlerPath} is not a function`);
  }
  return fn;
}

// loadModule returns the module at base(.js|.mjs|.cjs), undefined if none.
async function loadModule(base) {
  if (fs.existsSync(base + '.js')) {
    try {
      return require(base + '.js');
    } catch (e) {
      if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(base + '.js').href);
      throw e;
    }
  }
  if (fs.existsSync(base + '.mjs')) return import(pathToFileURL(base + '.mjs').href);
  if (fs.existsSync(base + '.cjs')) return require(base + '.cjs');
  return undefined;
}

// ---- invocations ----
let pendingFinish = null; // finishes the running invocation; used by beforeExit and uncaught errors

function runHandler(handler, event, context) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (err, result) => {
      if (done) return;
      done = true;
      pendingFinish = null;
      resolve({ err, result });
    };
    pendingFinish = finish;
    context.succeed = (result) => finish(null, result);
    context.fail = (err) => finish(err === undefined || err === null ? new Error('handled') : err, undefined);
    context.done = (err, result) => finish(err, result);
    const callback = (err, result) => finish(err === undefined ? null : err, result);
    let ret;
    try {
      ret = handler(event, context, callback);
    } catch (e) {
      finish(e);
      return;
    }
    if (ret && typeof ret.then === 'function') {
      ret.then((r) => finish(null, r), (e) => finish(e === undefined || e === null ? new Error('rejected') : e));
    }
  });
}

function makeContext(headers) {
  const env = process.env;
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const parse = (h) => {
    if (!headers[h]) return undefined;
    try {
      return JSON.parse(headers[h]);
    } catch (_) {
      return undefined;
    }
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parse('lambda-runtime-client-context'),
    identity: parse('lambda-runtime-cognito-identity'),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

async function handleOne(handler, res) {
  const id = res.headers['lambda-runtime-aws-request-id'];
  currentRequestId = id;
  const trace = res.headers['lambda-runtime-trace-id'];
  if (trace) process.env._X_AMZN_TRACE_ID = trace;
  else delete process.env._X_AMZN_TRACE_ID;
  const p = `/invocation/${id}`;
  let event;
  try {
    event = res.body.length ? JSON.parse(res.body.toString('utf8')) : {};
  } catch (e) {
    const doc = { errorType: 'Runtime.UnmarshalError', errorMessage: `Unable to parse event: ${e.message}`, trace: [] };
    await postJSON(p + '/error', doc, doc.errorType);
    return;
  }
  if (handler[STREAMING] === 'response') {
    await handleStreaming(handler, event, makeContext(res.headers), id);
    return;
  }
  const { err, result } = await runHandler(handler, event, makeContext(res.headers));
  if (err !== null && err !== undefined) {
    const doc = errorDoc(err);
    console.error('Invoke Error \t' + JSON.stringify(doc));
    await postJSON(p + '/error', doc, doc.errorType);
    return;
  }
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result);
  } catch (e) {
    const doc = { errorType: 'Runtime.MarshalError', errorMessage: `Unable to stringify response body: ${e.message}`, trace: [] };
    await postJSON(p + '/error', doc, doc.errorType);
    return;
  }
  await call('POST', p + '/response', body, { 'Content-Type': 'application/json' });
}

async function main() {
  patchConsole();
  const taskRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    process.chdir(taskRoot);
  } catch (_) {
    // keep the current directory
  }
  process.on('beforeExit', () => {
    // The event loop is empty while an invocation runs: the handler will
    // never call back. Lambda answers null in that case.
    if (pendingFinish) pendingFinish(null, null);
  });
  process.on('uncaughtException', (e) => failHard(e, 'Runtime.UncaughtException'));
  process.on('unhandledRejection', (e) => failHard(e, 'Runtime.UnhandledPromiseRejection'));

  let handler;
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (e) {
    const doc = errorDoc(e);
    console.error(`${doc.errorType}: ${doc.errorMessage}`);
    await postJSON('/init/error', doc, doc.errorType);
    process.exit(1);
  }
  for (;;) {
    const res = await call('GET', '/invocation/next');
    if (res.status !== 200) {
      process.stderr.write(`runtime api /next answered ${res.status}: ${res.body.toString().slice(0, 200)}\n`);
      process.exit(1);
    }
    await handleOne(handler, res);
  }
}

// failHard reports an error that escaped the handler and exits, as Lambda's
// runtime does.
async function failHard(e, type) {
  const doc = errorDoc(e);
  if (!(e instanceof Error)) doc.errorType = type;
  console.error(`${type} \t${JSON.stringify(doc)}`);
  try {
    if (currentRequestId && pendingFinish) {
      pendingFinish = null;
      await postJSON(`/invocation/${currentRequestId}/error`, doc, doc.errorType);
    } else if (!currentRequestId) {
      await postJSON('/init/error', doc, doc.errorType);
    }
  } finally {
    process.exit(129);
  }
}

main().catch((e) => {
  process.stderr.write(`flint runtime client: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
