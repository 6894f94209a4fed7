package zookeeper_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quorumlock/quorumlock/adapters/zookeeper"
)

func TestEscapeName(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"abc-XYZ_09", "abc-XYZ_09"},
		{"a/b", "a%2Fb"},
		{".", "%2E"},
		{"..", "%2E%2E"},
		{"%2F", "%252F"},
		{"é", "%C3%A9"},
		{"a b", "a%20b"},
	} {
		got := zookeeper.EscapeName(c.in)
		assert.Equal(t, c.want, got, "escape %q", c.in)
		back, err := zookeeper.UnescapeName(got)
		require.NoError(t, err)
		assert.Equal(t, c.in, back)
	}
	for _, bad := range []string{"%2f", "%41", "%", "%4", "a/b", ".", "%ZZ"} {
		_, err := zookeeper.UnescapeName(bad)
		assert.Error(t, err, "unescape %q must fail: escapeName never produces it", bad)
	}
}

// TestChildType: the grammar of child names (DESIGN.md, "The type in the
// child's name"): the id's type token, and names that are no claim.
func TestChildType(t *testing.T) {
	hex32 := strings.Repeat("0123456789abcdef", 2)
	const seq = "-lock-0000000042"
	for _, c := range []struct {
		name, want string
		claim      bool
	}{
		{"_c_" + hex32 + seq, "a mutex", true},
		{"_c_E_" + hex32[:30] + seq, "an election", true},
		{"_c_E_" + strings.ToUpper(hex32[:30]) + seq, "a type this version does not know", true},
		{"_c_S3_" + hex32[:29] + seq, "a semaphore of limit 3", true},
		{"_c_S1024_" + hex32[:26] + seq, "a semaphore of limit 1024", true},
		{"_c_S1025_" + hex32[:26] + seq, "a type this version does not know", true},
		{"_c_S0_" + hex32[:29] + seq, "a type this version does not know", true},
		{"_c_S03_" + hex32[:28] + seq, "a type this version does not know", true},
		{"_c_S+3_" + hex32[:28] + seq, "a type this version does not know", true},
		{"_c_S_" + hex32[:30] + seq, "a type this version does not know", true},
		{"_c_S3_" + strings.ToUpper(hex32[:29]) + seq, "a type this version does not know", true},
		{"_c_Rr_" + hex32[:29] + seq, "a read-write lock (reader)", true},
		{"_c_Rw_" + hex32[:29] + seq, "a read-write lock (writer)", true},
		{"_c_Rx_" + hex32[:29] + seq, "a type this version does not know", true},
		{"_c_X3_" + hex32[:29] + seq, "a type this version does not know", true},
		{"_c_" + strings.ToUpper(hex32) + seq, "a type this version does not know", true},
		{"_c_" + hex32 + "-lock-12345678901", "a mutex", true},
		{"_c_" + hex32 + "-elect-0000000042", "", false},
		{"_c_" + hex32[:31] + seq, "", false},
		{"c_" + hex32 + seq, "", false},
		{"_c_" + hex32 + "-lock-", "", false},
	} {
		got, ok := zookeeper.ChildType(c.name)
		assert.Equal(t, c.claim, ok, "%s is a claim", c.name)
		if ok {
			assert.Equal(t, c.want, got, "%s", c.name)
		}
	}
}

func FuzzEscapeName(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "..", "%2F", "é🔒", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := zookeeper.EscapeName(s)
		assert.NotContains(t, e, "/")
		assert.NotEqual(t, ".", e)
		assert.NotEqual(t, "..", e)
		assert.True(t, utf8.ValidString(e))
		for _, r := range e {
			assert.Less(t, r, rune(0x7f), "escaped names are printable ASCII")
			assert.GreaterOrEqual(t, r, rune(0x20))
		}
		back, err := zookeeper.UnescapeName(e)
		require.NoError(t, err)
		assert.Equal(t, s, back)
		// Injective: any string that unescapes escapes back to itself.
		if u, err := zookeeper.UnescapeName(s); err == nil {
			assert.Equal(t, s, zookeeper.EscapeName(u))
		}
	})
}

func TestNewValidates(t *testing.T) {
	for _, c := range []struct {
		field string
		cfg   zookeeper.Config
	}{
		{"Servers or Conn", zookeeper.Config{}},
		{"Servers[0]", zookeeper.Config{Servers: []string{""}}},
		{"SessionTimeout", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, SessionTimeout: -1}},
		{"SessionMargin", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, SessionTimeout: 1e9, SessionMargin: 1e9}},
		{"Root", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Root: "relative"}},
		{"Root", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Root: "/a/"}},
		{"Root", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Root: "/a/../b"}},
		{"Root", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Root: "/zookeeper/x"}},
		{"Node", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Node: strings.Repeat("n", 256)}},
		{"Node", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Node: "bad\xff"}},
		{"Node", zookeeper.Config{Servers: []string{"127.0.0.1:1"}, Node: "tab\there"}},
	} {
		_, err := zookeeper.New(c.cfg)
		require.ErrorIs(t, err, zookeeper.ErrInvalidConfig, "%+v", c.cfg)
		assert.Contains(t, err.Error(), c.field)
	}
}
