package backbone

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Durability of an external cluster. JetStream acknowledges a write once
// it is in the OS's page cache and, by default, fsyncs every two minutes
// (sync_interval); Jepsen's analysis of NATS 2.12.1 (2025-12) showed
// acknowledged writes lost to a coordinated power failure and to an OS
// crash of one node. Flint's embedded server syncs every write
// (sync_interval: always). For external servers the setting is only
// visible to a client of the system account, through the servers' VARZ
// (monitoring) answers; checkExternal asks for them and warns when a
// server is lazier, or says that it could not tell.

// varzReply is the part of a server's $SYS.REQ.SERVER.PING.VARZ answer
// Flint reads.
type varzReply struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Data struct {
		JetStream struct {
			Config *struct {
				SyncInterval time.Duration `json:"sync_interval"`
				SyncAlways   bool          `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	} `json:"data"`
}

// checkExternal logs a warning for each server of an external cluster that
// does not sync every write, or one warning when no server would say.
func (b *Backbone) checkExternal(ctx context.Context) {
	lazy, seen, err := syncSettings(ctx, b.nc)
	switch {
	case err != nil || seen == 0:
		if err == nil {
			err = errors.New("no server answered")
		}
		b.log.Warn("backbone: cannot tell whether the NATS servers sync every write to disk (their settings are visible to the system account only); "+
			"run them with jetstream { sync_interval: always } or acknowledged events can be lost to a power failure (docs/backbone.md)",
			"err", err)
	case len(lazy) > 0:
		for name, iv := range lazy {
			b.log.Warn("backbone: NATS server does not sync every write to disk: acknowledged events can be lost to a power failure or an OS crash; "+
				"set jetstream { sync_interval: always } (docs/backbone.md)", "server", name, "syncInterval", iv.String())
		}
	default:
		b.log.Info("backbone: every NATS server syncs each write to disk", "servers", seen)
	}
}

// syncSettings asks every server for its VARZ and returns those that do
// not sync every write (name → sync interval) and how many answered.
func syncSettings(ctx context.Context, nc *nats.Conn) (map[string]time.Duration, int, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox, nil); err != nil {
		return nil, 0, err
	}
	lazy := map[string]time.Duration{}
	seen := 0
	wait := time.Second // servers answer within it, or not at all
	for {
		wctx, cancel := context.WithTimeout(ctx, wait)
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			return lazy, seen, nil
		}
		wait = 300 * time.Millisecond
		var r varzReply
		if json.Unmarshal(m.Data, &r) != nil || r.Data.JetStream.Config == nil {
			continue
		}
		seen++
		if c := r.Data.JetStream.Config; !c.SyncAlways {
			lazy[r.Server.Name] = c.SyncInterval
		}
	}
}
