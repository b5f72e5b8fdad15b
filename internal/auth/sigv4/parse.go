package sigv4

import (
	"strings"
)

// Algorithm is the only signing algorithm Flint verifies.
const Algorithm = "AWS4-HMAC-SHA256"

// Authorization is a parsed SigV4 Authorization header:
//
//	AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request,
//	    SignedHeaders=host;x-amz-date, Signature=<64 hex digits>
type Authorization struct {
	AccessKeyID string
	Date        string // yyyymmdd of the credential scope
	Region      string
	Service     string
	Terminator  string   // "aws4_request" in a well-formed scope
	Signed      []string // SignedHeaders, lower case, in the header's order
	Signature   string   // lower-case hex
}

// maxAuthorization bounds the header Flint parses; real ones are ~250
// bytes, plus ~30 per signed header.
const maxAuthorization = 8 << 10

// ParseAuthorization parses a SigV4 Authorization header value. Any error
// is a *Error of type IncompleteSignatureException, worded as AWS words
// it, safe to return to the client. It never panics, whatever s is.
func ParseAuthorization(s string) (Authorization, error) {
	var a Authorization
	if len(s) > maxAuthorization {
		return a, incomplete("Authorization header is too long.")
	}
	rest, ok := strings.CutPrefix(s, Algorithm)
	if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return a, incomplete("Unsupported Authorization Type. Authorization header requires 'AWS4-HMAC-SHA256' followed by 'Credential', 'SignedHeaders' and 'Signature'.")
	}
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for part := range strings.SplitSeq(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return a, incomplete("Authorization header requires each component to be of the form key=value: '" + printable(part) + "'.")
		}
		var dup bool
		switch k {
		case "Credential":
			dup, haveCred, cred = haveCred, true, v
		case "SignedHeaders":
			dup, haveSigned, signed = haveSigned, true, v
		case "Signature":
			dup, haveSig, sig = haveSig, true, v
		default:
			return a, incomplete("Authorization header has an unknown component '" + printable(k) + "'.")
		}
		if dup {
			return a, incomplete("Authorization header has a repeated component '" + k + "'.")
		}
	}
	var missing []string
	for _, m := range []struct {
		have bool
		name string
	}{{haveCred, "Credential"}, {haveSigned, "SignedHeaders"}, {haveSig, "Signature"}} {
		if !m.have {
			missing = append(missing, "Authorization header requires '"+m.name+"' parameter.")
		}
	}
	if len(missing) > 0 {
		return a, incomplete(strings.Join(missing, " "))
	}

	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[0] == "" {
		return a, incomplete("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" + printable(cred) + "'")
	}
	a.AccessKeyID, a.Date, a.Region, a.Service, a.Terminator = scope[0], scope[1], scope[2], scope[3], scope[4]
	if !isDigits(a.Date, 8) {
		return a, incomplete("Date in Credential scope must be of the form yyyymmdd, got '" + printable(a.Date) + "'.")
	}

	if signed == "" {
		return a, incomplete("Authorization header requires a non-empty 'SignedHeaders' parameter.")
	}
	a.Signed = strings.Split(signed, ";")
	for _, h := range a.Signed {
		if h == "" || !isHeaderName(h) {
			return a, incomplete("SignedHeaders must be a semicolon-separated list of lower-case header names, got '" + printable(signed) + "'.")
		}
	}

	if len(sig) != 64 || !isLowerHex(sig) {
		return a, incomplete("Signature must be 64 lower-case hexadecimal digits.")
	}
	a.Signature = sig
	return a, nil
}

// signedHeader reports whether name (lower case) is among a's signed
// headers.
func (a *Authorization) signedHeader(name string) bool {
	for _, h := range a.Signed {
		if h == name {
			return true
		}
	}
	return false
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isHeaderName reports whether s is a lower-case HTTP token (RFC 9110).
func isHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// printable returns s cut to 64 bytes with non-printable bytes replaced,
// for quoting untrusted input in an error message.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
