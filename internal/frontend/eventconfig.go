package frontend

import (
	"context"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/lambdaerr"
)

// EventConfigs keeps asynchronous invocation configurations
// (*asyncq.Service implements it; see asyncq's eventconfig_api.go for the
// contract). The frontend checks the request and that the function and
// qualifier exist; the store checks destinations.
type EventConfigs interface {
	PutEventInvokeConfig(ctx context.Context, account, name, qualifier string, upd asyncq.EventInvokeConfigUpdate, merge bool) (*asyncq.EventInvokeConfig, error)
	GetEventInvokeConfig(ctx context.Context, account, name, qualifier, functionARN string) (*asyncq.EventInvokeConfig, error)
	DeleteEventInvokeConfig(ctx context.Context, account, name, qualifier, functionARN string) error
	ListEventInvokeConfigs(ctx context.Context, account, name string) ([]asyncq.QualifiedConfig, error)
	// DeleteFunctionEventInvokeConfigs removes every config of a function
	// (qualifier "") or one qualifier's.
	DeleteFunctionEventInvokeConfigs(ctx context.Context, account, name, qualifier string) error
}

// Wire shapes of Lambda's 2019-09-25 event-invoke-config API.
type (
	wireDestination struct {
		Destination *string `json:"Destination,omitempty"`
	}
	wireDestinationConfig struct {
		OnSuccess *wireDestination `json:"OnSuccess,omitempty"`
		OnFailure *wireDestination `json:"OnFailure,omitempty"`
	}
	eventConfigRequest struct {
		MaximumRetryAttempts     *int                   `json:"MaximumRetryAttempts"`
		MaximumEventAgeInSeconds *int                   `json:"MaximumEventAgeInSeconds"`
		DestinationConfig        *wireDestinationConfig `json:"DestinationConfig"`
	}
	eventConfigOut struct {
		// LastModified is epoch seconds (restJson's timestamp format).
		LastModified             float64               `json:"LastModified"`
		FunctionArn              string                `json:"FunctionArn"`
		MaximumRetryAttempts     *int                  `json:"MaximumRetryAttempts,omitempty"`
		MaximumEventAgeInSeconds *int                  `json:"MaximumEventAgeInSeconds,omitempty"`
		DestinationConfig        wireDestinationConfig `json:"DestinationConfig"`
	}
)

func eventConfigShape(arn string, c *asyncq.EventInvokeConfig) eventConfigOut {
	out := eventConfigOut{
		LastModified:             float64(c.LastModified.UnixMilli()) / 1000,
		FunctionArn:              arn,
		MaximumRetryAttempts:     c.MaximumRetryAttempts,
		MaximumEventAgeInSeconds: c.MaximumEventAgeInSeconds,
		DestinationConfig:        wireDestinationConfig{OnSuccess: &wireDestination{}, OnFailure: &wireDestination{}},
	}
	if c.OnSuccess != "" {
		d := c.OnSuccess
		out.DestinationConfig.OnSuccess.Destination = &d
	}
	if c.OnFailure != "" {
		d := c.OnFailure
		out.DestinationConfig.OnFailure.Destination = &d
	}
	return out
}

// eventConfigs returns the config store, or Lambda's answer when this
// server has no async path.
func (h *Handler) eventConfigs() (EventConfigs, error) {
	if h.cfg.EventConfigs == nil {
		return nil, lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Asynchronous invocation is not enabled on this Flint server, so it keeps no event invoke configs.")
	}
	return h.cfg.EventConfigs, nil
}

// eventConfigTarget resolves the FunctionName and Qualifier of an
// event-invoke-config request: the function name, the qualifier as named
// ($LATEST when none; versions and aliases must exist) and its ARN.
func (h *Handler) eventConfigTarget(r *http.Request, rt route) (name, q, arn string, err error) {
	ref, err := h.parseFunctionName(r.Context(), rt.function)
	if err != nil {
		return "", "", "", err
	}
	if q, err = h.resolveQualifier(ref, r.URL.Query().Get("Qualifier")); err != nil {
		return "", "", "", err
	}
	if _, _, err := h.resolve(r.Context(), ref.name, q); err != nil {
		return "", "", "", err
	}
	return ref.name, q, h.arn(r.Context(), ref.name, q), nil
}

// putEventConfig serves PutFunctionEventInvokeConfig and, with merge,
// UpdateFunctionEventInvokeConfig.
func (h *Handler) putEventConfig(merge bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
		ec, err := h.eventConfigs()
		if err != nil {
			return err
		}
		name, q, arn, err := h.eventConfigTarget(r, rt)
		if err != nil {
			return err
		}
		body, err := readBody(r, maxConfigRequest, "PutFunctionEventInvokeConfig")
		if err != nil {
			return err
		}
		var req eventConfigRequest
		if err := decodeJSON(body, &req); err != nil {
			return err
		}
		if n := req.MaximumRetryAttempts; n != nil {
			if err := rangeCheck("maximumRetryAttempts", *n, 0, 2); err != nil {
				return err
			}
		}
		if n := req.MaximumEventAgeInSeconds; n != nil {
			if err := rangeCheck("maximumEventAgeInSeconds", *n, 60, 21600); err != nil {
				return err
			}
		}
		upd := asyncq.EventInvokeConfigUpdate{
			MaximumRetryAttempts: req.MaximumRetryAttempts, MaximumEventAgeInSeconds: req.MaximumEventAgeInSeconds,
		}
		if dc := req.DestinationConfig; dc != nil {
			if dc.OnSuccess != nil {
				upd.OnSuccess = destinationOf(dc.OnSuccess)
			}
			if dc.OnFailure != nil {
				upd.OnFailure = destinationOf(dc.OnFailure)
			}
		}
		c, err := ec.PutEventInvokeConfig(r.Context(), h.account(r.Context()), name, q, upd, merge)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, eventConfigShape(arn, c))
		return nil
	}
}

func destinationOf(d *wireDestination) *string {
	s := ""
	if d.Destination != nil {
		s = *d.Destination
	}
	return &s
}

func (h *Handler) getEventConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ec, err := h.eventConfigs()
	if err != nil {
		return err
	}
	name, q, arn, err := h.eventConfigTarget(r, rt)
	if err != nil {
		return err
	}
	c, err := ec.GetEventInvokeConfig(r.Context(), h.account(r.Context()), name, q, h.arn(r.Context(), name, ""))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventConfigShape(arn, c))
	return nil
}

func (h *Handler) deleteEventConfig(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ec, err := h.eventConfigs()
	if err != nil {
		return err
	}
	name, q, _, err := h.eventConfigTarget(r, rt)
	if err != nil {
		return err
	}
	if err := ec.DeleteEventInvokeConfig(r.Context(), h.account(r.Context()), name, q, h.arn(r.Context(), name, "")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listEventConfigs serves ListFunctionEventInvokeConfigs. The marker is the
// last qualifier of the previous page.
func (h *Handler) listEventConfigs(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	ec, err := h.eventConfigs()
	if err != nil {
		return err
	}
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, "$LATEST"); err != nil {
		return err
	}
	maxItems := 50
	if v := r.URL.Query().Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return validation("maxItems", v, false, "Member must be an integer")
		}
		if err := rangeCheck("maxItems", n, 1, 50); err != nil {
			return err
		}
		maxItems = n
	}
	marker := r.URL.Query().Get("Marker")
	all, err := ec.ListEventInvokeConfigs(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	out := struct {
		FunctionEventInvokeConfigs []eventConfigOut `json:"FunctionEventInvokeConfigs"`
		NextMarker                 *string          `json:"NextMarker,omitempty"`
	}{FunctionEventInvokeConfigs: []eventConfigOut{}}
	last := ""
	for _, qc := range all {
		if marker != "" && qc.Qualifier <= marker {
			continue
		}
		if len(out.FunctionEventInvokeConfigs) == maxItems {
			out.NextMarker = &last
			break
		}
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, eventConfigShape(h.arn(r.Context(), name, qc.Qualifier), qc.Config))
		last = qc.Qualifier
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// dropEventConfigs removes the event invoke configs of a deleted function
// (qualifier "") or of a deleted version or alias. It runs even when the
// client has gone: the deletion is already stored.
func (h *Handler) dropEventConfigs(ctx context.Context, name, qualifier string) {
	if h.cfg.EventConfigs == nil {
		return
	}
	if err := h.cfg.EventConfigs.DeleteFunctionEventInvokeConfigs(context.WithoutCancel(ctx), h.account(ctx), name, qualifier); err != nil {
		h.log.Warn("delete event invoke configs", "function", name, "qualifier", qualifier, "err", err)
	}
}
