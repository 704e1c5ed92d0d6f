package mapping

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is how deeply objects and arrays may nest, as in encoding/json.
const maxDepth = 10000

// kind is the JSON type of a captured value.
type kind uint8

const (
	kindAbsent kind = iota // absent or null
	kindString             // start and end delimit the content, without the quotes
	kindNumber
	kindBool
	kindObject
	kindArray
	kindNotObject // a key on the way to the field holds a value of type got, not an object
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "null"
}

// capture is where one field's value lies in the message.
type capture struct {
	start, end int
	kind       kind
	esc        bool // a string with backslash escapes
	got        kind // for kindNotObject: what the key at level holds
	level      int  // for kindNotObject: how many keys of the path lead to it
}

// scanner walks one message, validating its JSON syntax and capturing the values of the
// mapping's paths. Its methods take the index of a value's first byte and return the index
// after it, or -1 after recording the syntax error in err and at.
type scanner struct {
	b    []byte
	caps *[numFields]capture
	err  string
	at   int
}

func (s *scanner) fail(i int, msg string) int {
	if s.err == "" {
		s.err, s.at = msg, i
	}
	return -1
}

// ws skips JSON whitespace.
func (s *scanner) ws(i int) int {
	if i < len(s.b) && s.b[i] > ' ' {
		return i
	}
	for i < len(s.b) {
		switch s.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// object reads the object at b[i] == '{', nested depth containers deep, matching its keys
// against n's children (n is nil when nothing below is captured).
func (s *scanner) object(i int, n *node, depth int) int {
	if depth > maxDepth {
		return s.fail(i, "nested deeper than 10000 objects and arrays")
	}
	b := s.b
	i = s.ws(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) {
			return s.fail(i, "unterminated object")
		}
		if b[i] != '"' {
			return s.fail(i, "want a string key")
		}
		k := i + 1
		var esc bool
		if i, esc = s.str(i); i < 0 {
			return -1
		}
		var c *node
		if n != nil && len(n.children) > 0 {
			c = n.child(b[k:i-1], esc)
		}
		i = s.ws(i)
		if i >= len(b) || b[i] != ':' {
			return s.fail(i, "want a colon after an object key")
		}
		i = s.ws(i + 1)
		if c != nil {
			i = s.capture(i, c, depth)
		} else {
			i = s.value(i, depth)
		}
		if i < 0 {
			return -1
		}
		i = s.ws(i)
		if i >= len(b) {
			return s.fail(i, "unterminated object")
		}
		switch b[i] {
		case ',':
			i = s.ws(i + 1)
		case '}':
			return i + 1
		default:
			return s.fail(i, "want a comma or } after an object member")
		}
	}
}

// child returns n's child for key (the raw bytes between the quotes), or nil.
func (n *node) child(key []byte, esc bool) *node {
	if esc {
		var buf [64]byte
		key = unescape(buf[:0], key)
	}
	if len(key) == 0 {
		return nil
	}
	mask := uint(len(n.table) - 1)
	for h := keyHash(key) & mask; n.table[h].node != nil; h = (h + 1) & mask {
		if string(key) == n.table[h].key {
			return n.table[h].node
		}
	}
	return nil
}

// keyHash places a key in its node's table.
func keyHash(key []byte) uint {
	return uint(len(key))*7 + uint(key[0])*3 + uint(key[len(key)-1])
}

// slot is an entry of a node's table of children.
type slot struct {
	key  string
	node *node // nil for an empty slot
}

// index builds the tables of n and of the nodes below it: open addressing by keyHash.
func (n *node) index() {
	size := 4
	for size < 2*len(n.children) {
		size *= 2
	}
	n.table = make([]slot, size)
	mask := uint(size - 1)
	for _, c := range n.children {
		h := keyHash([]byte(c.key)) & mask
		for n.table[h].node != nil {
			h = (h + 1) & mask
		}
		n.table[h] = slot{c.key, c}
		c.index()
	}
}

// array reads the array at b[i] == '['.
func (s *scanner) array(i int, depth int) int {
	if depth > maxDepth {
		return s.fail(i, "nested deeper than 10000 objects and arrays")
	}
	b := s.b
	i = s.ws(i + 1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = s.value(i, depth); i < 0 {
			return -1
		}
		i = s.ws(i)
		if i >= len(b) {
			return s.fail(i, "unterminated array")
		}
		switch b[i] {
		case ',':
			i = s.ws(i + 1)
		case ']':
			return i + 1
		default:
			return s.fail(i, "want a comma or ] after an array element")
		}
	}
}

// value reads any value inside a container depth deep, capturing nothing.
func (s *scanner) value(i int, depth int) int {
	if i >= len(s.b) {
		return s.fail(i, "unexpected end of message, want a value")
	}
	switch c := s.b[i]; {
	case c == '"':
		i, _ = s.str(i)
		return i
	case c == '{':
		return s.object(i, nil, depth+1)
	case c == '[':
		return s.array(i, depth+1)
	case c == '-' || c >= '0' && c <= '9':
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return s.fail(i, "want a value")
}

// capture reads the value of key n, inside an object depth deep, into the captures of the
// fields at and below n. A later duplicate of the key replaces all of them, as in a JSON object
// read into a map.
func (s *scanner) capture(i int, n *node, depth int) int {
	for m := n.under; m != 0; m &= m - 1 {
		s.caps[bits.TrailingZeros16(m)] = capture{}
	}
	if i >= len(s.b) {
		return s.fail(i, "unexpected end of message, want a value")
	}
	start, end, k, esc := i, 0, kindAbsent, false
	switch c := s.b[i]; {
	case c == '"':
		k = kindString
		end, esc = s.str(i)
		start++
	case c == '{':
		k = kindObject
		if len(n.children) > 0 {
			end = s.object(i, n, depth+1)
		} else {
			end = s.object(i, nil, depth+1)
		}
	case c == '[':
		k = kindArray
		end = s.array(i, depth+1)
	case c == '-' || c >= '0' && c <= '9':
		k = kindNumber
		end = s.number(i)
	case c == 't':
		k = kindBool
		end = s.literal(i, "true")
	case c == 'f':
		k = kindBool
		end = s.literal(i, "false")
	case c == 'n':
		end = s.literal(i, "null")
	default:
		return s.fail(i, "want a value")
	}
	if end < 0 || k == kindAbsent {
		return end
	}
	vend := end
	if k == kindString {
		vend--
	}
	for m := n.here; m != 0; m &= m - 1 {
		s.caps[bits.TrailingZeros16(m)] = capture{start: start, end: vend, kind: k, esc: esc}
	}
	if k != kindObject {
		for m := n.under &^ n.here; m != 0; m &= m - 1 {
			s.caps[bits.TrailingZeros16(m)] = capture{kind: kindNotObject, got: k, level: n.level}
		}
	}
	return end
}

// str reads the string at b[i] == '"'. esc says whether it holds backslash escapes.
func (s *scanner) str(i int) (end int, esc bool) {
	b := s.b
	i++
	for {
		// Eight bytes at a time while none is a quote, a backslash or a control character.
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			if m := (hasZero(x^(ones*'"')) | hasZero(x^(ones*'\\')) | hasLess(x, 0x20)) & highs; m != 0 {
				i += bits.TrailingZeros64(m) / 8 // the first such byte: borrows only run upwards
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, esc
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return s.fail(i, "unterminated string"), esc
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return s.fail(i, `\u must be followed by 4 hex digits`), esc
				}
				i += 6
			default:
				return s.fail(i, "invalid escape in string"), esc
			}
		case c < 0x20:
			return s.fail(i, "control character in string (escape it)"), esc
		default:
			i++
		}
	}
	return s.fail(i, "unterminated string"), esc
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// hasZero has the high bit set in some byte iff some byte of x is 0.
func hasZero(x uint64) uint64 { return (x - ones) &^ x }

// hasLess has the high bit set in some byte iff some byte of x is less than n (n <= 128).
func hasLess(x uint64, n uint64) uint64 { return (x - ones*n) &^ x }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) rune {
	switch {
	case c <= '9':
		return rune(c - '0')
	case c >= 'a':
		return rune(c - 'a' + 10)
	}
	return rune(c - 'A' + 10)
}

// number reads the JSON number at b[i].
func (s *scanner) number(i int) int {
	end := numberEnd(s.b, i)
	if end < 0 {
		return s.fail(i, "invalid number")
	}
	return end
}

// numberEnd returns the end of the JSON number starting at b[i], or -1 when there is none.
func numberEnd(b []byte, i int) int {
	digits := func(i int) int {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	default:
		if i = digits(i); i < 0 {
			return -1
		}
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// literal reads the literal lit at b[i].
func (s *scanner) literal(i int, lit string) int {
	if len(s.b)-i < len(lit) || string(s.b[i:i+len(lit)]) != lit {
		return s.fail(i, "invalid literal (want true, false or null)")
	}
	return i + len(lit)
}

// unescape appends the content of a valid JSON string, raw (without its quotes), decoded to dst.
// A lone or mismatched UTF-16 surrogate becomes U+FFFD, as in encoding/json.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		if raw[i] != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		c := raw[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

// hex4 decodes the 4 hex digits at the start of b (checked by the scanner).
func hex4(b []byte) rune {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}
