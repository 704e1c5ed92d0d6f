package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// fakeSlack is slacktest's server with chat.postMessage, chat.update and conversations.history
// of our own that keep messages per channel, behind a wrapper that records every call and can
// answer 429 (Retry-After: 1) or 500 first.
type fakeSlack struct {
	srv *slacktest.Server

	mu       sync.Mutex
	calls    []call
	messages map[string][]fakeMessage // channel id -> messages, replies included
	names    map[string]string        // channel name (without #) -> id, for users.conversations
	seq      int
	// fail answers the n-th call (from 1) with a status instead of handling it; 0: handle it.
	fail func(n int) int
}

type call struct {
	At      time.Time
	Method  string
	Channel string
	Status  int
	TS      string // of the message posted, updated or replied to
}

type fakeMessage struct {
	TS, ThreadTS, Text string
	Blocks             string
	Metadata           json.RawMessage
	Updates            int
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{messages: map[string][]fakeMessage{}, names: map[string]string{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", f.wrap("chat.postMessage", f.postMessage))
		c.Handle("/chat.update", f.wrap("chat.update", f.update))
		c.Handle("/conversations.history", f.wrap("conversations.history", f.history))
		c.Handle("/conversations.replies", f.wrap("conversations.replies", f.replies))
		c.Handle("/users.conversations", f.wrap("users.conversations", f.userConversations))
	})
	f.srv.Start()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeSlack) url() string { return f.srv.GetAPIURL() }

func (f *fakeSlack) wrap(method string, h func(w http.ResponseWriter, r *http.Request) (int, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		_ = r.ParseForm()
		f.mu.Lock()
		n := len(f.calls) + 1
		status := 0
		if f.fail != nil {
			status = f.fail(n)
		}
		c := call{At: at, Method: method, Channel: r.FormValue("channel")}
		f.mu.Unlock()
		switch status {
		case 0:
			c.Status, c.TS = h(w, r)
		case http.StatusTooManyRequests:
			c.Status = status
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
		default:
			c.Status = status
			w.WriteHeader(status)
		}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		f.mu.Unlock()
	}
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// channelID is the id of channel as Slack resolves it: a "#name" becomes its id (and is
// remembered for users.conversations); an id stays itself.
func (f *fakeSlack) channelID(channel string) string {
	name, ok := strings.CutPrefix(channel, "#")
	if !ok {
		return channel
	}
	id := "C" + strings.ToUpper(name)
	f.names[name] = id
	return id
}

// byID answers channel_not_found for a channel name, as Slack's chat.update and conversations.*
// do: only chat.postMessage takes names.
func byID(w http.ResponseWriter, channel string) bool {
	if strings.HasPrefix(channel, "#") {
		answer(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return false
	}
	return true
}

func (f *fakeSlack) postMessage(w http.ResponseWriter, r *http.Request) (int, string) {
	ch := r.FormValue("channel")
	if ch == "C_MISSING" {
		answer(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return 200, ""
	}
	f.mu.Lock()
	ch = f.channelID(ch)
	f.seq++
	ts := fmt.Sprintf("%d.%06d", time.Now().Unix(), f.seq)
	m := fakeMessage{TS: ts, ThreadTS: r.FormValue("thread_ts"), Text: r.FormValue("text"), Blocks: r.FormValue("blocks")}
	if md := r.FormValue("metadata"); md != "" {
		m.Metadata = json.RawMessage(md)
	}
	f.messages[ch] = append(f.messages[ch], m)
	f.mu.Unlock()
	answer(w, map[string]any{"ok": true, "channel": ch, "ts": ts})
	return 200, ts
}

func (f *fakeSlack) update(w http.ResponseWriter, r *http.Request) (int, string) {
	ch, ts := r.FormValue("channel"), r.FormValue("ts")
	if !byID(w, ch) {
		return 200, ts
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range f.messages[ch] {
		if m.TS == ts {
			f.messages[ch][i].Text, f.messages[ch][i].Blocks = r.FormValue("text"), r.FormValue("blocks")
			f.messages[ch][i].Updates++
			answer(w, map[string]any{"ok": true, "channel": ch, "ts": ts, "text": r.FormValue("text")})
			return 200, ts
		}
	}
	answer(w, map[string]any{"ok": false, "error": "message_not_found"})
	return 200, ts
}

func (f *fakeSlack) history(w http.ResponseWriter, r *http.Request) (int, string) {
	ch := r.FormValue("channel")
	if !byID(w, ch) {
		return 200, ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var msgs []map[string]any
	for _, m := range f.messages[ch] {
		if m.ThreadTS != "" {
			continue
		}
		v := map[string]any{"type": "message", "ts": m.TS, "text": m.Text}
		if m.Metadata != nil && r.FormValue("include_all_metadata") == "1" {
			v["metadata"] = m.Metadata
		}
		msgs = append(msgs, v)
	}
	answer(w, map[string]any{"ok": true, "messages": msgs, "has_more": false})
	return 200, ""
}

func (f *fakeSlack) replies(w http.ResponseWriter, r *http.Request) (int, string) {
	ch, ts := r.FormValue("channel"), r.FormValue("ts")
	if !byID(w, ch) {
		return 200, ts
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var msgs []map[string]any
	for _, m := range f.messages[ch] {
		if m.TS != ts && m.ThreadTS != ts {
			continue
		}
		v := map[string]any{"type": "message", "ts": m.TS, "thread_ts": ts, "text": m.Text}
		if m.Metadata != nil && r.FormValue("include_all_metadata") == "1" {
			v["metadata"] = m.Metadata
		}
		msgs = append(msgs, v)
	}
	answer(w, map[string]any{"ok": true, "messages": msgs, "has_more": false})
	return 200, ts
}

// userConversations lists every channel known by name, one page.
func (f *fakeSlack) userConversations(w http.ResponseWriter, _ *http.Request) (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var chans []map[string]any
	for name, id := range f.names {
		chans = append(chans, map[string]any{"id": id, "name": name, "is_channel": true})
	}
	answer(w, map[string]any{"ok": true, "channels": chans, "response_metadata": map[string]any{"next_cursor": ""}})
	return 200, ""
}

// seed puts a message into a channel (an id, or a "#name") as if it had been posted earlier.
func (f *fakeSlack) seed(channel string, m fakeMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	channel = f.channelID(channel)
	f.messages[channel] = append(f.messages[channel], m)
}

func (f *fakeSlack) snapshot() ([]call, map[string][]fakeMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := map[string][]fakeMessage{}
	for k, v := range f.messages {
		msgs[k] = append([]fakeMessage(nil), v...)
	}
	return append([]call(nil), f.calls...), msgs
}

// count counts successful calls of method (to channel, when not empty).
func (f *fakeSlack) count(method, channel string) int {
	calls, _ := f.snapshot()
	n := 0
	for _, c := range calls {
		if c.Method == method && c.Status == 200 && (channel == "" || c.Channel == channel) {
			n++
		}
	}
	return n
}
