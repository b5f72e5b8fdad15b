package frontend

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// publishRequest is PublishVersion's body.
type publishRequest struct {
	CodeSha256  string  `json:"CodeSha256"`
	Description *string `json:"Description"`
	RevisionId  string  `json:"RevisionId"`
}

// sameSnapshot reports whether a published version was made from code and
// configuration equal to latest's (Lambda publishes no new version then).
// The description is not compared: PublishVersion may set the version's own.
func sameSnapshot(latest, v *metadata.Function) bool {
	return latest.CodeSha256 == v.CodeSha256 && latest.CodeDigest == v.CodeDigest &&
		latest.Runtime == v.Runtime && latest.Handler == v.Handler && latest.Role == v.Role &&
		latest.MemorySize == v.MemorySize && latest.Timeout == v.Timeout && latest.EphemeralMB == v.EphemeralMB &&
		latest.Architecture == v.Architecture && latest.DeadLetterTargetArn == v.DeadLetterTargetArn &&
		maps.Equal(latest.Environment, v.Environment) && metadata.SameLayers(latest.Layers, v.Layers)
}

// publish publishes $LATEST of name as a new version, or returns the
// newest version when nothing changed since it was published.
func (h *Handler) publish(ctx context.Context, name string, req publishRequest, reqID string) (*metadata.Function, error) {
	v, created, err := h.cfg.Functions.PublishVersion(ctx, h.account(ctx), name, func(latest, newest *metadata.Function) (*metadata.Function, error) {
		if req.CodeSha256 != "" && req.CodeSha256 != latest.CodeSha256 {
			return nil, lambdaerr.New(lambdaerr.InvalidParameterValue,
				"CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again.", req.CodeSha256, latest.CodeSha256)
		}
		if err := checkRevision(latest, req.RevisionId); err != nil {
			return nil, err
		}
		if newest != nil && sameSnapshot(latest, newest) {
			return nil, nil
		}
		if req.Description != nil {
			latest.Description = *req.Description
		}
		if err := h.stamp(latest, CodePackage{}); err != nil {
			return nil, err
		}
		// A version is a snapshot of code that is stored; it needs no
		// preparation of its own (workers unpack code on demand).
		markReady(latest)
		return latest, nil
	})
	if err != nil {
		return nil, err
	}
	if created {
		h.log.Info("version published", "requestId", reqID, "function", name, "version", v.Version, "codeSha256", v.CodeSha256)
	}
	return v, nil
}

func (h *Handler) publishVersion(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "PublishVersion")
	if err != nil {
		return err
	}
	var req publishRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Description != nil && len(*req.Description) > 256 {
		return validation("description", *req.Description, false, "Member must have length less than or equal to 256")
	}
	v, err := h.publish(r.Context(), name, req, reqID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, h.configuration(v))
	return nil
}

// pageParams reads Marker and MaxItems (1..10000, default 50).
func pageParams(r *http.Request) (marker string, maxItems int, err error) {
	q := r.URL.Query()
	maxItems = 50
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return "", 0, validation("maxItems", s, false, "Member must be an integer")
		}
		if err := rangeCheck("maxItems", n, 1, 10000); err != nil {
			return "", 0, err
		}
		maxItems = n
	}
	return q.Get("Marker"), maxItems, nil
}

// page returns the items after marker (an item's key; "" for the start)
// and the marker of the next page ("" on the last).
func page[T any](items []T, key func(T) string, marker string, maxItems int) ([]T, string) {
	start := 0
	if marker != "" {
		start = len(items)
		for i, it := range items {
			if key(it) == marker {
				start = i + 1
				break
			}
		}
	}
	items = items[start:]
	if len(items) > maxItems {
		return items[:maxItems], key(items[maxItems-1])
	}
	return items, ""
}

func (h *Handler) listVersions(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	marker, maxItems, err := pageParams(r)
	if err != nil {
		return err
	}
	vs, err := h.cfg.Functions.ListVersions(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	vs, next := page(vs, func(f *metadata.Function) string { return f.Version }, marker, maxItems)
	out := struct {
		Versions   []functionConfiguration `json:"Versions"`
		NextMarker string                  `json:"NextMarker,omitempty"`
	}{Versions: make([]functionConfiguration, 0, len(vs)), NextMarker: next}
	for _, v := range vs {
		c := h.configuration(v)
		c.FunctionArn = v.QualifiedARN() // Lambda lists $LATEST qualified too
		out.Versions = append(out.Versions, c)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteVersion is DeleteFunction with a version qualifier: that version
// only, unless an alias points to it.
func (h *Handler) deleteVersion(w http.ResponseWriter, r *http.Request, reqID, name, version string) error {
	if !metadata.IsVersionNumber(version) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Deletion of aliases is not supported through DeleteFunction; use DeleteAlias. Qualifier: %s", version)
	}
	if _, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, version); err != nil {
		return err
	}
	aliases, err := h.cfg.Functions.ListAliases(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	var users []string
	for _, a := range aliases {
		if a.FunctionVersion == version || hasKey(a.AdditionalVersionWeights, version) {
			users = append(users, a.Name)
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		return lambdaerr.New(lambdaerr.ResourceConflict,
			"Unable to delete version because the following aliases reference it: [%s]", strings.Join(users, ", "))
	}
	h.clearProvisioned(r.Context(), name, version)
	if err := h.cfg.Functions.DeleteVersion(r.Context(), h.account(r.Context()), name, version); err != nil {
		return err
	}
	h.retireVersion(r.Context(), name, version)
	h.dropEventConfigs(r.Context(), name, version)
	h.log.Info("version deleted", "requestId", reqID, "function", name, "version", version)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
