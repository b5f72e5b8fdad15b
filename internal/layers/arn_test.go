package layers

import "testing"

func TestParseARN(t *testing.T) {
	good := map[string]ARN{
		"arn:aws:lambda:us-east-1:123456789012:layer:my-layer":    {Partition: "aws", Region: "us-east-1", Account: "123456789012", Name: "my-layer"},
		"arn:aws:lambda:us-east-1:123456789012:layer:my_layer:7":  {Partition: "aws", Region: "us-east-1", Account: "123456789012", Name: "my_layer", Version: 7},
		"arn:aws-cn:lambda:cn-north-1:123456789012:layer:x:12345": {Partition: "aws-cn", Region: "cn-north-1", Account: "123456789012", Name: "x", Version: 12345},
	}
	for s, want := range good {
		got, ok := ParseARN(s)
		if !ok || got != want || got.String() != s {
			t.Errorf("ParseARN(%q) = %+v, %v; want %+v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"", "arn:aws:lambda:us-east-1:123456789012:function:f:1", "arn:aws:s3:us-east-1:123456789012:layer:x:1",
		"arn:aws:lambda:us-east-1:12345678901:layer:x:1", "arn:aws:lambda:us-east-1:123456789012:layer:x:0",
		"arn:aws:lambda:us-east-1:123456789012:layer:x:01", "arn:aws:lambda:us-east-1:123456789012:layer:x:-1",
		"arn:aws:lambda:us-east-1:123456789012:layer:x.y:1", "arn:aws:lambda:us-east-1:123456789012:layer::1",
		"arn:aws:lambda:us-east-1:123456789012:layer:x:1:2", "arn:aws:lambda::123456789012:layer:x:1",
		"arn:aws:lambda:us-east-1:123456789012:layer:x:9999999999999999",
	} {
		if a, ok := ParseARN(s); ok {
			t.Errorf("ParseARN(%q) = %+v, want refusal", s, a)
		}
	}
}

func FuzzParseARN(f *testing.F) {
	for _, s := range []string{"arn:aws:lambda:us-east-1:123456789012:layer:my-layer:3", "arn:aws:lambda:r:123456789012:layer:n",
		"arn:aws:lambda:us-east-1:123456789012:layer:x:01", "arn::::::", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseARN(s)
		if !ok {
			return
		}
		// What parses formats back to itself, names a valid layer, and
		// parses again to the same value.
		if a.String() != s {
			t.Fatalf("ParseARN(%q).String() = %q", s, a.String())
		}
		if !ValidName(a.Name) || len(a.Account) != 12 || a.Version < 0 {
			t.Fatalf("ParseARN(%q) = %+v: invalid parts", s, a)
		}
		if b, ok := ParseARN(a.String()); !ok || b != a {
			t.Fatalf("round trip of %q: %+v, %v", s, b, ok)
		}
	})
}
