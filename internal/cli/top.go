package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
)

// newTopCmd is `flint top`: the console's figures in a terminal, redrawn
// every --interval. Everything comes from the server's API: the function
// list, each function's invocation records and /metrics.
func newTopCmd(g *globals) *cobra.Command {
	var (
		interval time.Duration
		window   time.Duration
		count    int
		once     bool
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show functions, invocations, sandboxes and hosts, refreshing",
		Long: "Top shows, per function, the invocations, errors, duration percentiles and cold starts\n" +
			"of the last --window (from its invocation records), the executions running now, and the\n" +
			"server's sandboxes, hosts and async queue (from /metrics). It redraws every --interval\n" +
			"until interrupted, or --count times; --once prints one plain frame.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if once {
				count = 1
			}
			out := cmd.OutOrStdout()
			redraw := !once && isTerminal(out)
			for i := 0; count <= 0 || i < count; i++ {
				if i > 0 {
					select {
					case <-cmd.Context().Done():
						return nil
					case <-time.After(interval):
					}
				}
				frame, err := topFrame(cmd.Context(), g, window)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if redraw {
					io.WriteString(out, "\x1b[H\x1b[2J") // home, clear
				} else if i > 0 {
					io.WriteString(out, "\n")
				}
				io.WriteString(out, frame)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	f.DurationVar(&window, "window", time.Minute, "the span the per-function figures cover")
	f.IntVar(&count, "count", 0, "stop after this many frames (0: until interrupted)")
	f.BoolVar(&once, "once", false, "print one frame, without terminal control codes, and exit")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// topRecord is the part of an invocation record top uses.
type topRecord struct {
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	ColdStart  bool      `json:"coldStart"`
	Outcome    string    `json:"outcome"`
}

// topFrame renders one frame.
func topFrame(ctx context.Context, g *globals, window time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := time.Now()
	hc := g.httpClient()
	fams, err := scrapeMetrics(ctx, hc, g.endpoint)
	if err != nil {
		return "", err
	}
	list, err := g.client().ListFunctions(ctx, &lambda.ListFunctionsInput{MaxItems: aws.Int32(50)})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "flint top   %s   %s   window %s\n\n", g.endpoint, now.Format("15:04:05"), window)

	state := func(s string) float64 { return sample(fams, "flint_sandboxes", "state", s) }
	fmt.Fprintf(&b, "sandboxes  %d busy, %d idle, %d creating\n", int(state("busy")), int(state("idle")), int(state("creating")))
	age := "–"
	if a := sample(fams, "flint_async_oldest_event_age_seconds", "", ""); a > 0 {
		age = (time.Duration(a) * time.Second).String()
	}
	fmt.Fprintf(&b, "async      %d queued or running, oldest %s\n", int(sample(fams, "flint_async_queue_depth", "", "")), age)
	for _, host := range labelValues(fams, "flint_host_memory_capacity_bytes", "host") {
		used := "?"
		if v, ok := sampleOK(fams, "flint_host_memory_used_bytes", "host", host); ok {
			used = mib(v)
		}
		fmt.Fprintf(&b, "host %-6s %d sandboxes, memory %s reserved, %s used, of %s\n", host,
			int(sample(fams, "flint_host_sandboxes", "host", host)),
			mib(sample(fams, "flint_host_memory_reserved_bytes", "host", host)), used,
			mib(sample(fams, "flint_host_memory_capacity_bytes", "host", host)))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FUNCTION\tRUNTIME\tMEMORY\tINVOCATIONS\tERRORS\tP50\tP99\tCOLD\tRUNNING\tLAST\t")
	for _, fn := range list.Functions {
		name := aws.ToString(fn.FunctionName)
		recs, err := readRecords(ctx, hc, g.endpoint, name, now.Add(-window))
		if err != nil {
			return "", err
		}
		var errs, cold int
		var durs []float64
		for _, r := range recs {
			if r.Outcome != "success" {
				errs++
			}
			if r.ColdStart {
				cold++
			}
			durs = append(durs, r.DurationMs)
		}
		slices.Sort(durs)
		last := "–"
		if n := len(recs); n > 0 {
			last = now.Sub(recs[n-1].Start).Round(time.Second).String() + " ago"
		}
		running := 0.0
		for _, v := range labelValues(fams, "flint_concurrent_executions", "version") {
			running += sampleWhere(fams, "flint_concurrent_executions", map[string]string{"function": name, "version": v})
		}
		fmt.Fprintf(tw, "%s\t%s\t%d MB\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t\n", name, fn.Runtime, aws.ToInt32(fn.MemorySize),
			len(recs), errs, pctMs(durs, 50), pctMs(durs, 99), cold, int(running), last)
	}
	if len(list.Functions) == 0 {
		fmt.Fprintln(tw, "(no functions)\t\t\t\t\t\t\t\t\t\t")
	}
	tw.Flush()
	return b.String(), nil
}

func pctMs(sorted []float64, p int) string {
	if len(sorted) == 0 {
		return "–"
	}
	i := (len(sorted)*p + 99) / 100
	v := sorted[min(max(i-1, 0), len(sorted)-1)]
	if v >= 1000 {
		return fmt.Sprintf("%.2fs", v/1000)
	}
	return fmt.Sprintf("%.1fms", v)
}

func mib(bytes float64) string {
	if bytes >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", bytes/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", bytes/(1<<20))
}

// get fetches a Flint endpoint with hc (which signs); a non-200 answer is
// an error in the user's terms.
func get(ctx context.Context, hc *http.Client, endpoint, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(endpoint, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, e.Message)
		}
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

func readRecords(ctx context.Context, hc *http.Client, endpoint, name string, since time.Time) ([]topRecord, error) {
	body, err := get(ctx, hc, endpoint, "/flint/v1/functions/"+url.PathEscape(name)+"/invocations?limit=10000&since="+
		url.QueryEscape(since.UTC().Format(time.RFC3339Nano)))
	if err != nil {
		return nil, err
	}
	var out struct{ Invocations []topRecord }
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("invocation records of %s: %w", name, err)
	}
	return out.Invocations, nil
}

func scrapeMetrics(ctx context.Context, hc *http.Client, endpoint string) (map[string]*dto.MetricFamily, error) {
	body, err := get(ctx, hc, endpoint, "/metrics")
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("reading /metrics: %w", err)
	}
	return fams, nil
}

// sampleWhere is the value of the sample of family whose labels include
// want (0 when none).
func sampleWhere(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	v, _ := sampleWhereOK(fams, family, want)
	return v
}

func sampleWhereOK(fams map[string]*dto.MetricFamily, family string, want map[string]string) (float64, bool) {
	f := fams[family]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			if labelOf(m, k) != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func sample(fams map[string]*dto.MetricFamily, family, label, value string) float64 {
	v, _ := sampleOK(fams, family, label, value)
	return v
}

func sampleOK(fams map[string]*dto.MetricFamily, family, label, value string) (float64, bool) {
	want := map[string]string{}
	if label != "" {
		want[label] = value
	}
	return sampleWhereOK(fams, family, want)
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// labelValues lists the values of label among family's samples, sorted.
func labelValues(fams map[string]*dto.MetricFamily, family, label string) []string {
	f := fams[family]
	if f == nil {
		return nil
	}
	var out []string
	for _, m := range f.Metric {
		if v := labelOf(m, label); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}
