package sqs

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/asyncq/queues"
)

// Queue is one queue's record in the backbone: its settings, as
// SetQueueAttributes names them.
type Queue struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Created  int64  `json:"created"`  // unix seconds
	Modified int64  `json:"modified"` // unix seconds

	VisibilityTimeout             int               `json:"visibilityTimeout"`
	MessageRetentionPeriod        int               `json:"messageRetentionPeriod"`
	DelaySeconds                  int               `json:"delaySeconds"`
	MaximumMessageSize            int               `json:"maximumMessageSize"`
	ReceiveMessageWaitTimeSeconds int               `json:"receiveMessageWaitTimeSeconds"`
	RedrivePolicy                 *RedrivePolicy    `json:"redrivePolicy,omitempty"`
	Policy                        string            `json:"policy,omitempty"`
	Tags                          map[string]string `json:"tags,omitempty"`
}

// RedrivePolicy moves a message to DeadLetterTargetArn when it is
// received more than MaxReceiveCount times without being deleted.
type RedrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

// UnmarshalJSON accepts maxReceiveCount as a number or a string, as SQS
// does (the console and many tools send "5").
func (p *RedrivePolicy) UnmarshalJSON(b []byte) error {
	var raw struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p.DeadLetterTargetArn = raw.DeadLetterTargetArn
	s := strings.Trim(string(raw.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(s)
	if err != nil {
		return Errorf(InvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %s, valid values are from 1 to 1000 both inclusive.", string(b), s)
	}
	p.MaxReceiveCount = n
	return nil
}

func defaultQueue(account, name string, now int64) *Queue {
	return &Queue{
		Account: account, Name: name, Created: now, Modified: now,
		VisibilityTimeout:      30,
		MessageRetentionPeriod: 345600,
		MaximumMessageSize:     262144,
	}
}

// ARN is the queue's arn:aws:sqs:REGION:ACCOUNT:NAME.
func ARN(region, account, name string) string {
	return "arn:aws:sqs:" + region + ":" + account + ":" + name
}

// ParseARN splits an SQS queue ARN into its region, account and name.
func ParseARN(arn string) (region, account, name string, ok bool) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[1] != "aws" || parts[2] != "sqs" {
		return "", "", "", false
	}
	if !queues.ValidName(parts[4]) || !queues.ValidName(parts[5]) {
		return "", "", "", false
	}
	return parts[3], parts[4], parts[5], true
}

// attribute bounds, as SQS documents them.
var intAttrs = map[string]struct{ min, max int }{
	"VisibilityTimeout":             {0, 43200},
	"MessageRetentionPeriod":        {60, 1209600},
	"DelaySeconds":                  {0, 900},
	"MaximumMessageSize":            {1024, 262144},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
}

// readOnlyAttrs are the attributes GetQueueAttributes reports but no one
// sets.
var readOnlyAttrs = []string{
	"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed",
	"CreatedTimestamp", "LastModifiedTimestamp", "QueueArn",
}

// accepted but without effect in Flint (no encryption at rest other than
// the backbone's, no FIFO).
var ignoredAttrs = map[string]bool{"SqsManagedSseEnabled": true, "KmsMasterKeyId": true, "KmsDataKeyReusePeriodSeconds": true, "RedriveAllowPolicy": true}

// apply sets attrs on q, validating each as SQS does. region and exists
// check a RedrivePolicy's target.
func (q *Queue) apply(attrs map[string]string, region string) error {
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := attrs[k]
		if b, ok := intAttrs[k]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < b.min || n > b.max {
				return Errorf(InvalidAttributeValue, "Invalid value for the parameter %s.", k)
			}
			switch k {
			case "VisibilityTimeout":
				q.VisibilityTimeout = n
			case "MessageRetentionPeriod":
				q.MessageRetentionPeriod = n
			case "DelaySeconds":
				q.DelaySeconds = n
			case "MaximumMessageSize":
				q.MaximumMessageSize = n
			case "ReceiveMessageWaitTimeSeconds":
				q.ReceiveMessageWaitTimeSeconds = n
			}
			continue
		}
		switch {
		case k == "RedrivePolicy":
			if v == "" {
				q.RedrivePolicy = nil
				continue
			}
			var p RedrivePolicy
			if err := json.Unmarshal([]byte(v), &p); err != nil {
				if e, ok := err.(*Error); ok {
					return e
				}
				return Errorf(InvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON map.", v)
			}
			if p.MaxReceiveCount < 1 || p.MaxReceiveCount > 1000 {
				return Errorf(InvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: %d, valid values are from 1 to 1000 both inclusive.", v, p.MaxReceiveCount)
			}
			r, acct, _, ok := ParseARN(p.DeadLetterTargetArn)
			if !ok || r != region || acct != q.Account {
				return Errorf(InvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead-letter target must be an SQS queue ARN of this account and region.", v)
			}
			q.RedrivePolicy = &p
		case k == "Policy":
			q.Policy = v
		case ignoredAttrs[k]:
		case k == "FifoQueue" || k == "ContentBasedDeduplication" || k == "DeduplicationScope" || k == "FifoThroughputLimit":
			return Errorf(InvalidAttributeName, "Unknown Attribute %s. Flint queues are standard queues (no FIFO).", k)
		default:
			return Errorf(InvalidAttributeName, "Unknown Attribute %s.", k)
		}
	}
	return nil
}

// settable reports q's settable attributes as SQS strings.
func (q *Queue) settable() map[string]string {
	m := map[string]string{
		"VisibilityTimeout":             strconv.Itoa(q.VisibilityTimeout),
		"MessageRetentionPeriod":        strconv.Itoa(q.MessageRetentionPeriod),
		"DelaySeconds":                  strconv.Itoa(q.DelaySeconds),
		"MaximumMessageSize":            strconv.Itoa(q.MaximumMessageSize),
		"ReceiveMessageWaitTimeSeconds": strconv.Itoa(q.ReceiveMessageWaitTimeSeconds),
		"SqsManagedSseEnabled":          "false",
	}
	if q.RedrivePolicy != nil {
		b, _ := json.Marshal(q.RedrivePolicy)
		m["RedrivePolicy"] = string(b)
	}
	if q.Policy != "" {
		m["Policy"] = q.Policy
	}
	return m
}

// sameSettings reports whether CreateQueue with attrs on an existing queue
// is idempotent (SQS: same name and same attributes succeed).
func (q *Queue) sameSettings(attrs map[string]string, region string) bool {
	c := *q
	if err := c.apply(attrs, region); err != nil {
		return false
	}
	a, b := c.settable(), q.settable()
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
