package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartLeft   = 70.0  // room for the y axis labels
	chartTop    = 40.0  // room for the title
	panelHeight = 200.0 // each of the two panels
	panelGap    = 70.0  // between them: workload labels and the second title
	barWidth    = 22.0
	groupGap    = 30.0
)

// palette has a color per backend (backendNames), in their order.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"}

// slot is one cell's place on the x axis.
type slot struct {
	c     cell
	x     float64 // left edge of its bar
	color string
}

// writeSVG writes a self-contained chart of cells to path: ops/s bars per
// workload and backend above, p50 (dot) to p99 (tick) of the op latency on
// a log scale below (for the failover probe, kill to grant).
func writeSVG(path string, cells []cell) error {
	return os.WriteFile(path, []byte(renderSVG(cells)), 0o644)
}

func renderSVG(cells []cell) string {
	slots, groups, backends, width := layout(cells)
	// The legend: 130 px per backend, as many rows as the width needs.
	perRow := max(1, int((width-chartLeft)/130))
	rows := max(1, (len(backends)+perRow-1)/perRow)
	legendY := chartTop + 2*panelHeight + panelGap + 40
	height := legendY + float64(rows-1)*18 + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">ops/s (bars); op latency p50 to p99, ms, log scale</text>`+"\n", chartLeft)
	opsPanel(&b, slots, width)
	latencyPanel(&b, slots, width)
	for _, g := range groups {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", g.x, chartTop+panelHeight+16, esc(g.name))
	}
	for i, name := range backends {
		x := chartLeft + float64(i%perRow)*130
		y := legendY + float64(i/perRow)*18
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+16, y, esc(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

type group struct {
	name string
	x    float64 // centre
}

// layout places the cells grouped by workload (in order of first
// appearance), one bar per backend in each group.
func layout(cells []cell) (slots []slot, groups []group, backends []string, width float64) {
	var order []string
	for _, c := range cells {
		if !slices.Contains(order, c.Workload) {
			order = append(order, c.Workload)
		}
		if !slices.Contains(backends, c.Backend) {
			backends = append(backends, c.Backend)
		}
	}
	x := chartLeft + groupGap/2
	for _, w := range order {
		start := x
		for _, c := range cells {
			if c.Workload == w {
				color := palette[slices.Index(backends, c.Backend)%len(palette)]
				slots = append(slots, slot{c: c, x: x, color: color})
				x += barWidth + 4
			}
		}
		groups = append(groups, group{name: w, x: (start + x - 4) / 2})
		x += groupGap
	}
	return slots, groups, backends, max(x+20, 600)
}

// opsPanel draws the ops/s bars, scaled to the highest.
func opsPanel(b *strings.Builder, slots []slot, width float64) {
	top, bottom := chartTop, chartTop+panelHeight
	highest := 0.0
	for _, s := range slots {
		highest = max(highest, s.c.OpsPerSec)
	}
	axis(b, top, bottom, width, "ops/s")
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f</text>`+"\n", chartLeft-6, top+4, highest)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">0</text>`+"\n", chartLeft-6, bottom)
	if highest <= 0 {
		return
	}
	for _, s := range slots {
		h := s.c.OpsPerSec / highest * (panelHeight - 14)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
			s.x, bottom-h, barWidth, h, s.color, esc(fmt.Sprintf("%s %s: %.0f ops/s", s.c.Backend, s.c.Workload, s.c.OpsPerSec)))
		if s.c.OpsPerSec > 0 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.0f</text>`+"\n", s.x+barWidth/2, bottom-h-3, s.c.OpsPerSec)
		}
	}
}

// latencyPanel draws, per cell, a line from p50 (dot) to p99 (tick) on a
// log scale spanning every cell's p50 and p99.
func latencyPanel(b *strings.Builder, slots []slot, width float64) {
	top := chartTop + panelHeight + panelGap
	bottom := top + panelHeight
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range slots {
		if s.c.Ops > 0 {
			lo, hi = min(lo, s.c.Latency.P50), max(hi, s.c.Latency.P99)
		}
	}
	axis(b, top, bottom, width, "latency (ms)")
	if math.IsInf(lo, 0) || lo <= 0 {
		return
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(max(hi, lo*10))))
	y := func(v float64) float64 {
		return bottom - (math.Log10(max(v, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*panelHeight
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", chartLeft, y(d), width-10, y(d))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n", chartLeft-6, y(d)+4, d)
	}
	for _, s := range slots {
		if s.c.Ops == 0 {
			continue
		}
		cx := s.x + barWidth/2
		l := s.c.Latency
		fmt.Fprintf(b, `<g><title>%s</title>`, esc(fmt.Sprintf("%s %s: p50 %.2f ms, p99 %.2f ms", s.c.Backend, s.c.Workload, l.P50, l.P99)))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, cx, y(l.P50), cx, y(l.P99), s.color)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, cx, y(l.P50), s.color)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/></g>`+"\n", cx-6, y(l.P99), cx+6, y(l.P99), s.color)
	}
}

// axis draws a panel's frame and its y label.
func axis(b *strings.Builder, top, bottom, width float64, label string) {
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", chartLeft, top, chartLeft, bottom)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", chartLeft, bottom, width-10, bottom)
	fmt.Fprintf(b, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`+"\n", (top+bottom)/2, (top+bottom)/2, esc(label))
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var buf bytes.Buffer
	_ = xml.EscapeText(&buf, []byte(s))
	return buf.String()
}
