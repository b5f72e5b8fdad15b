package funcurl

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is the payload format version 2.0 event a function URL sends its
// function (the shape API Gateway HTTP APIs use too).
type Event struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        RequestContext    `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

// RequestContext is the event's requestContext.
type RequestContext struct {
	AccountID    string      `json:"accountId"`
	APIID        string      `json:"apiId"`
	Authorizer   *Authorizer `json:"authorizer,omitempty"`
	DomainName   string      `json:"domainName"`
	DomainPrefix string      `json:"domainPrefix"`
	HTTP         HTTPContext `json:"http"`
	RequestID    string      `json:"requestId"`
	RouteKey     string      `json:"routeKey"`
	Stage        string      `json:"stage"`
	Time         string      `json:"time"`
	TimeEpoch    int64       `json:"timeEpoch"`
}

// HTTPContext is requestContext.http.
type HTTPContext struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// Authorizer is requestContext.authorizer of an AWS_IAM URL's request.
type Authorizer struct {
	IAM *IAMAuthorizer `json:"iam"`
}

// IAMAuthorizer describes the signer of an AWS_IAM request.
type IAMAuthorizer struct {
	AccessKey string `json:"accessKey"`
	AccountID string `json:"accountId"`
	CallerID  string `json:"callerId"`
	UserARN   string `json:"userArn"`
	UserID    string `json:"userId"`
}

// textTypes are the media types whose bodies reach the function as text;
// every other body (and one that is not valid UTF-8) is base64-encoded.
var textTypes = map[string]bool{
	"application/json": true, "application/javascript": true, "application/xml": true,
	"application/yaml": true, "application/x-yaml": true, "application/graphql": true,
}

func isText(contentType string, body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || textTypes[mt] || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

// newEvent maps r (whose body was read into body) to the 2.0 event.
// domain is the Host the request came to without a port, id the URL id.
func newEvent(r *http.Request, body []byte, account, id, domain, reqID string, now time.Time) *Event {
	ev := &Event{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        r.URL.EscapedPath(),
		RawQueryString: r.URL.RawQuery,
		Headers:        make(map[string]string, len(r.Header)+1),
	}
	if ev.RawPath == "" {
		ev.RawPath = "/"
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						ev.Cookies = append(ev.Cookies, c)
					}
				}
			}
			continue
		}
		ev.Headers[lk] = strings.Join(vs, ",")
	}
	ev.Headers["host"] = r.Host
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil && len(q) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(q))
		for k, vs := range q {
			ev.QueryStringParameters[k] = strings.Join(vs, ",")
		}
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type"), body) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	sourceIP, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		sourceIP = r.RemoteAddr
	}
	path, err := url.PathUnescape(ev.RawPath)
	if err != nil {
		path = ev.RawPath
	}
	ev.RequestContext = RequestContext{
		AccountID:    "anonymous",
		APIID:        id,
		DomainName:   domain,
		DomainPrefix: id,
		HTTP: HTTPContext{Method: r.Method, Path: path, Protocol: r.Proto,
			SourceIP: sourceIP, UserAgent: r.UserAgent()},
		RequestID: reqID,
		RouteKey:  "$default",
		Stage:     "$default",
		Time:      now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
		TimeEpoch: now.UnixMilli(),
	}
	return ev
}

// response is the structured answer a function may give (the 2.0
// response format).
type response struct {
	StatusCode      *int              `json:"statusCode"`
	Headers         map[string]string `json:"headers"`
	Cookies         []string          `json:"cookies"`
	Body            *string           `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
}

// httpResponse is what goes back to the URL's client.
type httpResponse struct {
	status int
	header http.Header
	body   []byte
}

// errBadResponse is a function answer that cannot be turned into HTTP.
type errBadResponse struct{ why string }

func (e errBadResponse) Error() string { return "function url: malformed function response: " + e.why }

// mapResponse turns a function's payload into HTTP as Lambda does: an
// object with a statusCode is the structured 2.0 response; any other JSON
// value is a 200 application/json answer whose body is the payload (a
// JSON string's own text).
func mapResponse(payload []byte) (httpResponse, error) {
	out := httpResponse{status: http.StatusOK, header: http.Header{}}
	trimmed := strings.TrimSpace(string(payload))
	if strings.HasPrefix(trimmed, "{") {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(payload, &probe); err == nil {
			if _, ok := probe["statusCode"]; ok {
				return structured(payload)
			}
		}
	}
	out.header.Set("Content-Type", "application/json")
	var s string
	if strings.HasPrefix(trimmed, `"`) && json.Unmarshal(payload, &s) == nil {
		out.body = []byte(s)
		return out, nil
	}
	out.body = []byte(trimmed)
	return out, nil
}

func structured(payload []byte) (httpResponse, error) {
	var r response
	if err := json.Unmarshal(payload, &r); err != nil {
		return httpResponse{}, errBadResponse{err.Error()}
	}
	if r.StatusCode == nil || *r.StatusCode < 100 || *r.StatusCode > 599 {
		return httpResponse{}, errBadResponse{"statusCode must be 100-599"}
	}
	out := httpResponse{status: *r.StatusCode, header: http.Header{}}
	for k, v := range r.Headers {
		if !validHeader(k, v) {
			return httpResponse{}, errBadResponse{"invalid header " + strconv.Quote(k)}
		}
		out.header.Set(k, v)
	}
	for _, c := range r.Cookies {
		if !validHeader("Set-Cookie", c) {
			return httpResponse{}, errBadResponse{"invalid cookie"}
		}
		out.header.Add("Set-Cookie", c)
	}
	if r.Body != nil {
		if r.IsBase64Encoded {
			b, err := base64.StdEncoding.DecodeString(*r.Body)
			if err != nil {
				return httpResponse{}, errBadResponse{"body is not valid base64"}
			}
			out.body = b
		} else {
			out.body = []byte(*r.Body)
		}
	}
	if out.header.Get("Content-Type") == "" && len(out.body) > 0 {
		out.header.Set("Content-Type", "application/json")
	}
	return out, nil
}

// validHeader reports whether k: v can be written as an HTTP/1.1 header.
func validHeader(k, v string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return !strings.ContainsAny(v, "\r\n\x00")
}
