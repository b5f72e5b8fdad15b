package asyncq

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func doJSON(t *testing.T, method, url string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, url, body, err)
		}
	}
	return resp.StatusCode
}

func TestInvocationStatusHTTP(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.svc.Handler())
	defer srv.Close()
	fn := e.fns.add("st", "")
	e.inv.set("st", &behavior{failTimes: 100})
	e.putConfig("st", "$LATEST", &EventInvokeConfig{MaximumRetryAttempts: intp(0)})
	e.enqueue(fn, "88888888-8888-4888-8888-888888888888", `{}`)
	e.waitStatus("88888888-8888-4888-8888-888888888888", StateFailed)

	var got map[string]any
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/invocations/88888888-8888-4888-8888-888888888888", &got); code != 200 {
		t.Fatalf("status %d", code)
	}
	errObj, _ := got["error"].(map[string]any)
	if got["status"] != "failed" || got["function"] != "st" || got["attempts"] != float64(1) ||
		got["enqueuedAt"] == nil || got["startedAt"] == nil || got["finishedAt"] == nil ||
		errObj["errorType"] != "Error" || !strings.HasPrefix(errObj["errorMessage"].(string), "boom") {
		t.Fatalf("status body %v", got)
	}
	var eb map[string]string
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/invocations/nope", &eb); code != 404 || eb["Type"] != "User" || eb["message"] == "" {
		t.Fatalf("unknown id: %d %v", code, eb)
	}
}

func TestQueuesHTTPAndRedrive(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.svc.Handler())
	defer srv.Close()
	fn := e.fns.add("flaky", "arn:aws:sqs:us-east-1:"+testAccount+":dead")
	e.inv.set("flaky", &behavior{failTimes: 100})
	e.putConfig("flaky", "$LATEST", &EventInvokeConfig{MaximumRetryAttempts: intp(0)})
	for _, id := range []string{"a1", "a2", "a3"} {
		e.enqueue(fn, id, `{"id":"`+id+`"}`)
	}
	e.queueMessages("dead", 3)
	e.inv.set("flaky", &behavior{}) // fixed

	type msgs struct {
		Messages []struct {
			MessageID  string            `json:"messageId"`
			Body       string            `json:"body"`
			Attributes map[string]string `json:"attributes"`
		} `json:"messages"`
	}
	var peek msgs
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/queues/dead/messages?max=10", &peek); code != 200 || len(peek.Messages) != 3 {
		t.Fatalf("peek: %d %+v", code, peek)
	}
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/queues/dead/messages?max=0", nil); code != 400 {
		t.Fatalf("max=0: %d", code)
	}

	// Redrive re-enqueues two, then the last; the function now succeeds.
	var rd struct {
		Redriven   int      `json:"redriven"`
		RequestIDs []string `json:"requestIds"`
	}
	if code := doJSON(t, "POST", srv.URL+"/flint/v1/queues/dead/redrive?function=flaky&max=2", &rd); code != 200 || rd.Redriven != 2 {
		t.Fatalf("redrive: %d %+v", code, rd)
	}
	ids := append([]string(nil), rd.RequestIDs...)
	if code := doJSON(t, "POST", srv.URL+"/flint/v1/queues/dead/redrive?function=flaky", &rd); code != 200 || rd.Redriven != 1 {
		t.Fatalf("second redrive: %d %+v", code, rd)
	}
	ids = append(ids, rd.RequestIDs...)
	payloads := map[string]bool{}
	for _, id := range ids {
		e.waitStatus(id, StateSucceeded)
		for _, c := range e.inv.callsOf("flaky") {
			if c.requestID == id {
				payloads[string(c.payload)] = true
			}
		}
	}
	if len(payloads) != 3 || !payloads[`{"id":"a1"}`] || !payloads[`{"id":"a2"}`] || !payloads[`{"id":"a3"}`] {
		t.Fatalf("redriven payloads %v", payloads)
	}
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/queues/dead/messages", &peek); code != 200 || len(peek.Messages) != 0 {
		t.Fatalf("after redrive: %+v", peek)
	}

	// Receive takes messages exactly once; purge empties.
	q := e.svc.Queues()
	for i := 0; i < 3; i++ {
		if err := q.Send(t.Context(), testAccount, "work", []byte{'m', byte('0' + i)}, map[string]string{"K": "v"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	var recv msgs
	if code := doJSON(t, "POST", srv.URL+"/flint/v1/queues/work/receive?max=2", &recv); code != 200 || len(recv.Messages) != 2 ||
		recv.Messages[0].Body != "m0" || recv.Messages[1].Body != "m1" || recv.Messages[0].Attributes["K"] != "v" {
		t.Fatalf("receive: %d %+v", code, recv)
	}
	if code := doJSON(t, "POST", srv.URL+"/flint/v1/queues/work/receive?max=10", &recv); code != 200 || len(recv.Messages) != 1 || recv.Messages[0].Body != "m2" {
		t.Fatalf("second receive: %+v", recv)
	}
	_ = q.Send(t.Context(), testAccount, "work", []byte("x"), nil, "")
	if code := doJSON(t, "DELETE", srv.URL+"/flint/v1/queues/work", nil); code != 204 {
		t.Fatalf("purge: %d", code)
	}
	if code := doJSON(t, "GET", srv.URL+"/flint/v1/queues/work/messages", &peek); code != 200 || len(peek.Messages) != 0 {
		t.Fatalf("after purge: %+v", peek)
	}
	if code := doJSON(t, "POST", srv.URL+"/flint/v1/queues/dead/redrive?function=nosuch", nil); code != 404 {
		t.Fatalf("redrive to unknown function: %d", code)
	}
}
