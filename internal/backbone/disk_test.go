package backbone

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flintdev/flint/internal/disktest"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/polltest"
	"github.com/flintdev/flint/internal/writegate"
)

func TestSizedToSmallDisk(t *testing.T) {
	dir := disktest.Small(t, "64m")
	b, err := Start(Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lim := b.Limits()
	if lim.MaxStore <= MinMaxStore || lim.MaxStore > 64<<20 {
		t.Errorf("max store %d on a 64 MiB disk", lim.MaxStore)
	}
	if lb := lim.LogBytes(); lb > lim.MaxStore/4 || lim.CheckLogBytes(1<<30) == nil {
		t.Errorf("log bytes %d of max store %d; 1 GiB accepted", lb, lim.MaxStore)
	}
	// The log stream's reservation must fit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "L", Subjects: []string{"l.>"}, MaxBytes: lim.LogBytes()}); err != nil {
		t.Fatalf("a log stream of %d bytes: %v", lim.LogBytes(), err)
	}
}

// TestLogsGiveWayFirst: with less than twice the reserve free, logs are
// refused while events are still taken; below the reserve, both are.
func TestLogsGiveWayFirst(t *testing.T) {
	dir := disktest.Small(t, "64m")
	b, err := Start(Config{DataDir: dir, Port: -1, Reserve: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	leave := func(free int64) {
		t.Helper()
		d, err := statDisk(dir)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(make([]byte, d.Free-free)); err != nil {
			t.Fatal(err)
		}
	}
	leave(12 << 20) // between the reserve and twice it
	polltest.Check(t, 5*time.Second, "logs refused, events taken", func() error {
		if b.Allow(writegate.Logs) == nil {
			return errors.New("logs still allowed")
		}
		return b.Allow(writegate.Events)
	})
	leave(4 << 20) // below the reserve
	polltest.Check(t, 5*time.Second, "events refused", func() error {
		if b.Allow(writegate.Events) == nil {
			return errors.New("events still allowed")
		}
		return nil
	})
}

func TestTooSmallDiskNamesTheFlag(t *testing.T) {
	dir := disktest.Small(t, "8m")
	_, err := Start(Config{DataDir: dir, Port: -1})
	if err == nil || !strings.Contains(err.Error(), "--nats-max-store") {
		t.Fatalf("start on an 8 MiB disk: %v, want an error naming --nats-max-store", err)
	}
	dir = disktest.Small(t, "64m")
	_, err = Start(Config{DataDir: dir, Port: -1, MaxStore: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "--nats-max-store") {
		t.Fatalf("--nats-max-store 1GiB on a 64 MiB disk: %v", err)
	}
}

// TestFullDiskRefusesAndRecovers fills the data dir's disk under a
// stream: writes are refused at once with "storage full", and once space is
// freed the backbone takes writes again (restarting the embedded server,
// whose streams JetStream stopped after a failed disk write) with every
// acknowledged message still there.
func TestFullDiskRefusesAndRecovers(t *testing.T) {
	dir := disktest.Small(t, "64m")
	b, err := Start(Config{DataDir: dir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	js := b.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "Q", Subjects: []string{"q.>"}}); err != nil {
		t.Fatal(err)
	}
	acked := 0
	pub := func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "q.x", make([]byte, 1024))
		if err == nil {
			acked++
		}
		return err
	}
	for range 50 {
		if err := pub(); err != nil {
			t.Fatal(err)
		}
	}

	filler := filepath.Join(dir, "filler")
	disktest.Fill(t, filler)
	// Writes straight to the full disk (as a write racing the monitor
	// would): they fail; the server notices its failed disk write.
	for range 3 {
		_ = pub()
	}
	polltest.Check(t, 5*time.Second, "writes refused on the full disk", func() error {
		err := b.Allow(writegate.Events)
		if err == nil || !strings.HasPrefix(lambdaerr.Public(err).Message, writegate.StorageFull) {
			return errors.New("events still allowed on a full disk")
		}
		if b.Ready() == nil {
			return errors.New("ready on a full disk")
		}
		return nil
	})
	if b.Allow(writegate.Logs) == nil {
		t.Error("logs allowed on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	polltest.Check(t, 30*time.Second, "writes accepted after space was freed", func() error {
		if err := b.Allow(writegate.Events); err != nil {
			return err
		}
		return pub()
	})
	t.Logf("writes accepted again %v after space was freed (restarts: %d)", time.Since(start).Round(time.Millisecond), b.Health().Restarts)
	st, err := js.Stream(ctx, "Q")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) < acked {
		t.Errorf("stream holds %d messages, %d were acknowledged", info.State.Msgs, acked)
	}
}
