package process_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
)

// TestRuntimes runs the host's Python and Node inside a sandbox (the
// interpreters Flint's Python and Node runtimes use) and has each call the
// Runtime API over HTTP, with TLS libraries loaded (certificates mounted).
func TestRuntimes(t *testing.T) {
	d := testDriver(t)
	cases := []struct {
		name string
		cmd  []string
	}{
		{"python", []string{"/usr/bin/python3", "-c", `
import os, ssl, urllib.request
ssl.create_default_context()
print(urllib.request.urlopen("http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/ping").read().decode())`}},
		{"node", []string{"/usr/bin/node", "-e", `
require("tls");
require("http").get("http://" + process.env.AWS_LAMBDA_RUNTIME_API + "/ping", r => {
  let b = ""; r.on("data", c => b += c); r.on("end", () => console.log(b));
});`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.cmd[0]); err != nil {
				t.Skipf("%s not installed on this host", tc.cmd[0])
			}
			out := &outputtest.Buffer{}
			sp := spec(t, "rt-"+tc.name+"-"+randomSuffix(), tc.cmd...)
			sp.Output = out
			sp.RuntimeAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong-"+tc.name) })
			sb, err := d.Create(context.Background(), sp)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(context.Background())
			select {
			case <-sb.Done():
			case <-time.After(20 * time.Second):
				t.Fatal("runtime still running")
			}
			if err := sb.SyncOutput(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "pong-"+tc.name) {
				t.Fatalf("output %q (%v)", out, sb.Err())
			}
		})
	}
}

func randomSuffix() string {
	return strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
}
