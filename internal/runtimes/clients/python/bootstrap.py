"""Flint's Lambda runtime client for Python.

Runs INSIDE the sandbox as `python3 -u /var/runtime/bootstrap.py`. Standard
library only. Loads the handler named by _HANDLER ("module.function", the
module may be a dotted or slash-separated path) from LAMBDA_TASK_ROOT, then
loops over the Runtime API at AWS_LAMBDA_RUNTIME_API: GET /next, call the
handler, POST /response or /error. Import problems are posted to
/init/error with Lambda's error types, after which the process exits.
"""

import http.client
import importlib
import json
import logging
import os
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"


class RuntimeAPI:
    """A keep-alive HTTP connection to the Runtime API."""

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.conn = None

    def call(self, method, path, body=None, headers=None):
        last = None
        for _ in range(2):  # one retry on a dropped keep-alive connection
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (http.client.HTTPException, ConnectionError) as exc:
                self.conn.close()
                self.conn = None
                last = exc
        raise last

    def post_json(self, path, doc, error_type=None):
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["Lambda-Runtime-Function-Error-Type"] = error_type
        return self.call("POST", path, json.dumps(doc).encode(), headers)


class HandlerError(Exception):
    """An init failure with Lambda's error type."""

    def __init__(self, error_type, message, tb=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = tb or []


class ClientContext:
    def __init__(self, doc):
        self.client = doc.get("client")
        self.custom = doc.get("custom")
        self.env = doc.get("env")


class CognitoIdentity:
    def __init__(self, doc):
        self.cognito_identity_id = doc.get("cognitoIdentityId")
        self.cognito_identity_pool_id = doc.get("cognitoIdentityPoolId")


class LambdaContext:
    """The context object handlers receive, as in Lambda's Python runtime."""

    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity(identity) if identity else None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


_current_request_id = ""


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


def setup_logging():
    """Root logger lines look like Lambda's: [LEVEL]\\ttime\\trequest id\\tmessage."""
    handler = logging.StreamHandler(sys.stdout)
    fmt = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
        "%Y-%m-%dT%H:%M:%S",
    )
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def load_handler(task_root, spec):
    module_path, _, func_name = spec.rpartition(".")
    if not module_path or not func_name:
        raise HandlerError(
            "Runtime.MalformedHandlerName",
            "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec,
        )
    module_name = module_path.replace("/", ".")
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerError(
            "Runtime.ImportModuleError", "Unable to import module '%s': %s" % (module_name, exc)
        )
    except SyntaxError as exc:
        raise HandlerError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, exc),
            format_stack(exc.__traceback__),
        )
    except Exception as exc:  # errors raised by the module's top-level code
        raise HandlerError(type(exc).__name__, str(exc), format_stack(exc.__traceback__))
    func = getattr(module, func_name, None)
    if func is None:
        raise HandlerError(
            "Runtime.HandlerNotFound",
            "Handler '%s' missing on module '%s'" % (func_name, module_name),
        )
    return func


def format_stack(tb):
    return traceback.format_list(traceback.extract_tb(tb))


def log_error(error_type, message, stack):
    lines = ["[ERROR] %s: %s" % (error_type, message)]
    if stack:
        lines.append("Traceback (most recent call last):")
        lines.extend(s.rstrip("\n") for s in stack)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def error_doc(error_type, message, stack, request_id=None):
    doc = {"errorMessage": message, "errorType": error_type}
    if request_id is not None:
        doc["requestId"] = request_id
    doc["stackTrace"] = stack
    return doc


def handle_one(api, handler, status, headers, body):
    global _current_request_id
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    _current_request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)

    def parse_header(name):
        raw = headers.get(name)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    try:
        deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))
    except ValueError:
        deadline_ms = 0
    context = LambdaContext(
        request_id,
        deadline_ms,
        headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        parse_header("Lambda-Runtime-Client-Context"),
        parse_header("Lambda-Runtime-Cognito-Identity"),
    )
    path = "/invocation/%s" % request_id
    try:
        event = json.loads(body) if body else {}
    except ValueError as exc:
        doc = error_doc("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % exc, [], request_id)
        log_error(doc["errorType"], doc["errorMessage"], [])
        api.post_json(path + "/error", doc, doc["errorType"])
        return
    try:
        result = handler(event, context)
    except Exception as exc:
        tb = exc.__traceback__
        stack = format_stack(tb.tb_next if tb is not None else None)
        doc = error_doc(type(exc).__name__, str(exc), stack, request_id)
        log_error(doc["errorType"], doc["errorMessage"], stack)
        api.post_json(path + "/error", doc, doc["errorType"])
        return
    try:
        payload = json.dumps(result).encode()
    except (TypeError, ValueError) as exc:
        doc = error_doc("Runtime.MarshalError", "Unable to marshal response: %s" % exc, [], request_id)
        log_error(doc["errorType"], doc["errorMessage"], [])
        api.post_json(path + "/error", doc, doc["errorType"])
        return
    api.call("POST", path + "/response", payload, {"Content-Type": "application/json"})


def main():
    api = RuntimeAPI(os.environ["AWS_LAMBDA_RUNTIME_API"])
    setup_logging()
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    try:
        os.chdir(task_root)
    except OSError:
        pass
    try:
        handler = load_handler(task_root, os.environ.get("_HANDLER", ""))
    except HandlerError as exc:
        log_error(exc.error_type, exc.message, exc.stack)
        api.post_json("/init/error", error_doc(exc.error_type, exc.message, exc.stack), exc.error_type)
        sys.exit(1)
    while True:
        status, headers, body = api.call("GET", "/invocation/next")
        if status != 200:
            sys.stderr.write("runtime api /next answered %d: %s\n" % (status, body[:200]))
            sys.exit(1)
        handle_one(api, handler, status, headers, body)


if __name__ == "__main__":
    main()
