package hostproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/workermanager"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// HostID names the remote host (in errors).
	HostID string
	// Addr is the host's advertised address, host:port (required).
	Addr string
	// Owner names this node: the remote host destroys the sandboxes of an
	// owner it no longer sees alive.
	Owner string
	// Key is the cluster key (at least MinKeySize bytes, required): its
	// token goes with every request (auth.go).
	Key []byte
	// TLS, when set, makes the client speak HTTPS to the host, verifying
	// its certificate with this configuration (RootCAs: the cluster's
	// CA). The host must serve TLS on its worker port.
	TLS *tls.Config
	// Transport, when set, replaces the default HTTP transport (tests).
	Transport http.RoundTripper
}

// Client is a remote worker host as a workermanager.Host. Safe for
// concurrent use.
type Client struct {
	cfg   ClientConfig
	base  string
	token string // of cfg.Key
	hc    *http.Client
	// gone is canceled by Gone: in-flight calls end, later ones fail.
	gone   context.Context
	goneFn context.CancelFunc
}

var _ workermanager.Host = (*Client)(nil)

// NewClient returns a Client for the host at cfg.Addr. It does not connect
// until the first call.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("hostproxy: host %s advertises no address", cfg.HostID)
	}
	token, err := Token(cfg.Key)
	if err != nil {
		return nil, err
	}
	rt := cfg.Transport
	if rt == nil {
		rt = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSClientConfig:     cfg.TLS,
		}
	}
	scheme := "http://"
	if cfg.TLS != nil {
		scheme = "https://"
	}
	gone, goneFn := context.WithCancel(context.Background())
	return &Client{
		cfg: cfg, base: scheme + cfg.Addr + prefix, token: token,
		hc:   &http.Client{Transport: rt},
		gone: gone, goneFn: goneFn,
	}, nil
}

// Gone marks the host lost (it stopped heartbeating): every call in
// flight ends with an error now, and later calls fail with
// workermanager.ErrHostUnreachable without trying. Idle connections are
// closed.
func (c *Client) Gone() {
	c.goneFn()
	c.hc.CloseIdleConnections()
}

// do sends one request, bounded by ctx and by Gone.
func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	if c.gone.Err() != nil {
		return nil, fmt.Errorf("host %s: %w", c.cfg.HostID, workermanager.ErrHostUnreachable)
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.gone, cancel)
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.cfg.Owner != "" {
		req.Header.Set(hdrOwner, c.cfg.Owner)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		stop()
		cancel()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("host %s at %s: %w: %w", c.cfg.HostID, c.cfg.Addr, workermanager.ErrHostUnreachable, err)
		}
		if c.gone.Err() != nil {
			return nil, fmt.Errorf("host %s lost during the call: %w", c.cfg.HostID, err)
		}
		return nil, fmt.Errorf("host %s: %w", c.cfg.HostID, err)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { stop(); cancel() }}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// remoteError turns a non-2xx answer into an error.
func (c *Client) remoteError(resp *http.Response, what string) error {
	var eb errorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
		eb.Message = resp.Status
	}
	switch eb.Kind {
	case kindFull:
		return fmt.Errorf("%s on host %s: %s: %w", what, c.cfg.HostID, eb.Message, workermanager.ErrHostFull)
	case kindUnauthorized:
		// Another cluster's key (a misconfiguration): place elsewhere.
		return fmt.Errorf("%s on host %s: refused this node's worker port token (do the nodes share one cluster key?): %w",
			what, c.cfg.HostID, workermanager.ErrHostUnreachable)
	}
	return fmt.Errorf("%s on host %s: %s", what, c.cfg.HostID, eb.Message)
}

// CreateSandbox implements workermanager.Host.
func (c *Client) CreateSandbox(ctx context.Context, fn *lambdafn.Function) (workermanager.Sandbox, error) {
	body, err := json.Marshal(fn)
	if err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", fn.Name, err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/sandboxes", body, nil)
	if err != nil {
		return nil, fmt.Errorf("create sandbox for %s: %w", fn.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.remoteError(resp, "create sandbox for "+fn.Name)
	}
	var cr createResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&cr); err != nil || cr.ID == "" {
		return nil, fmt.Errorf("create sandbox for %s on host %s: bad answer: %v", fn.Name, c.cfg.HostID, err)
	}
	sb := &remoteSandbox{c: c, id: cr.ID}
	sb.healthy.Store(true)
	return sb, nil
}

// remoteSandbox is a sandbox on a remote host.
type remoteSandbox struct {
	c       *Client
	id      string
	healthy atomic.Bool // as of the last answer
}

var (
	_ workermanager.Sandbox     = (*remoteSandbox)(nil)
	_ workermanager.Initializer = (*remoteSandbox)(nil)
)

func (s *remoteSandbox) ID() string { return s.id }

func (s *remoteSandbox) Healthy() bool { return s.healthy.Load() && s.c.gone.Err() == nil }

func (s *remoteSandbox) Invoke(ctx context.Context, req invocation.Request) (invocation.Result, error) {
	hdr := http.Header{}
	hdr.Set(hdrRequestID, req.RequestID)
	// No Idempotency-Key: net/http would then send the request again when
	// a reused connection breaks after it was written, running the
	// function twice. An invocation cut off by a lost host fails, as in
	// Lambda.
	if req.ClientContext != "" {
		hdr.Set(hdrClientContext, req.ClientContext)
	}
	if req.TraceID != "" {
		hdr.Set(hdrTraceID, req.TraceID)
	}
	resp, err := s.c.do(ctx, http.MethodPost, "/sandboxes/"+s.id+"/invoke", req.Payload, hdr)
	if err != nil {
		s.healthy.Store(false)
		return invocation.Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.healthy.Store(false)
		return invocation.Result{}, s.c.remoteError(resp, "invoke sandbox "+s.id)
	}
	res, healthy, err := readResult(resp.Body)
	if err != nil {
		s.healthy.Store(false)
		return invocation.Result{}, fmt.Errorf("invoke sandbox %s on host %s: %w", s.id, s.c.cfg.HostID, err)
	}
	s.healthy.Store(healthy)
	return res, nil
}

func (s *remoteSandbox) Init(ctx context.Context) error {
	resp, err := s.c.do(ctx, http.MethodPost, "/sandboxes/"+s.id+"/init", nil, nil)
	if err != nil {
		s.healthy.Store(false)
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		s.healthy.Store(false)
		return s.c.remoteError(resp, "init sandbox "+s.id)
	}
	return nil
}

func (s *remoteSandbox) Destroy(ctx context.Context) error {
	s.healthy.Store(false)
	resp, err := s.c.do(ctx, http.MethodDelete, "/sandboxes/"+s.id, nil, nil)
	if err != nil {
		if errors.Is(err, workermanager.ErrHostUnreachable) {
			return nil // the host and its sandboxes are gone
		}
		return fmt.Errorf("destroy sandbox %s: %w", s.id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return s.c.remoteError(resp, "destroy sandbox "+s.id)
	}
	return nil
}
