package asyncq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
	"github.com/nats-io/nats.go/jetstream"
)

// Lambda's limits and defaults for asynchronous invocation.
const (
	DefaultMaximumRetryAttempts     = 2
	DefaultMaximumEventAgeInSeconds = 21600
	minEventAge, maxEventAge        = 60, 21600
	maxRetryAttempts                = 2
)

// EventInvokeConfig is a function version's asynchronous invocation
// configuration (Lambda's FunctionEventInvokeConfig). Nil fields are unset
// and take Lambda's defaults; an empty destination is none.
type EventInvokeConfig struct {
	MaximumRetryAttempts     *int      `json:"maximumRetryAttempts,omitempty"`
	MaximumEventAgeInSeconds *int      `json:"maximumEventAgeInSeconds,omitempty"`
	OnSuccess                string    `json:"onSuccess,omitempty"`
	OnFailure                string    `json:"onFailure,omitempty"`
	LastModified             time.Time `json:"lastModified"`
}

// retries is the effective MaximumRetryAttempts.
func (c *EventInvokeConfig) retries() int {
	if c == nil || c.MaximumRetryAttempts == nil {
		return DefaultMaximumRetryAttempts
	}
	return *c.MaximumRetryAttempts
}

// maxAge is the effective MaximumEventAgeInSeconds as a duration.
func (c *EventInvokeConfig) maxAge() time.Duration {
	if c == nil || c.MaximumEventAgeInSeconds == nil {
		return DefaultMaximumEventAgeInSeconds * time.Second
	}
	return time.Duration(*c.MaximumEventAgeInSeconds) * time.Second
}

func (c *EventInvokeConfig) onSuccess() string {
	if c == nil {
		return ""
	}
	return c.OnSuccess
}

func (c *EventInvokeConfig) onFailure() string {
	if c == nil {
		return ""
	}
	return c.OnFailure
}

// validate checks the values against Lambda's limits.
func (c *EventInvokeConfig) validate() error {
	if r := c.MaximumRetryAttempts; r != nil && (*r < 0 || *r > maxRetryAttempts) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"1 validation error detected: Value '%d' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value between 0 and 2", *r)
	}
	if a := c.MaximumEventAgeInSeconds; a != nil && (*a < minEventAge || *a > maxEventAge) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"1 validation error detected: Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between 60 and 21600", *a)
	}
	for _, d := range []string{c.OnSuccess, c.OnFailure} {
		if d == "" {
			continue
		}
		if _, err := parseDestination(d); err != nil {
			return err
		}
	}
	return nil
}

// configStore keeps EventInvokeConfigs in a KV bucket under
// <account>.<function>.<qualifier> ($LATEST stored as "=LATEST", since "$"
// is not allowed in keys and "=" is not allowed in version or alias names).
// Safe for concurrent use.
type configStore struct{ kv jetstream.KeyValue }

func openConfigStore(ctx context.Context, js jetstream.JetStream, replicas int) (*configStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      configBucket,
		Description: "Flint event invoke configs by account.function.qualifier",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("asyncq: bucket %s: %w", configBucket, err)
	}
	return &configStore{kv: kv}, nil
}

func qualifierKey(q string) string {
	if q == metadata.LatestVersion {
		return "=LATEST"
	}
	return q
}

func keyQualifier(k string) string {
	if k == "=LATEST" {
		return metadata.LatestVersion
	}
	return k
}

func configKey(account, name, qualifier string) string {
	return account + "." + name + "." + qualifierKey(qualifier)
}

// get returns the stored config, or nil when there is none.
func (s *configStore) get(ctx context.Context, account, name, qualifier string) (*EventInvokeConfig, error) {
	e, err := s.kv.Get(ctx, configKey(account, name, qualifier))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("event invoke config %s:%s: %w", name, qualifier, err)
	}
	var c EventInvokeConfig
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, fmt.Errorf("event invoke config %s:%s: %w", name, qualifier, err)
	}
	return &c, nil
}

func (s *configStore) put(ctx context.Context, account, name, qualifier string, c *EventInvokeConfig) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, configKey(account, name, qualifier), b); err != nil {
		return fmt.Errorf("event invoke config %s:%s: %w", name, qualifier, err)
	}
	return nil
}

// delete removes the config; ResourceNotFound when there is none.
func (s *configStore) delete(ctx context.Context, account, name, qualifier string) error {
	key := configKey(account, name, qualifier)
	if _, err := s.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return errNoConfig(name, qualifier)
	} else if err != nil {
		return fmt.Errorf("event invoke config %s:%s: %w", name, qualifier, err)
	}
	if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("event invoke config %s:%s: %w", name, qualifier, err)
	}
	return nil
}

// qualifiers lists the qualifiers of a function that have a config, sorted.
func (s *configStore) qualifiers(ctx context.Context, account, name string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, account+"."+name+".*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list event invoke configs of %s: %w", name, err)
	}
	defer func() { _ = lister.Stop() }()
	var out []string
	prefix := account + "." + name + "."
	for k := range lister.Keys() {
		out = append(out, keyQualifier(strings.TrimPrefix(k, prefix)))
	}
	sort.Strings(out)
	return out, nil
}

func errNoConfig(name, qualifier string) error {
	return lambdaerr.New(lambdaerr.ResourceNotFound, "The function %s:%s doesn't have an EventInvokeConfig", name, qualifier)
}

// Destination kinds Flint can deliver to.
const (
	destFunction = "function"
	destQueue    = "queue"
)

// destination is a parsed destination or dead-letter target ARN.
type destination struct {
	kind      string // destFunction or destQueue
	region    string
	account   string
	name      string
	qualifier string // functions only, "" for unqualified
}

// parseDestination parses arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
// and arn:aws:sqs:<region>:<account>:<queue>. Other ARNs are refused with
// InvalidParameterValue: Flint has no SNS, EventBridge or S3.
func parseDestination(arn string) (*destination, error) {
	bad := func() error {
		return lambdaerr.New(lambdaerr.InvalidParameterValue,
			"The destination ARN %q is invalid or not supported: Flint delivers to functions (arn:aws:lambda:...) and Flint queues (arn:aws:sqs:...)", arn)
	}
	p := strings.Split(arn, ":")
	if len(p) < 6 || p[0] != "arn" || p[1] == "" || p[3] == "" || !validToken(p[4]) {
		return nil, bad()
	}
	switch p[2] {
	case "lambda":
		if p[5] != "function" || len(p) < 7 || len(p) > 8 || !validFunctionName(p[6]) {
			return nil, bad()
		}
		d := &destination{kind: destFunction, region: p[3], account: p[4], name: p[6]}
		if len(p) == 8 {
			if !validQualifier(p[7]) {
				return nil, bad()
			}
			d.qualifier = p[7]
		}
		return d, nil
	case "sqs":
		if len(p) != 6 || !validQueueName(p[5]) {
			return nil, bad()
		}
		return &destination{kind: destQueue, region: p[3], account: p[4], name: p[5]}, nil
	}
	return nil, bad()
}

func validFunctionName(s string) bool { return len(s) <= 64 && validToken(s) }

func validQualifier(s string) bool {
	return s == metadata.LatestVersion || (len(s) <= 128 && validToken(s))
}

func validQueueName(s string) bool { return len(s) <= 80 && validToken(s) }
