// Package sqsapi serves Flint's queues (internal/sqs) over the SQS API,
// on Flint's own listener, in both protocols AWS clients speak: the AWS
// JSON 1.0 protocol of current SDKs (POST / with X-Amz-Target:
// AmazonSQS.<Op>) and the query protocol of older ones such as Debian's
// AWS CLI 2.9 (a form POST with Action=<Op>, answered in XML). Match tells
// a request of either from a Lambda or Flint request.
//
// Every request acts on the caller's account (auth.AccountOf); a queue URL
// is http://HOST/ACCOUNT/NAME, and a URL naming another account's queue is
// answered as a queue that does not exist.
package sqsapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flintdev/flint/internal/auth"
	"github.com/flintdev/flint/internal/sqs"
)

const (
	targetPrefix = "AmazonSQS."
	xmlNS        = "http://queue.amazonaws.com/doc/2012-11-05/"
	maxBody      = 2 << 20 // a batch is at most 256 KiB of messages; room for encoding
)

// Config configures the handler.
type Config struct {
	Queues         *sqs.Service // required
	DefaultAccount string       // the account of a request without a caller
	// BaseURL, when set (e.g. https://queues.example.com), prefixes queue
	// URLs instead of http://<the request's Host>.
	BaseURL string
	Logger  *slog.Logger
}

// Handler serves the SQS API. Safe for concurrent use.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Queues == nil {
		return nil, errorString("sqsapi: Queues is required")
	}
	if cfg.DefaultAccount == "" {
		cfg.DefaultAccount = "000000000000"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Handler{cfg: cfg, log: cfg.Logger}, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Match reports whether r is an SQS request: a POST with X-Amz-Target
// AmazonSQS.*, or a form POST to / or to a queue URL's path. Lambda's and
// Flint's own APIs never send either.
func Match(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		return true
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return false
	}
	if r.URL.Path == "/" {
		return true
	}
	_, _, ok := queuePath(r.URL.Path)
	return ok
}

// queuePath splits /ACCOUNT/NAME.
func queuePath(p string) (account, name string, ok bool) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) != 2 || !auth.ValidAccount(parts[0]) || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// call is one request in flight.
type call struct {
	h       *Handler
	r       *http.Request
	ctx     context.Context
	op      string
	query   bool // answer in XML
	account string
	reqID   string
	in      input
}

// ServeHTTP answers one SQS request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{h: h, r: r, ctx: r.Context(), account: auth.AccountOf(r.Context(), h.cfg.DefaultAccount), reqID: newRequestID()}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		c.fail(w, sqs.Errorf(sqs.InvalidParameterValue, "The request body could not be read."))
		return
	}
	if len(body) > maxBody {
		c.fail(w, sqs.Errorf(sqs.BatchRequestTooLong, "The request is too large."))
		return
	}
	if t := r.Header.Get("X-Amz-Target"); strings.HasPrefix(t, targetPrefix) {
		c.op = strings.TrimPrefix(t, targetPrefix)
		if len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &c.in); err != nil {
				c.fail(w, &sqs.Error{Code: "SerializationException", Message: "The request body is not valid JSON for this operation.", Status: http.StatusBadRequest})
				return
			}
		}
	} else {
		c.query = true
		form, err := url.ParseQuery(string(body))
		if err != nil {
			c.fail(w, sqs.Errorf(sqs.InvalidParameterValue, "The request body is not a valid form."))
			return
		}
		c.op = form.Get("Action")
		if c.in, err = decodeQuery(form); err != nil {
			c.fail(w, err)
			return
		}
	}
	if c.in.QueueUrl == "" {
		if acct, name, ok := queuePath(r.URL.Path); ok {
			c.in.QueueUrl = "/" + acct + "/" + name
		}
	}
	op, ok := ops[c.op]
	if !ok {
		c.fail(w, &sqs.Error{Code: sqs.InvalidAction, Message: "The action " + c.op + " is not valid for this endpoint.", Status: http.StatusBadRequest})
		return
	}
	out, err := op(c)
	if err != nil {
		if e := sqs.AsError(err); e.Status >= 500 {
			h.log.Error("sqs request failed", "op", c.op, "account", c.account, "err", err)
		}
		c.fail(w, err)
		return
	}
	c.reply(w, out)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

func (c *call) reply(w http.ResponseWriter, out any) {
	w.Header().Set("X-Amzn-RequestId", c.reqID)
	if !c.query {
		if out == nil {
			out = struct{}{}
		}
		b, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
		return
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	root := xml.StartElement{Name: xml.Name{Local: c.op + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: xmlNS}}}
	_ = enc.EncodeToken(root)
	if out != nil {
		if err := enc.EncodeElement(out, xml.StartElement{Name: xml.Name{Local: c.op + "Result"}}); err != nil {
			c.h.log.Error("encoding an sqs response", "op", c.op, "err", err)
		}
	}
	_ = enc.EncodeElement(struct {
		RequestId string `xml:"RequestId"`
	}{c.reqID}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}})
	_ = enc.EncodeToken(root.End())
	_ = enc.Flush()
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}

// fail answers err in the request's protocol: JSON with __type and the
// query code in x-amzn-query-error, or the query protocol's ErrorResponse.
func (c *call) fail(w http.ResponseWriter, err error) {
	e := sqs.AsError(err)
	w.Header().Set("X-Amzn-RequestId", c.reqID)
	fault := "Sender"
	if !e.Sender() {
		fault = "Receiver"
	}
	if !c.query {
		b, _ := json.Marshal(map[string]string{"__type": "com.amazonaws.sqs#" + e.Code, "message": e.Message})
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("x-amzn-query-error", e.QueryCode()+";"+fault)
		w.WriteHeader(e.Status)
		_, _ = w.Write(b)
		return
	}
	type detail struct{}
	resp := struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		NS      string   `xml:"xmlns,attr"`
		Error   struct {
			Type    string  `xml:"Type"`
			Code    string  `xml:"Code"`
			Message string  `xml:"Message"`
			Detail  *detail `xml:"Detail"`
		} `xml:"Error"`
		RequestId string `xml:"RequestId"`
	}{NS: xmlNS, RequestId: c.reqID}
	resp.Error.Type, resp.Error.Code, resp.Error.Message, resp.Error.Detail = fault, e.QueryCode(), e.Message, &detail{}
	b, _ := xml.Marshal(resp)
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

// queueURL is the URL of a queue of the caller's account.
func (c *call) queueURL(name string) string {
	base := c.h.cfg.BaseURL
	if base == "" {
		scheme := "http"
		if c.r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + c.r.Host
	}
	return strings.TrimSuffix(base, "/") + "/" + c.account + "/" + name
}

// queue resolves the request's QueueUrl to a queue name of the caller's
// account.
func (c *call) queue() (string, error) {
	if c.in.QueueUrl == "" {
		return "", sqs.Errorf(sqs.MissingParameter, "The request must contain the parameter QueueUrl.")
	}
	u, err := url.Parse(c.in.QueueUrl)
	if err != nil {
		return "", sqs.Errorf(sqs.InvalidParameterValue, "Value %s for parameter QueueUrl is invalid. Reason: not a URL.", c.in.QueueUrl)
	}
	acct, name, ok := queuePath(u.Path)
	if !ok {
		return "", sqs.Errorf(sqs.InvalidParameterValue, "Value %s for parameter QueueUrl is invalid. Reason: Queue URLs are of the form http://HOST/ACCOUNT/NAME.", c.in.QueueUrl)
	}
	if acct != c.account {
		return "", sqs.Errorf(sqs.QueueDoesNotExist, "The specified queue does not exist.")
	}
	return name, nil
}

// sender is the SenderId of the caller's messages: its access key, or
// its account when requests are not signed.
func (c *call) sender() string {
	if cl, ok := auth.CallerOf(c.ctx); ok && cl.AccessKeyID != "" {
		return cl.AccessKeyID
	}
	return c.account
}
