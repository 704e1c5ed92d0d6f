package testbed

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// relay is a loopback TCP relay in front of the native protocol port of the embedded ClickHouse.
// It exists because the embedded server (clickhouse-local from libchdb 26.7) aborts on network
// errors that clickhouse-server logs and survives: a connection reset while it waits for a
// client's next packet, and any error in the handshake (a Hello cut short, a packet that is no
// Hello). Its HTTP interface survives both, and has no relay.
//
// A client that vanishes, by a reset or a close with its reads unfinished, is never passed on as
// such. Toward ClickHouse the relay closes only its writing half (the server reads a plain end of
// stream, as from a client that hung up), reads and discards whatever the server still sends, and
// closes once the server has closed: a close with unread data would itself be a reset. The relay
// also keeps the handshake whole: it dials ClickHouse only once the client's Hello packet has
// arrived complete (see readHello), and if the client vanishes before its addendum, it sends the
// addendum in the client's place.
type relay struct {
	ln       net.Listener
	upstream string
}

// listenRelay listens on addr for clients of the native port upstream.
func listenRelay(addr, upstream string) (*relay, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &relay{ln: ln, upstream: upstream}, nil
}

// serve accepts clients until ctx ends, then closes the listener and returns. Pairs in progress
// end with the server (the launcher exits after it).
func (r *relay) serve(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { r.ln.Close() })
	defer stop()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors for a moment, say
			continue
		}
		go r.pair(c.(*net.TCPConn))
	}
}

// pair relays one client to a connection of its own to ClickHouse.
func (r *relay) pair(client *net.TCPConn) {
	defer client.Close()
	h, err := readHello(client)
	if err != nil {
		return // never reaches ClickHouse, which would abort on it
	}
	up, err := net.Dial("tcp", r.upstream)
	if err != nil {
		return // the client sees its connection closed, as with a server that is not there
	}
	server := up.(*net.TCPConn)
	defer server.Close() // reached only after the server's end of stream: nothing left unread
	if _, err := server.Write(h.raw); err != nil {
		return
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		if !h.http && !h.more {
			// Between the Hello and the addendum: a client that vanishes now is answered for
			// (where the relay knows how), so that the server's next read is between packets,
			// where it takes an end of stream in its stride.
			buf := make([]byte, 4<<10)
			n, err := client.Read(buf)
			if n == 0 && err != nil {
				_, _ = server.Write(h.addendum())
			} else if _, err := server.Write(buf[:n]); err != nil {
				return // the server is gone; its end of stream ends the other direction
			}
		}
		// Spliced by the kernel until the client ends, in order or not, or the server stops
		// taking data; either way the server reads an end of stream next.
		_, _ = server.ReadFrom(client)
		_ = server.CloseWrite()
	}()

	if _, err := client.ReadFrom(server); err != nil {
		// The client is gone (or the server reset us): read the server to its end, so that it
		// never writes into a reset.
		_ = client.Close()
		_, _ = io.Copy(io.Discard, server)
	} else {
		_ = client.CloseWrite() // the server closed: pass its end of stream on
	}
	<-done
}
