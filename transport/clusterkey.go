package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The cluster-key exchange (DESIGN.md, "Peer identity and the cluster
// key"): a mutual HMAC-SHA256 challenge–response over both fresh nonces
// and both claimed member IDs, before the protocol byte.
//
//	client → server  magic(4) | nonce_c(32) | u16 len | client ID
//	server → client  nonce_s(32) | u16 len | server ID | mac_s(32)
//	client → server  mac_c(32)

// MinClusterKeyLen is the shortest Config.ClusterKey New accepts.
const MinClusterKeyLen = 32

const (
	nonceLen = 32
	macLen   = sha256.Size
	// keyLabel separates these MACs from any other use of the key.
	keyLabel = "quorumlock cluster key v1\x00"
)

// keyMagic opens a client's hello. Its first byte is neither a protocol
// byte nor a TLS record: a keyed client reaching a keyless node is a bad
// first byte there, and a keyless one reaching a keyed node is refused at
// its first byte.
var keyMagic = [4]byte{'K', 'E', 'Y', 1}

// errNoHello: the peer closed before sending anything (a probe, or a
// dialler that gave up), not a failed authentication.
var errNoHello = errors.New("transport: closed before the cluster-key hello")

// keyMAC is the proof of the side named by dir ('s' server, 'c' client).
func keyMAC(key []byte, dir byte, nonceC, nonceS []byte, clientID, serverID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(keyLabel))
	m.Write([]byte{dir})
	m.Write(nonceC)
	m.Write(nonceS)
	for _, id := range []string{clientID, serverID} {
		var n [2]byte
		binary.BigEndian.PutUint16(n[:], uint16(len(id)))
		m.Write(n[:])
		m.Write([]byte(id))
	}
	return m.Sum(nil)
}

func newNonce() ([]byte, error) {
	n := make([]byte, nonceLen)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("transport: nonce: %w", err)
	}
	return n, nil
}

func appendID(b []byte, id string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	return append(b, id...)
}

// readID reads a u16-prefixed member ID and checks it.
func readID(r io.Reader) (string, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	l := int(binary.BigEndian.Uint16(n[:]))
	if l == 0 || l > MaxMemberIDLen {
		return "", fmt.Errorf("%w: cluster key: member ID of %d bytes", ErrUnauthenticated, l)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	id := string(b)
	return id, checkMemberID(id)
}

// clientKeyExchange proves to the server at rw that this node holds key,
// checks the server's proof, and returns the server's claimed ID.
func clientKeyExchange(rw io.ReadWriter, key []byte, self string) (string, error) {
	nonceC, err := newNonce()
	if err != nil {
		return "", err
	}
	hello := make([]byte, 0, len(keyMagic)+nonceLen+2+len(self))
	hello = append(hello, keyMagic[:]...)
	hello = append(hello, nonceC...)
	if _, err := rw.Write(appendID(hello, self)); err != nil {
		return "", fmt.Errorf("cluster key: send hello: %w", err)
	}
	nonceS := make([]byte, nonceLen)
	if _, err := io.ReadFull(rw, nonceS); err != nil {
		return "", fmt.Errorf("cluster key: read challenge: %w", err)
	}
	server, err := readID(rw)
	if err != nil {
		return "", fmt.Errorf("cluster key: read challenge: %w", err)
	}
	macS := make([]byte, macLen)
	if _, err := io.ReadFull(rw, macS); err != nil {
		return "", fmt.Errorf("cluster key: read challenge: %w", err)
	}
	if !hmac.Equal(macS, keyMAC(key, 's', nonceC, nonceS, self, server)) {
		return "", fmt.Errorf("%w: cluster key: the server's proof does not verify (another key?)", ErrUnauthenticated)
	}
	if _, err := rw.Write(keyMAC(key, 'c', nonceC, nonceS, self, server)); err != nil {
		return "", fmt.Errorf("cluster key: send proof: %w", err)
	}
	return server, nil
}

// serverKeyExchange answers a client's hello on rw with this node's proof,
// checks the client's, and returns the client's claimed ID.
func serverKeyExchange(rw io.ReadWriter, key []byte, self string) (string, error) {
	var magic [len(keyMagic)]byte
	if _, err := io.ReadFull(rw, magic[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return "", errNoHello
		}
		return "", fmt.Errorf("cluster key: read hello: %w", err)
	}
	if magic != keyMagic {
		return "", fmt.Errorf("%w: cluster key: no hello (first bytes %x): a peer without the key?", ErrUnauthenticated, magic)
	}
	nonceC := make([]byte, nonceLen)
	if _, err := io.ReadFull(rw, nonceC); err != nil {
		return "", fmt.Errorf("cluster key: read hello: %w", err)
	}
	client, err := readID(rw)
	if err != nil {
		return "", fmt.Errorf("cluster key: read hello: %w", err)
	}
	nonceS, err := newNonce()
	if err != nil {
		return "", err
	}
	challenge := appendID(nonceS, self)
	challenge = append(challenge, keyMAC(key, 's', nonceC, nonceS, client, self)...)
	if _, err := rw.Write(challenge); err != nil {
		return "", fmt.Errorf("cluster key: send challenge: %w", err)
	}
	macC := make([]byte, macLen)
	if _, err := io.ReadFull(rw, macC); err != nil {
		return "", fmt.Errorf("%w: cluster key: read proof: %w", ErrUnauthenticated, err)
	}
	if !hmac.Equal(macC, keyMAC(key, 'c', nonceC, nonceS, client, self)) {
		return "", fmt.Errorf("%w: cluster key: the client's proof does not verify (another key, or a replay)", ErrUnauthenticated)
	}
	return client, nil
}
