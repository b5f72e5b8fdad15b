package kernel

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Module is one loadable kernel module.
type Module struct {
	// Name is the module's name with underscores ("virtio_blk").
	Name string
	// Path is the .ko file on the host.
	Path string
	// Depends are the names of the modules it needs loaded first.
	Depends []string
}

// ModName normalises a module name: the kernel treats '-' and '_' alike.
func ModName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// ResolveModules returns the modules under modulesDir (a lib/modules/<release>
// tree) that loading names needs, in an order in which each module comes
// after every module it depends on (its .modinfo "depends="). Names that are
// built into the kernel (modules.builtin) are left out. An unknown name or a
// dependency cycle is an error.
func ResolveModules(modulesDir string, names ...string) ([]Module, error) {
	files := map[string]string{}
	err := filepath.WalkDir(modulesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			files[ModName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel: list modules: %w", err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modulesDir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			builtin[ModName(strings.TrimSuffix(filepath.Base(line), ".ko"))] = true
		}
	}
	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from []string) error
	visit = func(name string, from []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel: module dependency cycle: %s -> %s", strings.Join(from, " -> "), name)
		}
		if builtin[name] {
			state[name] = 2
			return nil
		}
		path, ok := files[name]
		if !ok {
			if len(from) > 0 {
				return fmt.Errorf("kernel: module %s (needed by %s) not found in %s", name, from[len(from)-1], modulesDir)
			}
			return fmt.Errorf("kernel: module %s not found in %s", name, modulesDir)
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(from, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: path, Depends: deps})
		return nil
	}
	for _, n := range names {
		if err := visit(ModName(n), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kernel: module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("kernel: module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("kernel: module %s: read .modinfo: %w", path, err)
	}
	return ParseModinfoDepends(data), nil
}

// ParseModinfoDepends returns the module names of the depends= entry of a
// .modinfo section (NUL-separated key=value strings); none when it has no
// such entry or an empty one.
func ParseModinfoDepends(modinfo []byte) []string {
	sc := bufio.NewScanner(bytes.NewReader(modinfo))
	sc.Buffer(nil, len(modinfo)+1)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, 0); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "depends="); ok {
			var deps []string
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, ModName(d))
				}
			}
			return deps
		}
	}
	return nil
}
