package trace

import "encoding/binary"

// EncodeEvent lays e out as a recording keeps it (RecordSize bytes): the inverse of Decode.
func EncodeEvent(e *Event) []byte { return AppendEvent(nil, e) }

// AppendEvent appends e to b as a recording keeps it: the inverse of Decode.
func AppendEvent(b []byte, e *Event) []byte {
	n := len(b)
	b = append(b, make([]byte, RecordSize)...)
	out := b
	b = b[n:]
	le := binary.LittleEndian
	le.PutUint64(b[0:], e.Mono)
	le.PutUint64(b[8:], uint64(e.PrevState))
	le.PutUint64(b[16:], uint64(e.Latency))
	le.PutUint32(b[24:], e.Netns)
	le.PutUint32(b[28:], e.Pid)
	le.PutUint32(b[32:], uint32(int32(e.Errno)))
	le.PutUint16(b[36:], e.Sport)
	le.PutUint16(b[38:], e.Dport)
	copy(b[40:56], e.Saddr.AsSlice())
	copy(b[56:72], e.Daddr.AsSlice())
	copy(b[72:88], e.Comm[:])
	b[88], b[89], b[90], b[91] = e.Family, byte(e.OldState), byte(e.NewState), byte(e.Kind)
	return out
}
