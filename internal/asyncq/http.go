package asyncq

import (
	"context"
	"net/http"
	"strconv"

	"github.com/flintdev/flint/internal/asyncq/queues"
	"github.com/flintdev/flint/internal/invocation"
	"github.com/flintdev/flint/internal/lambdaerr"
	"github.com/flintdev/flint/internal/metadata"
)

// Handler serves Flint's own async routes (the server mounts it behind
// its Flint API handler; Lambda's event-invoke-config routes are the
// frontend's, on the methods in eventconfig_api.go):
//
//	GET    /flint/v1/invocations/{requestId}                      invocation status
//	GET    /flint/v1/queues/{name}/messages?max=N                 peek
//	POST   /flint/v1/queues/{name}/receive?max=N                  take and delete
//	DELETE /flint/v1/queues/{name}[/messages]                     purge
//	POST   /flint/v1/queues/{name}/redrive?function=F[&qualifier=Q][&max=N]
//
// Queue names are of the calling account (Config.AccountOf).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flint/v1/invocations/{requestId}", s.getStatus)
	mux.HandleFunc("GET /flint/v1/queues/{name}/messages", s.queueRead(false))
	mux.HandleFunc("POST /flint/v1/queues/{name}/receive", s.queueRead(true))
	mux.HandleFunc("DELETE /flint/v1/queues/{name}", s.queuePurge)
	mux.HandleFunc("DELETE /flint/v1/queues/{name}/messages", s.queuePurge)
	mux.HandleFunc("POST /flint/v1/queues/{name}/redrive", s.queueRedrive)
	return mux
}

func (s *Service) getStatus(w http.ResponseWriter, r *http.Request) {
	account, err := s.accountOf(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	id := r.PathValue("requestId")
	st, err := s.Status(r.Context(), id)
	if err == nil && st.Account != account {
		// Another account's invocation is, to this caller, no invocation.
		err = lambdaerr.New(lambdaerr.ResourceNotFound, "no asynchronous invocation with request id %s", id)
	}
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// queueOf returns the calling account and the queue name of the path.
func (s *Service) queueOf(r *http.Request) (string, string, error) {
	account, err := s.accountOf(r)
	if err != nil {
		return "", "", err
	}
	name := r.PathValue("name")
	if !queues.ValidName(name) {
		return "", "", lambdaerr.New(lambdaerr.InvalidParameterValue, "invalid queue name %q", name)
	}
	return account, name, nil
}

func maxParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("max")
	if v == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > queues.MaxBatch {
		return 0, lambdaerr.New(lambdaerr.InvalidParameterValue, "max must be between 1 and %d", queues.MaxBatch)
	}
	return n, nil
}

type messagesResponse struct {
	Messages []queues.Message `json:"messages"`
}

// queueAndMax reads the queue a request names and its max parameter.
func (s *Service) queueAndMax(r *http.Request) (account, name string, max int, err error) {
	if account, name, err = s.queueOf(r); err != nil {
		return "", "", 0, err
	}
	max, err = maxParam(r)
	return account, name, max, err
}

func (s *Service) queueRead(take bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		account, name, n, err := s.queueAndMax(r)
		if err != nil {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		var msgs []queues.Message
		if take {
			msgs, err = s.queues.Receive(r.Context(), account, name, n)
		} else {
			msgs, err = s.queues.Peek(r.Context(), account, name, n)
		}
		if err != nil && len(msgs) == 0 {
			lambdaerr.WriteHTTP(w, err)
			return
		}
		if msgs == nil {
			msgs = []queues.Message{}
		}
		// A receive that failed part-way still returns what it took.
		writeJSON(w, http.StatusOK, messagesResponse{Messages: msgs})
	}
}

func (s *Service) queuePurge(w http.ResponseWriter, r *http.Request) {
	account, name, err := s.queueOf(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	if err := s.queues.Purge(r.Context(), account, name); err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type redriveResponse struct {
	Redriven   int      `json:"redriven"`
	RequestIDs []string `json:"requestIds"`
}

func (s *Service) queueRedrive(w http.ResponseWriter, r *http.Request) {
	account, name, n, err := s.queueAndMax(r)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	fnName := r.URL.Query().Get("function")
	qual := r.URL.Query().Get("qualifier")
	if qual == "" {
		qual = metadata.LatestVersion
	}
	if !validFunctionName(fnName) || !validQualifier(qual) {
		lambdaerr.WriteHTTP(w, lambdaerr.New(lambdaerr.InvalidParameterValue, "a valid function (and optional qualifier) query parameter is required"))
		return
	}
	fn, err := s.cfg.Functions.Get(r.Context(), account, fnName, qual)
	if err != nil {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	ids, err := s.Redrive(r.Context(), fn, account, name, n)
	if err != nil && len(ids) == 0 {
		lambdaerr.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, redriveResponse{Redriven: len(ids), RequestIDs: ids})
}

// Redrive re-enqueues up to max of the oldest messages of a Flint queue as
// asynchronous invocations of fn (the message body is the event) and
// removes them from the queue. Each message is enqueued before it is
// deleted, so a crash can duplicate but never lose one; the new request id
// is derived from the message, so a repeated redrive of the same message
// within the de-duplication window is queued once. It returns the new
// request ids.
func (s *Service) Redrive(ctx context.Context, fn *metadata.Function, account, queue string, max int) ([]string, error) {
	msgs, err := s.queues.Peek(ctx, account, queue, max)
	if err != nil && len(msgs) == 0 {
		return nil, err
	}
	var ids []string
	for _, m := range msgs {
		id := derivedUUID("redrive", account, queue, m.MessageID, strconv.FormatUint(m.Sequence, 10))
		if err := s.Enqueue(ctx, fn, invocation.Request{RequestID: id, Payload: []byte(m.Body)}); err != nil {
			return ids, err
		}
		if _, err := s.queues.Delete(ctx, m.Sequence); err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (s *Service) accountOf(r *http.Request) (string, error) {
	if s.cfg.AccountOf == nil {
		return s.cfg.DefaultAccount, nil
	}
	return s.cfg.AccountOf(r)
}
