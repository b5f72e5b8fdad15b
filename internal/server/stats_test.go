package server

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// Without --stats-gc no caller can make the server collect garbage.
func TestStatsGCNeedsTheFlag(t *testing.T) {
	c := &components{}
	for q, want := range map[string]string{
		"gc=true": "gc=true needs flint server --stats-gc",
		"gc=yes":  "gc must be true or false",
	} {
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		w := httptest.NewRecorder()
		c.statsHandler(w, httptest.NewRequest("GET", "/flint/v1/stats?"+q, nil))
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if w.Code != http.StatusBadRequest || w.Header().Get("X-Amzn-ErrorType") != "InvalidParameterValueException" || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s %s, want 400 InvalidParameterValueException %q", q, w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body, want)
		}
		if after.NumForcedGC != before.NumForcedGC {
			t.Errorf("%s: the server collected garbage", q)
		}
	}
}
