package frontend

import (
	"context"
	"strings"

	"github.com/flintdev/flint/internal/codestore"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/layers"
	"github.com/flintdev/flint/internal/metadata"
)

// CodeLinker makes the download links of code packages
// (*codeurl.Signer): GetFunction's Code.Location and GetLayerVersion's
// Content.Location.
type CodeLinker interface {
	// URL links to the package with the digest, for resource (a function
	// or layer version ARN); base is the scheme and host the client used.
	URL(base, digest, resource string) string
}

// codeMeasurer is an optional ability of a CodeStore: the unzipped size
// of a stored package, for functions stored before Flint recorded it.
type codeMeasurer interface {
	UnzippedSize(ctx context.Context, digest string) (int64, error)
}

const functionLayersPattern = `(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)`

// resolveLayers checks a function's Layers member as Lambda does and
// returns what the function stores: at most metadata.MaxLayers layer
// version ARNs, each of an existing version this account may use, no
// layer twice.
func (h *Handler) resolveLayers(ctx context.Context, arns []string) ([]metadata.LayerRef, error) {
	if len(arns) == 0 {
		return nil, nil
	}
	if h.cfg.Layers == nil {
		return nil, unsupported("Layers")
	}
	for _, a := range arns {
		p, ok := layers.ParseARN(a)
		if len(a) > layers.MaxNameLength || (!ok || p.Version == 0) && !strings.Contains(a, ":awslayer:") {
			return nil, validation("layers", "["+strings.Join(arns, ", ")+"]", false,
				"Member must satisfy constraint: [Member must have length less than or equal to 140, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: "+functionLayersPattern+"]")
		}
	}
	if len(arns) > metadata.MaxLayers {
		return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Cannot reference more than %d layers.", metadata.MaxLayers)
	}
	refs := make([]metadata.LayerRef, 0, len(arns))
	seen := map[string]string{} // layer ARN → the version ARN naming it
	for _, a := range arns {
		p, ok := layers.ParseARN(a)
		if !ok || p.Region != h.cfg.Region {
			return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Layer version %s does not exist.", a)
		}
		layer := p.LayerARN().String()
		if prev, dup := seen[layer]; dup {
			return nil, lambdaerr.New(lambdaerr.InvalidParameterValue,
				"Two different versions of the same layer are not allowed to be referenced in the same function. %s and %s", prev, a)
		}
		seen[layer] = a
		v, err := h.cfg.Layers.Get(ctx, p.Account, p.Name, p.Version)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Layer version %s does not exist.", a)
		}
		if err != nil {
			return nil, err
		}
		caller := h.account(ctx)
		allowed, err := h.cfg.Layers.CanUse(ctx, v, caller)
		if err != nil {
			return nil, err
		}
		if !allowed {
			return nil, layerDenied(caller, "lambda:GetLayerVersion", a)
		}
		refs = append(refs, metadata.LayerRef{Arn: v.ARN().String(), CodeSize: v.CodeSize, CodeDigest: v.CodeDigest, UnzippedSize: v.UnzippedSize})
	}
	return refs, nil
}

// maxUnzipped is the limit on a function's code and layers together.
func (h *Handler) maxUnzipped() int64 {
	if h.cfg.MaxUnzippedBytes > 0 {
		return h.cfg.MaxUnzippedBytes
	}
	return codestore.DefaultMaxUnzippedBytes
}

// checkCombinedSize applies Lambda's limit on the unzipped size of a
// function's code and layers together.
func (h *Handler) checkCombinedSize(ctx context.Context, f *metadata.Function) error {
	if len(f.Layers) == 0 {
		return nil
	}
	total := f.CodeUnzippedSize
	if total == 0 && f.CodeDigest != "" {
		// Stored before Flint recorded unzipped sizes: measure it now.
		if m, ok := h.cfg.Code.(codeMeasurer); ok {
			n, err := m.UnzippedSize(ctx, f.CodeDigest)
			if err != nil {
				return err
			}
			total, f.CodeUnzippedSize = n, n
		}
	}
	for _, l := range f.Layers {
		total += l.UnzippedSize
	}
	if limit := h.maxUnzipped(); total > limit {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Function code combined with layers exceeds the maximum allowed size of %d bytes. The actual size is %d bytes.", limit, total)
	}
	return nil
}

// layersOut is FunctionConfiguration.Layers.
type layerOut struct {
	Arn      string `json:"Arn"`
	CodeSize int64  `json:"CodeSize"`
}

func layersOut(refs []metadata.LayerRef) []layerOut {
	if len(refs) == 0 {
		return nil
	}
	out := make([]layerOut, len(refs))
	for i, l := range refs {
		out[i] = layerOut{Arn: l.Arn, CodeSize: l.CodeSize}
	}
	return out
}
