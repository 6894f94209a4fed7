package main

// cell is the result of one workload on one backend.
type cell struct {
	Backend  string `json:"backend"`
	Workload string `json:"workload"`
	Workers  int    `json:"workers"`
	Idle     int    `json:"idle_locks,omitempty"`
	// Seconds is the measured span: from the end of the warm-up to the
	// last measured op's completion (at least -duration).
	Seconds float64 `json:"seconds"`
	Ops     int     `json:"ops"`
	// OpsPerSec is acquire+release pairs per second; in W3 every one is a
	// hand-off. Zero for the failover probe.
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latency is an op (Acquire call to Release return); for the failover
	// probe, the time from the kill to the first grant.
	Latency dist `json:"latency"`
	// Wait is the Acquire call to the grant.
	Wait       dist   `json:"wait"`
	Errors     int    `json:"errors"`
	Violations int    `json:"violations"`
	FirstError string `json:"first_error,omitempty"`
}

// results is everything one run measured, as written to -json.
type results struct {
	Command  string `json:"command"`
	Duration string `json:"duration"`
	Warmup   string `json:"warmup"`
	Cells    []cell `json:"cells"`
}
