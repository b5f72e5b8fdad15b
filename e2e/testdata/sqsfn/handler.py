# An SQS event source mapping's function for the e2e tests: it prints one
# "saw" line per record (id, body, receive count, the latency from
# SentTimestamp by its own clock) and the record's shape once per batch,
# and reports every record whose body starts with "fail" in
# batchItemFailures; a batch with a body starting with "slow" takes 50 ms.
# An event without Records (an async invoke) raises.
import json
import time


def handler(event, context):
    if "Records" not in event:
        raise Exception("not an SQS event")
    if any(r["body"].startswith("slow") for r in event["Records"]):
        time.sleep(0.05)
    now = int(time.time() * 1000)
    fails = []
    for r in event["Records"]:
        a = r["attributes"]
        print("saw %s %s %s %d %d" % (r["messageId"], r["body"], a["ApproximateReceiveCount"], now - int(a["SentTimestamp"]), now))
        if r["body"].startswith("fail"):
            fails.append({"itemIdentifier": r["messageId"]})
    first = event["Records"][0]
    shape = {k: (sorted(v.keys()) if isinstance(v, dict) else v) for k, v in first.items() if k not in ("body", "receiptHandle", "messageId", "md5OfBody", "md5OfMessageAttributes")}
    print("shape " + json.dumps(shape, sort_keys=True))
    return {"batchItemFailures": fails}
