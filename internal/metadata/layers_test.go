package metadata

import "testing"

func TestSandboxKeyIncludesLayers(t *testing.T) {
	f := fn("111111111111", "f")
	plain := f.SandboxKey()
	f.Layers = []LayerRef{{Arn: "arn:aws:lambda:us-east-1:111111111111:layer:a:1", CodeDigest: "aa"}, {Arn: "arn:aws:lambda:us-east-1:111111111111:layer:b:1", CodeDigest: "bb"}}
	ab := f.SandboxKey()
	f.Layers[0], f.Layers[1] = f.Layers[1], f.Layers[0]
	ba := f.SandboxKey()
	if plain == ab || ab == ba || plain == ba {
		t.Fatalf("sandbox keys do not tell layers apart: %q %q %q", plain, ab, ba)
	}
	if LayersKey(nil) != "" || LayersKey(f.Layers) == "" {
		t.Fatal("LayersKey: want empty without layers only")
	}
	c := f.clone()
	c.Layers[0].Arn = "changed"
	if f.Layers[0].Arn == "changed" {
		t.Fatal("clone shares its layers with the original")
	}
}
