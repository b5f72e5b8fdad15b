package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/outputtest"
)

// A component that fails to close is logged by name with its error, and
// the components started before it still close.
func TestCloseLogsEveryFailure(t *testing.T) {
	var out outputtest.Buffer
	c := &components{cfg: Config{Logger: slog.New(slog.NewTextHandler(&out, nil))}}
	var order []string
	c.onClose("backbone", func(context.Context) error { order = append(order, "backbone"); return nil })
	c.onClose("worker", func(context.Context) error {
		order = append(order, "worker")
		return errors.New("destroy sandbox sb-1: device or resource busy")
	})
	c.onClose("worker manager", func(context.Context) error {
		order = append(order, "worker manager")
		return errors.New("2 invocations still running")
	})
	c.close()
	if got := strings.Join(order, ","); got != "worker manager,worker,backbone" {
		t.Fatalf("closed in order %s, want the reverse of start", got)
	}
	log := out.String()
	for _, want := range []string{
		`msg="shutdown: closing worker" err="destroy sandbox sb-1: device or resource busy"`,
		`msg="shutdown: closing worker manager" err="2 invocations still running"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "closing backbone") {
		t.Errorf("a clean close was logged as a failure:\n%s", log)
	}
}
