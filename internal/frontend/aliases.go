package frontend

import (
	"context"
	"errors"
	"net/http"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/lambdafn"
	"github.com/flintdev/flint/internal/metadata"
)

// Lambda's constraints on alias members.
const (
	aliasNamePattern       = `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`
	functionVersionPattern = `(\$LATEST|[0-9]+)`
)

type routingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights,omitempty"`
}

// aliasConfiguration is Lambda's AliasConfiguration.
type aliasConfiguration struct {
	AliasArn        string         `json:"AliasArn"`
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RevisionId      string         `json:"RevisionId"`
	RoutingConfig   *routingConfig `json:"RoutingConfig,omitempty"`
}

func aliasOut(a *metadata.Alias) aliasConfiguration {
	c := aliasConfiguration{AliasArn: a.ARN(), Name: a.Name, FunctionVersion: a.FunctionVersion,
		Description: a.Description, RevisionId: a.RevisionID}
	if len(a.AdditionalVersionWeights) > 0 {
		c.RoutingConfig = &routingConfig{AdditionalVersionWeights: a.AdditionalVersionWeights}
	}
	return c
}

type aliasRequest struct {
	Name            *string        `json:"Name"`
	FunctionVersion *string        `json:"FunctionVersion"`
	Description     *string        `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
	RevisionId      string         `json:"RevisionId"`
}

// checkAliasName applies Lambda's constraints on an alias name: 1–128
// name characters, not all digits (that would read as a version).
func checkAliasName(path, name string) error {
	switch {
	case name == "":
		return validation(path, name, false, "Member must have length greater than or equal to 1")
	case len(name) > 128:
		return validation(path, name, false, "Member must have length less than or equal to 128")
	case !allNameChars(name) || lambdafn.IsDigits(name):
		return validation(path, name, false, "Member must satisfy regular expression pattern: "+aliasNamePattern)
	}
	return nil
}

func allNameChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// checkVersionRef applies the FunctionVersion pattern.
func checkVersionRef(path, v string) error {
	if v != metadata.LatestVersion && !lambdafn.IsDigits(v) || v == "" || len(v) > 1024 {
		return validation(path, v, false, "Member must satisfy regular expression pattern: "+functionVersionPattern)
	}
	return nil
}

// checkAliasTarget checks that an alias may point to version with the
// given routing: the versions exist, weights are 0.0–1.0 on one other
// published version, and a routed alias does not point to $LATEST.
func (h *Handler) checkAliasTarget(ctx context.Context, name, version string, weights map[string]float64) error {
	if err := checkVersionRef("functionVersion", version); err != nil {
		return err
	}
	if _, err := h.cfg.Functions.Get(ctx, h.account(ctx), name, version); err != nil {
		return err
	}
	if len(weights) > 1 {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Number of items in AdditionalVersionWeights cannot be greater than 1.")
	}
	for v, wt := range weights {
		if !metadata.IsVersionNumber(v) {
			return validation("routingConfig.additionalVersionWeights", "", true,
				"Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]+]")
		}
		if wt < 0 || wt > 1 {
			return validation("routingConfig.additionalVersionWeights", "", true,
				"Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]")
		}
		if version == metadata.LatestVersion {
			return lambdaerr.New(lambdaerr.InvalidParameterValue, "$LATEST is not supported for an alias pointing to more than 1 version")
		}
		if v == version {
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"Invalid function version %s. Function version %s is already included in routing configuration.", v, v)
		}
		if _, err := h.cfg.Functions.Get(ctx, h.account(ctx), name, v); err != nil {
			return err
		}
	}
	return nil
}

// aliasFunction resolves the FunctionName of an alias operation (no
// qualifier allowed).
func (h *Handler) aliasFunction(ctx context.Context, rt route) (string, error) {
	ref, err := h.parseFunctionName(ctx, rt.function)
	if err != nil {
		return "", err
	}
	if ref.qualifier != "" {
		return "", validation("functionName", rt.function, false,
			"Member must satisfy regular expression pattern: "+createNamePattern)
	}
	return ref.name, nil
}

func (h *Handler) createAlias(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "CreateAlias")
	if err != nil {
		return err
	}
	var req aliasRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return validation("name", "null", false, "Member must not be null")
	}
	if req.FunctionVersion == nil {
		return validation("functionVersion", "null", false, "Member must not be null")
	}
	if err := checkAliasName("name", *req.Name); err != nil {
		return err
	}
	a := &metadata.Alias{Account: h.account(r.Context()), Region: h.cfg.Region, FunctionName: name, Name: *req.Name,
		FunctionVersion: *req.FunctionVersion, LastModified: h.cfg.Clock()}
	if req.Description != nil {
		if len(*req.Description) > 256 {
			return validation("description", *req.Description, false, "Member must have length less than or equal to 256")
		}
		a.Description = *req.Description
	}
	if req.RoutingConfig != nil && len(req.RoutingConfig.AdditionalVersionWeights) > 0 {
		a.AdditionalVersionWeights = req.RoutingConfig.AdditionalVersionWeights
	}
	if err := h.checkAliasTarget(r.Context(), name, a.FunctionVersion, a.AdditionalVersionWeights); err != nil {
		return err
	}
	if a.RevisionID, err = h.cfg.NewID(); err != nil {
		return err
	}
	if err := h.cfg.Functions.CreateAlias(r.Context(), a); err != nil {
		return err
	}
	h.log.Info("alias created", "requestId", reqID, "function", name, "alias", a.Name, "version", a.FunctionVersion)
	writeJSON(w, http.StatusCreated, aliasOut(a))
	return nil
}

func (h *Handler) getAlias(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if err := checkAliasName("name", rt.alias); err != nil {
		return err
	}
	a, err := h.cfg.Functions.GetAlias(r.Context(), h.account(r.Context()), name, rt.alias)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, aliasOut(a))
	return nil
}

func (h *Handler) updateAlias(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if err := checkAliasName("name", rt.alias); err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "UpdateAlias")
	if err != nil {
		return err
	}
	var req aliasRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Description != nil && len(*req.Description) > 256 {
		return validation("description", *req.Description, false, "Member must have length less than or equal to 256")
	}
	var before string
	a, err := h.cfg.Functions.ModifyAlias(r.Context(), h.account(r.Context()), name, rt.alias, func(a *metadata.Alias) error {
		if req.RevisionId != "" && req.RevisionId != a.RevisionID {
			return lambdaerr.New(lambdaerr.PreconditionFailed,
				"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
		}
		before = a.FunctionVersion
		if req.FunctionVersion != nil {
			a.FunctionVersion = *req.FunctionVersion
		}
		if req.Description != nil {
			a.Description = *req.Description
		}
		if req.RoutingConfig != nil {
			a.AdditionalVersionWeights = nil
			if len(req.RoutingConfig.AdditionalVersionWeights) > 0 {
				a.AdditionalVersionWeights = req.RoutingConfig.AdditionalVersionWeights
			}
		}
		if err := h.checkAliasTarget(r.Context(), name, a.FunctionVersion, a.AdditionalVersionWeights); err != nil {
			return err
		}
		rev, err := h.cfg.NewID()
		if err != nil {
			return err
		}
		a.RevisionID, a.LastModified = rev, h.cfg.Clock()
		return nil
	})
	if err != nil {
		return err
	}
	if before != a.FunctionVersion {
		h.retargetProvisioned(r.Context(), a, before)
	}
	h.log.Info("alias updated", "requestId", reqID, "function", name, "alias", a.Name, "version", a.FunctionVersion)
	writeJSON(w, http.StatusOK, aliasOut(a))
	return nil
}

func (h *Handler) deleteAlias(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	if err := checkAliasName("name", rt.alias); err != nil {
		return err
	}
	h.clearProvisioned(r.Context(), name, rt.alias)
	if err := h.cfg.Functions.DeleteAlias(r.Context(), h.account(r.Context()), name, rt.alias); err != nil {
		return err
	}
	h.dropEventConfigs(r.Context(), name, rt.alias)
	// The alias's function URL goes with it, as in Lambda.
	if err := h.cfg.Functions.DeleteURLConfig(context.WithoutCancel(r.Context()), h.account(r.Context()), name, rt.alias); err != nil &&
		!errors.Is(err, metadata.ErrURLNotFound) {
		h.log.Warn("delete the function url of a deleted alias", "requestId", reqID, "function", name, "alias", rt.alias, "err", err)
	}
	h.log.Info("alias deleted", "requestId", reqID, "function", name, "alias", rt.alias)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listAliases(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.aliasFunction(r.Context(), rt)
	if err != nil {
		return err
	}
	marker, maxItems, err := pageParams(r)
	if err != nil {
		return err
	}
	version := r.URL.Query().Get("FunctionVersion")
	if version != "" {
		if err := checkVersionRef("functionVersion", version); err != nil {
			return err
		}
	}
	all, err := h.cfg.Functions.ListAliases(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	var as []*metadata.Alias
	for _, a := range all {
		if version == "" || a.FunctionVersion == version || hasKey(a.AdditionalVersionWeights, version) {
			as = append(as, a)
		}
	}
	as, next := page(as, func(a *metadata.Alias) string { return a.Name }, marker, maxItems)
	out := struct {
		Aliases    []aliasConfiguration `json:"Aliases"`
		NextMarker string               `json:"NextMarker,omitempty"`
	}{Aliases: make([]aliasConfiguration, 0, len(as)), NextMarker: next}
	for _, a := range as {
		out.Aliases = append(out.Aliases, aliasOut(a))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// pickVersion chooses the version an invocation of alias a runs.
func (h *Handler) pickVersion(a *metadata.Alias) string { return a.PickVersion(h.cfg.Rand()) }
