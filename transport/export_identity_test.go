package transport

// KeyMagic opens a cluster-key hello (for tests that speak it by hand).
var KeyMagic = keyMagic
