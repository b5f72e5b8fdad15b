package asyncq

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Wire shapes of Lambda's 2019-09-25 event-invoke-config API.
type (
	wireDestination struct {
		Destination *string `json:"Destination,omitempty"`
	}
	wireDestinationConfig struct {
		OnSuccess *wireDestination `json:"OnSuccess,omitempty"`
		OnFailure *wireDestination `json:"OnFailure,omitempty"`
	}
	wireConfigRequest struct {
		MaximumRetryAttempts     *int                   `json:"MaximumRetryAttempts,omitempty"`
		MaximumEventAgeInSeconds *int                   `json:"MaximumEventAgeInSeconds,omitempty"`
		DestinationConfig        *wireDestinationConfig `json:"DestinationConfig,omitempty"`
	}
	wireConfig struct {
		// LastModified is epoch seconds (restJson's timestamp format).
		LastModified             float64               `json:"LastModified"`
		FunctionArn              string                `json:"FunctionArn"`
		MaximumRetryAttempts     *int                  `json:"MaximumRetryAttempts,omitempty"`
		MaximumEventAgeInSeconds *int                  `json:"MaximumEventAgeInSeconds,omitempty"`
		DestinationConfig        wireDestinationConfig `json:"DestinationConfig"`
	}
	wireConfigList struct {
		FunctionEventInvokeConfigs []wireConfig `json:"FunctionEventInvokeConfigs"`
		NextMarker                 *string      `json:"NextMarker,omitempty"`
	}
)

const maxConfigBody = 64 << 10

func toWire(fn *metadata.Function, qualifier string, c *EventInvokeConfig) wireConfig {
	w := wireConfig{
		LastModified:             float64(c.LastModified.UnixMilli()) / 1000,
		FunctionArn:              fn.ARN() + ":" + qualifier,
		MaximumRetryAttempts:     c.MaximumRetryAttempts,
		MaximumEventAgeInSeconds: c.MaximumEventAgeInSeconds,
		DestinationConfig:        wireDestinationConfig{OnSuccess: &wireDestination{}, OnFailure: &wireDestination{}},
	}
	if c.OnSuccess != "" {
		d := c.OnSuccess
		w.DestinationConfig.OnSuccess.Destination = &d
	}
	if c.OnFailure != "" {
		d := c.OnFailure
		w.DestinationConfig.OnFailure.Destination = &d
	}
	return w
}

// resolve finds the function version an event-invoke-config request is
// about: the FunctionName path value plus the Qualifier query parameter.
func (s *Service) resolve(r *http.Request) (*metadata.Function, string, error) {
	account, err := s.accountOf(r)
	if err != nil {
		return nil, "", err
	}
	ref, err := parseFunctionName(r.PathValue("name"))
	if err != nil {
		return nil, "", err
	}
	q := r.URL.Query().Get("Qualifier")
	if q != "" && !validQualifier(q) {
		return nil, "", lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid qualifier %q", q)
	}
	if ref.qualifier != "" && q != "" && ref.qualifier != q {
		return nil, "", lambdaerr.New(lambdaerr.InvalidParameterValue, "The derived qualifier from the function name does not match the specified qualifier.")
	}
	if q == "" {
		q = ref.qualifier
	}
	if q == "" {
		q = metadata.LatestVersion
	}
	if ref.account != "" && ref.account != account {
		// Another account's function by ARN: denied, as Lambda does,
		// whether or not it exists.
		return nil, "", lambdaerr.New(lambdaerr.AccessDenied,
			"User: arn:aws:iam::%s:root is not authorized to perform this operation on resource: %s because no resource-based policy allows it", account, r.PathValue("name"))
	}
	fn, err := s.cfg.Functions.Get(r.Context(), account, ref.name, q)
	if err != nil {
		return nil, "", err
	}
	return fn, q, nil
}

func (s *Service) accountOf(r *http.Request) (string, error) {
	if s.cfg.AccountOf == nil {
		return s.cfg.DefaultAccount, nil
	}
	return s.cfg.AccountOf(r)
}

func decodeConfigRequest(r *http.Request) (*wireConfigRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBody+1))
	if err != nil {
		return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "read request: %v", err)
	}
	if len(body) > maxConfigBody {
		return nil, lambdaerr.New(lambdaerr.RequestTooLarge, "request body too large")
	}
	var req wireConfigRequest
	if len(body) == 0 {
		return &req, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not parse request body into json: %v", err)
	}
	return &req, nil
}

// apply merges req into c: fields present in req replace those of c.
func (req *wireConfigRequest) apply(c *EventInvokeConfig) {
	if req.MaximumRetryAttempts != nil {
		c.MaximumRetryAttempts = req.MaximumRetryAttempts
	}
	if req.MaximumEventAgeInSeconds != nil {
		c.MaximumEventAgeInSeconds = req.MaximumEventAgeInSeconds
	}
	if dc := req.DestinationConfig; dc != nil {
		if dc.OnSuccess != nil {
			c.OnSuccess = deref(dc.OnSuccess.Destination)
		}
		if dc.OnFailure != nil {
			c.OnFailure = deref(dc.OnFailure.Destination)
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// putConfig serves PutFunctionEventInvokeConfig (replace) and, with
// merge, UpdateFunctionEventInvokeConfig (merge into the existing config;
// like Put when there is none).
func (s *Service) putConfig(merge bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fn, q, err := s.resolve(r)
		if err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		req, err := decodeConfigRequest(r)
		if err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		c := &EventInvokeConfig{}
		if merge {
			old, err := s.configs.get(r.Context(), fn.Account, fn.Name, q)
			if err != nil {
				lambdaerr.WriteHTTP(w, err)
				return
			}
			if old != nil {
				c = old
			}
		}
		req.apply(c)
		if err := c.validate(); err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		c.LastModified = s.cfg.Clock.Now().UTC()
		if err := s.configs.put(r.Context(), fn.Account, fn.Name, q, c); err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toWire(fn, q, c))
	}
}

func (s *Service) getConfig(w http.ResponseWriter, r *http.Request) {
	fn, q, err := s.resolve(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	c, err := s.configs.get(r.Context(), fn.Account, fn.Name, q)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	if c == nil {
		lambdaerr.WriteHTTP(w, errNoConfig(fn.ARN(), q))
		return
	}
	writeJSON(w, http.StatusOK, toWire(fn, q, c))
}

func (s *Service) deleteConfig(w http.ResponseWriter, r *http.Request) {
	fn, q, err := s.resolve(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	if err := s.configs.delete(r.Context(), fn.Account, fn.Name, q); err != nil {
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			err = errNoConfig(fn.ARN(), q)
		}
		lambdaerr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listConfigs serves ListFunctionEventInvokeConfigs. The marker is the
// last qualifier of the previous page.
func (s *Service) listConfigs(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("Qualifier") != "" {
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "Qualifier is not allowed here"))
		return
	}
	fn, _, err := s.resolve(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	maxItems := 50
	if v := r.URL.Query().Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue,
				"1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 50", v))
			return
		}
		maxItems = n
	}
	marker := r.URL.Query().Get("Marker")
	quals, err := s.configs.qualifiers(r.Context(), fn.Account, fn.Name)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	out := wireConfigList{FunctionEventInvokeConfigs: []wireConfig{}}
	for _, q := range quals {
		if marker != "" && q <= marker {
			continue
		}
		if len(out.FunctionEventInvokeConfigs) == maxItems {
			last := keyOrLatest(out.FunctionEventInvokeConfigs, fn)
			out.NextMarker = &last
			break
		}
		c, err := s.configs.get(r.Context(), fn.Account, fn.Name, q)
		if err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		if c == nil {
			continue // deleted meanwhile
		}
		out.FunctionEventInvokeConfigs = append(out.FunctionEventInvokeConfigs, toWire(fn, q, c))
	}
	writeJSON(w, http.StatusOK, out)
}

// keyOrLatest returns the qualifier of the last listed config.
func keyOrLatest(list []wireConfig, fn *metadata.Function) string {
	arn := list[len(list)-1].FunctionArn
	return arn[len(fn.ARN())+1:]
}
