// Command figures summarises the "figure <name> <ms> ..." lines that the
// cluster_test scenarios log (go test -v output on stdin) as a Markdown
// table: per figure, the number of samples, the median, the p99 and the
// maximum, in milliseconds.
//
//	go test -race -count=20 -v ./cluster_test | go run ./cluster_test/figures
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "figures:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	samples := map[string][]int64{}
	var order []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		i := slices.Index(f, "figure")
		if i < 1 || !strings.HasSuffix(f[i-1], ":") || i+1 >= len(f) {
			continue // not a "file.go:N: figure <name> ..." line
		}
		name := f[i+1]
		for _, v := range f[i+2:] {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("figure %s: %q is not a number of milliseconds", name, v)
			}
			if _, ok := samples[name]; !ok {
				order = append(order, name)
			}
			samples[name] = append(samples[name], ms)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.Sort(order)
	var b strings.Builder
	b.WriteString("| figure | samples | median | p99 | max |\n|---|---|---|---|---|\n")
	for _, name := range order {
		s := samples[name]
		slices.Sort(s)
		fmt.Fprintf(&b, "| %s | %d | %d ms | %d ms | %d ms |\n", name, len(s), quantile(s, 0.5), quantile(s, 0.99), s[len(s)-1])
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// quantile is the nearest-rank q-quantile of sorted s.
func quantile(s []int64, q float64) int64 {
	rank := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}
