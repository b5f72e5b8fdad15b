// Package placement is Flint's Placement Service: it knows the worker hosts
// and their free capacity, picks the host for each new sandbox and reserves
// the capacity the sandbox will use until the Worker Manager releases it.
//
// Hosts announce themselves with heartbeats (HostStatus: total memory for
// sandboxes, sandbox slots, the code packages already unpacked there, and
// whether they are draining). A host not heard from for Config.StaleAfter is
// dropped together with its reservations (staleness is checked on every
// call, so the service runs no goroutine of its own). Heartbeats arrive either by direct
// calls to Service.Heartbeat (single-process Flint) or over NATS on
// HeartbeatSubject (see Service.Subscribe and StartHeartbeats).
//
// In a cluster every node heartbeats (with its roles; only worker hosts get
// sandboxes) and every frontend runs its own Service, so each sees the
// whole fleet. A Shared host's capacity is counted once, by its worker:
// free memory is the host's memory less the UsedMB its worker reported,
// less only the reservations this Service made since (HostStatus.Shared).
// Drop forgets a host that cannot be reached before its heartbeats go
// stale.
//
// Place is a best fit: among live, non-draining hosts with enough free
// memory and a free sandbox slot it prefers hosts that already hold the
// function's code, then the host left with the least free memory after
// placing. When nothing fits, Place fails at once (it never waits) with a
// *lambdaerr.Error of type TooManyRequestsException and Reason ReasonNoCapacity.
//
// All methods of Service are safe for concurrent use.
package placement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// DefaultStaleAfter is how long a host may stay silent before it is
// dropped: a worker host that dies is forgotten within a few seconds.
const DefaultStaleAfter = 5 * time.Second

// DefaultHeartbeatInterval is the heartbeat interval that fits
// DefaultStaleAfter: a host may miss four heartbeats before it is dropped.
const DefaultHeartbeatInterval = time.Second

// pendingMargin: in a Shared host's heartbeat, reservations placed more
// than this long before the heartbeat arrived are taken to be counted in
// its UsedMB already (a worker takes capacity at the start of
// CreateSandbox, milliseconds after Place).
const pendingMargin = 500 * time.Millisecond

// Roles a Flint node can play (flint server --roles).
const (
	RoleFrontend = "frontend"
	RoleWorker   = "worker"
	RolePoller   = "poller"
)

// ReasonNoCapacity is the Reason of the TooManyRequestsException that Place
// returns when no live host has room for the sandbox. It is the Reason
// Lambda itself gives when an account's concurrency is exhausted, so Lambda
// clients (and their retry logic) treat it the way they treat Lambda's; the
// Message names the memory asked for and how many hosts were considered.
const ReasonNoCapacity = "ConcurrentInvocationLimitExceeded"

// HostStatus is what a worker host reports in each heartbeat.
type HostStatus struct {
	// HostID names the host; unique among the hosts of one Flint.
	HostID string `json:"hostId"`
	// MemoryMB is the total memory the host offers to sandboxes.
	MemoryMB int `json:"memoryMB"`
	// MaxSandboxes is the number of sandbox slots; 0 means no limit other
	// than memory.
	MaxSandboxes int `json:"maxSandboxes"`
	// CachedCode lists the hex digests of the code packages unpacked on the
	// host.
	CachedCode []string `json:"cachedCode,omitempty"`
	// Draining hosts keep their reservations but get no new sandboxes.
	Draining bool `json:"draining,omitempty"`

	// Roles lists what the node runs (RoleFrontend, RoleWorker,
	// RolePoller); empty means a worker host. Only worker hosts get
	// sandboxes; the others are listed for visibility.
	Roles []string `json:"roles,omitempty"`
	// Instance is unique per process start: two live nodes reporting one
	// HostID with different Instances are a misconfiguration.
	Instance string `json:"instance,omitempty"`
	// Addr is where other nodes reach the host's worker (package
	// hostproxy), "" when only this process can.
	Addr string `json:"addr,omitempty"`
	// Sandboxes and UsedMB are the worker's own count of its live
	// sandboxes and the memory they hold.
	Sandboxes int `json:"sandboxes"`
	UsedMB    int `json:"usedMB"`
	// Shared is set when several Placement Services place on the host (a
	// cluster): the host's free memory is then MemoryMB less its own
	// UsedMB and the reservations this service made since that figure was
	// taken, so capacity is counted once, by the worker. Unshared hosts
	// (the single-process default) are counted by reservations alone.
	Shared bool `json:"shared,omitempty"`
	// Driver is the sandbox driver the host runs ("process", "microvm"):
	// what isolation its sandboxes get. Placement records it; it does not
	// choose by it yet.
	Driver string `json:"driver,omitempty"`
	// Provisioned is this node's part of the cluster's provisioned
	// concurrency, by sandbox key (lambdafn.Function.SandboxKey): what its
	// Worker Manager keeps, so that any frontend can report the cluster's
	// total (docs/cluster.md).
	Provisioned map[string]ProvisionedShare `json:"provisioned,omitempty"`
}

// ProvisionedShare is one node's share of a provisioned concurrency
// config and its progress.
type ProvisionedShare struct {
	// Requested is the node's share of the config's sandboxes.
	Requested int `json:"requested"`
	// Allocated sandboxes are created and initialised; Available ones are
	// allocated and idle.
	Allocated int `json:"allocated"`
	Available int `json:"available"`
	// Failed is the reason the node's provisioning failed, "" while it
	// has not.
	Failed string `json:"failed,omitempty"`
}

// IsWorker reports whether the host runs sandboxes.
func (st HostStatus) IsWorker() bool {
	return len(st.Roles) == 0 || slices.Contains(st.Roles, RoleWorker)
}

// Validate reports whether st can be registered.
func (st HostStatus) Validate() error {
	switch {
	case st.HostID == "":
		return errors.New("placement: heartbeat without host id")
	case len(st.HostID) > 256:
		return fmt.Errorf("placement: host id of %d bytes is too long", len(st.HostID))
	case st.MemoryMB < 0:
		return fmt.Errorf("placement: host %s: negative memory %d", st.HostID, st.MemoryMB)
	case st.MaxSandboxes < 0:
		return fmt.Errorf("placement: host %s: negative sandbox slots %d", st.HostID, st.MaxSandboxes)
	}
	return nil
}

// Request asks for capacity for one new sandbox.
type Request struct {
	MemoryMB int
	// CodeDigest is the hex digest of the function's code package; hosts
	// that have it cached are preferred. May be empty.
	CodeDigest string
	// SandboxKey is the lambdafn.Function.SandboxKey the sandbox is for
	// (used in logs).
	SandboxKey string
	// Exclude lists hosts not to place on (a host that just refused or
	// could not be reached).
	Exclude []string
}

// Reservation is capacity reserved on one host. Hand it back with Release.
type Reservation struct {
	ID       string
	HostID   string
	MemoryMB int
}

// HostInfo is a host as the service currently sees it.
type HostInfo struct {
	HostStatus
	ReservedMB   int
	FreeMemoryMB int
	// Reservations is the number of sandboxes reserved on the host.
	Reservations int
	// FreeSlots is -1 when the host has no slot limit.
	FreeSlots int
	LastSeen  time.Time
}

// Config configures a Service.
type Config struct {
	// StaleAfter is how long a host may go without a heartbeat before it is
	// dropped (default DefaultStaleAfter).
	StaleAfter time.Duration
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Validate reports whether c is usable; zero values get defaults in New.
func (c Config) Validate() error {
	if c.StaleAfter < 0 {
		return fmt.Errorf("placement: negative StaleAfter %v", c.StaleAfter)
	}
	return nil
}

// Service is the Placement Service. Create it with New.
type Service struct {
	staleAfter time.Duration
	now        func() time.Time
	log        *slog.Logger

	// mu guards hosts, reservations and seq.
	mu sync.Mutex
	// hosts is keyed by HostID.
	hosts map[string]*host
	// reservations maps a live reservation's ID to its host; a reservation
	// disappears from here on Release or when its host is dropped.
	reservations map[string]*host
	seq          uint64
}

// host is one registered host; its fields are guarded by Service.mu.
type host struct {
	status   HostStatus
	cached   map[string]bool
	lastSeen time.Time
	// reserved maps reservation ID to reserved memory and placing time.
	reserved   map[string]reservation
	reservedMB int
}

type reservation struct {
	mb int
	at time.Time
}

// usedMB is the memory counted against the host: its reservations, or, on
// a Shared host, what the worker reported plus the reservations made since.
func (h *host) usedMB() int {
	if !h.status.Shared {
		return h.reservedMB
	}
	used := h.status.UsedMB
	cut := h.lastSeen.Add(-pendingMargin)
	for _, r := range h.reserved {
		if r.at.After(cut) {
			used += r.mb
		}
	}
	return used
}

func (h *host) freeMB() int { return h.status.MemoryMB - h.usedMB() }

// hasSlot reports whether one more sandbox fits the host's slot limit.
func (h *host) hasSlot() bool {
	return h.status.MaxSandboxes == 0 || len(h.reserved) < h.status.MaxSandboxes
}

// New returns a Service with no hosts.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{
		staleAfter:   cfg.StaleAfter,
		now:          cfg.Clock,
		log:          cfg.Logger.With("component", "placement"),
		hosts:        make(map[string]*host),
		reservations: make(map[string]*host),
	}, nil
}

// Heartbeat registers a host or refreshes its status and last-seen time.
// A refreshed host keeps its reservations. It returns an error, and changes
// nothing, when st is invalid.
func (s *Service) Heartbeat(st HostStatus) error {
	if err := st.Validate(); err != nil {
		return err
	}
	cached := make(map[string]bool, len(st.CachedCode))
	for _, d := range st.CachedCode {
		cached[d] = true
	}
	st.CachedCode = slices.Clone(st.CachedCode)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	h, ok := s.hosts[st.HostID]
	if !ok {
		h = &host{reserved: make(map[string]reservation)}
		s.hosts[st.HostID] = h
		s.log.Info("host joined", "host", st.HostID, "roles", st.Roles, "addr", st.Addr,
			"memoryMB", st.MemoryMB, "maxSandboxes", st.MaxSandboxes)
	} else {
		if h.status.Draining != st.Draining {
			s.log.Info("host draining changed", "host", st.HostID, "draining", st.Draining)
		}
		if h.status.Instance != "" && st.Instance != "" && h.status.Instance != st.Instance &&
			now.Sub(h.lastSeen) < s.staleAfter/2 && !h.status.Draining {
			s.log.Error("two live hosts report one host id: give each its own --host-id",
				"host", st.HostID, "addr", st.Addr, "otherAddr", h.status.Addr)
		}
	}
	h.status = st
	h.cached = cached
	h.lastSeen = now
	return nil
}

// pruneLocked drops hosts not heard from within staleAfter, forgetting
// their reservations. s.mu must be held.
func (s *Service) pruneLocked(now time.Time) {
	for id, h := range s.hosts {
		if now.Sub(h.lastSeen) <= s.staleAfter {
			continue
		}
		for rid := range h.reserved {
			delete(s.reservations, rid)
		}
		delete(s.hosts, id)
		s.log.Warn("host dropped: no heartbeat", "host", id,
			"lastSeen", h.lastSeen, "forgottenReservations", len(h.reserved))
	}
}

// Place picks a host for a sandbox of req.MemoryMB and reserves the
// capacity. It never waits for capacity: when no live, non-draining host has
// enough free memory and a free slot it returns an error wrapping a
// *lambdaerr.Error{Type: TooManyRequests, Reason: ReasonNoCapacity}. A
// non-positive MemoryMB is an error too (not a Lambda one). ctx is only
// checked for cancellation.
func (s *Service) Place(ctx context.Context, req Request) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, fmt.Errorf("place sandbox %s: %w", req.SandboxKey, err)
	}
	if req.MemoryMB <= 0 {
		return Reservation{}, fmt.Errorf("place sandbox %s: memory must be positive, got %d MB", req.SandboxKey, req.MemoryMB)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())

	var best *host
	for _, h := range s.hosts {
		if h.status.Draining || !h.status.IsWorker() || slices.Contains(req.Exclude, h.status.HostID) ||
			h.freeMB() < req.MemoryMB || !h.hasSlot() {
			continue
		}
		if best == nil || better(h, best, req.CodeDigest) {
			best = h
		}
	}
	if best == nil {
		return Reservation{}, fmt.Errorf("place sandbox %s: %w", req.SandboxKey, &lambdaerr.Error{
			Type:   lambdaerr.TooManyRequests,
			Reason: ReasonNoCapacity,
			Message: fmt.Sprintf("no worker host has %d MB of memory and a sandbox slot free (%d hosts live)",
				req.MemoryMB, len(s.hosts)),
		})
	}

	s.seq++
	r := Reservation{
		ID:       best.status.HostID + "#" + strconv.FormatUint(s.seq, 10),
		HostID:   best.status.HostID,
		MemoryMB: req.MemoryMB,
	}
	best.reserved[r.ID] = reservation{mb: r.MemoryMB, at: s.now()}
	best.reservedMB += r.MemoryMB
	s.reservations[r.ID] = best
	s.log.Debug("placed", "sandboxKey", req.SandboxKey, "host", r.HostID, "reservation", r.ID,
		"memoryMB", r.MemoryMB, "codeCached", best.cached[req.CodeDigest])
	return r, nil
}

// better reports whether a is a better choice than b for code digest
// digest: code affinity first, then the tightest fit, then the host ID (so
// the choice is deterministic).
func better(a, b *host, digest string) bool {
	if digest != "" {
		if ac, bc := a.cached[digest], b.cached[digest]; ac != bc {
			return ac
		}
	}
	if af, bf := a.freeMB(), b.freeMB(); af != bf {
		return af < bf
	}
	return a.status.HostID < b.status.HostID
}

// Release returns a reservation's capacity to its host. It is idempotent:
// releasing an unknown, already released or forgotten (host dropped)
// reservation does nothing.
func (s *Service) Release(r Reservation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.reservations[r.ID]
	if !ok {
		return
	}
	delete(s.reservations, r.ID)
	h.reservedMB -= h.reserved[r.ID].mb
	delete(h.reserved, r.ID)
}

// Drop forgets a host and its reservations at once, before its heartbeats
// stop counting: the Worker Manager calls it when the host cannot be
// reached. A later heartbeat registers the host again. Dropping an unknown
// host does nothing.
func (s *Service) Drop(hostID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hosts[hostID]
	if !ok {
		return
	}
	for rid := range h.reserved {
		delete(s.reservations, rid)
	}
	delete(s.hosts, hostID)
	s.log.Warn("host dropped: unreachable", "host", hostID, "forgottenReservations", len(h.reserved))
}

// Host returns one live host, as Hosts lists it.
func (s *Service) Host(id string) (HostInfo, bool) {
	for _, h := range s.Hosts() {
		if h.HostID == id {
			return h, true
		}
	}
	return HostInfo{}, false
}

// Hosts lists the live hosts, sorted by HostID.
func (s *Service) Hosts() []HostInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	out := make([]HostInfo, 0, len(s.hosts))
	for _, h := range s.hosts {
		free := -1
		if h.status.MaxSandboxes > 0 {
			free = h.status.MaxSandboxes - len(h.reserved)
		}
		st := h.status
		st.CachedCode = slices.Clone(st.CachedCode)
		st.Roles = slices.Clone(st.Roles)
		out = append(out, HostInfo{
			HostStatus:   st,
			ReservedMB:   h.usedMB(),
			FreeMemoryMB: h.freeMB(),
			Reservations: len(h.reserved),
			FreeSlots:    free,
			LastSeen:     h.lastSeen,
		})
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return strings.Compare(a.HostID, b.HostID) })
	return out
}
