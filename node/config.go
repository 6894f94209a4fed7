package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/quorumlock/quorumlock/fsm"
	"github.com/quorumlock/quorumlock/metrics"
)

// Defaults and limits of Config.
const (
	DefaultID           = "local"
	DefaultSessionTTL   = 10 * time.Second
	MinSessionTTL       = fsm.MinSessionTTL // the leader refuses others
	MaxSessionTTL       = fsm.MaxSessionTTL
	DefaultStartTimeout = time.Minute
)

// Timing selects the Raft timers of a cluster node. The values are in
// node/DESIGN.md.
type Timing int

const (
	// TimingFastLAN (the default): heartbeat and election timeout 500 ms,
	// leader lease 250 ms. A new leader is typically elected within about a
	// second of a crash.
	TimingFastLAN Timing = iota
	// TimingConservative: 1 s / 1 s / 500 ms, as Consul and Nomad run in
	// production. Fewer spurious elections on busy or slow networks.
	TimingConservative
)

// LogStore is the format of a DataDir's Raft log and stable store
// (node/DESIGN.md, "Durability"). A DataDir keeps the format it was made
// in.
type LogStore int

const (
	// LogStoreAuto (the default): LogStoreLog for a new DataDir, the
	// format it holds for an existing one.
	LogStoreAuto LogStore = iota
	// LogStoreLog: append-only segment files in DataDir/log, one fdatasync
	// per batch of entries.
	LogStoreLog
	// LogStoreBolt: raft-boltdb in DataDir/raft.db, a B+tree committed with
	// two fdatasyncs per batch; the format of DataDirs made before
	// LogStoreLog existed.
	LogStoreBolt
)

func (f LogStore) String() string {
	switch f {
	case LogStoreAuto:
		return "LogStoreAuto"
	case LogStoreLog:
		return "LogStoreLog"
	case LogStoreBolt:
		return "LogStoreBolt"
	}
	return fmt.Sprintf("LogStore(%d)", int(f))
}

// Peer is one founding member of a cluster.
type Peer struct {
	ID   string
	Addr string // host:port of its cluster listener
}

// Config configures a Node. The zero Config is the embedded default: one
// in-memory node that is the leader at once and keeps nothing on disk.
//
// Cluster mode: set Addr and either Peers (found a new cluster; the same
// list on every founding member) or Join (the address of any member of a
// running cluster). A node that restarts on a DataDir with existing state
// ignores Peers and Join: it is already a member.
type Config struct {
	// ID names this node in the Raft configuration. Default DefaultID; must
	// be unique in a cluster.
	ID string

	// DataDir, when set, makes the node durable: the Raft log and stable
	// store and snapshots live there, and a node restarted on the same
	// DataDir keeps every lease, queue and token counter. Empty means in
	// memory. LogStore picks the format of a new DataDir's log; naming
	// the format an existing DataDir does not hold is an error.
	DataDir  string
	LogStore LogStore

	// SessionTTL is how long a Locker's session survives without a
	// keep-alive: the time until a crashed holder's session leases pass to
	// the next waiter. Default DefaultSessionTTL; between MinSessionTTL and
	// MaxSessionTTL.
	SessionTTL time.Duration

	// Addr is the cluster listener (Raft and node-to-node RPC on one port),
	// e.g. "10.0.0.5:7001" or "127.0.0.1:0". Empty: a single node without
	// network. AdvertiseAddr is the address peers dial; required when Addr's
	// host is unspecified (":7001", "0.0.0.0:7001"); default Addr.
	Addr          string
	AdvertiseAddr string

	// Listener, instead of Addr, is a cluster listener made by the caller;
	// the node owns it once New succeeds. Dial, when set, opens the node's
	// outgoing cluster connections instead of TCP (TLS is layered on top).
	// Both exist for custom networking and for fault-injecting tests.
	Listener net.Listener
	Dial     func(ctx context.Context, addr string) (net.Conn, error)

	// Peers founds a new cluster of these voters, this node among them.
	// This node's own entry may leave Addr empty (it is then this node's
	// advertised address), so a cluster can be founded by one node on port
	// 0 and grown with Join.
	Peers []Peer

	// Join is the cluster address of any member of a running cluster; this
	// node asks to be added (as a voter unless NonVoter).
	Join     string
	NonVoter bool

	// TLS, when set, enables mutual TLS between nodes: the same config
	// serves and dials, and peers must present certificates verified
	// against its CAs. Without TLS the cluster port must sit on a trusted
	// network: anyone who can reach it can speak Raft.
	TLS *tls.Config

	// Peer identity (DESIGN.md, "Peer identity"). With TLS, every node's
	// certificate must name its ID (a URI SAN transport.MemberURI(ID),
	// quorumlock://member/<ID>) unless VerifyPeer maps a verified chain to
	// an ID another way. ClusterKey (at least transport.MinClusterKeyLen
	// bytes, the same on every node) authenticates peers without a PKI;
	// without TLS it neither encrypts nor protects connections after the
	// handshake. With either, only a member may propose, remove or speak
	// Raft, and a node may join only as itself; AllowJoin, if set, further
	// decides which IDs may join (it needs TLS or ClusterKey).
	ClusterKey []byte
	VerifyPeer func(chain []*x509.Certificate) (id string, err error)
	AllowJoin  func(id string) bool

	// Timing selects the Raft timers of a cluster node.
	Timing Timing

	// Snapshots bound the Raft log: after SnapshotThreshold new entries,
	// checked every SnapshotInterval, the node snapshots its state and
	// truncates its log, keeping the last TrailingLogs entries so that a
	// briefly lagging follower can still catch up from the log (a follower
	// further behind receives the snapshot). Zero means hashicorp/raft's
	// defaults (8192 entries, 120 s, 10240 entries). SnapshotInterval, when
	// set, is at least 5 ms.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	// StartTimeout bounds how long New waits for the node to find a leader
	// and catch up. Default DefaultStartTimeout.
	StartTimeout time.Duration

	// Limits caps how far Lockers may grow the replicated state; zero
	// fields take the defaults (DefaultLimits). The leader's Limits apply,
	// so give every node the same.
	Limits Limits

	// Metrics receives the node's measurements (metrics/DESIGN.md): its
	// Lockers' calls and leases, and the Raft node's commits, applies,
	// forwarded requests, leader changes, snapshot installs, store size and
	// transport counters. Nil means none; give each node its own Sink
	// (prommetrics: its own constant labels).
	Metrics metrics.Sink

	// Logger receives the node's and Raft's logs. Nil means silent. The
	// node logs through it as given, adding no attribute of its own to
	// every line (Raft's lines carry component=raft), so that nothing is
	// duplicated: pass Logger.With("node", id) to tell several nodes
	// apart. What an operator must know (a lost lease, an expired session,
	// a revoke, a leader change) is logged at Warn or Info; Raft's routine
	// chatter is demoted to Debug and an unreachable peer is reported once
	// at Warn, then every 30 s while it lasts (DESIGN.md, "Logs").
	Logger *slog.Logger

	// played makes the node play a build of another protocol from its
	// start; set by tests only (export_test.go), nil otherwise.
	played *playedBuild
}

// Limits caps the replicated state (DESIGN.md, "Limits"). A call that
// would grow the state past a cap fails with an error wrapping
// lock.ErrLimit and changes nothing. The caps bound growth rather than
// being exact quotas: calls in flight at the same moment can overshoot a
// cap by their number.
type Limits struct {
	Sessions        int // sessions (Lockers) in the cluster
	SessionsPerNode int // sessions opened through one node
	Names           int // names held or waited for
	NamesPerSession int // names one Locker holds or waits for
	WaitersPerName  int // Acquire calls queued on one name
}

// DefaultLimits are the caps a zero Limits field takes.
var DefaultLimits = Limits{
	Sessions:        100_000,
	SessionsPerNode: 10_000,
	Names:           100_000,
	NamesPerSession: 1_000,
	WaitersPerName:  1_000,
}

// withDefaults fills zero fields from DefaultLimits and refuses negative
// ones.
func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		v    *int
		def  int
		name string
	}{
		{&l.Sessions, DefaultLimits.Sessions, "Sessions"},
		{&l.SessionsPerNode, DefaultLimits.SessionsPerNode, "SessionsPerNode"},
		{&l.Names, DefaultLimits.Names, "Names"},
		{&l.NamesPerSession, DefaultLimits.NamesPerSession, "NamesPerSession"},
		{&l.WaitersPerName, DefaultLimits.WaitersPerName, "WaitersPerName"},
	} {
		if *f.v < 0 {
			return l, fmt.Errorf("%w: Limits.%s %d is negative", ErrInvalidConfig, f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l, nil
}

func (l Limits) fsm() fsm.Limits {
	return fsm.Limits{
		Sessions: l.Sessions, SessionsPerNode: l.SessionsPerNode, Names: l.Names,
		NamesPerSession: l.NamesPerSession, WaitersPerName: l.WaitersPerName,
	}
}

// ErrInvalidConfig is wrapped by New's errors about Config fields.
var ErrInvalidConfig = errors.New("node: invalid config")

func (c Config) clustered() bool { return c.Addr != "" || c.Listener != nil }

func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ID == "" {
		c.ID = DefaultID
	}
	if len(c.ID) > fsm.MaxNodeIDLen {
		return bad("ID longer than %d bytes", fsm.MaxNodeIDLen)
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL {
		return bad("SessionTTL %v outside [%v, %v]", c.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StartTimeout < 0 {
		return bad("StartTimeout %v is negative", c.StartTimeout)
	}
	if c.SnapshotInterval != 0 && c.SnapshotInterval < 5*time.Millisecond {
		return bad("SnapshotInterval %v below 5ms", c.SnapshotInterval)
	}
	if c.Timing != TimingFastLAN && c.Timing != TimingConservative {
		return bad("Timing %d unknown", c.Timing)
	}
	if c.LogStore < LogStoreAuto || c.LogStore > LogStoreBolt {
		return bad("%v unknown", c.LogStore)
	}
	limits, err := c.Limits.withDefaults()
	if err != nil {
		return c, err
	}
	c.Limits = limits
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !c.clustered() {
		if len(c.Peers) > 0 || c.Join != "" || c.TLS != nil || c.AdvertiseAddr != "" || c.NonVoter || c.Dial != nil ||
			c.ClusterKey != nil || c.VerifyPeer != nil || c.AllowJoin != nil {
			return bad("Peers, Join, TLS, ClusterKey, VerifyPeer, AllowJoin, AdvertiseAddr, NonVoter and Dial need Addr or Listener")
		}
		return c, nil
	}
	if c.Listener != nil && c.Addr != "" {
		return bad("set Addr or Listener, not both")
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return bad("Addr %q: %v", c.Addr, err)
		}
	}
	if c.AllowJoin != nil && c.TLS == nil && c.ClusterKey == nil {
		return bad("AllowJoin needs an identity: TLS or ClusterKey")
	}
	if len(c.Peers) > 0 && c.Join != "" {
		return bad("Peers and Join are exclusive")
	}
	if c.NonVoter && c.Join == "" {
		return bad("NonVoter needs Join (founding Peers are voters)")
	}
	ids, addrs, self := map[string]bool{}, map[string]bool{}, len(c.Peers) == 0
	for _, p := range c.Peers {
		if p.ID == "" || (p.Addr == "" && p.ID != c.ID) {
			return bad("Peers: empty ID or Addr in %+v", p)
		}
		if ids[p.ID] || (p.Addr != "" && addrs[p.Addr]) {
			return bad("Peers: duplicate %+v", p)
		}
		ids[p.ID], addrs[p.Addr] = true, true
		self = self || p.ID == c.ID
	}
	if !self {
		return bad("Peers does not list this node's ID %q", c.ID)
	}
	return c, nil
}

// raftTimers are the Raft timers of a profile.
type raftTimers struct {
	heartbeat, election, leaderLease, commit time.Duration
}

func (c Config) timers() raftTimers {
	switch {
	case !c.clustered():
		// One voter needs no failure detection: leader at once.
		return raftTimers{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 5 * time.Millisecond}
	case c.Timing == TimingConservative:
		return raftTimers{time.Second, time.Second, 500 * time.Millisecond, 5 * time.Millisecond}
	default:
		return raftTimers{500 * time.Millisecond, 500 * time.Millisecond, 250 * time.Millisecond, time.Millisecond}
	}
}

// handoffGrace is how much later than its TTL the leader expires a TTL
// lease handed over from the queue, to cover the replication delay before a
// holder on a follower learns of the grant (node/DESIGN.md).
func (c Config) handoffGrace() time.Duration {
	if !c.clustered() {
		return 0 // the only holder applies with the leader
	}
	return c.timers().heartbeat
}
