package asyncq

import (
	"context"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// The event invoke config operations. The frontend serves Lambda's
// 2019-09-25 routes and checks the API model's constraints (ranges are a
// ValidationException there); these methods check what only the queue
// knows (destinations it can deliver to) and keep the configs. A config
// belongs to a function qualifier as named — $LATEST, a version or an alias
// — and applies to Event invocations made through that qualifier. Checking
// that the function and qualifier exist is the caller's job. Safe for
// concurrent use.

// EventInvokeConfigUpdate is the part of a config a Put or Update request
// carries: nil fields are absent. A present destination of "" is none.
type EventInvokeConfigUpdate struct {
	MaximumRetryAttempts     *int
	MaximumEventAgeInSeconds *int
	OnSuccess, OnFailure     *string
}

// QualifiedConfig is one stored config and the qualifier it belongs to.
type QualifiedConfig struct {
	Qualifier string
	Config    *EventInvokeConfig
}

// PutEventInvokeConfig stores the config of one function qualifier and
// returns it. Without merge it replaces any existing config (absent fields
// take Lambda's defaults); with merge (UpdateFunctionEventInvokeConfig)
// the present fields replace those of the existing config. An unsupported
// or malformed destination is an InvalidParameterValueException.
func (s *Service) PutEventInvokeConfig(ctx context.Context, account, name, qualifier string, upd EventInvokeConfigUpdate, merge bool) (*EventInvokeConfig, error) {
	c := &EventInvokeConfig{}
	if merge {
		old, err := s.configs.get(ctx, account, name, qualifier)
		if err != nil {
			return nil, err
		}
		if old != nil {
			c = old
		}
	}
	if upd.MaximumRetryAttempts != nil {
		c.MaximumRetryAttempts = upd.MaximumRetryAttempts
	}
	if upd.MaximumEventAgeInSeconds != nil {
		c.MaximumEventAgeInSeconds = upd.MaximumEventAgeInSeconds
	}
	if upd.OnSuccess != nil {
		c.OnSuccess = *upd.OnSuccess
	}
	if upd.OnFailure != nil {
		c.OnFailure = *upd.OnFailure
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.LastModified = s.cfg.Clock.Now().UTC()
	if err := s.configs.put(ctx, account, name, qualifier, c); err != nil {
		return nil, err
	}
	return c, nil
}

// GetEventInvokeConfig returns the config of one function qualifier; none
// is a ResourceNotFoundException naming functionARN (Lambda's message).
func (s *Service) GetEventInvokeConfig(ctx context.Context, account, name, qualifier, functionARN string) (*EventInvokeConfig, error) {
	c, err := s.configs.get(ctx, account, name, qualifier)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, errNoConfig(functionARN, qualifier)
	}
	return c, nil
}

// DeleteEventInvokeConfig removes the config of one function qualifier;
// none is a ResourceNotFoundException naming functionARN.
func (s *Service) DeleteEventInvokeConfig(ctx context.Context, account, name, qualifier, functionARN string) error {
	err := s.configs.delete(ctx, account, name, qualifier)
	if lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
		return errNoConfig(functionARN, qualifier)
	}
	return err
}

// ListEventInvokeConfigs returns the configs of a function, sorted by
// qualifier.
func (s *Service) ListEventInvokeConfigs(ctx context.Context, account, name string) ([]QualifiedConfig, error) {
	quals, err := s.configs.qualifiers(ctx, account, name)
	if err != nil {
		return nil, err
	}
	out := make([]QualifiedConfig, 0, len(quals))
	for _, q := range quals {
		c, err := s.configs.get(ctx, account, name, q)
		if err != nil {
			return nil, err
		}
		if c != nil { // else deleted meanwhile
			out = append(out, QualifiedConfig{Qualifier: q, Config: c})
		}
	}
	return out, nil
}

// DeleteFunctionEventInvokeConfigs removes every config of a function (all
// qualifiers; qualifier "") as deleting the function does in Lambda, or
// one qualifier's (deleting a version or an alias). None is not an error.
func (s *Service) DeleteFunctionEventInvokeConfigs(ctx context.Context, account, name, qualifier string) error {
	quals := []string{qualifier}
	if qualifier == "" {
		var err error
		if quals, err = s.configs.qualifiers(ctx, account, name); err != nil {
			return err
		}
	}
	for _, q := range quals {
		if err := s.configs.delete(ctx, account, name, q); err != nil && !lambdaerr.Is(err, lambdaerr.ResourceNotFound) {
			return err
		}
	}
	return nil
}
