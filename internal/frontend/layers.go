package frontend

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/codeurl"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/layers"
)

// Layer operations (API date 2018-10-31):
//
//	GET    /2018-10-31/layers                                      ListLayers
//	GET    /2018-10-31/layers?find=LayerVersion&Arn=ARN            GetLayerVersionByArn
//	GET    /2018-10-31/layers/{L}/versions                         ListLayerVersions
//	POST   /2018-10-31/layers/{L}/versions                         PublishLayerVersion
//	GET    /2018-10-31/layers/{L}/versions/{N}                     GetLayerVersion
//	DELETE /2018-10-31/layers/{L}/versions/{N}                     DeleteLayerVersion
//	GET    /2018-10-31/layers/{L}/versions/{N}/policy              GetLayerVersionPolicy
//	POST   /2018-10-31/layers/{L}/versions/{N}/policy              AddLayerVersionPermission
//	DELETE /2018-10-31/layers/{L}/versions/{N}/policy/{StatementId} RemoveLayerVersionPermission
//
// {L} is a layer name or layer ARN. Layers belong to the account of the
// request, like functions; a layer of another account can be read (and
// referenced by functions) when its version's policy grants the account.

// LayersPrefix is the path prefix of the layer operations.
const LayersPrefix = "/2018-10-31/"

// layerDenied is Lambda's AccessDeniedException for an action on another
// account's layer that no policy allows.
func layerDenied(caller, action, resource string) error {
	return lambdaerr.New(lambdaerr.AccessDenied,
		"User: arn:aws:iam::%s:root is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action",
		caller, action, resource, action)
}

const (
	layerNamePattern    = `(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+`
	layerVersionPattern = `arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+`
)

// lambdaRuntimes is Lambda's Runtime enum, which layers' compatible
// runtimes and the CompatibleRuntime filters are checked against (a layer
// may name runtimes this host does not offer).
var lambdaRuntimes = []string{
	"nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x",
	"java8", "java8.al2", "java11", "python2.7", "python3.6", "python3.7", "python3.8", "python3.9",
	"dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet8", "nodejs4.3-edge",
	"go1.x", "ruby2.5", "ruby2.7", "provided", "provided.al2", "nodejs18.x", "python3.10", "java17", "ruby3.2",
	"ruby3.3", "ruby3.4", "python3.11", "nodejs20.x", "provided.al2023", "python3.12", "java21", "python3.13",
	"nodejs22.x", "python3.14", "nodejs24.x", "java25", "dotnet10",
}

var lambdaArchitectures = []string{"x86_64", "arm64"}

// layerRoute is one parsed layer path.
type layerRoute struct {
	layer   string // unescaped {LayerName}; "" for /layers
	version string // {VersionNumber}; "" for .../versions
	policy  bool   // .../policy[/{sid}]
	sid     string // unescaped {StatementId}
}

// parseLayerPath splits an escaped path under LayersPrefix.
func parseLayerPath(escaped string) (rt layerRoute, ok bool) {
	rest, found := strings.CutPrefix(escaped, LayersPrefix+"layers")
	if !found {
		return rt, false
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return rt, true
	}
	segs := strings.Split(rest[1:], "/")
	if rest[0] != '/' || len(segs) < 2 || len(segs) > 5 || segs[1] != "versions" {
		return rt, false
	}
	var err error
	if rt.layer, err = url.PathUnescape(segs[0]); err != nil || rt.layer == "" {
		return rt, false
	}
	if len(segs) >= 3 {
		if rt.version = segs[2]; rt.version == "" {
			return rt, false
		}
	}
	if len(segs) >= 4 {
		if segs[3] != "policy" {
			return rt, false
		}
		rt.policy = true
	}
	if len(segs) == 5 {
		if rt.sid, err = url.PathUnescape(segs[4]); err != nil || rt.sid == "" {
			return rt, false
		}
	}
	return rt, true
}

type layerHandler = func(http.ResponseWriter, *http.Request, string, layerRoute) error

// layerHandlers maps a layer route's shape to its operations by method.
func (h *Handler) layerHandlers(rt layerRoute) map[string]layerHandler {
	switch {
	case rt.layer == "":
		return map[string]layerHandler{http.MethodGet: h.listLayersOrFind}
	case rt.version == "":
		return map[string]layerHandler{http.MethodGet: h.listLayerVersions, http.MethodPost: h.publishLayerVersion}
	case !rt.policy:
		return map[string]layerHandler{http.MethodGet: h.getLayerVersion, http.MethodDelete: h.deleteLayerVersion}
	case rt.sid == "":
		return map[string]layerHandler{http.MethodGet: h.getLayerVersionPolicy, http.MethodPost: h.addLayerVersionPermission}
	}
	return map[string]layerHandler{http.MethodDelete: h.removeLayerVersionPermission}
}

// serveLayers routes one request under LayersPrefix.
func (h *Handler) serveLayers(w http.ResponseWriter, r *http.Request, reqID string) {
	rt, ok := parseLayerPath(r.URL.EscapedPath())
	if !ok {
		h.writeError(w, r, reqID, &apiError{typ: unknownOperation, status: http.StatusNotFound,
			msg: "Unknown operation " + r.Method + " " + r.URL.Path})
		return
	}
	if h.cfg.Layers == nil {
		h.writeError(w, r, reqID, unsupported("Layers"))
		return
	}
	ops := h.layerHandlers(rt)
	handle := ops[r.Method]
	if handle == nil {
		var methods []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			if ops[m] != nil {
				methods = append(methods, m)
			}
		}
		allowed := strings.Join(methods, ", ")
		w.Header().Set("Allow", allowed)
		h.writeError(w, r, reqID, &apiError{typ: methodNotAllowed, status: http.StatusMethodNotAllowed,
			msg: "Method " + r.Method + " is not allowed on " + r.URL.Path + " (allowed: " + allowed + ")"})
		return
	}
	if err := handle(w, r, reqID, rt); err != nil {
		h.writeError(w, r, reqID, err)
	}
}

// layerRef is a resolved {LayerName} label.
type layerRef struct {
	account, name string
}

// parseLayerName resolves a LayerName label: a name (the caller's
// account's) or a layer ARN (of this region; any account).
func (h *Handler) parseLayerName(r *http.Request, raw string) (layerRef, error) {
	if len(raw) > layers.MaxNameLength {
		return layerRef{}, validation("layerName", raw, false, "Member must have length less than or equal to 140")
	}
	if layers.ValidName(raw) {
		return layerRef{account: h.account(r.Context()), name: raw}, nil
	}
	a, ok := layers.ParseARN(raw)
	if !ok || a.Version != 0 {
		return layerRef{}, validation("layerName", raw, false, "Member must satisfy regular expression pattern: "+layerNamePattern)
	}
	if a.Region != h.cfg.Region {
		return layerRef{}, lambdaerr.New(lambdaerr.ResourceNotFound, "Layer %s is not in this server's region %s.", raw, h.cfg.Region)
	}
	return layerRef{account: a.Account, name: a.Name}, nil
}

// parseVersionNumber parses the VersionNumber label.
func parseVersionNumber(raw string) (int64, error) {
	n, ok := layers.ParseVersion(raw)
	if !ok {
		if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
			// Lambda answers a well-formed but impossible number (0, -1)
			// as a missing version; a malformed one as a bad request.
			return 0, nil
		}
		return 0, lambdaerr.New(lambdaerr.InvalidParameterValue, "Invalid version number %q: a positive integer is expected.", raw)
	}
	return n, nil
}

// ownLayer refuses changes to another account's layer.
func (h *Handler) ownLayer(r *http.Request, ref layerRef, op string) error {
	if caller := h.account(r.Context()); ref.account != caller {
		return layerDenied(caller, "lambda:"+op,
			layers.ARN{Partition: "aws", Region: h.cfg.Region, Account: ref.account, Name: ref.name}.String())
	}
	return nil
}

// readableVersion returns layer version n of ref when this account may
// read it: its own, or another account's that grants it.
func (h *Handler) readableVersion(r *http.Request, ref layerRef, n int64) (*layers.Version, error) {
	if n <= 0 {
		return nil, h.cfg.Layers.NotFound(ref.account, ref.name, n)
	}
	v, err := h.cfg.Layers.Get(r.Context(), ref.account, ref.name, n)
	if err != nil {
		return nil, err
	}
	caller := h.account(r.Context())
	ok, err := h.cfg.Layers.CanUse(r.Context(), v, caller)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, layerDenied(caller, "lambda:GetLayerVersion", v.ARN().String())
	}
	return v, nil
}

// Wire shapes of the layer operations, as in Lambda's API model.

type layerVersionContentOutput struct {
	Location   string `json:"Location,omitempty"`
	CodeSha256 string `json:"CodeSha256"`
	CodeSize   int64  `json:"CodeSize"`
}

type layerVersionOutput struct {
	Content                 *layerVersionContentOutput `json:"Content"`
	LayerArn                string                     `json:"LayerArn"`
	LayerVersionArn         string                     `json:"LayerVersionArn"`
	Description             string                     `json:"Description"`
	CreatedDate             string                     `json:"CreatedDate"`
	Version                 int64                      `json:"Version"`
	CompatibleRuntimes      []string                   `json:"CompatibleRuntimes,omitempty"`
	LicenseInfo             string                     `json:"LicenseInfo,omitempty"`
	CompatibleArchitectures []string                   `json:"CompatibleArchitectures,omitempty"`
}

type layerVersionsListItem struct {
	LayerVersionArn         string   `json:"LayerVersionArn"`
	Version                 int64    `json:"Version"`
	Description             string   `json:"Description"`
	CreatedDate             string   `json:"CreatedDate"`
	CompatibleRuntimes      []string `json:"CompatibleRuntimes,omitempty"`
	LicenseInfo             string   `json:"LicenseInfo,omitempty"`
	CompatibleArchitectures []string `json:"CompatibleArchitectures,omitempty"`
}

type layersListItem struct {
	LayerName             string                `json:"LayerName"`
	LayerArn              string                `json:"LayerArn"`
	LatestMatchingVersion layerVersionsListItem `json:"LatestMatchingVersion"`
}

func createdDate(v *layers.Version) string {
	return v.CreatedDate.UTC().Format(lastModifiedLayout) + "+0000"
}

func (h *Handler) layerVersionOut(r *http.Request, v *layers.Version) layerVersionOutput {
	out := layerVersionOutput{
		Content:         &layerVersionContentOutput{CodeSha256: v.CodeSha256, CodeSize: v.CodeSize},
		LayerArn:        v.LayerARN().String(),
		LayerVersionArn: v.ARN().String(),
		Description:     v.Description, CreatedDate: createdDate(v), Version: v.Number,
		CompatibleRuntimes: v.CompatibleRuntimes, LicenseInfo: v.LicenseInfo, CompatibleArchitectures: v.CompatibleArchitectures,
	}
	if h.cfg.CodeURLs != nil {
		out.Content.Location = h.cfg.CodeURLs.URL(codeurl.BaseURL(r), v.CodeDigest, v.ARN().String())
	}
	return out
}

func listItem(v *layers.Version) layerVersionsListItem {
	return layerVersionsListItem{
		LayerVersionArn: v.ARN().String(), Version: v.Number, Description: v.Description, CreatedDate: createdDate(v),
		CompatibleRuntimes: v.CompatibleRuntimes, LicenseInfo: v.LicenseInfo, CompatibleArchitectures: v.CompatibleArchitectures,
	}
}

type layerContentInput struct {
	S3Bucket        string `json:"S3Bucket"`
	S3Key           string `json:"S3Key"`
	S3ObjectVersion string `json:"S3ObjectVersion"`
	ZipFile         []byte `json:"ZipFile"`
}

type publishLayerRequest struct {
	Content                 *layerContentInput `json:"Content"`
	Description             string             `json:"Description"`
	CompatibleRuntimes      []string           `json:"CompatibleRuntimes"`
	LicenseInfo             string             `json:"LicenseInfo"`
	CompatibleArchitectures []string           `json:"CompatibleArchitectures"`
}

func enumList(path string, vals, allowed []string, max int) error {
	if len(vals) > max {
		return validation(path, "["+strings.Join(vals, ", ")+"]", false, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
	for _, v := range vals {
		if !slices.Contains(allowed, v) {
			return validation(path, "["+strings.Join(vals, ", ")+"]", false,
				"Member must satisfy constraint: [Member must satisfy enum value set: ["+strings.Join(allowed, ", ")+"]]")
		}
	}
	return nil
}

func (h *Handler) publishLayerVersion(w http.ResponseWriter, r *http.Request, reqID string, rt layerRoute) error {
	ref, err := h.parseLayerName(r, rt.layer)
	if err != nil {
		return err
	}
	if err := h.ownLayer(r, ref, "PublishLayerVersion"); err != nil {
		return err
	}
	body, err := readBody(r, maxCodeRequest, "PublishLayerVersion")
	if err != nil {
		return err
	}
	var req publishLayerRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	switch {
	case req.Content == nil:
		return validation("content", "null", false, "Member must not be null")
	case len(req.Description) > 256:
		return validation("description", req.Description, false, "Member must have length less than or equal to 256")
	case len(req.LicenseInfo) > 512:
		return validation("licenseInfo", req.LicenseInfo, false, "Member must have length less than or equal to 512")
	case req.Content.S3Bucket != "" || req.Content.S3Key != "" || req.Content.S3ObjectVersion != "":
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"Layer content in S3 (S3Bucket/S3Key) is not supported by Flint; upload the layer archive as Content.ZipFile.")
	case len(req.Content.ZipFile) == 0:
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Please provide a source for the layer content: Content.ZipFile.")
	}
	if err := enumList("compatibleRuntimes", req.CompatibleRuntimes, lambdaRuntimes, 15); err != nil {
		return err
	}
	if err := enumList("compatibleArchitectures", req.CompatibleArchitectures, lambdaArchitectures, 2); err != nil {
		return err
	}
	pkg, err := h.cfg.Code.Put(r.Context(), req.Content.ZipFile)
	if err != nil {
		return err
	}
	v := &layers.Version{
		Partition: "aws", Region: h.cfg.Region, Account: ref.account, Name: ref.name,
		Description: req.Description, LicenseInfo: req.LicenseInfo,
		CompatibleRuntimes: req.CompatibleRuntimes, CompatibleArchitectures: req.CompatibleArchitectures,
		CreatedDate: h.cfg.Clock(),
		CodeSha256:  pkg.Sha256, CodeDigest: pkg.Digest, CodeSize: pkg.Size, UnzippedSize: pkg.UnzippedSize,
	}
	if err := h.cfg.Layers.Publish(r.Context(), v); err != nil {
		return err
	}
	h.log.Info("layer version published", "requestId", reqID, "layer", v.Name, "version", v.Number, "codeSha256", v.CodeSha256)
	writeJSON(w, http.StatusCreated, h.layerVersionOut(r, v))
	return nil
}

func (h *Handler) getLayerVersion(w http.ResponseWriter, r *http.Request, _ string, rt layerRoute) error {
	ref, err := h.parseLayerName(r, rt.layer)
	if err != nil {
		return err
	}
	n, err := parseVersionNumber(rt.version)
	if err != nil {
		return err
	}
	v, err := h.readableVersion(r, ref, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.layerVersionOut(r, v))
	return nil
}

// listLayersOrFind is ListLayers, or GetLayerVersionByArn with
// ?find=LayerVersion.
func (h *Handler) listLayersOrFind(w http.ResponseWriter, r *http.Request, reqID string, rt layerRoute) error {
	q := r.URL.Query()
	if !q.Has("find") {
		return h.listLayers(w, r, reqID, rt)
	}
	if f := q.Get("find"); f != "LayerVersion" {
		return validation("find", f, false, "Member must satisfy enum value set: [LayerVersion]")
	}
	arn := q.Get("Arn")
	a, ok := layers.ParseARN(arn)
	switch {
	case len(arn) > layers.MaxNameLength:
		return validation("arn", arn, false, "Member must have length less than or equal to 140")
	case !ok || a.Version == 0:
		return validation("arn", arn, false, "Member must satisfy regular expression pattern: "+layerVersionPattern)
	case a.Region != h.cfg.Region:
		return lambdaerr.New(lambdaerr.ResourceNotFound, "Layer version %s does not exist.", arn)
	}
	v, err := h.readableVersion(r, layerRef{account: a.Account, name: a.Name}, a.Version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.layerVersionOut(r, v))
	return nil
}

// listFilters reads MaxItems (1..50, default 50) and the compatibility
// filters of ListLayers and ListLayerVersions.
func listFilters(q url.Values) (maxItems int, runtime, arch string, err error) {
	maxItems = 50
	if s := q.Get("MaxItems"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil {
			return 0, "", "", validation("maxItems", s, false, "Member must be an integer")
		}
		if err := rangeCheck("maxItems", n, 1, 50); err != nil {
			return 0, "", "", err
		}
		maxItems = n
	}
	runtime, arch = q.Get("CompatibleRuntime"), q.Get("CompatibleArchitecture")
	if runtime != "" && !slices.Contains(lambdaRuntimes, runtime) {
		return 0, "", "", validation("compatibleRuntime", runtime, false, "Member must satisfy enum value set: ["+strings.Join(lambdaRuntimes, ", ")+"]")
	}
	if arch != "" && !slices.Contains(lambdaArchitectures, arch) {
		return 0, "", "", validation("compatibleArchitecture", arch, false, "Member must satisfy enum value set: [x86_64, arm64]")
	}
	return maxItems, runtime, arch, nil
}

// ListLayers: the account's layers by name, each with its newest version
// matching the filters (layers without one are left out). The marker is
// the last layer name returned.
func (h *Handler) listLayers(w http.ResponseWriter, r *http.Request, _ string, _ layerRoute) error {
	q := r.URL.Query()
	maxItems, runtime, arch, err := listFilters(q)
	if err != nil {
		return err
	}
	marker := q.Get("Marker")
	all, err := h.cfg.Layers.All(r.Context(), h.account(r.Context()))
	if err != nil {
		return err
	}
	out := struct {
		Layers     []layersListItem `json:"Layers"`
		NextMarker string           `json:"NextMarker,omitempty"`
	}{Layers: []layersListItem{}}
	for _, v := range all { // by name, newest first
		n := len(out.Layers)
		if v.Name <= marker || (n > 0 && out.Layers[n-1].LayerName == v.Name) || !v.Compatible(runtime, arch) {
			continue
		}
		if n == maxItems {
			out.NextMarker = out.Layers[n-1].LayerName
			break
		}
		out.Layers = append(out.Layers, layersListItem{LayerName: v.Name, LayerArn: v.LayerARN().String(), LatestMatchingVersion: listItem(v)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ListLayerVersions: newest first; the marker is the last version number
// returned.
func (h *Handler) listLayerVersions(w http.ResponseWriter, r *http.Request, _ string, rt layerRoute) error {
	ref, err := h.parseLayerName(r, rt.layer)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	maxItems, runtime, arch, err := listFilters(q)
	if err != nil {
		return err
	}
	var after int64
	if m := q.Get("Marker"); m != "" {
		n, ok := layers.ParseVersion(m)
		if !ok {
			return lambdaerr.New(lambdaerr.InvalidParameterValue, "Invalid Marker %q: use the NextMarker of a previous ListLayerVersions call.", m)
		}
		after = n
	}
	out := struct {
		LayerVersions []layerVersionsListItem `json:"LayerVersions"`
		NextMarker    string                  `json:"NextMarker,omitempty"`
	}{LayerVersions: []layerVersionsListItem{}}
	vs, err := h.cfg.Layers.Versions(r.Context(), ref.account, ref.name)
	if err != nil {
		return err
	}
	if len(vs) > 0 {
		// Another account's versions are listed when the newest one is
		// readable by this account.
		if ok, err := h.cfg.Layers.CanUse(r.Context(), vs[0], h.account(r.Context())); err != nil {
			return err
		} else if !ok {
			return h.ownLayer(r, ref, "ListLayerVersions")
		}
	}
	for _, v := range vs {
		if (after > 0 && v.Number >= after) || !v.Compatible(runtime, arch) {
			continue
		}
		if len(out.LayerVersions) == maxItems {
			out.NextMarker = strconv.FormatInt(out.LayerVersions[maxItems-1].Version, 10)
			break
		}
		out.LayerVersions = append(out.LayerVersions, listItem(v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deleteLayerVersion(w http.ResponseWriter, r *http.Request, reqID string, rt layerRoute) error {
	ref, err := h.parseLayerName(r, rt.layer)
	if err != nil {
		return err
	}
	if err := h.ownLayer(r, ref, "DeleteLayerVersion"); err != nil {
		return err
	}
	n, err := parseVersionNumber(rt.version)
	if err != nil {
		return err
	}
	if err := h.cfg.Layers.Delete(r.Context(), ref.account, ref.name, n); err != nil {
		return err
	}
	h.log.Info("layer version deleted", "requestId", reqID, "layer", ref.name, "version", n)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// policyVersion resolves the layer and version of a policy operation on
// this account's layer.
func (h *Handler) policyVersion(r *http.Request, rt layerRoute, op string) (layerRef, int64, error) {
	ref, err := h.parseLayerName(r, rt.layer)
	if err != nil {
		return ref, 0, err
	}
	if err := h.ownLayer(r, ref, op); err != nil {
		return ref, 0, err
	}
	n, err := parseVersionNumber(rt.version)
	return ref, n, err
}

type addLayerPermissionRequest struct {
	StatementId    string `json:"StatementId"`
	Action         string `json:"Action"`
	Principal      string `json:"Principal"`
	OrganizationId string `json:"OrganizationId"`
}

func (h *Handler) addLayerVersionPermission(w http.ResponseWriter, r *http.Request, reqID string, rt layerRoute) error {
	ref, n, err := h.policyVersion(r, rt, "AddLayerVersionPermission")
	if err != nil {
		return err
	}
	body, err := readBody(r, maxConfigRequest, "AddLayerVersionPermission")
	if err != nil {
		return err
	}
	var req addLayerPermissionRequest
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	switch {
	case req.StatementId == "":
		return validation("statementId", "null", false, "Member must not be null")
	case !layers.ValidStatementID(req.StatementId):
		return validation("statementId", req.StatementId, false, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
	case req.Action == "":
		return validation("action", "null", false, "Member must not be null")
	case req.Action != layers.GetLayerVersionAction:
		return validation("action", req.Action, false, "Member must satisfy regular expression pattern: lambda:GetLayerVersion")
	case req.Principal == "":
		return validation("principal", "null", false, "Member must not be null")
	case !layers.ValidPrincipal(req.Principal):
		return validation("principal", req.Principal, false, `Member must satisfy regular expression pattern: \d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root`)
	case req.OrganizationId != "" && !layers.ValidOrganizationID(req.OrganizationId):
		return validation("organizationId", req.OrganizationId, false, "Member must satisfy regular expression pattern: o-[a-z0-9]{10,32}")
	}
	if n <= 0 {
		return h.cfg.Layers.NotFound(ref.account, ref.name, n)
	}
	st := layers.Statement{Sid: req.StatementId, Principal: req.Principal, OrganizationID: req.OrganizationId, Action: req.Action}
	p, err := h.cfg.Layers.AddStatement(r.Context(), ref.account, ref.name, n, st, r.URL.Query().Get("RevisionId"))
	if err != nil {
		return err
	}
	resource := layers.ARN{Partition: "aws", Region: h.cfg.Region, Account: ref.account, Name: ref.name, Version: n}.String()
	h.log.Info("layer version permission added", "requestId", reqID, "layer", ref.name, "version", n, "sid", st.Sid)
	writeJSON(w, http.StatusCreated, map[string]string{"Statement": st.StatementJSON(resource), "RevisionId": p.RevisionID})
	return nil
}

func (h *Handler) getLayerVersionPolicy(w http.ResponseWriter, r *http.Request, _ string, rt layerRoute) error {
	ref, n, err := h.policyVersion(r, rt, "GetLayerVersionPolicy")
	if err != nil {
		return err
	}
	if n <= 0 {
		return h.cfg.Layers.NotFound(ref.account, ref.name, n)
	}
	p, err := h.cfg.Layers.Policy(r.Context(), ref.account, ref.name, n)
	if err != nil {
		return err
	}
	resource := layers.ARN{Partition: "aws", Region: h.cfg.Region, Account: ref.account, Name: ref.name, Version: n}.String()
	writeJSON(w, http.StatusOK, map[string]string{"Policy": p.Document(resource), "RevisionId": p.RevisionID})
	return nil
}

func (h *Handler) removeLayerVersionPermission(w http.ResponseWriter, r *http.Request, reqID string, rt layerRoute) error {
	ref, n, err := h.policyVersion(r, rt, "RemoveLayerVersionPermission")
	if err != nil {
		return err
	}
	if !layers.ValidStatementID(rt.sid) {
		return validation("statementId", rt.sid, false, "Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
	}
	if n <= 0 {
		return h.cfg.Layers.NotFound(ref.account, ref.name, n)
	}
	if err := h.cfg.Layers.RemoveStatement(r.Context(), ref.account, ref.name, n, rt.sid, r.URL.Query().Get("RevisionId")); err != nil {
		return err
	}
	h.log.Info("layer version permission removed", "requestId", reqID, "layer", ref.name, "version", n, "sid", rt.sid)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
