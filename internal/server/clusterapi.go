package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// ClusterView is what GET /flint/v1/cluster answers: every node this
// node hears heartbeats from, and its view of the backbone.
type ClusterView struct {
	Hosts    []ClusterHost `json:"hosts"`
	Backbone BackboneView  `json:"backbone"`
}

// ClusterHost is one node of the cluster.
type ClusterHost struct {
	ID    string   `json:"id"`
	Roles []string `json:"roles"`
	// MemoryMB is what the worker offers to sandboxes (overcommit
	// included); ReservedMB is what is counted against it.
	MemoryMB      int       `json:"memoryMB"`
	ReservedMB    int       `json:"reservedMB"`
	Sandboxes     int       `json:"sandboxes"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	Addr          string    `json:"addr,omitempty"`
	Draining      bool      `json:"draining,omitempty"`
	// Driver is the host's sandbox driver ("process", "microvm"), from its
	// heartbeats; "" for hosts that run no worker.
	Driver string `json:"driver,omitempty"`
	// Provisioned counts the provisioned sandboxes the node keeps ready
	// (as a frontend, on any worker) for its shares of the cluster's
	// provisioned concurrency.
	Provisioned int `json:"provisioned,omitempty"`
}

// BackboneView is this node's connection to NATS.
type BackboneView struct {
	Embedded        bool     `json:"embedded"`
	Connected       bool     `json:"connected"`
	ConnectedURL    string   `json:"connectedUrl"`
	ConnectedServer string   `json:"connectedServer"`
	Cluster         string   `json:"cluster,omitempty"`
	Servers         []string `json:"servers"`
	RTT             string   `json:"rtt,omitempty"`
	Streams         int      `json:"streams"`
	Error           string   `json:"error,omitempty"`
}

func (c *components) clusterHandler(w http.ResponseWriter, r *http.Request) {
	v := ClusterView{Hosts: []ClusterHost{}}
	for _, h := range c.placement.Hosts() {
		sandboxes := h.Sandboxes
		if !h.Shared {
			sandboxes = h.Reservations
		}
		provisioned := 0
		for _, sh := range h.Provisioned {
			provisioned += sh.Allocated
		}
		v.Hosts = append(v.Hosts, ClusterHost{
			ID: h.HostID, Roles: h.Roles, MemoryMB: h.MemoryMB, ReservedMB: h.ReservedMB,
			Sandboxes: sandboxes, LastHeartbeat: h.LastSeen.UTC(), Addr: h.Addr, Draining: h.Draining,
			Driver:      h.Driver,
			Provisioned: provisioned,
		})
	}
	nc := c.bb.Conn()
	v.Backbone = BackboneView{
		Embedded:        !c.cfg.clustered(),
		Connected:       nc.IsConnected(),
		ConnectedURL:    nc.ConnectedUrlRedacted(),
		ConnectedServer: nc.ConnectedServerName(),
		Cluster:         nc.ConnectedClusterName(),
	}
	for _, s := range nc.Servers() {
		if u, err := url.Parse(s); err == nil {
			s = u.Redacted()
		}
		v.Backbone.Servers = append(v.Backbone.Servers, s)
	}
	if rtt, err := nc.RTT(); err == nil {
		v.Backbone.RTT = rtt.String()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if ai, err := c.bb.JetStream().AccountInfo(ctx); err == nil {
		v.Backbone.Streams = ai.Streams
	} else {
		v.Backbone.Error = "JetStream: " + err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
