// Package backbone connects Flint's components to NATS JetStream: the
// durable queue, key/value metadata, the object store for code packages and
// the log streams. By default it starts an embedded NATS server whose state
// lives in the data dir; given a URL it connects to an external cluster
// instead, and the rest of Flint cannot tell the difference.
package backbone

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says where the backbone lives.
type Config struct {
	// URL of an external NATS cluster with JetStream enabled. When empty an
	// embedded server is started.
	URL string
	// DataDir holds the embedded server's JetStream files (DataDir/nats).
	DataDir string
	// Host and Port the embedded server listens on for other Flint
	// processes; Port -1 picks a free port, 0 means the NATS default (4222).
	Host string
	Port int
	// Name identifies this connection in the server's monitoring.
	Name string
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.URL == "" && c.DataDir == "" {
		return errors.New("backbone: embedded server needs a data dir")
	}
	return nil
}

// Backbone is a live connection to JetStream, with the embedded server when
// there is one.
type Backbone struct {
	srv *server.Server // nil when external
	nc  *nats.Conn
	js  jetstream.JetStream
}

// Start starts the embedded server (unless cfg.URL is set) and connects.
func Start(cfg Config) (*Backbone, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Backbone{}
	url := cfg.URL
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1)}
	if url == "" {
		host := cfg.Host
		if host == "" {
			host = "127.0.0.1"
		}
		srv, err := server.NewServer(&server.Options{
			ServerName: "flint",
			Host:       host,
			Port:       cfg.Port,
			JetStream:  true,
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			// Every acknowledged write is on disk before the ack: an
			// accepted event or stored function survives kill -9 and
			// power loss.
			SyncAlways: true,
			// Room for a 6 MB payload plus headers in one message.
			MaxPayload: 8 << 20,
			NoSigs:     true,
			NoLog:      true,
		})
		if err != nil {
			return nil, fmt.Errorf("backbone: embedded nats: %w", err)
		}
		srv.Start()
		if !srv.ReadyForConnections(30 * time.Second) {
			srv.Shutdown()
			return nil, errors.New("backbone: embedded nats did not become ready")
		}
		b.srv = srv
		url = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: connect %s: %w", url, err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: jetstream not available at %s: %w", url, err)
	}
	b.js = js
	return b, nil
}

// Conn is the NATS connection.
func (b *Backbone) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context.
func (b *Backbone) JetStream() jetstream.JetStream { return b.js }

// ClientURL is the URL other Flint processes can connect to.
func (b *Backbone) ClientURL() string {
	if b.srv != nil {
		return b.srv.ClientURL()
	}
	return b.nc.ConnectedUrl()
}

// Close drains the connection and stops the embedded server.
func (b *Backbone) Close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}
