package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/flintdev/flint/internal/concurrency"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Concurrency settings: the metadata store keeps them (they survive
// restarts and go with the function when it is deleted); the
// ConcurrencyController (the Worker Manager) enforces them. Restore pushes
// the stored settings to the controller after a restart.

// Lambda's fixed account limits that GetAccountSettings reports.
const (
	codeSizeUnzipped = 262144000   // 250 MB
	codeSizeZipped   = 52428800    // 50 MB
	totalCodeSize    = 80530636800 // 75 GB
)

// provisionedNotFound is the 404 Lambda answers for a qualifier without a
// provisioned concurrency configuration.
const provisionedNotFound = "ProvisionedConcurrencyConfigNotFoundException"

func errNoProvisionedConfig() error {
	return &apiError{typ: provisionedNotFound, status: http.StatusNotFound,
		msg: "No Provisioned Concurrency Config found for this function"}
}

// Restore resumes the function preparations a stopped process left
// unfinished (state.go) and pushes every stored reserved and provisioned
// concurrency setting to the ConcurrencyController. Call it once after
// New, when the server starts: the controller keeps its state in memory
// only. A setting that
// cannot be applied (its version is gone) is logged and skipped.
func (h *Handler) Restore(ctx context.Context) error {
	if err := h.resumePreparations(ctx); err != nil {
		return fmt.Errorf("frontend: resume function preparations: %w", err)
	}
	cc := h.cfg.Concurrency
	if cc == nil {
		return nil
	}
	rs, err := h.cfg.Functions.ListReservedConcurrency(ctx, "")
	if err != nil {
		return fmt.Errorf("frontend: restore reserved concurrency: %w", err)
	}
	for _, r := range rs {
		cc.SetReservedConcurrency(r.Account, r.FunctionName, r.Reserved)
	}
	ps, err := h.cfg.Functions.ListProvisionedConfigs(ctx, "", "")
	if err != nil {
		return fmt.Errorf("frontend: restore provisioned concurrency: %w", err)
	}
	for _, p := range ps {
		fn, err := h.provisionedTarget(ctx, p.Account, p.FunctionName, p.Qualifier)
		if err == nil {
			err = cc.SetProvisionedConcurrency(fn, p.Requested)
		}
		if err != nil {
			h.log.Warn("restore provisioned concurrency", "function", p.FunctionName, "qualifier", p.Qualifier, "err", err)
		}
	}
	h.log.Info("concurrency settings restored", "reserved", len(rs), "provisioned", len(ps))
	return nil
}

// provisionedTarget is the version a provisioned qualifier (a version or
// an alias, whose primary version is provisioned) stands for.
func (h *Handler) provisionedTarget(ctx context.Context, account, name, q string) (*metadata.Function, error) {
	if metadata.IsVersionNumber(q) {
		return h.cfg.Functions.Get(ctx, account, name, q)
	}
	a, err := h.cfg.Functions.GetAlias(ctx, account, name, q)
	if err != nil {
		return nil, err
	}
	return h.cfg.Functions.Get(ctx, account, name, a.FunctionVersion)
}

type concurrencyRequest struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions"`
}

func (h *Handler) putFunctionConcurrency(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "PutFunctionConcurrency")
	if err != nil {
		return err
	}
	var req concurrencyRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.ReservedConcurrentExecutions == nil {
		return validation("reservedConcurrentExecutions", "null", false, "Member must not be null")
	}
	n := *req.ReservedConcurrentExecutions
	if n < 0 {
		return validation("reservedConcurrentExecutions", fmt.Sprint(n), false, "Member must have value greater than or equal to 0")
	}
	ctx := r.Context()
	if _, err := h.cfg.Functions.Get(ctx, h.account(ctx), name, metadata.LatestVersion); err != nil {
		return err
	}
	rs, err := h.cfg.Functions.ListReservedConcurrency(ctx, h.account(ctx))
	if err != nil {
		return err
	}
	others := 0
	for _, x := range rs {
		if x.FunctionName != name {
			others += x.Reserved
		}
	}
	if h.cfg.ConcurrentExecutions-others-n < h.cfg.MinUnreserved {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", h.cfg.MinUnreserved)
	}
	ps, err := h.cfg.Functions.ListProvisionedConfigs(ctx, h.account(ctx), name)
	if err != nil {
		return err
	}
	provisioned := 0
	for _, p := range ps {
		provisioned += p.Requested
	}
	if n < provisioned {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Specified ReservedConcurrentExecutions for function is less than function's total provisioned concurrency [%d].", provisioned)
	}
	if err := h.cfg.Functions.PutReservedConcurrency(ctx, h.account(ctx), name, n); err != nil {
		return err
	}
	if h.cfg.Concurrency != nil {
		h.cfg.Concurrency.SetReservedConcurrency(h.account(ctx), name, n)
	}
	h.log.Info("reserved concurrency set", "requestId", reqID, "function", name, "reserved", n)
	writeJSON(w, http.StatusOK, reservedConcurrency{ReservedConcurrentExecutions: &n})
	return nil
}

func (h *Handler) getFunctionConcurrency(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion); err != nil {
		return err
	}
	n, ok, err := h.cfg.Functions.GetReservedConcurrency(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	out := reservedConcurrency{}
	if ok {
		out.ReservedConcurrentExecutions = &n
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deleteFunctionConcurrency(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if err := h.cfg.Functions.DeleteReservedConcurrency(r.Context(), h.account(r.Context()), name); err != nil {
		return err
	}
	if h.cfg.Concurrency != nil {
		h.cfg.Concurrency.ClearReservedConcurrency(h.account(r.Context()), name)
	}
	h.log.Info("reserved concurrency removed", "requestId", reqID, "function", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) getAccountSettings(w http.ResponseWriter, r *http.Request, _ string, _ route) error {
	count, size, err := h.cfg.Functions.AccountUsage(r.Context(), h.account(r.Context()))
	if err != nil {
		return err
	}
	rs, err := h.cfg.Functions.ListReservedConcurrency(r.Context(), h.account(r.Context()))
	if err != nil {
		return err
	}
	reserved := 0
	for _, x := range rs {
		reserved += x.Reserved
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"AccountLimit": map[string]int64{
			"TotalCodeSize":                  totalCodeSize,
			"CodeSizeUnzipped":               codeSizeUnzipped,
			"CodeSizeZipped":                 codeSizeZipped,
			"ConcurrentExecutions":           int64(h.cfg.ConcurrentExecutions),
			"UnreservedConcurrentExecutions": int64(max(0, h.cfg.ConcurrentExecutions-reserved)),
		},
		"AccountUsage": map[string]int64{"TotalCodeSize": size, "FunctionCount": int64(count)},
	})
	return nil
}

// provisionedConfig is Lambda's Get/PutProvisionedConcurrencyConfig
// output and ProvisionedConcurrencyConfigListItem.
type provisionedConfig struct {
	FunctionArn                              string `json:"FunctionArn,omitempty"`
	RequestedProvisionedConcurrentExecutions int    `json:"RequestedProvisionedConcurrentExecutions"`
	AvailableProvisionedConcurrentExecutions int    `json:"AvailableProvisionedConcurrentExecutions"`
	AllocatedProvisionedConcurrentExecutions int    `json:"AllocatedProvisionedConcurrentExecutions"`
	Status                                   string `json:"Status"`
	StatusReason                             string `json:"StatusReason,omitempty"`
	LastModified                             string `json:"LastModified"`
}

func (h *Handler) provisionedOut(c *metadata.ProvisionedConfig, fn *metadata.Function) provisionedConfig {
	out := provisionedConfig{
		RequestedProvisionedConcurrentExecutions: c.Requested,
		Status:                                   concurrency.StatusInProgress,
		LastModified:                             c.LastModified.UTC().Format(lastModifiedLayout) + "+0000",
	}
	if h.cfg.Concurrency != nil && fn != nil {
		if st, ok := h.cfg.Concurrency.ProvisionedConcurrency(fn); ok {
			out.AllocatedProvisionedConcurrentExecutions = st.Allocated
			out.AvailableProvisionedConcurrentExecutions = st.Available
			out.Status, out.StatusReason = st.Status, st.StatusReason
		}
	}
	return out
}

// provisionedQualifier reads the Qualifier a provisioned concurrency
// operation requires: a version or an alias, not $LATEST.
func (h *Handler) provisionedQualifier(r *http.Request, rt route) (name, q string, err error) {
	if name, err = h.aliasFunction(r.Context(), rt); err != nil {
		return "", "", err
	}
	q = r.URL.Query().Get("Qualifier")
	switch {
	case q == "":
		return "", "", validation("qualifier", "null", false, "Member must not be null")
	case q == metadata.LatestVersion:
		return "", "", lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
	case !validQualifier(q):
		return "", "", validation("qualifier", q, false, "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)")
	}
	return name, q, nil
}

type provisionedRequest struct {
	ProvisionedConcurrentExecutions *int `json:"ProvisionedConcurrentExecutions"`
}

func (h *Handler) putProvisionedConcurrency(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, q, err := h.provisionedQualifier(r, rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "PutProvisionedConcurrencyConfig")
	if err != nil {
		return err
	}
	var req provisionedRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.ProvisionedConcurrentExecutions == nil {
		return validation("provisionedConcurrentExecutions", "null", false, "Member must not be null")
	}
	n := *req.ProvisionedConcurrentExecutions
	if n < 1 {
		return validation("provisionedConcurrentExecutions", fmt.Sprint(n), false, "Member must have value greater than or equal to 1")
	}
	if h.cfg.Concurrency == nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Provisioned concurrency is not enabled on this Flint server.")
	}
	ctx := r.Context()
	fn, _, err := h.resolve(ctx, name, q)
	if err != nil {
		return err
	}
	if err := h.checkProvisioned(ctx, name, q, fn, n); err != nil {
		return err
	}
	c := &metadata.ProvisionedConfig{Account: h.account(ctx), FunctionName: name, Qualifier: q, Requested: n, LastModified: h.cfg.Clock()}
	if err := h.cfg.Functions.PutProvisionedConfig(ctx, c); err != nil {
		return err
	}
	if err := h.cfg.Concurrency.SetProvisionedConcurrency(fn, n); err != nil {
		return err
	}
	h.log.Info("provisioned concurrency set", "requestId", reqID, "function", name, "qualifier", q, "version", fn.Version, "requested", n)
	writeJSON(w, http.StatusAccepted, h.provisionedOut(c, fn))
	return nil
}

// checkProvisioned applies Lambda's rules to a provisioned concurrency
// request of n for qualifier q (resolved to fn).
func (h *Handler) checkProvisioned(ctx context.Context, name, q string, fn *metadata.Function, n int) error {
	all, err := h.cfg.Functions.ListProvisionedConfigs(ctx, h.account(ctx), "")
	if err != nil {
		return err
	}
	ofFunction, ofAccount := 0, 0
	for _, c := range all {
		if c.FunctionName == name && c.Qualifier == q {
			continue // replaced by this request
		}
		ofAccount += c.Requested
		if c.FunctionName != name {
			continue
		}
		ofFunction += c.Requested
		other, err := h.provisionedTarget(ctx, h.account(ctx), name, c.Qualifier)
		if err == nil && other.Version == fn.Version {
			return lambdaerr.New(lambdaerr.ResourceConflict,
				"Provisioned Concurrency Config already exists for version %s through qualifier %s; an alias and the version it points to cannot both have one.", fn.Version, c.Qualifier)
		}
	}
	if reserved, ok, err := h.cfg.Functions.GetReservedConcurrency(ctx, h.account(ctx), name); err != nil {
		return err
	} else if ok && ofFunction+n > reserved {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function")
	}
	if ofAccount+n > h.cfg.ConcurrentExecutions-h.cfg.MinUnreserved {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Requested Provisioned Concurrency exceeds the account's UnreservedConcurrentExecution minimum of [%d].", h.cfg.MinUnreserved)
	}
	return nil
}

func (h *Handler) getProvisionedConcurrency(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	if r.URL.Query().Has("List") {
		return h.listProvisionedConcurrency(w, r, rt)
	}
	name, q, err := h.provisionedQualifier(r, rt)
	if err != nil {
		return err
	}
	if _, _, err := h.resolve(r.Context(), name, q); err != nil {
		return err
	}
	c, err := h.cfg.Functions.GetProvisionedConfig(r.Context(), h.account(r.Context()), name, q)
	if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		return errNoProvisionedConfig()
	}
	if err != nil {
		return err
	}
	fn, _ := h.provisionedTarget(r.Context(), h.account(r.Context()), name, q)
	writeJSON(w, http.StatusOK, h.provisionedOut(c, fn))
	return nil
}

func (h *Handler) deleteProvisionedConcurrency(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, q, err := h.provisionedQualifier(r, rt)
	if err != nil {
		return err
	}
	if _, _, err := h.resolve(r.Context(), name, q); err != nil {
		return err
	}
	if _, err := h.cfg.Functions.GetProvisionedConfig(r.Context(), h.account(r.Context()), name, q); lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		return errNoProvisionedConfig()
	} else if err != nil {
		return err
	}
	h.clearProvisioned(r.Context(), name, q)
	h.log.Info("provisioned concurrency removed", "requestId", reqID, "function", name, "qualifier", q)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listProvisionedConcurrency is ListProvisionedConcurrencyConfigs (GET
// with List=ALL).
func (h *Handler) listProvisionedConcurrency(w http.ResponseWriter, r *http.Request, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if l := r.URL.Query().Get("List"); l != "ALL" {
		return validation("list", l, false, "Member must satisfy enum value set: [ALL]")
	}
	marker, maxItems, err := pageParams(r)
	if err != nil {
		return err
	}
	if maxItems > 50 {
		return validation("maxItems", fmt.Sprint(maxItems), false, "Member must have value less than or equal to 50")
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion); err != nil {
		return err
	}
	cs, err := h.cfg.Functions.ListProvisionedConfigs(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	cs, next := page(cs, func(c *metadata.ProvisionedConfig) string { return c.Qualifier }, marker, maxItems)
	out := struct {
		ProvisionedConcurrencyConfigs []provisionedConfig `json:"ProvisionedConcurrencyConfigs"`
		NextMarker                    string              `json:"NextMarker,omitempty"`
	}{ProvisionedConcurrencyConfigs: make([]provisionedConfig, 0, len(cs)), NextMarker: next}
	for _, c := range cs {
		fn, _ := h.provisionedTarget(r.Context(), h.account(r.Context()), name, c.Qualifier)
		item := h.provisionedOut(c, fn)
		item.FunctionArn = h.arn(r.Context(), name, c.Qualifier)
		out.ProvisionedConcurrencyConfigs = append(out.ProvisionedConcurrencyConfigs, item)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// clearProvisioned stops and deletes the provisioned concurrency of one
// qualifier of a function, or of all its qualifiers (q == ""). Failures
// are logged: it runs on the way to deleting what the config refers to.
func (h *Handler) clearProvisioned(ctx context.Context, name, q string) {
	var qs []string
	if q != "" {
		qs = []string{q}
	} else {
		cs, err := h.cfg.Functions.ListProvisionedConfigs(ctx, h.account(ctx), name)
		if err != nil {
			h.log.Warn("list provisioned concurrency", "function", name, "err", err)
		}
		for _, c := range cs {
			qs = append(qs, c.Qualifier)
		}
	}
	for _, q := range qs {
		if _, err := h.cfg.Functions.GetProvisionedConfig(ctx, h.account(ctx), name, q); err != nil {
			continue
		}
		if fn, err := h.provisionedTarget(ctx, h.account(ctx), name, q); err == nil && h.cfg.Concurrency != nil {
			h.cfg.Concurrency.ClearProvisionedConcurrency(fn)
		}
		if err := h.cfg.Functions.DeleteProvisionedConfig(context.WithoutCancel(ctx), h.account(ctx), name, q); err != nil {
			h.log.Warn("delete provisioned concurrency", "function", name, "qualifier", q, "err", err)
		}
	}
}

// retargetProvisioned moves an alias's provisioned concurrency from the
// version it pointed to (before) to its new FunctionVersion.
func (h *Handler) retargetProvisioned(ctx context.Context, a *metadata.Alias, before string) {
	c, err := h.cfg.Functions.GetProvisionedConfig(ctx, h.account(ctx), a.FunctionName, a.Name)
	if err != nil || h.cfg.Concurrency == nil {
		return
	}
	if old, err := h.cfg.Functions.Get(ctx, h.account(ctx), a.FunctionName, before); err == nil {
		h.cfg.Concurrency.ClearProvisionedConcurrency(old)
	}
	fn, err := h.cfg.Functions.Get(ctx, h.account(ctx), a.FunctionName, a.FunctionVersion)
	if err == nil {
		err = h.cfg.Concurrency.SetProvisionedConcurrency(fn, c.Requested)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		h.log.Warn("move provisioned concurrency", "alias", a.ARN(), "err", err)
	}
}
