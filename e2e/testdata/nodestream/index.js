// A response streaming handler: writes a chunk stamped with the function's
// clock, waits, writes another. Through a function URL (the event has a
// rawPath) the body starts with an HTTP prelude.
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.rawPath !== undefined) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 203,
      headers: { 'content-type': 'text/plain', 'x-stream': 'yes' },
      cookies: ['st=1; Path=/'],
    });
  }
  const bytes = Number(event.bytes || (event.queryStringParameters || {}).bytes || 0);
  if (bytes > 0) {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
      if (!responseStream.write(part)) await new Promise((r) => responseStream.once('drain', r));
    }
    responseStream.end();
    return;
  }
  responseStream.write(`first ${Date.now()}\n`);
  await new Promise((r) => setTimeout(r, Number(event.waitMs || (event.queryStringParameters || {}).waitMs || 1000)));
  responseStream.write(`second ${Date.now()}\n`);
  if (event.fail) throw new TypeError('late boom');
  responseStream.end();
});
