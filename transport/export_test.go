package transport

// Wire constants for the external tests that speak the protocol by hand.
const (
	MuxRPC       = muxRPC
	MuxRaft      = muxRaft
	KindRequest  = kindRequest
	KindResponse = kindResponse
)

// EncodeFrame encodes one RPC frame (for a request, body starts with the
// 8-byte timeout).
func EncodeFrame(kind byte, id uint64, body []byte) []byte { return encodeFrame(kind, id, body) }

// EffectiveConfig is cfg with its defaults filled in, as New uses it.
func EffectiveConfig(cfg Config) (Config, error) { return cfg.withDefaults() }
