// Package backbone connects Flint's components to NATS JetStream: the
// durable queue, key/value metadata, the object store for code packages and
// the log streams. By default it starts an embedded NATS server whose state
// lives in the data dir; given a URL it connects to an external cluster
// instead, and the rest of Flint cannot tell the difference.
//
// The backbone also knows whether it can take a write right now (health.go):
// connected, JetStream answering, room on the data dir's disk. Components
// ask it through writegate.Gate before writing, so a write that cannot
// succeed is refused at once. When the embedded server's disk filled up, it
// restarts the embedded server once space is back, because JetStream stops
// writing to a stream for good after a failed disk write (docs/backbone.md).
package backbone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says where the backbone lives.
type Config struct {
	// URL of an external NATS cluster with JetStream enabled (several
	// servers separated by commas; user:password@ in a URL is used to log
	// in). When empty an embedded server is started.
	URL string
	// DataDir holds the embedded server's JetStream files (DataDir/nats).
	DataDir string
	// Host and Port the embedded server listens on for other Flint
	// processes; Port -1 picks a free port, 0 means the NATS default (4222).
	Host string
	Port int
	// Name identifies this connection in the server's monitoring.
	Name string
	// Replicas is how many copies of every stream, KV bucket and object
	// store the components create (default 1; 3 on a cluster). The
	// backbone only carries it; see Replicas.
	Replicas int
	// MaxStore bounds the embedded server's JetStream storage in bytes;
	// 0 sizes it from the data dir's disk (storage.go).
	MaxStore int64
	// Reserve is the free space (bytes) kept on the data dir's disk:
	// writes are refused below it, logs below twice it. 0: 5 % of the
	// disk, at least 4 MiB and at most 512 MiB.
	Reserve int64
	// Creds is a NATS credentials file (JWT and nkey seed) for an external
	// cluster.
	Creds string
	// TLS for connections to an external cluster.
	TLS TLSConfig
	// Logger receives the backbone's warnings (and the embedded server's,
	// its notices at debug level); slog.Default() when nil.
	Logger *slog.Logger
}

// TLSConfig names the PEM files of a TLS connection to NATS. With only CA
// set the server is verified against it; Cert and Key add a client
// certificate. All empty: TLS only when the URL says tls://.
type TLSConfig struct {
	CA, Cert, Key string
}

// Validate reports whether cfg is usable.
func (c Config) Validate() error {
	if c.URL == "" && c.DataDir == "" {
		return errors.New("backbone: embedded server needs a data dir")
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("backbone: --nats-replicas %d: JetStream keeps 1 to 5 replicas", c.Replicas)
	}
	if c.URL == "" && c.Replicas > 1 {
		return fmt.Errorf("backbone: --nats-replicas %d needs a NATS cluster (--nats-url); the embedded server is one node", c.Replicas)
	}
	if c.URL != "" && (c.MaxStore != 0 || c.Reserve != 0) {
		return errors.New("backbone: --nats-max-store and --nats-reserve size the embedded server's storage; an external cluster's limits are set in its own configuration")
	}
	if c.URL == "" && (c.Creds != "" || c.TLS != TLSConfig{}) {
		return errors.New("backbone: --nats-creds and --nats-tls-* are for an external cluster (--nats-url)")
	}
	if c.MaxStore < 0 || c.Reserve < 0 {
		return errors.New("backbone: negative storage limit")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("backbone: --nats-tls-cert and --nats-tls-key go together")
	}
	return nil
}

// Backbone is a live connection to JetStream, with the embedded server when
// there is one. Its methods are safe for concurrent use.
type Backbone struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded bool
	opts     *server.Options // of the embedded server; Port fixed after the first start
	limits   Limits

	mu  sync.Mutex     // guards srv
	srv *server.Server // the embedded server now; nil while it restarts or when external

	health     atomic.Pointer[Health] // latest view, see health.go
	probeErr   atomic.Pointer[string] // latest JetStream probe: "" answered, else why not
	writeFault atomic.Bool            // the embedded server reported a failed disk write
	stop       chan struct{}          // closed by Close: ends the monitor
	monitorWG  sync.WaitGroup
	closeOnce  sync.Once
}

// Start starts the embedded server (unless cfg.URL is set) and connects.
func Start(cfg Config) (*Backbone, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	b := &Backbone{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	if b.log == nil {
		b.log = slog.Default()
	}
	url := cfg.URL
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		// A write refused at once is better than one that hangs: the
		// health monitor refuses writes while disconnected, so the
		// reconnect buffer only bridges the instants in between.
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DrainTimeout(5 * time.Second),
	}
	if url == "" {
		b.embedded = true
		storeDir := filepath.Join(cfg.DataDir, "nats")
		if err := os.MkdirAll(storeDir, 0o700); err != nil {
			return nil, fmt.Errorf("backbone: store dir: %w", err)
		}
		lim, err := sizeEmbedded(storeDir, cfg.MaxStore, cfg.Reserve)
		if err != nil {
			return nil, err
		}
		b.limits = lim
		host := cfg.Host
		if host == "" {
			host = "127.0.0.1"
		}
		b.opts = &server.Options{
			ServerName: "flint",
			Host:       host,
			Port:       cfg.Port,
			JetStream:  true,
			StoreDir:   storeDir,
			// Sized to the data dir's disk, so JetStream refuses writes
			// (promptly, with an error) before the disk is full.
			JetStreamMaxStore: lim.MaxStore,
			// Every acknowledged write is on disk before the ack: an
			// accepted event or stored function survives kill -9 and
			// power loss (sync_interval: always).
			SyncAlways: true,
			// Room for a 6 MB payload plus headers in one message.
			MaxPayload: 8 << 20,
			NoSigs:     true,
		}
		srv, err := b.startEmbedded()
		if err != nil {
			return nil, err
		}
		// The first start picked the port; a restart keeps it, so other
		// Flint processes connected over TCP reconnect.
		if addr, ok := srv.Addr().(*net.TCPAddr); ok {
			b.opts.Port = addr.Port
		}
		b.srv = srv
		url = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(inProcess{b}))
	} else {
		if cfg.Creds != "" {
			opts = append(opts, nats.UserCredentials(cfg.Creds))
		}
		if cfg.TLS.CA != "" {
			opts = append(opts, nats.RootCAs(cfg.TLS.CA))
		}
		if cfg.TLS.Cert != "" {
			opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: connect %s: %w", redact(url), err)
	}
	b.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("backbone: jetstream not available at %s: %w", redact(url), err)
	}
	b.js = js
	if !b.embedded {
		b.limits = externalLimits(info)
		b.checkExternal(ctx)
		if n := len(nc.Servers()); cfg.Replicas == 1 && n >= 3 {
			b.log.Warn("backbone: the NATS cluster has several servers but Flint keeps one replica of each stream: "+
				"losing that server's disk loses events and functions; start with --nats-replicas 3 (docs/backbone.md)", "servers", n)
		}
	}
	b.health.Store(&Health{Connected: true})
	b.monitorWG.Add(1)
	go b.monitor()
	return b, nil
}

// startEmbedded starts the embedded server with b.opts and waits until it
// takes connections.
func (b *Backbone) startEmbedded() (*server.Server, error) {
	opts := *b.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		return nil, fmt.Errorf("backbone: embedded nats: %w", err)
	}
	srv.SetLogger(&serverLog{b: b}, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("backbone: embedded nats did not become ready")
	}
	return srv, nil
}

// server returns the embedded server now, or nil.
func (b *Backbone) server() *server.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

// inProcess connects the client to whichever embedded server is running,
// so the connection survives a restart of the server.
type inProcess struct{ b *Backbone }

func (p inProcess) InProcessConn() (net.Conn, error) {
	srv := p.b.server()
	if srv == nil {
		return nil, errors.New("embedded server restarting")
	}
	return srv.InProcessConn()
}

// Conn is the NATS connection.
func (b *Backbone) Conn() *nats.Conn { return b.nc }

// JetStream is the JetStream context.
func (b *Backbone) JetStream() jetstream.JetStream { return b.js }

// Replicas is how many replicas components give their streams, KV buckets
// and object stores.
func (b *Backbone) Replicas() int { return b.cfg.Replicas }

// Embedded reports whether the backbone is the embedded server.
func (b *Backbone) Embedded() bool { return b.embedded }

// ClientURL is the URL other Flint processes can connect to (without a
// password).
func (b *Backbone) ClientURL() string {
	if b.embedded {
		if srv := b.server(); srv != nil {
			return srv.ClientURL()
		}
	}
	return b.nc.ConnectedUrlRedacted()
}

// Close drains the connection (at most a few seconds) and stops the
// embedded server. It returns within a bounded time whatever state the
// backbone is in (full disk, lost quorum, unreachable cluster).
func (b *Backbone) Close() {
	b.closeOnce.Do(func() {
		close(b.stop)
		b.monitorWG.Wait()
		if b.nc != nil {
			done := make(chan struct{})
			go func() {
				_ = b.nc.Drain() // bounded by DrainTimeout
				for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
					time.Sleep(50 * time.Millisecond)
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(7 * time.Second):
				b.log.Warn("backbone: drain did not finish, closing the connection")
			}
			b.nc.Close()
		}
		if srv := b.server(); srv != nil {
			b.mu.Lock()
			b.srv = nil
			b.mu.Unlock()
			shutdownServer(srv, b.log)
		}
	})
}

// shutdownServer stops an embedded server, waiting at most 10 s.
func shutdownServer(srv *server.Server, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Warn("backbone: embedded server did not shut down in 10s")
	}
}

// redact drops passwords from a URL list for messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			scheme := ""
			if k := strings.Index(u, "://"); k >= 0 && k < at {
				scheme = u[:k+3]
			}
			parts[i] = scheme + "***@" + u[at+1:]
		}
	}
	return strings.Join(parts, ",")
}
