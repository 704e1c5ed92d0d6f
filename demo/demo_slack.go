package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// terminalSlack is the Slack Web API the demo's Slack sender talks to: every message it is asked
// to post or update is shown in the terminal as plain text rendered from its Block Kit blocks.
// With an upstream (a real Slack API and token) each call is passed on and Slack's answer
// returned, so the messages also land in a real channel; without one it answers as Slack would.
type terminalSlack struct {
	upstream string // e.g. https://slack.com/api/; empty: answer locally
	client   *http.Client
	show     func(text string)

	mu    sync.Mutex
	seq   int
	shown map[string][]string // channel + ts -> the lines last shown
}

func newTerminalSlack(upstream string, show func(string)) *terminalSlack {
	return &terminalSlack{upstream: upstream, client: &http.Client{Timeout: 30 * time.Second}, show: show, shown: map[string][]string{}}
}

func (s *terminalSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/")
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	form, _ := url.ParseQuery(string(body))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		form = url.Values{}
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			for k, v := range m {
				if str, ok := v.(string); ok {
					form.Set(k, str)
				}
			}
		}
	}
	var answer []byte
	if s.upstream != "" {
		status, b, err := s.forward(r, method, body)
		if err != nil {
			s.show(fmt.Sprintf("Slack %s failed: %v (the sender retries)", method, err))
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if status != http.StatusOK {
			w.WriteHeader(status)
			_, _ = w.Write(b)
			return
		}
		answer = b
	} else {
		answer = s.answerLocally(method, form)
	}
	var res struct {
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		TS      string `json:"ts"`
		Channel string `json:"channel"`
	}
	_ = json.Unmarshal(answer, &res)
	switch {
	case !res.OK && (method == "chat.postMessage" || method == "chat.update"):
		s.show(fmt.Sprintf("Slack refused %s to %s: %s", method, form.Get("channel"), res.Error))
	case method == "chat.postMessage" || method == "chat.update":
		ts := form.Get("ts")
		if method == "chat.postMessage" {
			ts = res.TS
		}
		s.display(method, form, ts)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(answer)
}

// forward passes the call to the real Slack API as it came: the bot token is in the form or the
// Authorization header.
func (s *terminalSlack) forward(r *http.Request, method string, body []byte) (int, []byte, error) {
	target := s.upstream + method
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for _, h := range []string{"Authorization", "Content-Type"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// answerLocally is what Slack answers to the calls keywatch makes: a ts for posts, the same ts
// for updates, an empty history (nothing to adopt after a restart).
func (s *terminalSlack) answerLocally(method string, form url.Values) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v map[string]any
	switch method {
	case "chat.postMessage":
		s.seq++
		v = map[string]any{"ok": true, "channel": form.Get("channel"), "ts": fmt.Sprintf("%d.%06d", time.Now().Unix(), s.seq)}
	case "chat.update":
		v = map[string]any{"ok": true, "channel": form.Get("channel"), "ts": form.Get("ts"), "text": form.Get("text")}
	case "conversations.history", "conversations.replies":
		v = map[string]any{"ok": true, "messages": []any{}, "has_more": false}
	default:
		v = map[string]any{"ok": true}
	}
	b, _ := json.Marshal(v)
	return b
}

// display shows a posted message in full, a thread reply on one line, and of an update the lines
// that changed.
func (s *terminalSlack) display(method string, form url.Values, ts string) {
	channel := form.Get("channel")
	text, err := terminalMessage(form.Get("text"), form.Get("blocks"))
	if err != nil {
		text = terminalText(form.Get("text"))
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	key := channel + " " + ts
	s.mu.Lock()
	before := s.shown[key]
	if method == "chat.postMessage" && form.Get("thread_ts") == "" || method == "chat.update" {
		s.shown[key] = lines
	}
	s.mu.Unlock()
	var b strings.Builder
	switch {
	case strings.Contains(lines[0], " hygiene on "):
		// Old and unused keys are background to the stories: their messages take one line.
		verb := "new message"
		if method == "chat.update" {
			verb = "message updated"
		}
		text := lines[0]
		for _, l := range lines[1:] {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "━") && !strings.Contains(t, " · score ") {
				text += ": " + t
				break
			}
		}
		fmt.Fprintf(&b, "┃ Slack %s, %s: %s", channel, verb, text)
	case form.Get("thread_ts") != "":
		fmt.Fprintf(&b, "┃ Slack %s, thread reply: %s", channel, strings.Join(lines, " "))
	case method == "chat.update":
		old := map[string]bool{}
		for _, l := range before {
			old[l] = true
		}
		fmt.Fprintf(&b, "┃ Slack %s, message updated: %s", channel, lines[0])
		for _, l := range lines[1:] {
			if !old[l] && strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "━") {
				fmt.Fprintf(&b, "\n┃   %s", l)
			}
		}
	default:
		fmt.Fprintf(&b, "┃ Slack %s, new message:", channel)
		for _, l := range lines {
			fmt.Fprintf(&b, "\n┃   %s", l)
		}
	}
	s.show(b.String())
}
