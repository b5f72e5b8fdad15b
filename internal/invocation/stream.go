package invocation

// Stream receives a response as the function produces it (response
// streaming: InvokeWithResponseStream, function URLs in RESPONSE_STREAM
// mode). Whoever runs the invocation calls Start once, then Write for each
// chunk in order, each from one goroutine at a time; it never calls them
// after the invocation's Invoke call returned. A function error is not
// written: it comes back in the Result, as for a buffered invocation, and
// a stream that has started ends there.
type Stream interface {
	// Start is called before the first Write (and for an empty response,
	// alone) with the response's Content-Type as the runtime gave it
	// ("application/vnd.awslambda.http-integration-response" when the
	// body begins with an HTTP prelude).
	Start(contentType string) error
	// Write passes one chunk on to the client; it returns once the chunk
	// is on its way (flushed). An error ends the stream: the function's
	// further output is discarded.
	Write(p []byte) (int, error)
}

// ContentTypeHTTPPrelude is the Content-Type of a streamed response that
// begins with an HTTP prelude: a JSON object (statusCode, headers,
// cookies), eight NUL bytes, then the body (Node's
// awslambda.HttpResponseStream.from, aws-lambda-go's lambdaurl).
const ContentTypeHTTPPrelude = "application/vnd.awslambda.http-integration-response"
