package process_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

// TestInitRunsEarly starts this test binary (which links testing, os,
// time, fmt...) as a sandbox init outside a sandbox: the init refuses to
// run (pid != 1), and GODEBUG=inittrace shows which packages were
// initialised before it did. None of the late or heavy ones may be.
func TestInitRunsEarly(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, nsinit.Marker)
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "not started by the process sandbox driver") {
		t.Fatalf("test binary as init outside a sandbox: %v\n%s", err, out)
	}
	var inits []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
			inits = append(inits, f[1])
		}
	}
	if len(inits) == 0 {
		t.Fatalf("no inittrace output:\n%s", out)
	}
	for _, p := range inits {
		switch p {
		case "os", "time", "fmt", "reflect", "unicode", "encoding/json", "testing", "golang.org/x/sys/unix":
			t.Errorf("package %s initialised before the sandbox init ran (inits: %v)", p, inits)
		}
	}
}
