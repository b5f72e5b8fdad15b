package lambdafn

import "testing"

func TestIsAccountID(t *testing.T) {
	for s, want := range map[string]bool{
		"123456789012": true, "000000000000": true,
		"": false, "12345678901": false, "1234567890123": false, "12345678901a": false, "12345678901٣": false,
	} {
		if got := IsAccountID(s); got != want {
			t.Errorf("IsAccountID(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{"7": true, "0042": true, "": false, "1a": false, "-1": false} {
		if got := IsDigits(s); got != want {
			t.Errorf("IsDigits(%q) = %v, want %v", s, got, want)
		}
	}
}
