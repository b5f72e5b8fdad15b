package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/cpusched"
	"github.com/flintdev/flint/internal/sandbox/pool"
	"github.com/flintdev/flint/internal/sandbox/process"
	"github.com/flintdev/flint/internal/server"
)

func newServerCmd() *cobra.Command {
	cfg := server.Config{}
	var logLevel string
	var egress bool
	var egressCfg process.EgressConfig
	var egressPool string
	var egressDNS []string
	var cleanup bool
	var authMode string
	var schedBatch bool
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run every Flint component in one process, on an embedded NATS JetStream",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			if cleanup {
				n, err := server.Cleanup(cmd.Context(), cfg.DataDir, cfg.Logger)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %d sandbox cgroups left by the server on %s\n", n, cfg.DataDir)
				return nil
			}
			for _, name := range []string{"sandbox-egress-pool", "sandbox-egress-interface", "sandbox-egress-name", "sandbox-egress-dns"} {
				if !egress && cmd.Flags().Changed(name) {
					return fmt.Errorf("--%s needs --sandbox-egress", name)
				}
			}
			if egress {
				p, err := netip.ParsePrefix(egressPool)
				if err != nil {
					return fmt.Errorf("--sandbox-egress-pool: %w", err)
				}
				egressCfg.Pool = p
				for _, ns := range egressDNS {
					a, err := netip.ParseAddr(ns)
					if err != nil {
						return fmt.Errorf("--sandbox-egress-dns: %w", err)
					}
					egressCfg.Nameservers = append(egressCfg.Nameservers, a)
				}
				cfg.SandboxEgress = &egressCfg
			}
			switch {
			case cfg.SandboxPool < 0:
				return fmt.Errorf("--sandbox-pool must not be negative")
			case cfg.SandboxPool == 0:
				cfg.SandboxPool = -1 // off
			}
			mode, err := auth.ParseMode(authMode)
			if err != nil {
				return fmt.Errorf("--auth: %w", err)
			}
			cfg.Auth = mode
			if schedBatch {
				if err := cpusched.Batch(); err != nil {
					cfg.Logger.Warn("the server and its sandboxes keep the default CPU scheduling policy", "err", err)
				}
			}
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:9000", "address of the Lambda API")
	f.StringVar(&cfg.DataDir, "data", defaultDataDir(), "data dir (JetStream files, code cache, sandboxes)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS cluster with JetStream, one URL or a comma-separated list (default: embedded server); joins a Flint cluster, see docs/cluster.md")
	f.StringVar(&cfg.HostID, "host-id", "", "this node's name in the cluster, unique among live nodes (default: the hostname)")
	f.StringSliceVar(&cfg.Roles, "roles", nil, "components this node runs: any of frontend, worker, poller (default: all three)")
	f.StringVar(&cfg.WorkerListen, "worker-listen", "", "where the worker serves other nodes of a cluster (default: the --listen host, any free port)")
	f.StringVar(&cfg.WorkerAdvertise, "worker-advertise", "", "host:port other nodes reach the worker at (default: the address --worker-listen bound)")
	f.StringVar(&cfg.ClusterSecretFile, "cluster-secret-file", "", "file holding the key every node's worker port requires (16+ bytes, the same on every node; default: a key kept in the backbone)")
	f.StringVar(&cfg.WorkerTLSCert, "worker-tls-cert", "", "PEM certificate the worker port serves TLS with (with --worker-tls-key and --worker-tls-ca, on every node)")
	f.StringVar(&cfg.WorkerTLSKey, "worker-tls-key", "", "PEM private key of --worker-tls-cert")
	f.StringVar(&cfg.WorkerTLSCA, "worker-tls-ca", "", "PEM CA the other nodes' worker certificates are checked against")
	f.Float64Var(&cfg.MemoryOvercommit, "memory-overcommit", 1, "factor on --host-memory: sandboxes placed on this host may reserve this many times its memory")
	f.IntVar(&cfg.NATSPort, "nats-port", -1, "port of the embedded NATS server (-1: any free port)")
	f.StringVar(&cfg.Region, "region", "us-east-1", "region in ARNs")
	f.StringVar(&cfg.Account, "account", "000000000000", "the default account: its root key is written to DATA/credentials; in --auth dev every request acts on it")
	f.StringVar(&cfg.MetricsTokenFile, "metrics-token-file", "", "a file holding a bearer token (16+ characters) that opens GET /metrics without a SigV4 signature, for Prometheus's credentials_file")
	f.StringVar(&authMode, "auth", "", `"required": verify every request's SigV4 signature against the key store; "dev": accept any request as the default account's root (default dev when --listen is a loopback address; any other address needs one of them said explicitly)`)
	f.DurationVar(&cfg.KeepAlive, "keep-alive", 5*time.Minute, "how long an idle sandbox stays warm")
	f.DurationVar(&cfg.CodeURLTTL, "code-url-ttl", 10*time.Minute, "how long GetFunction's Code.Location and GetLayerVersion's Content.Location download links stay valid")
	f.StringVar(&cfg.URLDomain, "url-domain", "localhost", "base domain of function URLs: http://<url-id>.lambda-url.<region>.<url-domain>:<port>/ (point *.lambda-url.<region>.<url-domain> at this server; *.localhost is loopback)")
	f.IntVar(&cfg.URLPort, "url-port", 0, "port written into function URLs (0: the --listen port; -1: none, for a proxy on 80)")
	f.IntVar(&cfg.HostMemoryMB, "host-memory", 0, "memory (MB) this host offers to sandboxes (default: 3/4 of RAM)")
	f.IntVar(&cfg.MaxSandboxes, "max-sandboxes", 1000, "sandboxes this host runs at once")
	f.IntVar(&cfg.Backbone.Replicas, "nats-replicas", 1, "replicas of every stream, KV bucket and object store (1 on the embedded server; 3 recommended on a NATS cluster); existing ones are updated")
	f.Var(byteSize{&cfg.Backbone.MaxStore}, "nats-max-store", "JetStream storage limit of the embedded server, e.g. 512MiB or 20GiB (default: 3/4 of the data dir's free space)")
	f.Var(byteSize{&cfg.Backbone.Reserve}, "nats-reserve", "free space kept on the data dir's disk: writes are refused below it, function logs below twice it (default: 5% of the disk, 4MiB to 512MiB)")
	f.Var(byteSize{&cfg.Backbone.LogsMaxBytes}, "logs-max-bytes", "size limit of the function log stream, oldest logs dropped past it (default: 1/8 of the storage limit, at most 1GiB)")
	f.StringVar(&cfg.Backbone.Creds, "nats-creds", "", "NATS credentials file (JWT + nkey seed) for --nats-url; user:password@ in the URL works too")
	f.StringVar(&cfg.Backbone.TLSCA, "nats-tls-ca", "", "CA certificate (PEM) that verifies the NATS servers (TLS)")
	f.StringVar(&cfg.Backbone.TLSCert, "nats-tls-cert", "", "client certificate (PEM) for NATS connections (TLS)")
	f.StringVar(&cfg.Backbone.TLSKey, "nats-tls-key", "", "client key (PEM) for --nats-tls-cert")
	f.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", 2*time.Minute, "close keep-alive API connections idle this long")
	f.IntVar(&cfg.MaxConnections, "max-connections", 10000, "API connections open at once; past it new ones are answered 429 and closed")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take to finish at shutdown (closing the rest takes at most 20s more)")
	f.BoolVar(&schedBatch, "sched-batch", false, "run the server and its sandboxes under Linux's SCHED_BATCH CPU policy: a wake-up between the server and a runtime does not preempt the task that made it (up to ~20% more warm throughput on a host that runs Flint alone; much longer tails when other processes keep the CPUs busy: docs/warm-path.md)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.BoolVar(&cleanup, "cleanup", false, "remove the sandbox cgroups a killed server on --data left behind, then exit (refused while a server runs there)")
	f.StringVar(&cfg.SandboxInit, "sandbox-init", "", "the process driver's sandbox init binary, cmd/flint-sandbox-init (default: flint-sandbox-init next to this binary if built from the same source, else this binary re-executed, which starts slower)")
	f.IntVar(&cfg.SandboxPool, "sandbox-pool", pool.DefaultMaxSize, "at most this many sandboxes kept prepared ahead of cold starts (the number follows the cold-start rate; 0 turns the pool off)")
	f.BoolVar(&cfg.SandboxShareCPUs, "sandbox-share-cpus", false, "let every sandbox run on every CPU (default: a sandbox runs on one CPU per 1769 MB of memory, rounded up, the least used ones, so that runtimes size their threads to their CPU share)")
	f.StringVar(&cfg.SandboxDriver, "sandbox-driver", "process", `"process" (namespaces, cgroups, seccomp) or "microvm" (a QEMU microVM per sandbox; needs qemu-system-x86, apt for the guest kernel, and flint-vm-init)`)
	f.StringVar(&cfg.VMInit, "vm-init", "", "the flint-vm-init binary for --sandbox-driver microvm (default: next to this binary, then on PATH)")
	f.BoolVar(&egress, "sandbox-egress", false, "let functions open connections to the outside world (NAT through a veth pair per sandbox, a tap device per microVM; the host, link-local and private addresses and other sandboxes stay unreachable; needs nf_tables in the kernel, sets net.ipv4.ip_forward=1)")
	f.StringVar(&egressPool, "sandbox-egress-pool", process.DefaultEgressPool.String(), "IPv4 range sandbox links are carved from (a /30 each)")
	f.StringVar(&egressCfg.Interface, "sandbox-egress-interface", "", "host interface egress traffic leaves by (default: that of the default route)")
	f.StringSliceVar(&egressDNS, "sandbox-egress-dns", nil, "DNS servers written to sandboxes' resolv.conf (public IPv4 addresses; default none: name lookups fail)")
	f.StringVar(&egressCfg.Name, "sandbox-egress-name", process.DefaultEgressName, "name of the nftables table (inet) and prefix of the host ends of sandbox links")
	f.BoolVar(&cfg.StatsGC, "stats-gc", false, "let GET /flint/v1/stats?gc=true force a garbage collection first (for tests comparing heap sizes)")
	f.DurationSliceVar(&cfg.Async.RetryDelays, "async-retry-delays", nil, "waits before the retries of a failed async invocation (default 1m,2m as Lambda)")
	f.DurationVar(&cfg.Async.ThrottleBackoffMin, "async-throttle-backoff-min", 0, "first back-off after a throttled async invocation (default 1s)")
	f.DurationVar(&cfg.Async.ThrottleBackoffMax, "async-throttle-backoff-max", 0, "longest back-off after a throttled async invocation (default 5m)")
	f.DurationVar(&cfg.Async.AckWait, "async-ack-wait", 0, "how long an event taken by a crashed process waits before redelivery (default 30s)")
	return cmd
}

// byteSize is a flag of bytes: a number with an optional KiB, MiB, GiB
// or TiB (or KB, MB, GB, TB, also powers of 1024) suffix.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil || *b.n == 0 {
		return ""
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteSize) Type() string { return "bytes" }

func (b byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b.n = n
	return nil
}

func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 20GiB)", s)
	}
	return n * mult, nil
}

func defaultDataDir() string {
	if d := os.Getenv("FLINT_DATA"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/flint"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "flint")
	}
	return ".flint"
}
