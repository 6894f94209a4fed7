package history_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/quorumlock/quorumlock/internal/history"
)

func badHistory() h.History {
	return h.History{
		op(1, h.Acquire, 5, h.OK, 1, 2),
		op(2, h.Acquire, 7, h.OK, 3, 4),
		op(2, h.Write, 7, h.OK, 5, 6),
		op(1, h.Write, 5, h.Rejected, 7, 8),
		op(3, h.Acquire, 0, h.Unknown, 9, 10),
		op(1, h.Release, 5, h.OK, 11, 12),
	}
}

func TestCheck_failureFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made", "by", "check")
	hist := badHistory()
	res := h.Check(hist, h.Options{Dir: dir, Prefix: "TestX/sub case"})
	require.False(t, res.OK())
	require.NoError(t, res.FileErr)

	for _, p := range []string{res.Files.Visualization, res.Files.History, res.Files.Report} {
		assert.Equal(t, dir, filepath.Dir(p))
		assert.True(t, strings.HasPrefix(filepath.Base(p), "TestX_sub_case-"), p)
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Positive(t, fi.Size(), p)
	}
	assert.Equal(t, ".html", filepath.Ext(res.Files.Visualization))

	html, err := os.ReadFile(res.Files.Visualization)
	require.NoError(t, err)
	for _, want := range []string{
		"<html",
		`c1 release(5) -\u003e ok`, // operations are described (JSON escapes '>')
		`c2 write(7) -\u003e ok`,   // writes are annotated
		`c3 acquire -\u003e ?`,     // so are grants of unknown outcome
		"held-after-end",           // and violations
	} {
		assert.True(t, strings.Contains(string(html), want), "visualization lacks %q", want)
	}

	js, err := os.ReadFile(res.Files.History)
	require.NoError(t, err)
	var back h.History
	require.NoError(t, json.Unmarshal(js, &back))
	assert.Equal(t, hist, back, "the JSON dump replays")
	assert.Equal(t, res.Violations, h.Check(back, h.Options{Dir: t.TempDir()}).Violations)

	report, err := os.ReadFile(res.Files.Report)
	require.NoError(t, err)
	assert.Contains(t, string(report), res.Violations[0].Msg)
	assert.Contains(t, string(report), "#5 ")

	s := res.String()
	for _, p := range []string{res.Files.Visualization, res.Files.History, res.Files.Report} {
		assert.Contains(t, s, p)
	}
}

func TestCheck_failureFilesOfMalformedHistory(t *testing.T) {
	res := h.Check(h.History{op(1, h.Acquire, 5, h.OK, 3, 3)}, h.Options{Dir: t.TempDir()})
	require.Equal(t, []h.ViolationKind{h.Malformed}, kinds(res))
	require.NoError(t, res.FileErr)
	html, err := os.ReadFile(res.Files.Visualization)
	require.NoError(t, err)
	assert.Contains(t, string(html), "malformed")
}

func TestCheck_unwritableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	res := h.Check(badHistory(), h.Options{Dir: file})
	require.False(t, res.OK())
	require.Error(t, res.FileErr)
	assert.Contains(t, res.String(), "failure files:")
}

// fakeTB records Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	fatal string
	logs  []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func TestRequire(t *testing.T) {
	dir := t.TempDir()
	tb := &fakeTB{TB: t}
	res := h.Require(tb, badHistory(), h.Options{Dir: dir})
	require.False(t, res.OK())
	assert.Contains(t, tb.fatal, res.Files.Visualization)
	assert.Contains(t, tb.fatal, res.Files.History)
	assert.Contains(t, tb.fatal, "held-after-end")
	assert.True(t, strings.HasPrefix(filepath.Base(res.Files.History), "TestRequire-"), "the prefix is the test's name")

	tb = &fakeTB{TB: t}
	res = h.Require(tb, h.History{op(1, h.Acquire, 5, h.OK, 1, 2)}, h.Options{Dir: dir})
	assert.True(t, res.OK())
	assert.Empty(t, tb.fatal)
	assert.Len(t, tb.logs, 1)
}
