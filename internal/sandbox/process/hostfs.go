package process

import (
	"fmt"
	"os"

	"github.com/flintdev/flint/internal/sandbox/process/nsinit"
)

// hostSystemPaths are the host directories a sandbox sees read-only (or,
// where the host has symlinks, e.g. /bin -> usr/bin on Debian, the same
// symlinks). Missing ones are skipped.
var hostSystemPaths = []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"}

// hostEtcPaths are bound read-only into the sandbox's /etc when present.
var hostEtcPaths = []string{"/etc/ssl/certs", "/etc/ca-certificates", "/etc/localtime"}

// devNodes are the host device nodes recreated in the sandbox's /dev (the
// same character devices and permissions).
var devNodes = []string{"null", "zero", "full", "random", "urandom"}

// scanHost inspects the host's top-level paths once, at driver start.
func scanHost() (host []nsinit.HostPath, etc []string, err error) {
	for _, p := range hostSystemPaths {
		st, err := os.Lstat(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, nil, err
			}
			host = append(host, nsinit.HostPath{Path: p, Link: target})
		case st.IsDir():
			host = append(host, nsinit.HostPath{Path: p})
		}
	}
	if len(host) == 0 {
		return nil, nil, fmt.Errorf("none of %v exists on the host", hostSystemPaths)
	}
	for _, p := range hostEtcPaths {
		if _, err := os.Stat(p); err == nil {
			etc = append(etc, p)
		}
	}
	return host, etc, nil
}

// etcFiles are the synthesized files of the sandbox's /etc.
func etcFiles(uid, gid int) map[string]string {
	return map[string]string{
		"passwd": fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n"+
			"sbx_user1051:x:%d:%d::/tmp:/sbin/nologin\n"+
			"nobody:x:65534:65534:nobody:/:/sbin/nologin\n", uid, gid),
		"group": fmt.Sprintf("root:x:0:\nsbx_user1051:x:%d:\nnobody:x:65534:\n", gid),
		"hosts": "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost\n",
		// There is no DNS server inside a sandbox (no network but loopback);
		// failing fast beats waiting for timeouts.
		"resolv.conf":   "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
		"hostname":      "localhost\n",
	}
}
