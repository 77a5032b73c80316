package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a child process (vaultcert or Traefik) whose output goes to a log file, so a failure can show what
// it said.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	exited  chan error
}

// startProcess starts binary with args and env (added to a copy of this process's environment without the
// variables named in unset), logging to logPath.
func startProcess(name, binary string, args, env, unset []string, logPath string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(environWithout(unset...), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, binary, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: logFile, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// environWithout is os.Environ() minus the named variables.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			if name == n {
				drop = true
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

// alive returns an error when the process has exited: a wait that polls something the process should produce
// fails at once rather than at its timeout.
func (p *process) alive() error {
	select {
	case err := <-p.exited:
		p.exited <- err
		return fmt.Errorf("%s exited early: %v (log: %s)", p.name, err, p.logPath)
	default:
		return nil
	}
}

// stop asks the process to terminate (SIGTERM), and kills it after 10 s.
func (p *process) stop() {
	defer p.logFile.Close()
	if p.alive() != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last n lines of the log, and before them (when wanted) up to 20 earlier lines that contain
// any of the markers, so an error logged long before the end is not lost in a debug log.
func (p *process) tail(n int, markers ...string) string {
	raw, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	start := max(len(lines)-n, 0)
	var picked []string
	for _, l := range lines[:start] {
		for _, m := range markers {
			if strings.Contains(l, m) {
				picked = append(picked, l)
				break
			}
		}
	}
	if len(picked) > 20 {
		picked = picked[len(picked)-20:]
	}
	var b strings.Builder
	if len(picked) > 0 {
		fmt.Fprintf(&b, "(earlier lines with %s)\n%s\n(last %d lines)\n", strings.Join(markers, "/"), strings.Join(picked, "\n"), n)
	}
	b.WriteString(strings.Join(lines[start:], "\n"))
	return b.String()
}
