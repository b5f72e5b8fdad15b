import os
import time

invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    action = event.get("action", "")
    print("handled", action, "for", event.get("name"))
    if action == "error":
        raise ValueError("boom: %s" % event.get("name"))
    if action == "sleep":
        time.sleep(event.get("ms", 0) / 1000.0)
    return {
        "hello": event.get("name"),
        "requestId": context.aws_request_id,
        "functionArn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remainingMs": context.get_remaining_time_in_millis(),
        "invocations": invocations,
        "pid": os.getpid(),
        "runtime": "python",
        "clientCustom": context.client_context.custom if context.client_context else None,
    }
