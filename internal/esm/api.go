package esm

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/sqs"
)

// Path is the collection of Lambda's event source mapping API; a mapping
// is Path + "/" + UUID.
const Path = "/2015-03-31/event-source-mappings"

// Handler serves CreateEventSourceMapping, GetEventSourceMapping,
// ListEventSourceMappings, UpdateEventSourceMapping and
// DeleteEventSourceMapping under Path. The frontend routes Path to it.
func (s *Service) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", newUUID())
	rest := strings.TrimPrefix(r.URL.Path, Path)
	rest = strings.Trim(rest, "/")
	account := auth.AccountOf(r.Context(), s.cfg.DefaultAccount)
	var status int
	var out any
	var err error
	switch {
	case rest == "" && r.Method == http.MethodPost:
		status, out, err = s.create(r, account)
	case rest == "" && r.Method == http.MethodGet:
		status, out, err = s.listAPI(r, account)
	case rest != "" && !strings.Contains(rest, "/") && r.Method == http.MethodGet:
		var m *Mapping
		m, _, err = s.get(r.Context(), account, rest)
		if m != nil {
			status, out = http.StatusOK, m.public()
		}
	case rest != "" && !strings.Contains(rest, "/") && r.Method == http.MethodPut:
		status, out, err = s.update(r, account, rest)
	case rest != "" && !strings.Contains(rest, "/") && r.Method == http.MethodDelete:
		status, out, err = s.delete(r, account, rest)
	default:
		b, _ := json.Marshal(map[string]string{"Type": "User", "message": "Unknown operation " + r.Method + " " + r.URL.Path})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", "UnknownOperationException")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(b)
		return
	}
	if err != nil {
		var le *lambdaerr.Error
		if !errors.As(err, &le) {
			s.log.Error("event source mapping request", "method", r.Method, "path", r.URL.Path, "err", err)
			err = lambdaerr.New(lambdaerr.Service, "The service could not complete the request; try again.")
		}
		lambdaerr.WriteHTTP(w, err)
		return
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func notFound(uuid string) error {
	return lambdaerr.New(lambdaerr.ResourceNotFound, "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: %s)", uuid)
}

func readRequest(r *http.Request) (*request, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not read the request body.")
	}
	var req request
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, lambdaerr.New(lambdaerr.InvalidRequestContent, "Could not parse request body into json: the body is not a valid event source mapping request.")
		}
	}
	return &req, nil
}

var functionName = regexp.MustCompile(`^(?:arn:aws[a-zA-Z-]*:lambda:([a-z]{2}(?:-gov)?-[a-z]+-\d):)?(?:(\d{12}):)?(?:function:)?([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$`)

// target resolves a FunctionName to a function of account.
func (s *Service) target(r *http.Request, account, name string, m *Mapping) error {
	g := functionName.FindStringSubmatch(name)
	if g == nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?", name)
	}
	if (g[1] != "" && g[1] != s.cfg.Region) || (g[2] != "" && g[2] != account) {
		return lambdaerr.New(lambdaerr.AccessDenied, "The function %s is not in your account and region.", name)
	}
	fn, _, err := s.cfg.Functions.Resolve(r.Context(), account, g[3], g[4])
	if err != nil {
		return err
	}
	m.Function, m.Qualifier = g[3], g[4]
	m.FunctionArn = fn.ARN()
	if g[4] != "" {
		m.FunctionArn += ":" + g[4]
	}
	if q, err := s.queue(r, account, m.EventSourceArn); err != nil {
		return err
	} else if q.VisibilityTimeout < fn.Timeout {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Queue visibility timeout: %d seconds is less than Function timeout: %d seconds", q.VisibilityTimeout, fn.Timeout)
	}
	return nil
}

// queue checks an event source ARN: a queue of the caller's account.
func (s *Service) queue(r *http.Request, account, arn string) (*sqs.Queue, error) {
	region, acct, name, ok := sqs.ParseARN(arn)
	if !ok {
		return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Unrecognized event source %s: Flint maps SQS queues (arn:aws:sqs:REGION:ACCOUNT:NAME).", arn)
	}
	if region != s.cfg.Region || acct != account {
		return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "The queue %s is not in your account and this server's region.", arn)
	}
	q, err := s.cfg.Queues.GetQueue(r.Context(), acct, name)
	if err != nil {
		if sqs.AsError(err).Code == sqs.QueueDoesNotExist {
			return nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist.")
		}
		return nil, err
	}
	return q, nil
}

func (s *Service) create(r *http.Request, account string) (int, any, error) {
	req, err := readRequest(r)
	if err != nil {
		return 0, nil, err
	}
	if req.EventSourceArn == nil || *req.EventSourceArn == "" {
		return 0, nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Unrecognized event source, must be kafka or specify an EventSourceArn.")
	}
	if req.FunctionName == nil || *req.FunctionName == "" {
		return 0, nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value null at 'functionName' failed to satisfy constraint: Member must not be null")
	}
	m := &Mapping{UUID: newUUID(), Account: account, EventSourceArn: *req.EventSourceArn, BatchSize: 10, Enabled: true,
		State: Creating, StateTransitionReason: "USER_INITIATED", LastModified: now()}
	m.EventSourceMappingArn = "arn:aws:lambda:" + s.cfg.Region + ":" + account + ":event-source-mapping:" + m.UUID
	if err := req.apply(m); err != nil {
		return 0, nil, err
	}
	if err := s.target(r, account, *req.FunctionName, m); err != nil {
		return 0, nil, err
	}
	existing, err := s.list(r.Context(), account)
	if err != nil {
		return 0, nil, err
	}
	for _, o := range existing {
		if o.EventSourceArn == m.EventSourceArn && o.FunctionArn == m.FunctionArn {
			return 0, nil, lambdaerr.New(lambdaerr.ResourceConflict, "An event source mapping with SQS arn (\" %s \") and function (\" %s \") already exists. Please update or delete the existing mapping with UUID %s", m.EventSourceArn, m.Function, o.UUID)
		}
	}
	b, _ := json.Marshal(m)
	if _, err := s.kv.Create(r.Context(), mkey(account, m.UUID), b); err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, m.public(), nil
}

func now() float64 { return float64(time.Now().UnixMilli()) / 1000 }

// transitional reports whether state is one the manager has yet to end.
func transitional(state string) bool {
	switch state {
	case Creating, Enabling, Disabling, Updating, Deleting:
		return true
	}
	return false
}

func inUse(uuid string) error {
	return lambdaerr.New(lambdaerr.ResourceInUse, "Cannot update the event source mapping %s: it is in a pending state; try again when it is Enabled or Disabled.", uuid)
}

func (s *Service) update(r *http.Request, account, uuid string) (int, any, error) {
	req, err := readRequest(r)
	if err != nil {
		return 0, nil, err
	}
	m, rev, err := s.get(r.Context(), account, uuid)
	if err != nil {
		return 0, nil, err
	}
	if transitional(m.State) {
		return 0, nil, inUse(uuid)
	}
	if req.EventSourceArn != nil {
		return 0, nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "EventSourceArn cannot be updated; create a new mapping.")
	}
	was := m.Enabled
	if err := req.apply(m); err != nil {
		return 0, nil, err
	}
	name := m.Function
	if m.Qualifier != "" {
		name += ":" + m.Qualifier
	}
	if req.FunctionName != nil {
		name = *req.FunctionName
	}
	if err := s.target(r, account, name, m); err != nil {
		return 0, nil, err
	}
	switch {
	case was && !m.Enabled:
		m.State = Disabling
	case !was && m.Enabled:
		m.State = Enabling
	default:
		m.State = Updating
	}
	m.StateTransitionReason = "USER_INITIATED"
	m.LastModified = now()
	b, _ := json.Marshal(m)
	if _, err := s.kv.Update(r.Context(), mkey(account, uuid), b, rev); err != nil {
		if isWrongRev(err) {
			return 0, nil, inUse(uuid)
		}
		return 0, nil, err
	}
	return http.StatusAccepted, m.public(), nil
}

func (s *Service) delete(r *http.Request, account, uuid string) (int, any, error) {
	m, rev, err := s.get(r.Context(), account, uuid)
	if err != nil {
		return 0, nil, err
	}
	if m.State == Deleting {
		return 0, nil, inUse(uuid)
	}
	m.State, m.StateTransitionReason, m.LastModified = Deleting, "USER_INITIATED", now()
	b, _ := json.Marshal(m)
	if _, err := s.kv.Update(r.Context(), mkey(account, uuid), b, rev); err != nil {
		if isWrongRev(err) {
			return 0, nil, inUse(uuid)
		}
		return 0, nil, err
	}
	return http.StatusAccepted, m.public(), nil
}

func (s *Service) listAPI(r *http.Request, account string) (int, any, error) {
	q := r.URL.Query()
	maxItems := 100
	if v := q.Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return 0, nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000", v)
		}
		maxItems = n
	}
	all, err := s.list(r.Context(), account)
	if err != nil {
		return 0, nil, err
	}
	var fnFilter string
	if f := q.Get("FunctionName"); f != "" {
		g := functionName.FindStringSubmatch(f)
		if g == nil {
			return 0, nil, lambdaerr.New(lambdaerr.InvalidParameterValue, "Invalid FunctionName %s.", f)
		}
		fnFilter = g[3]
	}
	sort.Slice(all, func(i, j int) bool { return all[i].UUID < all[j].UUID })
	res := struct {
		EventSourceMappings []Mapping `json:"EventSourceMappings"`
		NextMarker          string    `json:"NextMarker,omitempty"`
	}{EventSourceMappings: []Mapping{}}
	marker := q.Get("Marker")
	for _, m := range all {
		if marker != "" && m.UUID <= marker {
			continue
		}
		if fnFilter != "" && m.Function != fnFilter {
			continue
		}
		if a := q.Get("EventSourceArn"); a != "" && m.EventSourceArn != a {
			continue
		}
		if len(res.EventSourceMappings) == maxItems {
			res.NextMarker = res.EventSourceMappings[maxItems-1].UUID
			break
		}
		res.EventSourceMappings = append(res.EventSourceMappings, m.public())
	}
	return http.StatusOK, res, nil
}
