package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

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
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:9000", "address of the Lambda API")
	f.StringVar(&cfg.DataDir, "data", defaultDataDir(), "data dir (JetStream files, code cache, sandboxes)")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS cluster with JetStream (default: embedded server)")
	f.IntVar(&cfg.NATSPort, "nats-port", -1, "port of the embedded NATS server (-1: any free port)")
	f.StringVar(&cfg.Region, "region", "us-east-1", "region in ARNs")
	f.StringVar(&cfg.Account, "account", "000000000000", "account id in ARNs")
	f.DurationVar(&cfg.KeepAlive, "keep-alive", 5*time.Minute, "how long an idle sandbox stays warm")
	f.IntVar(&cfg.HostMemoryMB, "host-memory", 0, "memory (MB) this host offers to sandboxes (default: 3/4 of RAM)")
	f.IntVar(&cfg.MaxSandboxes, "max-sandboxes", 1000, "sandboxes this host runs at once")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.SandboxInit, "sandbox-init", "", "sandbox init binary (build cmd/flint-sandbox-init for faster cold starts; default: this binary)")
	f.BoolVar(&egress, "sandbox-egress", false, "let functions open connections to the outside world (veth + NAT; the host, link-local and private addresses and other sandboxes stay unreachable; needs nft, sets net.ipv4.ip_forward=1)")
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
