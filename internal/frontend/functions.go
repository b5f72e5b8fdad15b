package frontend

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/codeurl"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// functionCode is Lambda's FunctionCode (CreateFunction's Code member).
type functionCode struct {
	ZipFile         []byte `json:"ZipFile"` // base64 in JSON
	S3Bucket        string `json:"S3Bucket"`
	S3Key           string `json:"S3Key"`
	S3ObjectVersion string `json:"S3ObjectVersion"`
	ImageUri        string `json:"ImageUri"`
}

type createRequest struct {
	configInput
	FunctionName         string            `json:"FunctionName"`
	Code                 *functionCode     `json:"Code"`
	Publish              bool              `json:"Publish"`
	PackageType          string            `json:"PackageType"`
	Architectures        []string          `json:"Architectures"`
	Tags                 map[string]string `json:"Tags"`
	CodeSigningConfigArn string            `json:"CodeSigningConfigArn"`
}

// checkCodeSource refuses code sources other than an inline zip.
func checkCodeSource(zip []byte, s3Bucket, s3Key, imageURI string) error {
	switch {
	case s3Bucket != "" || s3Key != "":
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Code in S3 (S3Bucket/S3Key) is not supported by Flint; upload the deployment package as ZipFile.")
	case imageURI != "":
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Container images (ImageUri) are not supported by Flint; upload a .zip deployment package as ZipFile.")
	case len(zip) == 0:
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Please provide a source for function code.")
	}
	return nil
}

func (h *Handler) createFunction(w http.ResponseWriter, r *http.Request, reqID string, _ route) error {
	body, err := readBody(r, maxCodeRequest, "CreateFunction")
	if err != nil {
		return err
	}
	var req createRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	ref, err := h.parseFunctionName(r.Context(), req.FunctionName)
	var foreign *foreignARN
	if errors.As(err, &foreign) && foreign.owner == "" {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Cannot create %s: this server holds functions of region %s only.", foreign.arn, h.cfg.Region)
	}
	if err != nil {
		return err
	}
	if ref.qualifier != "" {
		return validation("functionName", req.FunctionName, false, "Member must satisfy regular expression pattern: "+createNamePattern)
	}
	switch {
	case req.PackageType != "" && req.PackageType != "Zip":
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "PackageType %s is not supported by Flint; only Zip is.", req.PackageType)
	case req.CodeSigningConfigArn != "":
		return unsupported("CodeSigningConfigArn")
	}
	if err := checkArchitectures(req.Architectures); err != nil {
		return err
	}
	if req.Code == nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Please provide a source for function code.")
	}
	if err := checkCodeSource(req.Code.ZipFile, req.Code.S3Bucket, req.Code.S3Key, req.Code.ImageUri); err != nil {
		return err
	}
	if req.Role == nil {
		return validation("role", "null", false, "Member must not be null")
	}
	if err := checkTags(req.Tags, 0); err != nil {
		return err
	}
	f := &metadata.Function{
		Account: h.account(r.Context()), Region: h.cfg.Region, Name: ref.name, Version: metadata.LatestVersion,
		MemorySize: 128, Timeout: 3, EphemeralMB: 512, Architecture: "x86_64",
	}
	if err := h.applyConfig(f, &req.configInput); err != nil {
		return err
	}
	if f.Layers, err = h.resolveLayers(r.Context(), req.Layers); err != nil {
		return err
	}
	if f.Runtime == "" {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Runtime and Handler are mandatory parameters for functions created with deployment packages.")
	}
	if f.Handler == "" && !isProvidedRuntime(f.Runtime) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Runtime and Handler are mandatory parameters for functions created with deployment packages.")
	}
	// Refuse early, before storing a package nobody will use; Create below
	// is still what guarantees uniqueness.
	if _, err := h.cfg.Functions.Get(r.Context(), f.Account, f.Name, metadata.LatestVersion); err == nil {
		return lambdaerr.New(lambdaerr.ResourceConflict, "Function already exist: %s", f.Name)
	}
	pkg, err := h.cfg.Code.Put(r.Context(), req.Code.ZipFile)
	if err != nil {
		return err
	}
	if err := h.stamp(f, pkg); err != nil {
		return err
	}
	if err := h.checkCombinedSize(r.Context(), f); err != nil {
		return err
	}
	markCreating(f)
	// Configs left by an earlier function of this name (a deletion that
	// could not remove them) must not apply to this one.
	h.dropEventConfigs(r.Context(), f.Name, "")
	if err := h.cfg.Functions.Create(r.Context(), f); err != nil {
		return err
	}
	// Tags replace any a deletion left behind under this name.
	if _, err := h.cfg.Functions.ModifyTags(r.Context(), f.Account, f.Name, func(tags map[string]string) error {
		clear(tags)
		for k, v := range req.Tags {
			tags[k] = v
		}
		return nil
	}); err != nil {
		return err
	}
	h.log.Info("function created", "requestId", reqID, "function", f.Name, "runtime", f.Runtime, "codeSha256", f.CodeSha256)
	h.prepareLater(f)
	if req.Publish {
		v, err := h.publish(r.Context(), f.Name, publishRequest{}, reqID)
		if err != nil {
			return err
		}
		f = v
	}
	writeJSON(w, http.StatusCreated, h.configuration(f))
	return nil
}

func isProvidedRuntime(rt string) bool {
	return rt == "provided" || len(rt) > 9 && rt[:9] == "provided."
}

// stamp records a new revision of f: its code package (when pkg is not
// the zero value), a fresh RevisionId and LastModified. The state is the
// caller's (state.go).
func (h *Handler) stamp(f *metadata.Function, pkg CodePackage) error {
	if pkg != (CodePackage{}) {
		f.CodeDigest, f.CodeSha256, f.CodeSize = pkg.Digest, pkg.Sha256, pkg.Size
		f.CodeUnzippedSize = pkg.UnzippedSize
	}
	rev, err := h.cfg.NewID()
	if err != nil {
		return err
	}
	f.RevisionID = rev
	f.LastModified = h.cfg.Clock()
	return nil
}

// lookup resolves a FunctionName label and Qualifier query to a stored
// function version; alias is set when the qualifier named an alias (f is
// then its primary version).
func (h *Handler) lookup(r *http.Request, rt route) (f *metadata.Function, alias *metadata.Alias, err error) {
	ref, err := h.parseFunctionName(r.Context(), rt.function)
	if err != nil {
		return nil, nil, err
	}
	q, err := h.resolveQualifier(ref, queryValue(r, "Qualifier"))
	if err != nil {
		return nil, nil, err
	}
	return h.resolve(r.Context(), ref.name, q)
}

// qualifiedConfiguration is f's configuration as read through a
// qualifier: an alias's ARN when read through one.
func (h *Handler) qualifiedConfiguration(f *metadata.Function, alias *metadata.Alias) functionConfiguration {
	c := h.configuration(f)
	if alias != nil {
		c.FunctionArn = alias.ARN()
	}
	return c
}

type reservedConcurrency struct {
	ReservedConcurrentExecutions *int `json:"ReservedConcurrentExecutions,omitempty"`
}

func (h *Handler) getFunction(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	f, alias, err := h.lookup(r, rt)
	if err != nil {
		return err
	}
	code := map[string]string{"RepositoryType": "S3"}
	if h.cfg.CodeURLs != nil && f.CodeDigest != "" {
		code["Location"] = h.cfg.CodeURLs.URL(codeurl.BaseURL(r), f.CodeDigest, h.qualifiedConfiguration(f, alias).FunctionArn)
	}
	out := map[string]any{
		"Configuration": h.qualifiedConfiguration(f, alias),
		"Code":          code,
	}
	n, ok, err := h.cfg.Functions.GetReservedConcurrency(r.Context(), h.account(r.Context()), f.Name)
	if err != nil {
		return err
	}
	if ok {
		out["Concurrency"] = reservedConcurrency{ReservedConcurrentExecutions: &n}
	}
	tags, err := h.cfg.Functions.Tags(r.Context(), f.Account, f.Name)
	if err != nil {
		return err
	}
	if len(tags) > 0 {
		out["Tags"] = tags
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getFunctionConfiguration(w http.ResponseWriter, r *http.Request, _ string, rt route) error {
	f, alias, err := h.lookup(r, rt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.qualifiedConfiguration(f, alias))
	return nil
}

func (h *Handler) listFunctions(w http.ResponseWriter, r *http.Request, _ string, _ route) error {
	q := r.URL.Query()
	maxItems := 50
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return validation("maxItems", s, false, "Member must be an integer")
		}
		if err := rangeCheck("maxItems", n, 1, 10000); err != nil {
			return err
		}
		maxItems = n
	}
	if v := q.Get("FunctionVersion"); v != "" && v != "ALL" {
		return validation("functionVersion", v, false, "Member must satisfy enum value set: [ALL]")
	}
	fs, next, err := h.cfg.Functions.List(r.Context(), h.account(r.Context()), q.Get("Marker"), maxItems)
	if err != nil {
		return err
	}
	out := struct {
		Functions  []functionConfiguration `json:"Functions"`
		NextMarker string                  `json:"NextMarker,omitempty"`
	}{Functions: make([]functionConfiguration, 0, len(fs)), NextMarker: next}
	for _, f := range fs {
		out.Functions = append(out.Functions, h.configuration(f))
		if q.Get("FunctionVersion") != "ALL" {
			continue
		}
		// Every version of the function follows its $LATEST (paging stays
		// by function name).
		vs, err := h.cfg.Functions.ListVersions(r.Context(), h.account(r.Context()), f.Name)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, v := range vs[1:] {
			out.Functions = append(out.Functions, h.configuration(v))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkRevision is Lambda's RevisionId precondition.
func checkRevision(f *metadata.Function, want string) error {
	if want != "" && want != f.RevisionID {
		return lambdaerr.New(lambdaerr.PreconditionFailed,
			"The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
	}
	return nil
}

type updateCodeRequest struct {
	ZipFile         []byte   `json:"ZipFile"`
	S3Bucket        string   `json:"S3Bucket"`
	S3Key           string   `json:"S3Key"`
	S3ObjectVersion string   `json:"S3ObjectVersion"`
	ImageUri        string   `json:"ImageUri"`
	Publish         bool     `json:"Publish"`
	DryRun          bool     `json:"DryRun"`
	RevisionId      string   `json:"RevisionId"`
	Architectures   []string `json:"Architectures"`
}

// unqualified resolves the FunctionName of an operation on $LATEST only.
func (h *Handler) unqualified(ctx context.Context, rt route) (string, error) {
	ref, err := h.parseFunctionName(ctx, rt.function)
	if err != nil {
		return "", err
	}
	if ref.qualifier != "" && ref.qualifier != metadata.LatestVersion {
		return "", lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Only $LATEST can be changed; %s names a qualifier.", rt.function)
	}
	return ref.name, nil
}

func (h *Handler) updateFunctionCode(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxCodeRequest, "UpdateFunctionCode")
	if err != nil {
		return err
	}
	var req updateCodeRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	if err := checkArchitectures(req.Architectures); err != nil {
		return err
	}
	if err := checkCodeSource(req.ZipFile, req.S3Bucket, req.S3Key, req.ImageUri); err != nil {
		return err
	}
	cur, err := h.cfg.Functions.Get(r.Context(), h.account(r.Context()), name, metadata.LatestVersion)
	if err != nil {
		return err
	}
	if err := checkRevision(cur, req.RevisionId); err != nil {
		return err
	}
	pkg, err := h.cfg.Code.Put(r.Context(), req.ZipFile)
	if err != nil {
		return err
	}
	if req.DryRun {
		if err := h.stamp(cur, pkg); err != nil {
			return err
		}
		if err := h.checkCombinedSize(r.Context(), cur); err != nil {
			return err
		}
		markUpdating(cur)
		writeJSON(w, http.StatusOK, h.configuration(cur))
		return nil
	}
	f, err := h.cfg.Functions.Modify(r.Context(), h.account(r.Context()), name, metadata.LatestVersion, func(f *metadata.Function) error {
		if err := checkRevision(f, req.RevisionId); err != nil {
			return err
		}
		if err := h.stamp(f, pkg); err != nil {
			return err
		}
		if err := h.checkCombinedSize(r.Context(), f); err != nil {
			return err
		}
		markUpdating(f)
		return nil
	})
	if err != nil {
		return err
	}
	h.prepareLater(f)
	h.retireVersion(r.Context(), name, metadata.LatestVersion)
	h.log.Info("function code updated", "requestId", reqID, "function", name, "codeSha256", f.CodeSha256)
	if req.Publish {
		v, err := h.publish(r.Context(), name, publishRequest{}, reqID)
		if err != nil {
			return err
		}
		f = v
	}
	writeJSON(w, http.StatusOK, h.configuration(f))
	return nil
}

type updateConfigRequest struct {
	configInput
	RevisionId string `json:"RevisionId"`
}

func (h *Handler) updateFunctionConfiguration(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	name, err := h.unqualified(r.Context(), rt)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "UpdateFunctionConfiguration")
	if err != nil {
		return err
	}
	var req updateConfigRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	refs, err := h.resolveLayers(r.Context(), req.Layers)
	if err != nil {
		return err
	}
	f, err := h.cfg.Functions.Modify(r.Context(), h.account(r.Context()), name, metadata.LatestVersion, func(f *metadata.Function) error {
		if err := checkRevision(f, req.RevisionId); err != nil {
			return err
		}
		if err := h.applyConfig(f, &req.configInput); err != nil {
			return err
		}
		if req.Layers != nil {
			f.Layers = refs
			if err := h.checkCombinedSize(r.Context(), f); err != nil {
				return err
			}
		}
		if err := h.stamp(f, CodePackage{}); err != nil {
			return err
		}
		markUpdating(f)
		return nil
	})
	if err != nil {
		return err
	}
	h.prepareLater(f)
	h.retireVersion(r.Context(), name, metadata.LatestVersion)
	h.log.Info("function configuration updated", "requestId", reqID, "function", name)
	writeJSON(w, http.StatusOK, h.configuration(f))
	return nil
}

func (h *Handler) deleteFunction(w http.ResponseWriter, r *http.Request, reqID string, rt route) error {
	ref, err := h.parseFunctionName(r.Context(), rt.function)
	if err != nil {
		return err
	}
	q := ref.qualifier
	if qq := r.URL.Query().Get("Qualifier"); qq != "" {
		q = qq
	}
	switch {
	case q == "":
	case q == metadata.LatestVersion:
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "$LATEST version cannot be deleted without deleting the function.")
	default:
		if _, err := h.resolveQualifier(functionRef{name: ref.name}, q); err != nil {
			return err
		}
		return h.deleteVersion(w, r, reqID, ref.name, q)
	}
	// Stop provisioning before the configs disappear with the function.
	h.clearProvisioned(r.Context(), ref.name, "")
	if err := h.cfg.Functions.Delete(r.Context(), h.account(r.Context()), ref.name); err != nil {
		return err
	}
	if h.cfg.Concurrency != nil {
		h.cfg.Concurrency.ClearReservedConcurrency(h.account(r.Context()), ref.name)
	}
	h.retire(r.Context(), ref.name)
	h.dropEventConfigs(r.Context(), ref.name, "")
	if h.cfg.Logs != nil {
		if err := h.cfg.Logs.Purge(context.WithoutCancel(r.Context()), h.account(r.Context()), ref.name); err != nil {
			h.log.Warn("purge logs of deleted function", "requestId", reqID, "function", ref.name, "err", err)
		}
	}
	h.log.Info("function deleted", "requestId", reqID, "function", ref.name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// retireVersion drops the sandboxes of one changed or deleted version (all
// the function's sandboxes when the Invoker cannot retire one version). It
// runs even when the client has gone: the change is already stored.
func (h *Handler) retireVersion(ctx context.Context, name, version string) {
	vr, ok := h.cfg.Invoker.(VersionRetirer)
	if !ok {
		h.retire(ctx, name)
		return
	}
	if err := vr.RetireVersion(context.WithoutCancel(ctx), h.account(ctx), name, version); err != nil {
		h.log.Warn("retire sandboxes", "function", name, "version", version, "err", err)
	}
}

// retire drops the sandboxes of a changed or deleted function. It runs even
// when the client has gone: the change is already stored.
func (h *Handler) retire(ctx context.Context, name string) {
	if err := h.cfg.Invoker.Retire(context.WithoutCancel(ctx), h.account(ctx), name); err != nil {
		h.log.Warn("retire sandboxes", "function", name, "err", err)
	}
}
