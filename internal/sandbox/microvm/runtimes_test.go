package microvm_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flintdev/flint/internal/outputtest"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/sandbox"
)

// TestRuntimes runs the host's Python and Node in a guest (from the root
// image: the interpreters Flint's python3.x and nodejs runtimes use, at the
// same paths as on the host) and has each call the Runtime API over HTTP
// with its TLS library loaded, as the process driver's TestRuntimes.
func TestRuntimes(t *testing.T) {
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
	d := newDriver(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.cmd[0]); err != nil {
				t.Skipf("%s not installed on this host", tc.cmd[0])
			}
			out := &outputtest.Buffer{}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sb, err := d.Create(ctx, sandbox.Spec{
				ID: "rt-" + tc.name, CodeDir: t.TempDir(), Command: tc.cmd, Output: out, MemoryMB: 256,
				Env: []string{"PATH=/usr/bin:/bin"},
				RuntimeAPI: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "pong-"+tc.name)
				}),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(context.Background())
			if !polltest.Wait(time.Minute, func() bool {
				_ = sb.SyncOutput(context.Background())
				return strings.Contains(out.String(), "pong-"+tc.name)
			}) {
				t.Fatalf("output %q (%v)", out, sb.Err())
			}
		})
	}
}
