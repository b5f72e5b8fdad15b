package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/chromedp/chromedp"

	"github.com/flintdev/flint/internal/polltest"
)

// chromiumPath finds Debian's chromium (apt-get install -y chromium;
// .ci/run installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
	return ""
}

// browser is a headless chromium with a fresh profile, reaching nothing
// but the test server. Every JavaScript exception, console.error and
// browser log error is collected.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// The first action starts the browser, with no deadline (a deadline
	// on it would bound the browser's life).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errors = append(b.errors, m.String()+" "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions with a deadline.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// consoleErrors returns the errors collected so far, less those allow
// accepts.
func (b *browser) consoleErrors(allow func(string) bool) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.errors {
		if allow == nil || !allow(e) {
			out = append(out, e)
		}
	}
	return out
}

// eval evaluates a JavaScript expression (awaiting a promise).
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(t *testing.T, d time.Duration, expr string) {
	t.Helper()
	err := polltest.Poll(d, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && !ok {
			err = fmt.Errorf("false")
		}
		return err
	})
	if err != nil {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('app').innerText.slice(0, 3000)`))
		cancel()
		t.Fatalf("not true within %v: %s (%v)\npage:\n%s\nconsole errors: %v", d, expr, err, text, b.consoleErrors(nil))
	}
}

// screenshot saves a PNG of the whole page to dir/name.
func (b *browser) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) > 1<<20 {
		t.Errorf("screenshot %s is %d bytes, over 1 MB", name, len(png))
	}
	t.Logf("screenshot %s: %d bytes", path, len(png))
}

// TestConsoleInBrowser drives the web console in headless chromium against
// a real server: the functions list shows the function, the function page
// invokes it and then shows that invocation in its plot, its table and the
// live log tail; the queues page shows a dead-lettered event and redrives
// it; the cluster page shows the host. No JavaScript error may occur.
func TestConsoleInBrowser(t *testing.T) {
	requireRoot(t)
	shots := os.Getenv("FLINT_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	srv := startServer(t, t.TempDir())
	c := srv.lambda()
	createGoFn(t, c, "hello", func(in *lambda.CreateFunctionInput) { in.Timeout = aws.Int32(1) })
	createGoFn(t, c, "resize-images", func(in *lambda.CreateFunctionInput) {
		in.MemorySize = aws.Int32(256)
		in.DeadLetterConfig = &types.DeadLetterConfig{TargetArn: aws.String(queueARN("resize-dlq"))}
	})
	putEventConfig(t, c, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName: aws.String("resize-images"), MaximumRetryAttempts: aws.Int32(0),
	})
	if _, err := c.PublishVersion(ctxT(t, 30*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String("hello"), Description: aws.String("first release")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateFunctionConfiguration(ctxT(t, 30*time.Second), &lambda.UpdateFunctionConfigurationInput{FunctionName: aws.String("hello"), MemorySize: aws.Int32(192)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishVersion(ctxT(t, 30*time.Second), &lambda.PublishVersionInput{FunctionName: aws.String("hello")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctxT(t, 30*time.Second), &lambda.CreateAliasInput{
		FunctionName: aws.String("hello"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 0.1}},
	}); err != nil {
		t.Fatal(err)
	}
	// Some history to plot: successes, errors, a timeout (and with it a
	// second cold start).
	for i := 0; i < 12; i++ {
		p := map[string]any{"name": "warm", "action": "sleep", "ms": 5 * (i % 4)}
		if i%5 == 4 {
			p = map[string]any{"action": "error", "name": "bad input"}
		}
		invoke(t, c, "hello", p, false)
	}
	invoke(t, c, "hello", map[string]any{"action": "sleep", "ms": 1500}, false)
	for i := 0; i < 3; i++ {
		invoke(t, c, "hello", map[string]any{"name": "again"}, false)
	}
	// One event that fails into the dead-letter queue.
	id := invokeEvent(t, c, "resize-images", []byte(`{"action":"error","name":"corrupt.png"}`))
	srv.waitAsync(t, id, 60*time.Second, asyncSettled)

	b := newBrowser(t)
	base := srv.url() + "/console/"

	// Functions list.
	b.do(t, "open console", chromedp.Navigate(base))
	b.waitJS(t, 30*time.Second, `!!document.querySelector('#functions tr[data-fn="hello"]')`)
	b.waitJS(t, 30*time.Second, `document.querySelector('#functions tr[data-fn="hello"] [data-k=invocations]').textContent === "16"`)
	b.screenshot(t, shots, "console-functions.png")

	// Function page: invoke from the form, then find that invocation in
	// the plot, the table and the log tail.
	b.do(t, "open function", chromedp.Navigate(base+"#/fn/hello"))
	b.waitJS(t, 30*time.Second, `document.querySelector('#plot-invocations') && document.querySelector('#plot-invocations').dataset.points === "16"`)
	b.waitJS(t, 30*time.Second, `document.getElementById('logtail').textContent.includes('REPORT RequestId')`)
	b.waitJS(t, 10*time.Second, `!!document.querySelector('#versions tr[data-alias="live"]')`)
	b.do(t, "invoke from the form",
		chromedp.SetValue(chromedp.CSS("#payload"), `{"name":"console"}`),
		chromedp.Click(chromedp.CSS("#invoke")))
	b.waitJS(t, 30*time.Second, `(document.getElementById('invoke-status')||{}).textContent === 'Succeeded'`)
	payload := eval[string](t, b, `document.getElementById('invoke-payload').textContent`)
	var reply goReply
	if err := json.Unmarshal([]byte(payload), &reply); err != nil || reply.RequestID == "" || reply.Hello != "console" {
		t.Fatalf("invoke result %q: %v", payload, err)
	}
	b.waitJS(t, 30*time.Second, `document.querySelector('#plot-invocations').dataset.points === "17"`)
	b.waitJS(t, 30*time.Second, fmt.Sprintf(`!!document.querySelector('#recent tr[data-request=%q]')`, reply.RequestID))
	b.waitJS(t, 30*time.Second, fmt.Sprintf(`document.getElementById('logtail').textContent.includes('START RequestId: %s')`, reply.RequestID))
	b.waitJS(t, 10*time.Second, fmt.Sprintf(`document.getElementById('invoke-log').textContent.includes('REPORT RequestId: %s')`, reply.RequestID))
	b.screenshot(t, shots, "console-function.png")

	// Queues: the dead-lettered event, then a redrive.
	b.do(t, "open queues", chromedp.Navigate(base+"#/queues"))
	b.waitJS(t, 30*time.Second, `!!document.querySelector('#queue-resize-dlq [data-count="1"]')`)
	b.waitJS(t, 10*time.Second, `(document.getElementById('queue-depth')||{}).textContent === '0'`)
	b.screenshot(t, shots, "console-queues.png")
	b.do(t, "redrive", chromedp.Click(chromedp.CSS("#queue-resize-dlq button.redrive")))
	b.waitJS(t, 30*time.Second, `document.querySelector('#queue-resize-dlq .result').textContent === 'redriven 1 event(s) to resize-images'`)
	// The redriven event (a new request id) fails again (no retries) and
	// is dead-lettered again; the original message is gone.
	polltest.Check(t, 60*time.Second, "the redriven event back in the dead-letter queue", func() error {
		msgs, err := srv.peekQueue("resize-dlq")
		if err != nil || len(msgs) != 1 || msgs[0].Attributes["RequestID"] == id {
			return fmt.Errorf("dlq after redrive: %+v, %v", msgs, err)
		}
		return nil
	})

	// Cluster.
	b.do(t, "open cluster", chromedp.Navigate(base+"#/cluster"))
	b.waitJS(t, 30*time.Second, `!!document.querySelector('#hosts tbody tr') && !!document.querySelector('#sandboxes tbody tr')`)
	b.screenshot(t, shots, "console-cluster.png")

	allow := func(e string) bool {
		// Until GET /flint/v1/cluster exists the cluster page falls back
		// to /flint/v1/stats; the browser logs the 404 of the probe.
		return strings.Contains(e, "/flint/v1/cluster") && strings.Contains(e, "404")
	}
	if errs := b.consoleErrors(allow); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

// TestConsoleSigV4 checks the console's in-browser SigV4 signer against
// aws-sdk-go-v2's signer for the same request, so the console can talk to
// a server that verifies signatures.
func TestConsoleSigV4(t *testing.T) {
	requireRoot(t)
	srv := startServer(t, t.TempDir())
	b := newBrowser(t)
	b.do(t, "open console", chromedp.Navigate(srv.url()+"/console/#/login"))
	b.waitJS(t, 30*time.Second, `typeof sigv4 === 'object' && !!document.body.dataset.ready`)

	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	url := srv.url() + "/2015-03-31/functions/my-fn/invocations?Qualifier=%24LATEST&b=x%20y"
	body := `{"name":"signed"}`
	for _, token := range []string{"", "session/token+="} {
		expr := fmt.Sprintf(`sigv4.sign('POST', %q, {'Content-Type': 'application/json', 'X-Amz-Log-Type': 'Tail'}, %q,
			{accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: %q, region: 'eu-west-1'},
			'lambda', new Date(%d))`, url, body, token, at.UnixMilli())
		got := eval[map[string]string](t, b, expr)

		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Amz-Log-Type", "Tail")
		req.Header.Set("X-Amz-Content-Sha256", got["X-Amz-Content-Sha256"])
		err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{
			AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: token,
		}, req, sha256Hex(body), "lambda", "eu-west-1", at)
		if err != nil {
			t.Fatal(err)
		}
		if want := req.Header.Get("Authorization"); got["Authorization"] != want {
			t.Errorf("token %q: browser signed\n%s\naws-sdk-go-v2 signs\n%s", token, got["Authorization"], want)
		}
		if got["X-Amz-Date"] != req.Header.Get("X-Amz-Date") {
			t.Errorf("X-Amz-Date %q, want %q", got["X-Amz-Date"], req.Header.Get("X-Amz-Date"))
		}
	}
	if errs := b.consoleErrors(nil); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestConsoleAuthRequired uses the console against a server that verifies
// signatures: the page itself loads unsigned, every API call is refused
// until the user signs in with a key, and then the console signs its
// calls in the browser — the function list, an invocation from the form
// and the streamed log tail all pass the server's SigV4 check.
func TestConsoleAuthRequired(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--auth", "required")
	root := srv.rootCreds(t)
	c := srv.lambdaAs(root)
	createGoFn(t, c, "signed", nil)
	// Unsigned API calls are refused; the console's files are not.
	if resp, err := http.Get(srv.url() + "/2015-03-31/functions/"); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned ListFunctions: %v %v", resp, err)
	}
	if resp, err := http.Get(srv.url() + "/console/console.js"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("console files with --auth required: %v %v", resp, err)
	}

	b := newBrowser(t)
	base := srv.url() + "/console/"
	b.do(t, "open sign-in", chromedp.Navigate(base+"#/login"))
	b.waitJS(t, 30*time.Second, `!!document.getElementById('ak')`)
	b.do(t, "sign in",
		chromedp.SetValue(chromedp.CSS("#ak"), root.AccessKeyID),
		chromedp.SetValue(chromedp.CSS("#sk"), root.SecretAccessKey),
		chromedp.Click(chromedp.CSS("#login-submit")))
	b.waitJS(t, 30*time.Second, `!!document.querySelector('#functions tr[data-fn="signed"]')`)
	b.do(t, "open function", chromedp.Navigate(base+"#/fn/signed"))
	b.waitJS(t, 30*time.Second, `document.getElementById('logstate') && document.getElementById('logstate').textContent === '(following)'`)
	b.do(t, "invoke", chromedp.SetValue(chromedp.CSS("#payload"), `{"name":"signed"}`), chromedp.Click(chromedp.CSS("#invoke")))
	b.waitJS(t, 30*time.Second, `(document.getElementById('invoke-status')||{}).textContent === 'Succeeded'`)
	b.waitJS(t, 30*time.Second, `document.getElementById('logtail').textContent.includes('handled') || document.getElementById('logtail').textContent.includes('REPORT RequestId')`)
	b.waitJS(t, 30*time.Second, `document.querySelector('#plot-invocations').dataset.points === "1"`)
	if errs := b.consoleErrors(nil); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
