package sqs

import "testing"

// The one-attribute example that SQS client libraries check their
// MD5OfMessageAttributes against.
func TestAttributesMD5(t *testing.T) {
	v := "Example Store"
	got := AttributesMD5(map[string]MessageAttributeValue{"SellerName": {DataType: "String", StringValue: &v}})
	if want := "cd28f3b68aeee4b2eac9c66f2f694b58"; got != want {
		t.Fatalf("AttributesMD5 = %s, want %s", got, want)
	}
	if AttributesMD5(nil) != "" {
		t.Fatal("no attributes must have no MD5")
	}
	if got, want := MD5Hex("hello"), "5d41402abc4b2a76b9719d911017c592"; got != want {
		t.Fatalf("MD5Hex = %s, want %s", got, want)
	}
}

func TestParseHandleRefusesOtherQueues(t *testing.T) {
	reply := "$JS.ACK.FLINT_QUEUES.sqs_000000000000_a.1.7.7.1795971519567887964.0"
	h := b64(reply)
	if _, err := parseHandle("000000000000", "a", h); err != nil {
		t.Fatalf("own handle: %v", err)
	}
	for _, q := range [][2]string{{"000000000000", "b"}, {"111111111111", "a"}} {
		if _, err := parseHandle(q[0], q[1], h); AsError(err).Code != ReceiptHandleIsInvalid {
			t.Errorf("handle of 000000000000/a used on %s/%s: %v", q[0], q[1], err)
		}
	}
	for _, bad := range []string{"", "x", b64("$JS.ACK.OTHER.sqs_000000000000_a.1.7.7.1.0"), b64("$JS.ACK.FLINT_QUEUES.sqs_000000000000_a.1.x.7.1.0")} {
		if _, err := parseHandle("000000000000", "a", bad); AsError(err).Code != ReceiptHandleIsInvalid {
			t.Errorf("handle %q: %v", bad, err)
		}
	}
}
