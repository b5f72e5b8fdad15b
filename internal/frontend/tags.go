package frontend

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Lambda's limits on a function's tags.
const (
	maxTags        = 50
	maxTagKeyLen   = 128
	maxTagValueLen = 256
)

// checkTags checks tags being added against Lambda's limits; existing is
// the number of tags the function keeps besides them.
func checkTags(tags map[string]string, existing int) error {
	for k, v := range tags {
		switch {
		case k == "" || len(k) > maxTagKeyLen:
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"Tag key %q is invalid: tag keys must be between 1 and %d characters long.", k, maxTagKeyLen)
		case len(v) > maxTagValueLen:
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"The value of tag %q is invalid: tag values must be at most %d characters long.", k, maxTagValueLen)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return lambdaerr.New(lambdaerr.InvalidParameterValue,
				"Tag key %q is invalid: the aws: prefix is reserved for use by AWS.", k)
		}
	}
	if existing+len(tags) > maxTags {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Number of tags exceeds resource tag limit: a function can have at most %d tags.", maxTags)
	}
	return nil
}

// tagTarget resolves the {ARN} of a tags route to a function name. Tags
// belong to functions: a qualified ARN is refused.
func (h *Handler) tagTarget(ctx context.Context, rt route) (string, error) {
	if !strings.HasPrefix(rt.function, "arn:") {
		return "", validation("resource", rt.function, false,
			"Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso(b?)))?-[a-z]+-\\d{1}:\\d{12}:function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
	}
	ref, err := h.parseFunctionName(ctx, rt.function)
	if err != nil {
		return "", err
	}
	if ref.qualifier != "" {
		return "", lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Tags are kept per function: %s names a version or alias; use the unqualified function ARN.", rt.function)
	}
	return ref.name, nil
}

type tagsBody struct {
	Tags map[string]string `json:"Tags"`
}

// listTags serves ListTags.
func (h *Handler) listTags(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	name, err := h.tagTarget(r.Context(), rt)
	if err != nil {
		return err
	}
	tags, err := h.cfg.Functions.Tags(r.Context(), h.account(r.Context()), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tagsBody{Tags: tags})
	return nil
}

// tagResource serves TagResource: the given tags are added, replacing the
// values of keys the function already has.
func (h *Handler) tagResource(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.tagTarget(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "TagResource")
	if err != nil {
		return err
	}
	var req tagsBody
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if req.Tags == nil {
		return validation("tags", "null", false, "Member must not be null")
	}
	if _, err := h.cfg.Functions.ModifyTags(r.Context(), h.account(r.Context()), name, func(tags map[string]string) error {
		existing := 0
		for k := range tags {
			if _, replaced := req.Tags[k]; !replaced {
				existing++
			}
		}
		if err := checkTags(req.Tags, existing); err != nil {
			return err
		}
		for k, v := range req.Tags {
			tags[k] = v
		}
		return nil
	}); err != nil {
		return err
	}
	h.log.Info("function tagged", "requestId", reqID, "function", name, "tags", len(req.Tags))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// untagResource serves UntagResource (?tagKeys=a&tagKeys=b); removing a
// key the function does not have is not an error.
func (h *Handler) untagResource(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.tagTarget(r.Context(), rt)
	if err != nil {
		return err
	}
	keys, ok := r.URL.Query()["tagKeys"]
	if !ok {
		return validation("tagKeys", "null", false, "Member must not be null")
	}
	if len(keys) > maxTags {
		return validation("tagKeys", "", true, "Member must have length less than or equal to "+strconv.Itoa(maxTags))
	}
	if _, err := h.cfg.Functions.ModifyTags(r.Context(), h.account(r.Context()), name, func(tags map[string]string) error {
		for _, k := range keys {
			delete(tags, k)
		}
		return nil
	}); err != nil {
		return err
	}
	h.log.Info("function untagged", "requestId", reqID, "function", name, "keys", len(keys))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseTagsPath parses /2017-03-31/tags/{ARN} (the ARN escaped or not).
func parseTagsPath(escaped string) (route, bool) {
	rest, ok := strings.CutPrefix(escaped, "/2017-03-31/tags/")
	if !ok {
		return route{}, false
	}
	arn, err := url.PathUnescape(strings.TrimSuffix(rest, "/"))
	if err != nil || arn == "" || strings.Contains(arn, "/") {
		return route{}, false
	}
	return route{function: arn, sub: "tags"}, true
}
