package codestore

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flintdev/flint/internal/lambdaerr"
)

// Lambda's own limits for a deployment package.
const (
	DefaultMaxZipBytes      = 50 << 20  // 52428800, zipped, direct upload
	DefaultMaxUnzippedBytes = 250 << 20 // 262144000, unzipped
	DefaultMaxFiles         = 20000
)

// Limits on a single entry, fixed: they are the kernel's.
const (
	maxPathBytes      = 4096 // PATH_MAX
	maxNameBytes      = 255  // NAME_MAX, one path component
	maxSymlinkTarget  = 4096
	flagEncrypted     = 0x1
	msgCouldNotUnzip  = "Could not unzip uploaded file. Please check your file, then try to upload again."
	tempPrefixPattern = ".tmp-"
)

// Limits bound what a code package may contain. A zero field means the
// default (Lambda's value).
type Limits struct {
	// MaxZipBytes is the largest accepted zip, in bytes. Exceeding it is a
	// RequestEntityTooLargeException, as in Lambda.
	MaxZipBytes int64
	// MaxUnzippedBytes bounds the sum of the bytes of all files, counted
	// while decompressing: sizes declared in the zip headers are never
	// trusted.
	MaxUnzippedBytes int64
	// MaxFiles bounds the number of entries (files, directories, links).
	MaxFiles int
}

// DefaultLimits returns Lambda's limits.
func DefaultLimits() Limits {
	return Limits{
		MaxZipBytes:      DefaultMaxZipBytes,
		MaxUnzippedBytes: DefaultMaxUnzippedBytes,
		MaxFiles:         DefaultMaxFiles,
	}
}

// withDefaults fills zero (or negative) fields with Lambda's values.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxZipBytes <= 0 {
		l.MaxZipBytes = d.MaxZipBytes
	}
	if l.MaxUnzippedBytes <= 0 {
		l.MaxUnzippedBytes = d.MaxUnzippedBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	return l
}

// invalid is a bad-input error the caller sees.
func invalid(format string, args ...any) error {
	return lambdaerr.New(lambdaerr.InvalidParameterValue, format, args...)
}

// corrupt is Lambda's "could not unzip" error; the detail is kept in the
// wrapping error's text for logs but not shown to the API caller.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w (%s)", invalid(msgCouldNotUnzip), fmt.Sprintf(format, args...))
}

func tooLarge(limit int64) error {
	return invalid("Unzipped size must be smaller than %d bytes", limit)
}

type entryKind int

const (
	kindDir entryKind = iota + 1
	kindFile
	kindSymlink
)

// entry is one validated zip entry that produces a file or a link.
type entry struct {
	f      *zip.File
	name   string // clean, slash-separated, local, never "" or "."
	kind   entryKind
	perm   fs.FileMode // for files: 0644 or 0755
	target string      // for symlinks
}

// plan is what extracting a zip will create, decided before anything is
// written: every directory (declared or implied), parents before children,
// then the files and links in zip order.
type plan struct {
	dirs    []string
	entries []entry
}

// open checks the zipped size and parses the central directory.
func open(data []byte, lim Limits) (*zip.Reader, error) {
	if int64(len(data)) > lim.MaxZipBytes {
		return nil, lambdaerr.New(lambdaerr.RequestEntityTooLarge,
			"Zipped code package must be smaller than %d bytes (got %d)", lim.MaxZipBytes, len(data))
	}
	if len(data) == 0 {
		return nil, corrupt("empty file")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// ErrInsecurePath (GODEBUG zipinsecurepath=0) is ignored: names are
		// checked below, with a message saying which one is wrong.
		return nil, corrupt("%v", err)
	}
	if len(zr.File) > lim.MaxFiles {
		return nil, invalid("Code package has %d entries; at most %d are allowed", len(zr.File), lim.MaxFiles)
	}
	return zr, nil
}

// cleanName validates an entry name and returns it cleaned ("" for the
// package root itself, e.g. "./").
func cleanName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", invalid("Code package has an entry with an empty name")
	case strings.IndexByte(raw, 0) >= 0:
		return "", invalid("Code package entry %q contains a NUL byte", raw)
	case strings.IndexByte(raw, '\\') >= 0:
		return "", invalid("Code package entry %q contains a backslash; use '/' as the path separator", raw)
	case strings.HasPrefix(raw, "/"):
		return "", invalid("Code package entry %q has an absolute path", raw)
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", invalid("Code package entry %q contains a '..' path component", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return "", nil
	}
	if len(name) > maxPathBytes {
		return "", invalid("Code package entry %.64q... has a path longer than %d bytes", name, maxPathBytes)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > maxNameBytes {
			return "", invalid("Code package entry %.64q... has a path component longer than %d bytes", name, maxNameBytes)
		}
	}
	if !filepath.IsLocal(name) { // cannot happen after the checks above; kept as a guard
		return "", invalid("Code package entry %q is outside the package", raw)
	}
	return name, nil
}

// checkTarget validates the target of the symlink at name. A target must be
// relative; ".." components may only come first (so they only climb through
// the link's real parent directories, never through another link) and may
// not climb above the package root.
func checkTarget(name, target string) error {
	switch {
	case target == "":
		return invalid("Code package symlink %q has an empty target", name)
	case strings.IndexByte(target, 0) >= 0:
		return invalid("Code package symlink %q has a target containing a NUL byte", name)
	case strings.IndexByte(target, '\\') >= 0:
		return invalid("Code package symlink %q has a target containing a backslash", name)
	case strings.HasPrefix(target, "/"):
		return invalid("Code package symlink %q has an absolute target %q", name, target)
	}
	ups, descended := 0, false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if descended {
				return invalid("Code package symlink %q target %q: '..' is only allowed at the start of a target", name, target)
			}
			ups++
		default:
			descended = true
		}
	}
	depth := 0
	if dir := path.Dir(name); dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	if ups > depth {
		return invalid("Code package symlink %q target %q points outside the package", name, target)
	}
	return nil
}

// fileKind classifies an entry by its mode, rejecting devices, fifos,
// sockets and other special files.
func fileKind(f *zip.File) (entryKind, error) {
	m := f.Mode()
	switch {
	case m.IsDir():
		return kindDir, nil
	case m&fs.ModeSymlink != 0:
		return kindSymlink, nil
	case m.IsRegular():
		return kindFile, nil
	default:
		return 0, invalid("Code package entry %q is a special file (%v); only files, directories and symlinks are allowed", f.Name, m.Type())
	}
}

// filePerm is the mode a regular file gets: 0755 when any exec bit is set,
// else 0644. setuid, setgid, sticky and group/other write are dropped.
func filePerm(m fs.FileMode) fs.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// readTarget reads a symlink entry's target, bounded in size.
func readTarget(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", corrupt("symlink %q: %v", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSymlinkTarget+1))
	if err != nil {
		return "", corrupt("symlink %q: %v", f.Name, err)
	}
	if len(b) > maxSymlinkTarget {
		return "", invalid("Code package symlink %q has a target longer than %d bytes", f.Name, maxSymlinkTarget)
	}
	return string(b), nil
}

// makePlan validates every entry's name and type, the symlinks and the
// tree shape, and decides what will be created. Nothing is decompressed
// except symlink targets.
// openPlan opens data as a zip and checks its entries into a plan.
func openPlan(data []byte, lim Limits) (*plan, error) {
	zr, err := open(data, lim)
	if err != nil {
		return nil, err
	}
	return makePlan(zr, lim)
}

func makePlan(zr *zip.Reader, lim Limits) (*plan, error) {
	kinds := make(map[string]entryKind, len(zr.File))
	p := &plan{}
	var declared uint64
	for _, f := range zr.File {
		if f.Flags&flagEncrypted != 0 {
			return nil, invalid("Code package entry %q is encrypted; encrypted zips are not supported", f.Name)
		}
		name, err := cleanName(f.Name)
		if err != nil {
			return nil, err
		}
		kind, err := fileKind(f)
		if err != nil {
			return nil, err
		}
		if name == "" {
			if kind != kindDir {
				return nil, invalid("Code package entry %q is not a directory but names the package root", f.Name)
			}
			continue
		}
		if _, dup := kinds[name]; dup {
			return nil, invalid("Code package has more than one entry for %q", name)
		}
		kinds[name] = kind
		// Early, cheap rejection of honest big packages; the real bound is
		// the running count while decompressing.
		declared += f.UncompressedSize64
		if declared > uint64(lim.MaxUnzippedBytes) || declared < f.UncompressedSize64 {
			return nil, tooLarge(lim.MaxUnzippedBytes)
		}
		e := entry{f: f, name: name, kind: kind}
		switch kind {
		case kindDir:
			continue
		case kindFile:
			e.perm = filePerm(f.Mode())
		case kindSymlink:
			if e.target, err = readTarget(f); err != nil {
				return nil, err
			}
			if err := checkTarget(name, e.target); err != nil {
				return nil, err
			}
		}
		p.entries = append(p.entries, e)
	}
	// Every parent of every entry must be a directory, declared or implied:
	// never a file, never a symlink (nothing is written through a link).
	dirs := make(map[string]bool)
	for name, kind := range kinds {
		if kind == kindDir {
			dirs[name] = true
		}
		for i := strings.LastIndexByte(name, '/'); i > 0; i = strings.LastIndexByte(name[:i], '/') {
			parent := name[:i]
			switch kinds[parent] {
			case kindFile:
				return nil, invalid("Code package entry %q is inside %q, which is a file", name, parent)
			case kindSymlink:
				return nil, invalid("Code package entry %q goes through the symlink %q", name, parent)
			}
			if dirs[parent] {
				break // its own parents were checked when it was added
			}
			dirs[parent] = true
		}
	}
	p.dirs = make([]string, 0, len(dirs))
	for d := range dirs {
		p.dirs = append(p.dirs, d)
	}
	sort.Strings(p.dirs) // a parent is a prefix, so it sorts before its children
	return p, nil
}

// errReader remembers the first non-EOF read error, to tell a corrupt zip
// (read side) from a failing disk (write side) after io.Copy.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// errBudget is returned by copyLimited when src has more than budget bytes.
var errBudget = errors.New("size budget exceeded")

// copyLimited copies src to dst, stopping after budget+1 bytes. It returns
// the bytes copied and errBudget when src holds more than budget bytes; a
// read error is returned as readErr, a write error as writeErr.
func copyLimited(dst io.Writer, src io.Reader, budget int64) (n int64, readErr, writeErr error) {
	er := &errReader{r: src}
	n, err := io.Copy(dst, io.LimitReader(er, budget+1))
	if er.err != nil {
		return n, er.err, nil
	}
	if err != nil {
		return n, nil, err
	}
	if n > budget {
		return n, errBudget, nil
	}
	return n, nil, nil
}

// run decompresses every file of p, counting the bytes actually produced.
// With root nil the data is discarded (validation only); otherwise the
// plan is materialised under root.
func (p *plan) run(root *os.Root, lim Limits) error {
	_, err := p.measure(root, lim)
	return err
}

// measure is run, also returning the unzipped size: the bytes of every
// file plus the length of every symlink target.
func (p *plan) measure(root *os.Root, lim Limits) (int64, error) {
	if root != nil {
		for _, d := range p.dirs {
			if err := root.Mkdir(d, 0o755); err != nil {
				return 0, fmt.Errorf("mkdir %s: %w", d, err)
			}
			if err := root.Chmod(d, 0o755); err != nil {
				return 0, fmt.Errorf("chmod %s: %w", d, err)
			}
		}
	}
	remaining := lim.MaxUnzippedBytes
	for _, e := range p.entries {
		if e.kind == kindSymlink {
			remaining -= int64(len(e.target))
			if remaining < 0 {
				return 0, tooLarge(lim.MaxUnzippedBytes)
			}
			if root != nil {
				if err := root.Symlink(e.target, e.name); err != nil {
					return 0, fmt.Errorf("symlink %s: %w", e.name, err)
				}
			}
			continue
		}
		n, err := p.writeFile(root, e, remaining)
		remaining -= n
		if err != nil {
			if errors.Is(err, errBudget) {
				return 0, tooLarge(lim.MaxUnzippedBytes)
			}
			return 0, err
		}
	}
	return lim.MaxUnzippedBytes - remaining, nil
}

// writeFile decompresses one file entry into root (or nowhere) and returns
// the bytes it produced.
func (p *plan) writeFile(root *os.Root, e entry, budget int64) (int64, error) {
	rc, err := e.f.Open()
	if err != nil {
		if errors.Is(err, zip.ErrAlgorithm) {
			return 0, invalid("Code package entry %q uses an unsupported compression method %d", e.name, e.f.Method)
		}
		return 0, corrupt("%s: %v", e.name, err)
	}
	defer rc.Close()
	var dst io.Writer = io.Discard
	var out *os.File
	if root != nil {
		out, err = root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return 0, fmt.Errorf("create %s: %w", e.name, err)
		}
		defer out.Close()
		dst = out
	}
	n, readErr, writeErr := copyLimited(dst, rc, budget)
	switch {
	case errors.Is(readErr, errBudget):
		return n, errBudget
	case readErr != nil:
		return n, corrupt("%s: %v", e.name, readErr)
	case writeErr != nil:
		return n, fmt.Errorf("write %s: %w", e.name, writeErr)
	}
	if out != nil {
		if err := out.Chmod(e.perm); err != nil {
			return n, fmt.Errorf("chmod %s: %w", e.name, err)
		}
		if err := out.Close(); err != nil {
			return n, fmt.Errorf("close %s: %w", e.name, err)
		}
	}
	return n, nil
}

// Validate checks a code package completely without writing anything:
// size limits, every entry's name, type and symlink target, and every
// file's data (decompressed and checksummed, its bytes counted).
//
// Errors for bad input are *lambdaerr.Error: RequestEntityTooLargeException when
// the zip itself exceeds lim.MaxZipBytes, InvalidParameterValueException
// for everything else. Zero fields of lim mean Lambda's defaults.
func Validate(data []byte, lim Limits) error {
	_, err := Measure(data, lim)
	return err
}

// Measure validates data as Validate does and returns its unzipped size:
// the bytes its files decompress to (counted, never taken from the zip's
// headers) plus the lengths of its symlink targets.
func Measure(data []byte, lim Limits) (int64, error) {
	lim = lim.withDefaults()
	p, err := openPlan(data, lim)
	if err != nil {
		return 0, err
	}
	return p.measure(nil, lim)
}

// Extract validates data as Validate does and extracts it into dir, which
// must not exist yet; its parent must. The tree is built in a temporary
// sibling of dir and renamed into place only when complete, so dir either
// does not exist or holds the whole package. On any error the temporary
// directory is removed; nothing is ever written outside it (names are
// checked before writing and every write goes through an os.Root).
//
// When dir exists (before or at the rename, e.g. a concurrent Extract of
// the same package won) the error wraps fs.ErrExist. Files get mode 0644,
// or 0755 when the zip gave them any exec bit; directories 0755; symlinks
// are created as they are (relative, inside the package).
func Extract(data []byte, dir string, lim Limits) (err error) {
	lim = lim.withDefaults()
	p, err := openPlan(data, lim)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("extract into %s: %w", dir, fs.ErrExist)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+tempPrefixPattern)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	err = p.run(root, lim)
	if cerr := root.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if lambdaerr.Is(err, lambdaerr.InvalidParameterValue) {
			return err
		}
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	if err = os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	if err = os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Lstat(dir); statErr == nil {
			err = fmt.Errorf("extract into %s: %w", dir, fs.ErrExist)
			return err
		}
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps removes the temporary directories that interrupted Extracts
// (a crash, kill -9) left in parent, such as <data>/code. Call it only when
// no Extract into parent is running, e.g. when a worker starts. A missing
// parent is not an error.
func RemoveTemps(parent string) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove temps in %s: %w", parent, err)
	}
	var errs []error
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, tempPrefixPattern) {
			errs = append(errs, os.RemoveAll(filepath.Join(parent, n)))
		}
	}
	return errors.Join(errs...)
}
