package layers

import (
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/lambdafn"
)

// MaxNameLength bounds a layer name (and the LayerName path label, which
// may also be a layer ARN), as in Lambda's API model.
const MaxNameLength = 140

// ARN is a parsed layer ARN (Version 0) or layer version ARN
// (arn:aws:lambda:REGION:ACCOUNT:layer:NAME[:VERSION]).
type ARN struct {
	Partition string // "aws", "aws-cn", ...
	Region    string
	Account   string // 12 digits
	Name      string
	Version   int64 // 0 for a layer ARN without a version
}

// String formats the ARN back.
func (a ARN) String() string {
	s := "arn:" + a.Partition + ":lambda:" + a.Region + ":" + a.Account + ":layer:" + a.Name
	if a.Version > 0 {
		s += ":" + strconv.FormatInt(a.Version, 10)
	}
	return s
}

// LayerARN is the ARN without its version.
func (a ARN) LayerARN() ARN { a.Version = 0; return a }

// ValidName reports whether s is a layer name: 1 to MaxNameLength of
// [a-zA-Z0-9-_].
func ValidName(s string) bool {
	if s == "" || len(s) > MaxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ParseARN parses a layer ARN or layer version ARN. ok is false for
// anything else: another service or resource type, a malformed account or
// region, an invalid name, or a version that is not a positive decimal
// number.
func ParseARN(s string) (a ARN, ok bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 7 && len(parts) != 8 {
		return ARN{}, false
	}
	if parts[0] != "arn" || !validToken(parts[1]) || parts[2] != "lambda" || !validToken(parts[3]) ||
		!lambdafn.IsAccountID(parts[4]) || parts[5] != "layer" || !ValidName(parts[6]) {
		return ARN{}, false
	}
	a = ARN{Partition: parts[1], Region: parts[3], Account: parts[4], Name: parts[6]}
	if len(parts) == 8 {
		v, ok := parseVersion(parts[7])
		if !ok {
			return ARN{}, false
		}
		a.Version = v
	}
	return a, true
}

// parseVersion parses a layer version number: a positive decimal without
// sign or leading zeros, at most 15 digits.
func parseVersion(s string) (int64, bool) {
	if s == "" || len(s) > 15 || s[0] == '0' || !lambdafn.IsDigits(s) {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// ParseVersion parses the VersionNumber path label of the layer version
// operations.
func ParseVersion(s string) (int64, bool) { return parseVersion(s) }

// validToken accepts a partition or region: [a-zA-Z0-9-]+.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
