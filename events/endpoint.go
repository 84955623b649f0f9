package events

import "net/netip"

// Endpoint is a remote address and port.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.Addr, e.Port).String() }

// EndpointCount is how many sockets go to one remote endpoint.
type EndpointCount struct {
	Endpoint Endpoint
	Count    int
}
