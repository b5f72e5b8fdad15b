package asyncq

import (
	"testing"
)

func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"arn:aws:lambda:us-east-1:123456789012:function:f", "arn:aws:lambda:us-east-1:123456789012:function:f:1", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sns:us-east-1:1:t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDestination(s)
		if err != nil {
			return
		}
		if !validToken(d.account) || !validToken(d.name) || (d.kind != destFunction && d.kind != destQueue) {
			t.Fatalf("%q parsed to %+v", s, d)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"requestId":"r","account":"123456789012","function":"f","qualifier":"$LATEST","payload":"e30=","enqueuedAt":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b)
		if err != nil {
			return
		}
		if ev.RequestID == "" || !validToken(ev.Account) || !validToken(ev.Function) {
			t.Fatalf("accepted %+v", ev)
		}
		_ = ev.key().subject()
	})
}
