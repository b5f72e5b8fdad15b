package asyncq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/nats-io/nats.go"
)

// Conditions of an invocation record (requestContext.condition).
const (
	CondSuccess          = "Success"
	CondRetriesExhausted = "RetriesExhausted"
	CondEventAgeExceeded = "EventAgeExceeded"
)

// Record is Lambda's invocation record, sent to OnSuccess and OnFailure
// destinations.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       string          `json:"timestamp"`
	RequestContext  RecordRequest   `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext *RecordResponse `json:"responseContext,omitempty"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RecordRequest is the requestContext of a Record.
type RecordRequest struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// RecordResponse is the responseContext of a Record.
type RecordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// outcome is what finish delivers for one event.
type outcome struct {
	condition string
	// response of the last attempt that ran (nil when none ran).
	response        []byte
	functionError   string
	executedVersion string
	// errorCode and errorMessage are the dead-letter attributes.
	errorCode    int
	errorMessage string
}

func (s *Service) record(ev *event, st *Status, oc outcome) Record {
	r := Record{
		Version:   "1.0",
		Timestamp: s.cfg.Clock.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: RecordRequest{
			RequestID:              ev.RequestID,
			FunctionArn:            functionARN(ev) + ":" + ev.Qualifier,
			Condition:              oc.condition,
			ApproximateInvokeCount: st.Attempts,
		},
		RequestPayload: jsonOrString(ev.Payload),
	}
	if r.RequestPayload == nil {
		r.RequestPayload = json.RawMessage("null")
	}
	if oc.response != nil || oc.functionError != "" || oc.condition == CondSuccess {
		r.ResponseContext = &RecordResponse{StatusCode: 200, ExecutedVersion: oc.executedVersion, FunctionError: oc.functionError}
		r.ResponsePayload = jsonOrString(oc.response)
	}
	return r
}

func functionARN(ev *event) string {
	region := ev.Region
	if region == "" {
		region = "us-east-1"
	}
	return "arn:aws:lambda:" + region + ":" + ev.Account + ":function:" + ev.Function
}

// deliver sends the outcome of ev to its destination (OnSuccess or
// OnFailure of cfg) and, for failures, to the function's dead-letter
// target dlq: Lambda sends to both when both are configured. Targets that
// do not exist or cannot take the message are logged and skipped (Lambda
// counts them as DestinationDeliveryFailures); an error is returned only
// when the backbone failed, so the caller retries the delivery later.
// Copies sent again after a crash carry the same message ids and are
// dropped by the backbone's de-duplication.
func (s *Service) deliver(ctx context.Context, ev *event, st *Status, cfg *EventInvokeConfig, dlq string, oc outcome) error {
	log := s.log.With("requestId", ev.RequestID, "function", ev.Function)
	target := cfg.onFailure()
	if oc.condition == CondSuccess {
		target = cfg.onSuccess()
	}
	if target != "" {
		body, err := json.Marshal(s.record(ev, st, oc))
		if err != nil {
			return err
		}
		err = s.send(ctx, ev, target, "destination/"+oc.condition, body, nil)
		kind := "on_failure"
		if oc.condition == CondSuccess {
			kind = "on_success"
		}
		s.cfg.Observer.AsyncDelivery(ev.Function, kind, err)
		if err != nil {
			if !skippable(err) {
				return err
			}
			log.Warn("destination delivery failed", "destination", target, "err", err)
		}
	}
	if oc.condition != CondSuccess && dlq != "" {
		attrs := map[string]string{
			"RequestID":    ev.RequestID,
			"ErrorCode":    strconv.Itoa(oc.errorCode),
			"ErrorMessage": truncate(oc.errorMessage, maxErrorMessageLen),
		}
		err := s.send(ctx, ev, dlq, "dlq", ev.Payload, attrs)
		s.cfg.Observer.AsyncDelivery(ev.Function, "dlq", err)
		if err != nil {
			if !skippable(err) {
				return err
			}
			log.Warn("dead-letter delivery failed", "target", dlq, "err", err)
		}
	}
	return nil
}

// hasDeliveries reports whether deliver would send anything for oc.
func hasDeliveries(cfg *EventInvokeConfig, dlq string, oc outcome) bool {
	if oc.condition == CondSuccess {
		return cfg.onSuccess() != ""
	}
	return cfg.onFailure() != "" || dlq != ""
}

// errSkip marks a delivery failure that retrying cannot fix.
var errSkip = errors.New("undeliverable")

func skippable(err error) bool { return errors.Is(err, errSkip) }

// send delivers body to a function (as a new asynchronous invocation) or
// to a Flint queue (with attrs as message attributes).
func (s *Service) send(ctx context.Context, ev *event, arn, kind string, body []byte, attrs map[string]string) error {
	d, err := parseDestination(arn)
	if err != nil {
		return fmt.Errorf("%w: %v", errSkip, err)
	}
	id := derivedUUID(ev.RequestID, kind, arn)
	switch d.kind {
	case destQueue:
		if d.account != ev.Account {
			// Flint queues have no resource policies: one account never
			// writes into another's.
			return fmt.Errorf("%w: queue %s is not in account %s", errSkip, arn, ev.Account)
		}
		err := s.queues.Send(ctx, d.account, d.name, body, attrs, id)
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("%w: %v", errSkip, err)
		}
		return err
	default:
		qual := d.qualifier
		if qual == "" {
			qual = metadata.LatestVersion
		}
		fn, _, err := s.cfg.Functions.Resolve(ctx, d.account, d.name, qual)
		if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			return fmt.Errorf("%w: %v", errSkip, err)
		}
		if err != nil {
			return fmt.Errorf("destination %s: %w", arn, err)
		}
		// Another account's function takes the event only when its
		// resource policy (of the version resolved) lets this account
		// invoke it.
		if d.account != ev.Account && !fn.Policy.AllowsInvoke(ev.Account) {
			return fmt.Errorf("%w: no resource-based policy of %s lets account %s invoke it", errSkip, arn, ev.Account)
		}
		dev := &event{
			RequestID: id, Account: fn.Account, Region: fn.Region, Function: fn.Name,
			Qualifier: qual, Payload: body, EnqueuedAt: s.cfg.Clock.Now().UTC(), Source: ev.RequestID,
		}
		err = s.enqueueEvent(ctx, dev)
		if lambdaerr.Is(err, lambdaerr.RequestEntityTooLarge) || lambdaerr.Is(err, lambdaerr.InvalidParameterValue) {
			return fmt.Errorf("%w: %v", errSkip, err)
		}
		return err
	}
}

// timePtr returns a pointer to t in UTC.
func timePtr(t time.Time) *time.Time { t = t.UTC(); return &t }
