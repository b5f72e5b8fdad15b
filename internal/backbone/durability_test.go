package backbone

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestSyncSettings: a system-account client learns each server's sync
// setting; an ordinary client learns nothing (and says so).
func TestSyncSettings(t *testing.T) {
	for _, always := range []bool{true, false} {
		sys := server.NewAccount("SYS")
		app := server.NewAccount("APP")
		srv, err := server.NewServer(&server.Options{
			ServerName: "s1", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: t.TempDir(), SyncAlways: always,
			Accounts:      []*server.Account{sys, app},
			SystemAccount: "SYS",
			Users:         []*server.User{{Username: "admin", Password: "pw", Account: sys}, {Username: "app", Password: "pw", Account: app}},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		ask := func(user string) (map[string]time.Duration, int) {
			nc, err := nats.Connect(fmt.Sprintf("nats://%s:pw@%s", user, srv.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			lazy, seen, err := syncSettings(context.Background(), nc)
			if err != nil {
				t.Fatal(err)
			}
			return lazy, seen
		}
		lazy, seen := ask("admin")
		if seen != 1 || (len(lazy) == 0) != always {
			t.Errorf("sync_always=%v: seen %d, lazy %v", always, seen, lazy)
		}
		if _, seen := ask("app"); seen != 0 {
			t.Errorf("an ordinary account saw %d servers' settings", seen)
		}
		srv.Shutdown()
	}
}
