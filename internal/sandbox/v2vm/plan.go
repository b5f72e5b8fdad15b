// Package v2vm proves the process sandbox on a pure cgroup v2 host: its
// test, TestCgroupV2InVM, boots Debian's cloud kernel under QEMU with an
// initramfs carrying the compiled tests of internal/sandbox/process/... and
// a small init (package guestinit) that mounts cgroup2 at /sys/fs/cgroup
// with the memory, pids and cpu controllers enabled, runs the tests and
// streams their output back over the serial console. Hosts that are cgroup
// v1 or hybrid (this project's CI) thereby run the v2 code paths too.
//
// This file is the contract between the host side (the test) and the
// guest's init: the plan the host writes into the initramfs and the
// console markers the init prints.
package v2vm

// PlanPath is where the plan lies in the guest.
const PlanPath = "/etc/flint/v2vm-plan.json"

// Plan tells the guest's init what to run.
type Plan struct {
	// Controllers are enabled in the root cgroup's subtree_control.
	Controllers []string
	// Modules are kernel module files to load first, in order.
	Modules []string
	// Env is every step's environment.
	Env []string
	// Steps run one after the other, all of them even when one fails.
	Steps []Step
}

// Step is one program the guest runs.
type Step struct {
	Name string
	Path string
	Args []string
	Dir  string
}

// Console markers, each at the start of a line the init prints.
const (
	// MarkReady is followed by the guest's uptime in seconds when its init
	// has set up the machine.
	MarkReady = "=== FLINT-GUEST-READY "
	// MarkModules is followed by the names of the loaded modules
	// (/proc/modules) once the plan's modules are loaded.
	MarkModules = "=== FLINT-GUEST-MODULES "
	// MarkMemory is followed by "min-available-kib=<n> total-kib=<n>":
	// the lowest MemAvailable seen while the steps ran (sampled every
	// 100 ms), and MemTotal.
	MarkMemory = "=== FLINT-GUEST-MEMORY "
	// MarkStep is followed by a step's name before it runs.
	MarkStep = "=== FLINT-STEP "
	// MarkStepEnd is followed by "<name> exit=<code> seconds=<s>".
	MarkStepEnd = "=== FLINT-STEP-END "
	// MarkDone is followed by "ok" or "failed: <why>" just before the
	// guest reboots (ending QEMU).
	MarkDone = "=== FLINT-GUEST-DONE "
)
