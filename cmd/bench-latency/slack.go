package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// benchChannel is the channel id keywatch posts to: an id, so the sender needs no
// users.conversations lookup.
const benchChannel = "CBENCH"

// arrival is one message keywatch posted or updated, stamped when the local Slack API received it.
type arrival struct {
	at     time.Time
	method string // chat.postMessage or chat.update
	text   string // the fallback text as sent
	blocks string // the Block Kit blocks as sent (JSON)
}

// localSlack is slack-go's slacktest server standing in for the Slack Web API: it answers the
// calls keywatch's Slack sender makes (posts, updates, and an empty history, so nothing is
// adopted) and records every post and update with the time it arrived.
type localSlack struct {
	srv *slacktest.Server

	mu       sync.Mutex
	seq      int
	arrivals []arrival
}

func startLocalSlack() *localSlack {
	s := &localSlack{}
	s.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", s.message("chat.postMessage"))
		c.Handle("/chat.update", s.message("chat.update"))
		empty := func(w http.ResponseWriter, _ *http.Request) {
			answer(w, map[string]any{"ok": true, "messages": []any{}, "has_more": false})
		}
		c.Handle("/conversations.history", empty)
		c.Handle("/conversations.replies", empty)
	})
	s.srv.Start()
	return s
}

// url is the API base URL for slack.api_url, ending in /.
func (s *localSlack) url() string { return s.srv.GetAPIURL() }

func (s *localSlack) stop() { s.srv.Stop() }

func (s *localSlack) message(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		if err := r.ParseForm(); err != nil {
			http.Error(w, "cannot read the form", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		ts := r.FormValue("ts")
		if method == "chat.postMessage" {
			s.seq++
			ts = fmt.Sprintf("%d.%06d", at.Unix(), s.seq)
		}
		s.arrivals = append(s.arrivals, arrival{at: at, method: method, text: r.FormValue("text"), blocks: r.FormValue("blocks")})
		s.mu.Unlock()
		answer(w, map[string]any{"ok": true, "channel": benchChannel, "ts": ts})
	}
}

// received returns a copy of every arrival so far, in order of arrival.
func (s *localSlack) received() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
