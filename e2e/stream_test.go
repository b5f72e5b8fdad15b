package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/gobuildtest"
	"github.com/flintdev/flint/internal/polltest"
)

// streamed is what an InvokeWithResponseStream reader saw.
type streamed struct {
	chunks   [][]byte
	firstAt  time.Time // when the first PayloadChunk arrived
	complete *types.InvokeWithResponseStreamCompleteEvent
	version  string
}

func (s streamed) body() string {
	var b strings.Builder
	for _, c := range s.chunks {
		b.Write(c)
	}
	return b.String()
}

func invokeStream(t *testing.T, c *lambda.Client, name string, payload any) streamed {
	t.Helper()
	p, _ := json.Marshal(payload)
	out, err := c.InvokeWithResponseStream(ctxT(t, 2*time.Minute), &lambda.InvokeWithResponseStreamInput{
		FunctionName: aws.String(name), Payload: p, LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("InvokeWithResponseStream %s: %v", name, err)
	}
	st := out.GetStream()
	defer st.Close()
	r := streamed{version: aws.ToString(out.ExecutedVersion)}
	for ev := range st.Events() {
		switch v := ev.(type) {
		case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
			if r.firstAt.IsZero() {
				r.firstAt = time.Now()
			}
			r.chunks = append(r.chunks, v.Value.Payload)
		case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
			r.complete = &v.Value
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("InvokeWithResponseStream %s: reading the stream: %v", name, err)
	}
	if r.complete == nil {
		t.Fatalf("InvokeWithResponseStream %s: no InvokeComplete event", name)
	}
	return r
}

// stampOf reads the function's clock (Unix ms) from a "<word> <ms>" line.
func stampOf(t *testing.T, body, word string) time.Time {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, word+" "); ok {
			ms, err := strconv.ParseInt(rest, 10, 64)
			if err == nil {
				return time.UnixMilli(ms)
			}
		}
	}
	t.Fatalf("no %q line in %q", word, body)
	return time.Time{}
}

// TestResponseStreaming: a Node awslambda.streamifyResponse handler's
// first chunk reaches an aws-sdk-go-v2 InvokeWithResponseStream reader
// before the handler writes its second one (by the function's own clock);
// an error after the first chunk ends the stream with InvokeComplete's
// ErrorCode; responses over 6 MB stream, over 20 MiB they are cut off; a
// RESPONSE_STREAM function URL streams to curl with the prelude's status
// and headers.
func TestResponseStreaming(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	createNodeFn(t, c, "streamfn", "nodestream")

	r := invokeStream(t, c, "streamfn", map[string]any{"waitMs": 1000})
	body := r.body()
	second := stampOf(t, body, "second")
	if !r.firstAt.Before(second) {
		t.Errorf("first chunk arrived at %s, not before the function wrote its second one at %s", r.firstAt.Format(time.StampMilli), second.Format(time.StampMilli))
	}
	if len(r.chunks) < 2 || !strings.HasPrefix(string(r.chunks[0]), "first ") {
		t.Errorf("chunks %q, want the first line in a chunk of its own", r.chunks)
	}
	if r.complete.ErrorCode != nil || r.version != "$LATEST" || r.complete.LogResult == nil {
		t.Errorf("complete %+v version %q", r.complete, r.version)
	}

	r = invokeStream(t, c, "streamfn", map[string]any{"waitMs": 10, "fail": true})
	if !strings.Contains(r.body(), "second ") || aws.ToString(r.complete.ErrorCode) != "TypeError" ||
		!strings.Contains(aws.ToString(r.complete.ErrorDetails), "late boom") {
		t.Errorf("error mid-stream: body %q complete %+v", r.body(), r.complete)
	}

	const big = 8 << 20 // over the 6 MB buffered limit
	r = invokeStream(t, c, "streamfn", map[string]any{"bytes": big})
	if len(r.body()) != big || r.complete.ErrorCode != nil {
		t.Errorf("8 MiB stream: got %d bytes, complete %+v", len(r.body()), r.complete)
	}
	r = invokeStream(t, c, "streamfn", map[string]any{"bytes": 21 << 20})
	if len(r.body()) > 20<<20 || aws.ToString(r.complete.ErrorCode) != "Function.ResponseSizeTooLarge" {
		t.Errorf("21 MiB stream: got %d bytes, complete %+v", len(r.body()), r.complete)
	}

	// A timeout mid-stream ends it with Sandbox.Timedout after what was sent.
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("streamfn"), Timeout: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	polltest.Check(t, 30*time.Second, "the configuration update", func() error {
		out, err := c.GetFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("streamfn")})
		if err != nil || out.LastUpdateStatus != types.LastUpdateStatusSuccessful {
			return fmt.Errorf("%v %v", out.LastUpdateStatus, err)
		}
		return nil
	})
	r = invokeStream(t, c, "streamfn", map[string]any{"waitMs": 3000})
	if !strings.HasPrefix(r.body(), "first ") || strings.Contains(r.body(), "second") || aws.ToString(r.complete.ErrorCode) != "Sandbox.Timedout" {
		t.Errorf("timeout mid-stream: body %q complete %+v", r.body(), r.complete)
	}
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 10*time.Second), &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String("streamfn"), Timeout: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}

	// A streaming URL, read by curl as it arrives.
	out, err := c.CreateFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("streamfn"), AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream})
	if err != nil || out.InvokeMode != types.InvokeModeResponseStream {
		t.Fatalf("CreateFunctionUrlConfig: %+v %v", out, err)
	}
	status, hdr := curlStreamed(t, aws.ToString(out.FunctionUrl)+"stream")
	if !strings.HasPrefix(status, "HTTP/1.1 203 ") || hdr.Get("X-Stream") != "yes" || hdr.Get("Content-Type") != "text/plain" ||
		hdr.Get("Set-Cookie") != "st=1; Path=/" {
		t.Errorf("streaming url: %s %v", status, hdr)
	}
}

// curlStreamed fetches url with curl -N (no buffering) and checks that the
// body's first line ("first <ms>") arrived before the function wrote its
// second line ("second <ms>", by the function's clock). It returns the
// status line and header.
func curlStreamed(t *testing.T, url string) (string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sS", "-N", "-i", url)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("curl: %v", err)
	}
	defer cmd.Wait()
	// curl -i prints the header as received and the body de-chunked.
	lr := bufio.NewReader(stdout)
	tp := textproto.NewReader(lr)
	status, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	line1, err := lr.ReadString('\n')
	firstAt := time.Now()
	if err != nil {
		t.Fatalf("curl: first line: %v", err)
	}
	line2, _ := lr.ReadString('\n')
	if !strings.HasPrefix(line1, "first ") {
		t.Fatalf("streaming url: body %q %q", line1, line2)
	}
	if second := stampOf(t, line2, "second"); !firstAt.Before(second) {
		t.Errorf("streaming url: first line arrived at %s, not before the function wrote its second one at %s",
			firstAt.Format(time.StampMilli), second.Format(time.StampMilli))
	}
	return status, http.Header(mh)
}

// TestGoLambdaURLStreaming: an aws-lambda-go lambdaurl handler (an
// http.Handler) streams through a RESPONSE_STREAM URL with its status,
// headers and cookies.
func TestGoLambdaURLStreaming(t *testing.T) {
	s := startServer(t, t.TempDir())
	c := s.lambda()
	bin := filepath.Join(t.TempDir(), "bootstrap")
	if err := gobuildtest.Compile("./testdata/gourl", bin); err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	createGoFn(t, c, "gourl", func(in *lambda.CreateFunctionInput) {
		in.Code = &types.FunctionCode{ZipFile: zipFiles(map[string]zipEntry{"bootstrap": {data: code, mode: 0o755}})}
	})
	out, err := c.CreateFunctionUrlConfig(ctxT(t, 10*time.Second), &lambda.CreateFunctionUrlConfigInput{
		FunctionName: aws.String("gourl"), AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream})
	if err != nil {
		t.Fatal(err)
	}
	status, hdr := curlStreamed(t, aws.ToString(out.FunctionUrl)+"hello")
	if !strings.HasPrefix(status, "HTTP/1.1 202 ") || hdr.Get("X-Go") != "/hello" || hdr.Get("Content-Type") != "text/plain" ||
		hdr.Get("Set-Cookie") != "go=1" {
		t.Errorf("lambdaurl: %s %v", status, hdr)
	}
}
