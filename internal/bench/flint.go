package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/auth/keystore"
	"github.com/flintdev/flint/internal/auth/sigv4"
	"github.com/flintdev/flint/internal/server"
)

// flintTarget is the Flint server under test: a `flint server` this
// bench started as a child process (the default), one it started in its
// own process (InProcess), or one at an endpoint.
type flintTarget struct {
	base      string
	inProcess bool
	child     *childServer    // the started server process, or nil
	capture   *captureHandler // in process only
	lambda    *lambda.Client
	zip       []byte
	created   []string
	stop      func() error
	creds     aws.CredentialsProvider // the control plane's key; signs invocations when sign
	// sign: the server verifies signatures (auth required), so the timed
	// requests are signed as an AWS SDK signs them; otherwise they are
	// plain POSTs, the closed-loop raw-HTTP client the targets are set for.
	sign bool
}

// httpClient is a plain client (newHTTPClient) with its own pool of conns
// keep-alive connections; it signs its requests only when the server
// verifies signatures.
func (t *flintTarget) httpClient(conns int) *http.Client {
	hc := newHTTPClient(conns)
	if t.sign {
		hc.Transport = t.signer(hc.Transport)
	}
	return hc
}

// signer wraps base so that it signs every request with t's key.
func (t *flintTarget) signer(base http.RoundTripper) http.RoundTripper {
	return &sigv4.Transport{Base: base, Credentials: t.creds, Region: "us-east-1"}
}

// startFlint starts the server (a child process, or in process) or
// connects to the one at cfg.Endpoint.
func startFlint(ctx context.Context, cfg *Config, zip []byte) (*flintTarget, error) {
	t := &flintTarget{zip: zip, stop: func() error { return nil }, creds: cfg.Credentials, sign: true}
	if t.creds == nil {
		t.creds = credentials.NewStaticCredentialsProvider("flint", "bench", "")
	}
	if cfg.Endpoint != "" {
		t.base = strings.TrimSuffix(cfg.Endpoint, "/")
	} else if !cfg.InProcess {
		c, err := startChild(ctx, cfg, t)
		if err != nil {
			return nil, err
		}
		t.child, t.stop = c, c.stop
	} else {
		dataDir, err := os.MkdirTemp("", "flint-bench-")
		if err != nil {
			return nil, err
		}
		t.inProcess = true
		t.capture = newCaptureHandler(cfg.Logger.Handler(), minLevel(cfg.Logger.Handler()))
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		ready := make(chan net.Addr, 1)
		done := make(chan error, 1)
		go func() {
			done <- server.Run(sctx, server.Config{
				Listen:       "127.0.0.1:0",
				DataDir:      dataDir,
				NATSPort:     -1,
				HostMemoryMB: 1 << 20, // density is bounded by real memory, not reservations
				MaxSandboxes: 100000,
				SandboxInit:  cfg.SandboxInit,
				Logger:       slog.New(t.capture),
				Ready:        func(a net.Addr) { ready <- a },
				Auth:         cfg.Auth,
			})
		}()
		select {
		case a := <-ready:
			t.base = "http://" + a.String()
			// The root key the server wrote on its first start.
			id, secret, err := keystore.ReadCredentials(filepath.Join(dataDir, "credentials"), keystore.Profile)
			if err != nil {
				cancel()
				<-done
				os.RemoveAll(dataDir)
				return nil, fmt.Errorf("start flint server: %w", err)
			}
			t.creds = credentials.NewStaticCredentialsProvider(id, secret, "")
		case err := <-done:
			cancel()
			os.RemoveAll(dataDir)
			return nil, fmt.Errorf("start flint server: %w", err)
		case <-time.After(60 * time.Second):
			cancel()
			return nil, errors.New("start flint server: not ready within 60s")
		}
		t.stop = func() error {
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				err = errors.New("flint server did not stop within 90s")
			}
			os.RemoveAll(dataDir)
			return err
		}
	}
	if t.probeUnsigned(ctx) {
		t.sign = false
	}
	t.lambda = lambda.New(lambda.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(t.base),
		Credentials:      t.creds,
		RetryMaxAttempts: 1,
	})
	return t, nil
}

// minLevel is the lowest level h handles (Error if none lower).
func minLevel(h slog.Handler) slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if h.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError
}

// close deletes the functions the bench created and stops an in-process
// server.
func (t *flintTarget) close(ctx context.Context) error {
	if t.child != nil {
		t.child.logs.silence()
	}
	for _, name := range t.created {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, _ = t.lambda.DeleteFunction(dctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)})
		cancel()
	}
	return t.stop()
}

// Memory sizes of the bench functions. Flint, like Lambda, gives a
// sandbox CPU in proportion to its memory (1769 MB = one vCPU, 1024 MB =
// 58% of one, 128 MB = 7%, enforced by CFS quota: a 128 MB Go runtime
// stalls ~90 ms whenever it spends its 7 ms per 100 ms period); the
// emulator limits nothing. The speed scenarios use 1024 MB, as issue 13
// measured (16 of them fit the default server's memory reservations on a
// 24 GiB host); density uses the smallest common size: idle sandboxes use
// no CPU.
const (
	defaultMB = 1024
	smallMB   = 128
)

// createFunction creates the bench function under name with memMB of
// memory and waits until it is Active.
func (t *flintTarget) createFunction(ctx context.Context, name string, memMB int32) error {
	return t.createFunctionWith(ctx, name, memMB, nil)
}

// capacityProviderARN is the capacity provider the multi-concurrency
// function names (Lambda requires one with
// PerExecutionEnvironmentMaxConcurrency).
const capacityProviderARN = "arn:aws:lambda:us-east-1:000000000000:capacity-provider:flint-bench"

// createMultiFunction creates the bench function with Lambda Managed
// Instances' PerExecutionEnvironmentMaxConcurrency = n and checks that
// the server took it: GetFunctionConfiguration returns it and the runtime
// gets AWS_LAMBDA_MAX_CONCURRENCY=n. unsupported says why not, in the
// report's words; err is for anything else.
func (t *flintTarget) createMultiFunction(ctx context.Context, name string, memMB int32, n int) (unsupported string, err error) {
	cpc := &types.CapacityProviderConfig{LambdaManagedInstancesCapacityProviderConfig: &types.LambdaManagedInstancesCapacityProviderConfig{
		CapacityProviderArn:                   aws.String(capacityProviderARN),
		PerExecutionEnvironmentMaxConcurrency: aws.Int32(int32(n)),
	}}
	if err := t.createFunctionWith(ctx, name, memMB, cpc); err != nil {
		return "not supported by this server (" + err.Error() + ")", nil
	}
	out, err := t.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("get function %s: %w", name, err)
	}
	if c := out.CapacityProviderConfig; c == nil || c.LambdaManagedInstancesCapacityProviderConfig == nil ||
		aws.ToInt32(c.LambdaManagedInstancesCapacityProviderConfig.PerExecutionEnvironmentMaxConcurrency) != int32(n) {
		return "not supported by this server (CreateFunction accepted PerExecutionEnvironmentMaxConcurrency but GetFunctionConfiguration does not return it)", nil
	}
	inv := &invoker{url: invokeURL(t.base, name), hc: t.httpClient(1)}
	defer inv.hc.CloseIdleConnections()
	resp, err := inv.invoke(ctx, []byte(`{"env":true}`))
	if err != nil {
		return "not supported by this server (first invoke: " + err.Error() + ")", nil
	}
	r, err := parseReply(resp.body)
	if err != nil {
		return "", err
	}
	if r.MaxConc != strconv.Itoa(n) {
		return fmt.Sprintf("not supported by this server (the runtime got AWS_LAMBDA_MAX_CONCURRENCY=%q, want %d)", r.MaxConc, n), nil
	}
	return "", nil
}

func (t *flintTarget) createFunctionWith(ctx context.Context, name string, memMB int32, cpc *types.CapacityProviderConfig) error {
	_, err := t.lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName:           aws.String(name),
		Runtime:                types.RuntimeProvidedal2023,
		Handler:                aws.String("bootstrap"),
		Role:                   aws.String("arn:aws:iam::000000000000:role/flint-bench"),
		Code:                   &types.FunctionCode{ZipFile: t.zip},
		MemorySize:             aws.Int32(memMB),
		Timeout:                aws.Int32(120),
		CapacityProviderConfig: cpc,
	})
	if err != nil {
		return fmt.Errorf("create function %s: %w", name, err)
	}
	t.created = append(t.created, name)
	return t.waitActive(ctx, name)
}

func (t *flintTarget) waitActive(ctx context.Context, name string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := t.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("get function %s: %w", name, err)
		}
		if (out.State == "" || out.State == types.StateActive) &&
			(out.LastUpdateStatus == "" || out.LastUpdateStatus == types.LastUpdateStatusSuccessful) {
			return nil
		}
		if out.State == types.StateFailed || out.LastUpdateStatus == types.LastUpdateStatusFailed {
			return fmt.Errorf("function %s: state %s, last update %s", name, out.State, out.LastUpdateStatus)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("function %s not active within 60s (state %s)", name, out.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// touchConfig changes the function's configuration, which retires its
// sandboxes: the next invocation is a cold start.
func (t *flintTarget) touchConfig(ctx context.Context, name string, i int) error {
	_, err := t.lambda.UpdateFunctionConfiguration(ctx, &lambda.UpdateFunctionConfigurationInput{
		FunctionName: aws.String(name),
		Environment:  &types.Environment{Variables: map[string]string{"BENCH_COLD": fmt.Sprint(i)}},
	})
	if err != nil {
		return fmt.Errorf("update function %s: %w", name, err)
	}
	return t.waitActive(ctx, name)
}

func (t *flintTarget) deleteFunction(ctx context.Context, name string) error {
	_, err := t.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("delete function %s: %w", name, err)
	}
	for i, n := range t.created {
		if n == name {
			t.created = append(t.created[:i], t.created[i+1:]...)
			break
		}
	}
	return nil
}

// probeUnsigned reports whether the server answers an unsigned
// ListFunctions (auth dev): then the timed requests need no signature.
func (t *flintTarget) probeUnsigned(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"/2015-03-31/functions", nil)
	if err != nil {
		return false
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
