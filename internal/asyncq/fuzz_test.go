package asyncq

import (
	"strings"
	"testing"
)

func FuzzParseFunctionName(f *testing.F) {
	for _, s := range []string{"my-function", "my-function:v1", "123456789012:function:f", "arn:aws:lambda:us-west-2:123456789012:function:f:$LATEST", "::", "arn:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := parseFunctionName(s)
		if err != nil {
			return
		}
		if !validFunctionName(ref.name) || strings.ContainsAny(ref.name+ref.account, ":.*> ") {
			t.Fatalf("%q parsed to bad ref %+v", s, ref)
		}
		if ref.qualifier != "" && !validQualifier(ref.qualifier) {
			t.Fatalf("%q parsed to bad qualifier %q", s, ref.qualifier)
		}
	})
}

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

func TestParseFunctionName(t *testing.T) {
	cases := map[string]functionRef{
		"f":                               {name: "f"},
		"f:1":                             {name: "f", qualifier: "1"},
		"123456789012:function:f":         {account: "123456789012", name: "f"},
		"123456789012:function:f:$LATEST": {account: "123456789012", name: "f", qualifier: "$LATEST"},
		"arn:aws:lambda:r:123456789012:function:f:al": {account: "123456789012", name: "f", qualifier: "al"},
	}
	for in, want := range cases {
		got, err := parseFunctionName(in)
		if err != nil || got != want {
			t.Errorf("parseFunctionName(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a.b", "f:1:2", "arn:aws:s3:r:1:function:f", "f:$NOPE", strings.Repeat("x", 65)} {
		if _, err := parseFunctionName(bad); err == nil {
			t.Errorf("parseFunctionName(%q) accepted", bad)
		}
	}
}
