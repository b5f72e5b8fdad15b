let invocations = 0;

exports.handler = async (event, context) => {
  invocations++;
  console.log("handled", event.action || "", "for", event.name);
  if (event.action === "error") {
    throw new TypeError("boom: " + event.name);
  }
  return {
    hello: event.name,
    requestId: context.awsRequestId,
    functionArn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB,
    remainingMs: context.getRemainingTimeInMillis(),
    invocations,
    pid: process.pid,
    runtime: "node",
    clientCustom: context.clientContext ? context.clientContext.custom : null,
  };
};

exports.callback = (event, context, callback) => {
  invocations++;
  if (event.action === "error") {
    callback(new Error("boom: " + event.name));
    return;
  }
  setTimeout(() => callback(null, { hello: event.name, style: "callback", invocations }), 5);
};
