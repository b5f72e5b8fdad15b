package process

import (
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cpuSet hands out the host's CPUs to sandboxes: each runs on as many
// CPUs as its vCPUs round up to (Lambda's 1 vCPU per 1769 MB, at least
// one), the least used ones at its creation. The kernel still enforces
// the CPU time (the cgroup's quota); the affinity sizes what the runtime
// sees: Go sets GOMAXPROCS, Node and Python their pools, from the CPUs a
// process may run on, and a runtime that believes it has two CPUs when
// its share is half of one spends its time waking threads.
type cpuSet struct {
	mu    sync.Mutex
	cpus  []int // CPUs the driver may use (its own affinity at New)
	users []int // live sandboxes on each of cpus
	next  int   // where the search for the least used starts (spreads ties)
}

func newCPUSet() (*cpuSet, error) {
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err != nil {
		return nil, fmt.Errorf("read the host's CPUs: %w", err)
	}
	s := &cpuSet{}
	for cpu := range len(mask) * 64 {
		if mask.IsSet(cpu) {
			s.cpus = append(s.cpus, cpu)
		}
	}
	if len(s.cpus) == 0 {
		return nil, fmt.Errorf("read the host's CPUs: empty affinity mask")
	}
	s.users = make([]int, len(s.cpus))
	return s, nil
}

// cpusFor is how many CPUs a sandbox with cpuMillis of CPU time per second
// runs on, at most all of them.
func (s *cpuSet) cpusFor(cpuMillis int64) int {
	return int(min(max((cpuMillis+999)/1000, 1), int64(len(s.cpus))))
}

// assign picks the n least used CPUs and counts the sandbox on them; the
// caller gives them back with release.
func (s *cpuSet) assign(n int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	taken := make([]bool, len(s.cpus))
	idx := make([]int, 0, n)
	for range n {
		best := -1
		for k := range s.cpus {
			i := (s.next + k) % len(s.cpus)
			if !taken[i] && (best < 0 || s.users[i] < s.users[best]) {
				best = i
			}
		}
		taken[best] = true
		s.users[best]++
		idx = append(idx, best)
	}
	s.next = (idx[len(idx)-1] + 1) % len(s.cpus)
	return idx
}

// release gives back what assign returned.
func (s *cpuSet) release(idx []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range idx {
		s.users[i]--
	}
}

// mask is the affinity mask of the CPUs at idx.
func (s *cpuSet) mask(idx []int) *unix.CPUSet {
	var m unix.CPUSet
	for _, i := range idx {
		m.Set(s.cpus[i])
	}
	return &m
}

// setAffinity is unix.SchedSetaffinity as a blocking system call: moving a
// task that runs on a CPU outside set waits for the CPU's stopper thread to
// migrate it (milliseconds during a burst of creations), and
// unix.SchedSetaffinity makes a raw system call, which keeps its Go P
// (one of GOMAXPROCS) from running anything else meanwhile.
func setAffinity(pid int, set *unix.CPUSet) error {
	_, _, e := unix.Syscall(unix.SYS_SCHED_SETAFFINITY, uintptr(pid), unsafe.Sizeof(*set), uintptr(unsafe.Pointer(set)))
	if e != 0 {
		return e
	}
	return nil
}
