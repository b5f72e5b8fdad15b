package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flintdev/flint/internal/server"
)

func newClusterCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Print the cluster's nodes as the server at --endpoint sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			u := strings.TrimRight(g.endpoint, "/") + "/flint/v1/cluster"
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, u, nil)
			if err != nil {
				return err
			}
			resp, err := g.httpClient().Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var v server.ClusterView
			if err := json.Unmarshal(body, &v); err != nil {
				return fmt.Errorf("%s answered something else than a cluster view: %w", u, err)
			}
			return printCluster(cmd.OutOrStdout(), v, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON as is")
	return cmd
}

// printCluster prints v as a table of hosts and a line about the backbone.
func printCluster(w io.Writer, v server.ClusterView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLES\tDRIVER\tMEMORY MB\tRESERVED MB\tSANDBOXES\tPROVISIONED\tLAST HEARTBEAT\tWORKER ADDR")
	for _, h := range v.Hosts {
		addr := h.Addr
		if addr == "" {
			addr = "-"
		}
		roles := strings.Join(h.Roles, ",")
		if h.Draining {
			roles += " (draining)"
		}
		driver := h.Driver
		if driver == "" {
			driver = "-"
		}
		age := now.Sub(h.LastHeartbeat).Round(100 * time.Millisecond)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s ago\t%s\n", h.ID, roles, driver, h.MemoryMB, h.ReservedMB, h.Sandboxes, h.Provisioned, age, addr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b := v.Backbone
	kind := "external NATS"
	if b.Embedded {
		kind = "embedded NATS"
	}
	state := "connected"
	if !b.Connected {
		state = "DISCONNECTED"
	}
	fmt.Fprintf(w, "\nbackbone: %s, %s to %s (%s", kind, state, b.ConnectedServer, b.ConnectedURL)
	if b.Cluster != "" {
		fmt.Fprintf(w, ", cluster %s", b.Cluster)
	}
	if b.RTT != "" {
		fmt.Fprintf(w, ", rtt %s", b.RTT)
	}
	fmt.Fprintf(w, "), %d servers known, %d streams\n", len(b.Servers), b.Streams)
	if b.Error != "" {
		fmt.Fprintf(w, "backbone error: %s\n", b.Error)
	}
	return nil
}
