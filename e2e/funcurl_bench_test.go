package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// createNodeFnB creates a Node function from testdata/dir for a benchmark.
func createNodeFnB(b *testing.B, c *lambda.Client, name, dir string) {
	b.Helper()
	ctx := context.Background()
	runtime := ""
	_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("probe-runtimes"), Runtime: types.Runtime("cobol85"), Handler: aws.String("x"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"), Code: &types.FunctionCode{ZipFile: goFnZip},
	})
	for _, f := range strings.FieldsFunc(fmt.Sprint(err), func(r rune) bool { return strings.ContainsRune(" ,[]:;()'\"", r) }) {
		if strings.HasPrefix(f, "nodejs") {
			runtime = strings.TrimSuffix(f, ".")
		}
	}
	if runtime == "" {
		b.Fatalf("no nodejs runtime: %v", err)
	}
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String(name), Runtime: types.Runtime(runtime), Handler: aws.String("index.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"), MemorySize: aws.Int32(256),
		Code: &types.FunctionCode{ZipFile: zipTestdata(b, dir)},
	}); err != nil {
		b.Fatal(err)
	}
}

// urlRequest builds a request to a function URL sent to the server's own
// address with the URL's Host (no name resolution involved).
func urlRequest(b *testing.B, s *flintServer, functionURL, path string) *http.Request {
	u, err := url.Parse(functionURL)
	if err != nil {
		b.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, s.url()+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = u.Host
	return req
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// BenchmarkFunctionURL compares a warm function URL request (GET through
// the Host-routed listener, 2.0 event, response mapping) with its peer, a
// direct aws-sdk-go-v2 Invoke of the same Node handler doing the same work,
// interleaved in one run: url-p50/p99-ms against invoke-p50/p99-ms.
//
// Run: go test -run '^$' -bench FunctionURL -benchtime 1x ./e2e
func BenchmarkFunctionURL(b *testing.B) {
	s := startServer(b, b.TempDir())
	c := s.lambda()
	ctx := context.Background()
	createNodeFnB(b, c, "benchurl", "nodeurl")
	out, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("benchurl"), AuthType: types.FunctionUrlAuthTypeNone})
	if err != nil {
		b.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"rawPath": "/string", "requestContext": map[string]any{"http": map[string]any{"method": "GET"}}})
	viaURL := func() time.Duration {
		start := time.Now()
		resp, err := http.DefaultClient.Do(urlRequest(b, s, aws.ToString(out.FunctionUrl), "/string"))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 || string(body) != "plain GET" {
			b.Fatalf("url: %d %q", resp.StatusCode, body)
		}
		return d
	}
	viaInvoke := func() time.Duration {
		start := time.Now()
		res, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("benchurl"), Payload: payload})
		d := time.Since(start)
		if err != nil || res.FunctionError != nil || string(res.Payload) != `"plain GET"` {
			b.Fatalf("invoke: %v %q", err, res.Payload)
		}
		return d
	}
	for range 20 { // warm the sandbox and both paths
		viaURL()
		viaInvoke()
	}
	const n = 300
	var urls, invokes []time.Duration
	b.ResetTimer()
	for range b.N {
		urls, invokes = urls[:0], invokes[:0]
		for range n {
			urls = append(urls, viaURL())
			invokes = append(invokes, viaInvoke())
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(pct(urls, 0.5)), "url-p50-ms")
	b.ReportMetric(ms(pct(urls, 0.99)), "url-p99-ms")
	b.ReportMetric(ms(pct(invokes, 0.5)), "invoke-p50-ms")
	b.ReportMetric(ms(pct(invokes, 0.99)), "invoke-p99-ms")
	b.Logf("%d warm requests each, interleaved; loadavg %s", n, loadavg())
}

// BenchmarkStreamFirstByte measures the time to the first streamed byte of
// a Node streamifyResponse handler that writes a chunk, waits 200 ms and
// writes another: through InvokeWithResponseStream (stream-first-ms,
// stream-total-ms) and a RESPONSE_STREAM URL (url-first-ms), against its
// peer, a buffered Invoke of the same handler, whose first byte is its
// whole answer (invoke-first-ms). Medians of 30 warm invocations each.
//
// Run: go test -run '^$' -bench StreamFirstByte -benchtime 1x ./e2e
func BenchmarkStreamFirstByte(b *testing.B) {
	s := startServer(b, b.TempDir())
	c := s.lambda()
	ctx := context.Background()
	createNodeFnB(b, c, "benchstream", "nodestream")
	out, err := c.CreateFunctionUrlConfig(ctx, &lambda.CreateFunctionUrlConfigInput{FunctionName: aws.String("benchstream"),
		AuthType: types.FunctionUrlAuthTypeNone, InvokeMode: types.InvokeModeResponseStream})
	if err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"waitMs":200}`)
	stream := func() (first, total time.Duration) {
		start := time.Now()
		res, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("benchstream"), Payload: payload})
		if err != nil {
			b.Fatal(err)
		}
		st := res.GetStream()
		for ev := range st.Events() {
			if _, ok := ev.(*types.InvokeWithResponseStreamResponseEventMemberPayloadChunk); ok && first == 0 {
				first = time.Since(start)
			}
		}
		st.Close()
		return first, time.Since(start)
	}
	viaURL := func() time.Duration {
		start := time.Now()
		resp, err := http.DefaultClient.Do(urlRequest(b, s, aws.ToString(out.FunctionUrl), "/?waitMs=200"))
		if err != nil {
			b.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return d
	}
	buffered := func() time.Duration {
		start := time.Now()
		if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("benchstream"), Payload: payload}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for range 3 {
		stream()
		viaURL()
		buffered()
	}
	const n = 30
	var firsts, totals, urlFirsts, invokes []time.Duration
	b.ResetTimer()
	for range b.N {
		firsts, totals, urlFirsts, invokes = firsts[:0], totals[:0], urlFirsts[:0], invokes[:0]
		for range n {
			f, t := stream()
			firsts, totals = append(firsts, f), append(totals, t)
			urlFirsts = append(urlFirsts, viaURL())
			invokes = append(invokes, buffered())
		}
	}
	b.StopTimer()
	b.ReportMetric(ms(pct(firsts, 0.5)), "stream-first-ms")
	b.ReportMetric(ms(pct(totals, 0.5)), "stream-total-ms")
	b.ReportMetric(ms(pct(urlFirsts, 0.5)), "url-first-ms")
	b.ReportMetric(ms(pct(invokes, 0.5)), "invoke-first-ms")
	b.Logf("%d warm invocations each; handler waits 200 ms between its chunks; loadavg %s", n, loadavg())
}
