package testbed

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// hello is a client's opening of ClickHouse's native protocol, as the relay saw it.
type hello struct {
	// raw is every byte read from the client: the Hello packet and whatever followed it.
	raw []byte
	// more says the client sent more than the Hello (its addendum, at least).
	more bool
	// http says the client opened with an HTTP request instead.
	http bool
	// revision is the protocol revision the client announced.
	revision uint64
}

// Protocol revisions of the native handshake (ClickHouse's src/Core/Protocol.h).
const (
	// revisionAddendum is the first revision whose clients send an addendum after the server's
	// Hello: a quota key, and from revisionChunked on more that the relay does not write.
	revisionAddendum = 54458
	// revisionChunked is the first revision whose addendum also negotiates chunked packets.
	revisionChunked = 54470
	// maxHelloString bounds each string of a Hello (client name, database, user, password).
	maxHelloString = 64 << 10
)

// errNotHello is what readHello answers for a client that opened with something else.
var errNotHello = errors.New("not a ClickHouse Hello packet")

// readHello reads a client's Hello packet whole: packet type 0, client name, version major and
// minor, protocol revision, database, user and password. An HTTP request is passed too (ClickHouse
// answers it on the native port with a note on the right port). Anything else, a Hello cut short
// or a string over maxHelloString is an error: ClickHouse aborts on every such opening.
func readHello(r io.Reader) (hello, error) {
	var raw bytes.Buffer
	br := bufio.NewReaderSize(io.TeeReader(r, &raw), 4<<10)
	h, err := parseHello(br)
	h.raw = raw.Bytes()
	h.more = br.Buffered() > 0
	return h, err
}

func parseHello(br *bufio.Reader) (hello, error) {
	if start, err := br.Peek(5); err == nil && httpRequest(string(start)) {
		return hello{http: true}, nil
	}
	if kind, err := binary.ReadUvarint(br); err != nil {
		return hello{}, err
	} else if kind != 0 {
		return hello{}, errNotHello
	}
	skipString := func() error {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		if n > maxHelloString {
			return fmt.Errorf("%w: a string of %d bytes", errNotHello, n)
		}
		_, err = br.Discard(int(n))
		return err
	}
	if err := skipString(); err != nil { // client name
		return hello{}, err
	}
	var h hello
	for _, v := range []*uint64{new(uint64), new(uint64), &h.revision} { // major, minor, revision
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return hello{}, err
		}
		*v = n
	}
	for range 3 { // database, user, password
		if err := skipString(); err != nil {
			return hello{}, err
		}
	}
	return h, nil
}

// httpRequest says whether start opens an HTTP request.
func httpRequest(start string) bool {
	for _, m := range []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE", "OPTIONS", "PATCH"} {
		if strings.HasPrefix(m, start) || strings.HasPrefix(start, m) {
			return true
		}
	}
	return false
}

// addendum is what the server reads after its Hello from a client of h's revision, as
// clickhouse-go writes it: an empty quota key. From revisionChunked on the addendum has fields
// whose values the relay does not know, and addendum is nil: the server then reads an end of
// stream inside its handshake, which the embedded server aborts on (ClickHouse.Gone reports it).
func (h hello) addendum() []byte {
	if h.revision < revisionAddendum || h.revision >= revisionChunked {
		return nil
	}
	return []byte{0}
}
