package frontend

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseLayerPath(t *testing.T) {
	cases := []struct {
		in   string
		ok   bool
		want layerRoute
	}{
		{"/2018-10-31/layers", true, layerRoute{}},
		{"/2018-10-31/layers/", true, layerRoute{}},
		{"/2018-10-31/layers/l/versions", true, layerRoute{layer: "l"}},
		{"/2018-10-31/layers/l/versions/3", true, layerRoute{layer: "l", version: "3"}},
		{"/2018-10-31/layers/l/versions/3/policy", true, layerRoute{layer: "l", version: "3", policy: true}},
		{"/2018-10-31/layers/l/versions/3/policy/s1", true, layerRoute{layer: "l", version: "3", policy: true, sid: "s1"}},
		{"/2018-10-31/layers/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Alayer%3Al/versions", true,
			layerRoute{layer: "arn:aws:lambda:us-east-1:000000000000:layer:l"}},
		{"/2018-10-31/layers/l", false, layerRoute{}},
		{"/2018-10-31/layers/l/policy", false, layerRoute{}},
		{"/2018-10-31/layers/l/versions/3/other", false, layerRoute{}},
		{"/2018-10-31/layers/l/versions/3/policy/s/x", false, layerRoute{}},
		{"/2018-10-31/layers//versions", false, layerRoute{}},
		{"/2018-10-31/layers/%zz/versions", false, layerRoute{}},
		{"/2018-10-31/layersX", false, layerRoute{}},
		{"/2018-10-31/functions", false, layerRoute{}},
	}
	for _, c := range cases {
		got, ok := parseLayerPath(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("parseLayerPath(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseLayerPath: any path parses or is refused without panicking, and
// what parses names a layer route whose parts, escaped again, give back a
// path that parses to the same route.
func FuzzParseLayerPath(f *testing.F) {
	for _, s := range []string{"/2018-10-31/layers", "/2018-10-31/layers/l/versions/1/policy/sid", "/2018-10-31/layers/a%2Fb/versions"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, ok := parseLayerPath(p)
		if !ok {
			return
		}
		if rt.layer == "" && (rt.version != "" || rt.policy || rt.sid != "") {
			t.Fatalf("%q: parts without a layer: %+v", p, rt)
		}
		if rt.sid != "" && !rt.policy {
			t.Fatalf("%q: statement id outside a policy: %+v", p, rt)
		}
		if rt.layer == "" {
			return
		}
		again := LayersPrefix + "layers/" + url.PathEscape(rt.layer) + "/versions"
		if rt.version != "" {
			again += "/" + rt.version
		}
		if rt.policy {
			again += "/policy"
		}
		if rt.sid != "" {
			again += "/" + url.PathEscape(rt.sid)
		}
		if strings.Contains(rt.version, "/") {
			t.Fatalf("%q: version %q contains a slash", p, rt.version)
		}
		if rt2, ok := parseLayerPath(again); !ok || rt2 != rt {
			t.Fatalf("%q → %+v → %q → %+v, %v", p, rt, again, rt2, ok)
		}
	})
}
