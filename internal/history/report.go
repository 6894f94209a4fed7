package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func (r Result) String() string {
	var b strings.Builder
	if r.OK() {
		b.WriteString("history check passed")
		return b.String()
	}
	fmt.Fprintf(&b, "history check failed (linearizability: %s), %d violation(s)", orNone(string(r.Linearizable)), len(r.Violations)+r.Omitted)
	if r.Omitted > 0 {
		fmt.Fprintf(&b, ", %d not shown", r.Omitted)
	}
	b.WriteString(":")
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "\n  - %s", v)
	}
	if r.Files.Report != "" {
		fmt.Fprintf(&b, "\nvisualization: %s\nhistory:       %s\nreport:        %s", r.Files.Visualization, r.Files.History, r.Files.Report)
	}
	if r.FileErr != nil {
		fmt.Fprintf(&b, "\nfailure files: %v", r.FileErr)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "not checked"
	}
	return s
}

// Require checks h and fails t (Fatalf) with the violations and the paths of
// the failure files if the check fails. opts.Prefix defaults to t.Name();
// opts.Dir stays os.TempDir() by default so the files outlive the test.
func Require(t testing.TB, h History, opts Options) Result {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = t.Name()
	}
	res := Check(h, opts)
	if !res.OK() {
		t.Fatalf("%d operations: %s", len(h), res)
		return res
	}
	t.Logf("history of %d operations: linearizable, no violations", len(h))
	return res
}

// writeFiles writes the visualisation, the JSON history and the text report
// next to each other: <dir>/<prefix>-<random>.{html,json,txt}. The
// visualisation shows the names that have violations (all names if a
// violation names none). A malformed history gets a page with the report.
func writeFiles(opts Options, h History, res Result, ops []porcupine.Operation, rowOf []int, wellFormed bool,
	verbose map[string]porcupine.LinearizationInfo, deadline time.Time) (Files, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return Files{}, err
	}
	f, err := os.CreateTemp(opts.Dir, sanitize(opts.Prefix)+"-*.html")
	if err != nil {
		return Files{}, err
	}
	stem := strings.TrimSuffix(f.Name(), ".html")
	files := Files{Visualization: f.Name(), History: stem + ".json", Report: stem + ".txt"}

	var errs []error
	if wellFormed {
		names := make(map[string]bool)
		for _, v := range res.Violations {
			names[v.Name] = true
		}
		shown := func(name string) bool { return names[name] || names[""] }
		info, ok := verbose[res.Violations[0].Name]
		if !ok || len(names) != 1 {
			var sub []porcupine.Operation
			for _, op := range ops {
				if shown(op.Input.(modelInput).name) {
					sub = append(sub, op)
				}
			}
			// Out of time still yields what was found; draw that (a
			// timeout of 0 would mean none).
			_, info = porcupine.CheckOperationsVerbose(lockModel, sub, max(time.Until(deadline), time.Millisecond))
		}
		info.AddAnnotations(annotations(h, res, rowOf, shown))
		errs = append(errs, porcupine.Visualize(lockModel, info, f))
	} else {
		_, werr := fmt.Fprintf(f, "<!DOCTYPE html><title>malformed history</title><pre>%s</pre>\n", html.EscapeString(res.String()))
		errs = append(errs, werr)
	}
	errs = append(errs, f.Close())

	js, err := json.MarshalIndent(h, "", "  ")
	if err == nil {
		err = os.WriteFile(files.History, append(js, '\n'), 0o644)
	}
	errs = append(errs, err)

	var b strings.Builder
	b.WriteString(res.String())
	b.WriteString("\n\noperations (index, then call and return ticks of the recorder's logical clock):\n")
	for i, op := range h {
		fmt.Fprintf(&b, "#%-6d %s  at %v", i, op, op.CallAt)
		if op.Outcome != Pending {
			fmt.Fprintf(&b, "..%v", op.ReturnAt)
		}
		b.WriteByte('\n')
	}
	errs = append(errs, os.WriteFile(files.Report, []byte(b.String()), 0o644))
	return files, errors.Join(errs...)
}

// annotations draws the operations porcupine does not check (writes,
// grants of unknown outcome, reports that a lease ended, failed calls) on
// their clients' rows, and the violations on a row of their own.
func annotations(h History, res Result, rowOf []int, shown func(name string) bool) []porcupine.Annotation {
	var out []porcupine.Annotation
	for i, op := range h {
		if inModel(op) || !shown(op.Name) {
			continue
		}
		end := op.Return
		if op.Outcome == Pending {
			end = op.Call
		}
		var color string
		switch {
		case op.Kind == Write && op.Outcome == OK:
			color = "#c8e6c9"
		case op.Kind == Write && op.Outcome == Rejected:
			color = "#ffcdd2"
		case op.Outcome == Unknown || op.Outcome == Pending:
			color = "#fff9c4"
		}
		out = append(out, porcupine.Annotation{
			ClientId:        rowOf[i],
			Start:           op.Call,
			End:             end,
			Description:     op.short(),
			Details:         fmt.Sprintf("%s (not checked by porcupine)\n%s", op.metadata(i), op),
			BackgroundColor: color,
		})
	}
	for _, v := range res.Violations {
		if len(v.Ops) == 0 {
			continue
		}
		op := h[v.Ops[len(v.Ops)-1]]
		end := op.Return
		if op.Outcome == Pending {
			end = op.Call
		}
		out = append(out, porcupine.Annotation{
			Tag:             "violations",
			Start:           op.Call,
			End:             end,
			Description:     string(v.Kind),
			Details:         v.Msg,
			TextColor:       "#ffffff",
			BackgroundColor: "#c62828",
		})
	}
	return out
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
