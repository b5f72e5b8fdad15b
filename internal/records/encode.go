package records

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// appendJSON appends r as json.Marshal would write it (same members, order,
// omissions and number formats), without reflection: every invocation
// writes one record, so this is on the warm path. TestAppendJSON holds it
// to json.Marshal.
func (r *Record) appendJSON(b []byte) []byte {
	b = append(b, `{"requestId":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"version":`...)
	b = appendString(b, r.Version)
	b = append(b, `,"start":"`...)
	b = r.Start.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","durationMs":`...)
	b = appendFloat(b, r.DurationMs)
	b = append(b, `,"billedDurationMs":`...)
	b = strconv.AppendInt(b, r.BilledDurationMs, 10)
	b = append(b, `,"memorySizeMB":`...)
	b = strconv.AppendInt(b, int64(r.MemorySizeMB), 10)
	b = append(b, `,"memoryUsedMB":`...)
	b = strconv.AppendInt(b, int64(r.MemoryUsedMB), 10)
	b = append(b, `,"coldStart":`...)
	b = strconv.AppendBool(b, r.ColdStart)
	if r.InitDurationMs != 0 {
		b = append(b, `,"initDurationMs":`...)
		b = appendFloat(b, r.InitDurationMs)
	}
	if s := r.Steps; s != nil {
		b = append(b, `,"steps":{"placement":`...)
		b = appendFloat(b, s.Placement)
		b = append(b, `,"codeFetch":`...)
		b = appendFloat(b, s.CodeFetch)
		b = append(b, `,"sandboxCreate":`...)
		b = appendFloat(b, s.SandboxCreate)
		b = append(b, `,"runtimeInit":`...)
		b = appendFloat(b, s.RuntimeInit)
		b = append(b, '}')
	}
	if r.Host != "" {
		b = append(b, `,"host":`...)
		b = appendString(b, r.Host)
	}
	if r.Sandbox != "" {
		b = append(b, `,"sandbox":`...)
		b = appendString(b, r.Sandbox)
	}
	b = append(b, `,"outcome":`...)
	b = appendString(b, r.Outcome)
	if r.ErrorType != "" {
		b = append(b, `,"errorType":`...)
		b = appendString(b, r.ErrorType)
	}
	return append(b, '}')
}

// encodable reports whether a record can be written by appendJSON: times
// json.Marshal refuses (years outside 0..9999) and non-finite numbers are
// left to it.
func (r *Record) encodable() bool {
	if y := r.Start.Year(); y < 0 || y > 9999 {
		return false
	}
	fs := []float64{r.DurationMs, r.InitDurationMs}
	if s := r.Steps; s != nil {
		fs = append(fs, s.Placement, s.CodeFetch, s.SandboxCreate, s.RuntimeInit)
	}
	for _, f := range fs {
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return false
		}
	}
	return true
}

// appendString writes s as a JSON string: plain printable ASCII as is,
// anything else through encoding/json (escapes, HTML-safe forms, invalid
// UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		q, _ := json.Marshal(f) // finite: checked by encodable
		return append(b, q...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
