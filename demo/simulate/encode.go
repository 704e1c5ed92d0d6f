package simulate

import (
	"math/rand/v2"
	"sort"
)

// Cumulative turns weights into a cumulative distribution (the last value 1) for Pick.
func Cumulative(w []float64) []float64 {
	out := make([]float64, len(w))
	sum := 0.0
	for i, x := range w {
		sum += x
		out[i] = sum
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// Pick draws an index from a cumulative distribution (Cumulative).
func Pick(r *rand.Rand, cum []float64) int {
	return min(sort.SearchFloat64s(cum, r.Float64()), len(cum)-1)
}

// AppendField appends ,"name":"value" to buf, with value escaped as a JSON string: how the
// benchmarks write events at hundreds of thousands a second, where encoding/json would be the
// bottleneck. name must need no escaping.
func AppendField(buf []byte, name, value string) []byte {
	buf = append(buf, `,"`...)
	buf = append(buf, name...)
	buf = append(buf, `":"`...)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20:
			buf = append(buf, `\u00`...)
			buf = AppendHex(buf, uint64(c), 2)
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

// AppendHex appends the lowest digits hexadecimal digits of v to buf.
func AppendHex(buf []byte, v uint64, digits int) []byte {
	const hexDigits = "0123456789abcdef"
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		buf = append(buf, hexDigits[v>>uint(shift)&0xf])
	}
	return buf
}
