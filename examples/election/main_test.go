package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	summaryRE  = regexp.MustCompile(`^SUMMARY replicas=(\d+) ttl=(\S+) kills=(\d+) terms=(\d+) failover_median=\S+ failover_p99=\S+ tokens_increasing=(\w+) single_leader=(\w+)$`)
	electedRE  = regexp.MustCompile(`^ *[\d.]+s (r\d+) elected: token=(\d+) value="r\d+ starting"$`)
	observeRE  = regexp.MustCompile(`^ *[\d.]+s   observe@(r\d+) (no leader|token=(\d+) value="r\d+ (starting|serving)" holder=[0-9a-f]+)( skipped=\d+)?$`)
	killRE     = regexp.MustCompile(`^ *[\d.]+s kill (\d+): (r\d+) \(leader, token (\d+); its node n\d+ is (also the Raft leader|a Raft follower)\)$`)
	failoverRE = regexp.MustCompile(`^ *[\d.]+s failover (\d+): kill → observed \S+, kill → elected \S+ \(Raft terms meanwhile: \d+\)$`)
	restartRE  = regexp.MustCompile(`^ *[\d.]+s restart (r\d+) \(node n\d+\)$`)
	// The steering's and the end's resigns; errors a replica reports and
	// retries after (a Campaign failed, a transfer refused), which load
	// may cause.
	otherRE = regexp.MustCompile(`^ *[\d.]+s (r\d+ resigns \(token \d+\)|the end: the candidates stopped, r\d+ resigns|r\d+ (campaign|proclaim|observe): .+|leadership transfer: .+)$`)
)

// TestRun_FailsOver runs the demo with short TTLs and checks its output,
// not its timing: every kill hits the leader, a surviving replica then
// observes a newer term before the failover is reported, the killed
// replica restarts, terms' tokens increase, no observer goes back, and at
// the end every replica observes the empty seat.
func TestRun_FailsOver(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		replicas, kills int
	}{
		{[]string{"-kills", "2", "-ttl", "1s"}, 3, 2},
		{[]string{"-replicas", "4", "-kills", "1", "-ttl", "1s", "-raft", "any"}, 4, 1},
		{[]string{"-kills", "0", "-ttl", "1s"}, 3, 0},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			require.NoError(t, run(append(tc.args, "-timeout", "2m"), &out))
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			checkSummary(t, lines[len(lines)-1], tc.replicas, tc.kills)
			checkKills(t, lines, tc.kills)
			checkStreams(t, lines)
			checkEnd(t, lines, tc.replicas)
			assert.NotContains(t, out.String(), "VIOLATION")
		})
	}
}

func checkSummary(t *testing.T, line string, replicas, kills int) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(line)
	require.NotNil(t, m, line)
	assert.Equal(t, strconv.Itoa(replicas), m[1])
	assert.Equal(t, "1s", m[2])
	assert.Equal(t, strconv.Itoa(kills), m[3])
	terms, _ := strconv.Atoi(m[4])
	assert.GreaterOrEqual(t, terms, kills+1, "a term before the first kill and one after every kill")
	assert.Equal(t, "true", m[5], "tokens_increasing")
	assert.Equal(t, "true", m[6], "single_leader")
}

// checkKills: kill k names the replica elected last, with its token; a
// replica other than the killed one then observes a newer term and a
// newer term is won, before "failover k"; then the killed one restarts.
// Elected tokens strictly increase.
func checkKills(t *testing.T, lines []string, kills int) {
	t.Helper()
	var leader string
	var token uint64
	var killed string
	var killedToken uint64
	var seen, won bool
	done := 0
	for _, l := range lines {
		if m := electedRE.FindStringSubmatch(l); m != nil {
			tok := parseUint(t, m[2])
			assert.Greater(t, tok, token, "tokens of successive terms increase: %s", l)
			leader, token = m[1], tok
			won = won || tok > killedToken
		}
		if m := observeRE.FindStringSubmatch(l); m != nil && m[3] != "" && m[1] != killed && parseUint(t, m[3]) > killedToken {
			seen = true
		}
		if m := killRE.FindStringSubmatch(l); m != nil {
			assert.Equal(t, strconv.Itoa(done+1), m[1], l)
			assert.Equal(t, leader, m[2], "the leader is killed: %s", l)
			assert.Equal(t, strconv.FormatUint(token, 10), m[3], l)
			killed, killedToken, seen, won = m[2], token, false, false
		}
		if m := failoverRE.FindStringSubmatch(l); m != nil {
			assert.Equal(t, strconv.Itoa(done+1), m[1], l)
			assert.True(t, seen, "a survivor observed a newer term before %q", l)
			assert.True(t, won, "a newer term was won before %q", l)
			done++
		}
		if m := restartRE.FindStringSubmatch(l); m != nil {
			assert.Equal(t, killed, m[1], l)
			killed = ""
		}
	}
	assert.Equal(t, kills, done, "failovers reported")
}

// checkStreams: every line is one the demo prints, and each observer's
// tokens never go back (a restarted replica's observer starts anew).
func checkStreams(t *testing.T, lines []string) {
	t.Helper()
	last := map[string]uint64{}
	for _, l := range lines[1 : len(lines)-5] { // the banner; the figures and summary
		if m := restartRE.FindStringSubmatch(l); m != nil {
			delete(last, m[1])
			continue
		}
		m := observeRE.FindStringSubmatch(l)
		if m == nil {
			assert.True(t, electedRE.MatchString(l) || killRE.MatchString(l) || failoverRE.MatchString(l) || otherRE.MatchString(l),
				"unexpected line %q", l)
			continue
		}
		if m[3] != "" {
			tok := parseUint(t, m[3])
			assert.GreaterOrEqual(t, tok, last[m[1]], "observe@%s goes back: %s", m[1], l)
			last[m[1]] = tok
		}
	}
}

// checkEnd: after the leader resigned with the candidates stopped, every
// replica's observer shows the empty seat.
func checkEnd(t *testing.T, lines []string, replicas int) {
	t.Helper()
	at := -1
	for i, l := range lines {
		if strings.Contains(l, "the end: the candidates stopped") {
			at = i
		}
	}
	require.GreaterOrEqual(t, at, 0, "the end's resign")
	vacant := map[string]bool{}
	for _, l := range lines[at:] {
		if m := observeRE.FindStringSubmatch(l); m != nil && m[2] == "no leader" {
			vacant[m[1]] = true
		}
	}
	assert.Len(t, vacant, replicas, "every replica observes the empty seat: %v", vacant)
}

func parseUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err)
	return v
}

func TestRun_RejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-replicas", "2"}, {"-replicas", "8"}, {"-kills", "-1"}, {"-kills", "1001"},
		{"-ttl", "100ms"}, {"-ttl", "2h"}, {"-raft", "sometimes"}, {"-timeout", "0s"}, {"extra"},
	} {
		assert.Error(t, run(args, &bytes.Buffer{}), "%q", args)
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 20; i >= 1; i-- { // unsorted
		s = append(s, time.Duration(i)*time.Second)
	}
	assert.Equal(t, 10*time.Second, percentile(s, 50))
	assert.Equal(t, 20*time.Second, percentile(s, 99), "nearest rank: the 20th of 20")
	assert.Equal(t, time.Second, percentile(s[19:], 99))
	assert.Equal(t, time.Duration(0), percentile(nil, 50))
	assert.Equal(t, 20*time.Second, s[0], "the samples are not reordered")
}
