package hostproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/workermanager"
)

// DefaultOrphanCheck is how often the server looks for sandboxes whose
// owner is gone.
const DefaultOrphanCheck = 2 * time.Second

// ServerConfig configures a Server.
type ServerConfig struct {
	// Host is the worker served (required).
	Host workermanager.Host
	// Key is the cluster key (at least MinKeySize bytes, required): only
	// requests carrying its token (auth.go) are served.
	Key []byte
	// OwnerAlive reports whether the node that created a sandbox is still
	// live; the sandboxes of an owner found dead on two checks in a row
	// are destroyed. Nil: sandboxes live until their owner destroys them.
	OwnerAlive func(owner string) bool
	// OrphanCheck is the interval of those checks (default
	// DefaultOrphanCheck).
	OrphanCheck time.Duration
	// DestroyTimeout bounds destroying an orphan (default 30 s).
	DestroyTimeout time.Duration
	Logger         *slog.Logger
}

// Validate reports whether c is usable.
func (c ServerConfig) Validate() error {
	if c.Host == nil {
		return errors.New("hostproxy: ServerConfig.Host is required")
	}
	if _, err := Token(c.Key); err != nil {
		return err
	}
	if c.OrphanCheck < 0 || c.DestroyTimeout < 0 {
		return errors.New("hostproxy: negative interval")
	}
	return nil
}

// Server serves one worker host over HTTP. Create it with NewServer; its
// methods are safe for concurrent use.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	token string // of cfg.Key

	mu        sync.Mutex // guards sandboxes, suspects and closed
	sandboxes map[string]*served
	suspects  map[string]bool // owners found dead once
	closed    bool

	stop chan struct{}
	done chan struct{}
}

// served is one sandbox created through the server.
type served struct {
	sb    workermanager.Sandbox
	owner string
}

// NewServer returns a Server; its orphan checks run until Close.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.OrphanCheck == 0 {
		cfg.OrphanCheck = DefaultOrphanCheck
	}
	if cfg.DestroyTimeout == 0 {
		cfg.DestroyTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	token, _ := Token(cfg.Key) // checked by Validate
	s := &Server{
		cfg: cfg, log: cfg.Logger, token: token,
		sandboxes: make(map[string]*served), suspects: make(map[string]bool),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.orphanLoop()
	return s, nil
}

// Handler is the HTTP handler of the routes in the package doc.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+prefix+"/sandboxes", s.create)
	mux.HandleFunc("POST "+prefix+"/sandboxes/{id}/init", s.init)
	mux.HandleFunc("POST "+prefix+"/sandboxes/{id}/invoke", s.invoke)
	mux.HandleFunc("DELETE "+prefix+"/sandboxes/{id}", s.destroy)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r, s.token) {
			s.log.Warn("worker port request without the cluster's token refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, kindUnauthorized, "this node's worker port needs the cluster's token (every node must share the cluster key)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Sandboxes is the number of sandboxes the server holds for other nodes.
func (s *Server) Sandboxes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sandboxes)
}

// Close stops the orphan checks and destroys every sandbox still served.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	all := s.sandboxes
	s.sandboxes = map[string]*served{}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var errs []error
	for _, sv := range all {
		if err := sv.sb.Destroy(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFunction+1))
	if err != nil || len(body) > maxFunction {
		writeError(w, http.StatusBadRequest, kindError, "function configuration unreadable or too large")
		return
	}
	var fn lambdafn.Function
	if err := json.Unmarshal(body, &fn); err != nil {
		writeError(w, http.StatusBadRequest, kindError, "function configuration: "+err.Error())
		return
	}
	owner := r.Header.Get(hdrOwner)
	sb, err := s.cfg.Host.CreateSandbox(r.Context(), &fn)
	if err != nil {
		kind, status := kindError, http.StatusInternalServerError
		if errors.Is(err, workermanager.ErrHostFull) {
			kind, status = kindFull, http.StatusServiceUnavailable
		}
		writeError(w, status, kind, err.Error())
		return
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sandboxes[sb.ID()] = &served{sb: sb, owner: owner}
	}
	s.mu.Unlock()
	if closed {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DestroyTimeout)
		_ = sb.Destroy(ctx)
		cancel()
		writeError(w, http.StatusServiceUnavailable, kindClosed, "worker host is shutting down")
		return
	}
	writeJSON(w, http.StatusOK, createResponse{ID: sb.ID()})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*served, bool) {
	id := r.PathValue("id")
	s.mu.Lock()
	sv := s.sandboxes[id]
	s.mu.Unlock()
	if sv == nil {
		writeError(w, http.StatusNotFound, kindUnknown, fmt.Sprintf("no sandbox %s on this host", id))
		return nil, false
	}
	return sv, true
}

func (s *Server) init(w http.ResponseWriter, r *http.Request) {
	sv, ok := s.lookup(w, r)
	if !ok {
		return
	}
	in, ok := sv.sb.(workermanager.Initializer)
	if ok {
		if err := in.Init(r.Context()); err != nil {
			writeError(w, http.StatusInternalServerError, kindError, err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	sv, ok := s.lookup(w, r)
	if !ok {
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil || len(payload) > maxPayload {
		writeError(w, http.StatusBadRequest, kindError, "payload unreadable or too large")
		return
	}
	req := invocation.Request{
		RequestID:     r.Header.Get(hdrRequestID),
		Payload:       payload,
		ClientContext: r.Header.Get(hdrClientContext),
		TraceID:       r.Header.Get(hdrTraceID),
	}
	// The invocation runs to its end even if the caller goes away: the
	// worker enforces the function's timeout.
	res, err := sv.sb.Invoke(context.WithoutCancel(r.Context()), req)
	if err != nil {
		writeError(w, http.StatusInternalServerError, kindError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if err := writeResult(w, res, sv.sb.Healthy()); err != nil {
		s.log.Debug("write invoke result", "sandbox", sv.sb.ID(), "err", err)
	}
}

func (s *Server) destroy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	sv := s.sandboxes[id]
	delete(s.sandboxes, id)
	s.mu.Unlock()
	if sv == nil {
		w.WriteHeader(http.StatusNoContent) // idempotent
		return
	}
	if err := sv.sb.Destroy(r.Context()); err != nil {
		writeError(w, http.StatusInternalServerError, kindError, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// orphanLoop destroys the sandboxes of owners found dead twice in a row.
func (s *Server) orphanLoop() {
	defer close(s.done)
	if s.cfg.OwnerAlive == nil {
		<-s.stop
		return
	}
	t := time.NewTicker(s.cfg.OrphanCheck)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.reapOrphans()
		}
	}
}

func (s *Server) reapOrphans() {
	owners := map[string]bool{}
	s.mu.Lock()
	for _, sv := range s.sandboxes {
		owners[sv.owner] = true
	}
	s.mu.Unlock()
	dead := map[string]bool{}
	for o := range owners {
		if !s.cfg.OwnerAlive(o) {
			dead[o] = true
		}
	}
	var victims []*served
	s.mu.Lock()
	for o := range s.suspects {
		if !dead[o] {
			delete(s.suspects, o)
		}
	}
	for id, sv := range s.sandboxes {
		if dead[sv.owner] && s.suspects[sv.owner] {
			victims = append(victims, sv)
			delete(s.sandboxes, id)
		}
	}
	for o := range dead {
		s.suspects[o] = true
	}
	s.mu.Unlock()
	for _, sv := range victims {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DestroyTimeout)
		err := sv.sb.Destroy(ctx)
		cancel()
		s.log.Info("destroyed sandbox of a lost node", "sandbox", sv.sb.ID(), "owner", sv.owner, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, errorBody{Kind: kind, Message: msg})
}
