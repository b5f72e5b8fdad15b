package writegate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flintdev/flint/internal/lambdaerr"
)

func TestDescribe(t *testing.T) {
	cases := []struct {
		err    error
		prefix string
	}{
		{errors.New("nats: JetStream error: insufficient storage resources available"), StorageFull},
		{fmt.Errorf("put: %w", errors.New("write /var/lib/flint/nats/x.blk: no space left on device")), StorageFull},
		{errors.New("nats: timeout"), Unavailable},
		{context.DeadlineExceeded, Unavailable},
		{errors.New("nats: no responders available for request"), Unavailable},
		{errors.New("nats: no response from stream"), Unavailable},
		{errors.New("open /var/lib/flint/code/x: permission denied"), "internal error"},
	}
	for _, tc := range cases {
		err := Describe("the event", tc.err)
		le := lambdaerr.Public(err)
		if le.Type != lambdaerr.Service || !strings.HasPrefix(le.Message, tc.prefix) {
			t.Errorf("%v: %s %q, want ServiceException %q...", tc.err, le.Type, le.Message, tc.prefix)
		}
		if strings.Contains(le.Message, "/var/lib") || strings.Contains(le.Message, "nats:") {
			t.Errorf("%v: client message leaks the cause: %q", tc.err, le.Message)
		}
		if !strings.Contains(err.Error(), tc.err.Error()) {
			t.Errorf("%v: the log text %q lost the cause", tc.err, err.Error())
		}
	}
	// A Lambda error already in the chain is kept as is.
	tm := lambdaerr.New(lambdaerr.TooManyRequests, "slow down")
	if got := lambdaerr.Public(Describe("x", fmt.Errorf("w: %w", tm))); got != tm {
		t.Errorf("kept %v, want %v", got, tm)
	}
	if Recognize("x", errors.New("bad zip")) != nil {
		t.Error("Recognize claimed an unrelated error")
	}
	if Check(nil, Events) != nil {
		t.Error("a nil gate refused")
	}
}
