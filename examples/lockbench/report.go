package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// writeTable prints one row per cell. Latencies in ms: p50, p99, p99.9 and
// max of an op (for the failover probe, of kill-to-grant), and p50 and p99
// of the wait from the Acquire call to the grant.
func writeTable(w io.Writer, cells []cell) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// A tabwriter's write errors surface in Flush.
	_, _ = fmt.Fprintln(tw, "backend\tworkload\tworkers\tops\tops/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\twait p50\twait p99\terrors\tviolations\t")
	for _, c := range cells {
		rate, wait50, wait99 := fmt.Sprintf("%.0f", c.OpsPerSec), fmt.Sprintf("%.2f", c.Wait.P50), fmt.Sprintf("%.2f", c.Wait.P99)
		if c.Workload == "failover" { // kill to grant: no rate, no separate wait
			rate, wait50, wait99 = "-", "-", "-"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%d\t%d\t\n",
			c.Backend, c.Workload, c.Workers, c.Ops, rate,
			c.Latency.P50, c.Latency.P99, c.Latency.P999, c.Latency.Max,
			wait50, wait99, c.Errors, c.Violations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range cells {
		if c.FirstError != "" {
			if _, err := fmt.Fprintf(w, "%s %s: first error: %s\n", c.Backend, c.Workload, c.FirstError); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeJSON writes r to path, indented.
func writeJSON(path string, r results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
