// A function URL test handler: the path chooses the answer.
exports.handler = async (event) => {
  switch (event.rawPath) {
    case "/string":
      return "plain " + event.requestContext.http.method;
    case "/object":
      return { plain: true };
    case "/fail":
      throw new Error("boom");
    case "/binary":
      return { statusCode: 200, headers: { "content-type": "application/octet-stream" },
        body: Buffer.from([0, 1, 2, 255]).toString("base64"), isBase64Encoded: true };
  }
  return {
    statusCode: 201,
    headers: { "content-type": "application/json", "x-echo": "yes", "access-control-allow-origin": "https://evil.example" },
    cookies: ["s1=a; Path=/", "s2=b; HttpOnly"],
    body: JSON.stringify(event),
  };
};
