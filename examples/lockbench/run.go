package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
)

// errViolations: some cell saw two holders of one name at once.
var errViolations = errors.New("mutual-exclusion violations observed")

// run parses args, runs every cell, prints the table on stdout and writes
// the files asked for; the progress line goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.cpuPath != "" {
		stop, err := startCPUProfile(cfg.cpuPath)
		if err != nil {
			return err
		}
		defer stop()
	}
	prog := newProgress(stderr)
	res := results{
		Command:  strings.Join(append([]string{"lockbench"}, args...), " "),
		Duration: cfg.duration.String(), Warmup: cfg.warmup.String(),
	}
	for _, name := range cfg.backends {
		cells, err := benchBackend(ctx, cfg, name, prog)
		res.Cells = append(res.Cells, cells...)
		if err != nil {
			return err
		}
	}
	if err := writeTable(stdout, res.Cells); err != nil {
		return err
	}
	if cfg.jsonPath != "" {
		if err := writeJSON(cfg.jsonPath, res); err != nil {
			return err
		}
	}
	if cfg.svgPath != "" {
		if err := writeSVG(cfg.svgPath, res.Cells); err != nil {
			return err
		}
	}
	violations := 0
	for _, c := range res.Cells {
		violations += c.Violations
	}
	if violations > 0 {
		return fmt.Errorf("%w: %d", errViolations, violations)
	}
	return nil
}

// startCPUProfile profiles this process into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// benchBackend runs the workloads, the scale probe and (embedded3) the
// failover probe on one backend.
func benchBackend(ctx context.Context, cfg config, name string, prog *progress) ([]cell, error) {
	var cells []cell
	if len(cfg.workloads) > 0 || cfg.idle > 0 {
		b, err := openBackend(ctx, cfg, name)
		if err != nil {
			return nil, err
		}
		defer b.close()
		for _, w := range cfg.workloads {
			c, err := runCell(ctx, b, name, workloads[w], cfg, prog)
			if err != nil {
				return cells, err
			}
			cells = append(cells, c)
		}
		if cfg.idle > 0 {
			c, err := scaleProbe(ctx, b, name, cfg, prog)
			if err != nil {
				return cells, err
			}
			cells = append(cells, c)
		}
	}
	if name == "embedded3" && cfg.failovers > 0 {
		c, err := failoverProbe(ctx, cfg, prog)
		if err != nil {
			return cells, err
		}
		cells = append(cells, c)
	}
	return cells, nil
}
