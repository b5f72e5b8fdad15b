package esm

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// States of a mapping, as Lambda names them. The manager drives the
// transitional ones (ending in -ing) to their end:
//
//	Create ─▶ Creating ─┬─▶ Enabled ◀─── Enabling ◀─┐
//	                    └─▶ Disabled ──▶ (Update Enabled=true)
//	Enabled ── Update ──▶ Updating ──▶ Enabled (or Disabling ─▶ Disabled)
//	Enabled ── Update Enabled=false ──▶ Disabling ──▶ Disabled
//	any ── Delete ──▶ Deleting ──▶ (gone)
const (
	Creating  = "Creating"
	Enabling  = "Enabling"
	Enabled   = "Enabled"
	Disabling = "Disabling"
	Disabled  = "Disabled"
	Updating  = "Updating"
	Deleting  = "Deleting"
)

// ReportBatchItemFailures is the one FunctionResponseTypes value for SQS.
const ReportBatchItemFailures = "ReportBatchItemFailures"

// Mapping is one event source mapping: its record in the backbone and, as
// json, Lambda's EventSourceMappingConfiguration.
type Mapping struct {
	UUID                           string         `json:"UUID"`
	EventSourceArn                 string         `json:"EventSourceArn"`
	EventSourceMappingArn          string         `json:"EventSourceMappingArn,omitempty"`
	FunctionArn                    string         `json:"FunctionArn"`
	BatchSize                      int            `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int            `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string       `json:"FunctionResponseTypes"`
	ScalingConfig                  *ScalingConfig `json:"ScalingConfig,omitempty"`
	State                          string         `json:"State"`
	StateTransitionReason          string         `json:"StateTransitionReason"`
	LastModified                   float64        `json:"LastModified"` // epoch seconds
	LastProcessingResult           string         `json:"LastProcessingResult,omitempty"`

	// Flint's own fields, not part of Lambda's shape.
	Account   string `json:"FlintAccount,omitempty"`
	Function  string `json:"FlintFunction,omitempty"`
	Qualifier string `json:"FlintQualifier,omitempty"`
	// Enabled is the state the user asked for.
	Enabled bool `json:"FlintEnabled"`
}

// ScalingConfig bounds the concurrent invocations of one mapping.
type ScalingConfig struct {
	MaximumConcurrency int `json:"MaximumConcurrency,omitempty"`
}

// public returns m as Lambda shows it, without Flint's own fields.
func (m Mapping) public() Mapping {
	m.Account, m.Function, m.Qualifier = "", "", ""
	if m.FunctionResponseTypes == nil {
		m.FunctionResponseTypes = []string{}
	}
	return m
}

// reportsItemFailures reports whether the function answers with
// batchItemFailures.
func (m *Mapping) reportsItemFailures() bool {
	for _, t := range m.FunctionResponseTypes {
		if t == ReportBatchItemFailures {
			return true
		}
	}
	return false
}

// request is CreateEventSourceMapping's and UpdateEventSourceMapping's
// body (the members Flint serves).
type request struct {
	EventSourceArn                 *string        `json:"EventSourceArn"`
	FunctionName                   *string        `json:"FunctionName"`
	Enabled                        *bool          `json:"Enabled"`
	BatchSize                      *int           `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int           `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          *[]string      `json:"FunctionResponseTypes"`
	ScalingConfig                  *ScalingConfig `json:"ScalingConfig"`
	StartingPosition               *string        `json:"StartingPosition"`
}

// apply validates r's settings (as Lambda does for an SQS source) and
// sets them on m.
func (r *request) apply(m *Mapping) error {
	if r.Enabled != nil {
		m.Enabled = *r.Enabled
	}
	if r.BatchSize != nil {
		m.BatchSize = *r.BatchSize
	}
	if r.MaximumBatchingWindowInSeconds != nil {
		m.MaximumBatchingWindowInSeconds = *r.MaximumBatchingWindowInSeconds
	}
	if r.FunctionResponseTypes != nil {
		m.FunctionResponseTypes = *r.FunctionResponseTypes
	}
	if r.ScalingConfig != nil {
		m.ScalingConfig = r.ScalingConfig
		if m.ScalingConfig.MaximumConcurrency == 0 {
			m.ScalingConfig = nil
		}
	}
	if r.StartingPosition != nil {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "StartingPosition is not valid for source type sqs.")
	}
	if m.BatchSize < 1 || m.BatchSize > 10000 {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '%d' at 'batchSize' failed to satisfy constraint: Member must have value between 1 and 10000", m.BatchSize)
	}
	if m.MaximumBatchingWindowInSeconds < 0 || m.MaximumBatchingWindowInSeconds > 300 {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '%d' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value between 0 and 300", m.MaximumBatchingWindowInSeconds)
	}
	if m.BatchSize > 10 && m.MaximumBatchingWindowInSeconds < 1 {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
	}
	for _, t := range m.FunctionResponseTypes {
		if t != ReportBatchItemFailures {
			return lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '[%s]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [ReportBatchItemFailures]]", strings.Join(m.FunctionResponseTypes, ", "))
		}
	}
	if sc := m.ScalingConfig; sc != nil && (sc.MaximumConcurrency < 2 || sc.MaximumConcurrency > 1000) {
		return lambdaerr.New(lambdaerr.InvalidParameterValue, "1 validation error detected: Value '%d' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value between 2 and 1000", sc.MaximumConcurrency)
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// validUUID reports whether s looks like a mapping id.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}
