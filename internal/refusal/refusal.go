// Package refusal owns what keywatch keeps of a request it refuses before it is authenticated (a
// missing or wrong bearer token, a forged Slack or GitHub signature): a counter per source and
// reason, and a log line, at most a few a minute, whose request fields are cut short. Nothing is
// written to ClickHouse and nothing waits on a dependency, so a refusal costs the same small
// amount whatever the caller sends and whether or not ClickHouse is up. It does not decide what
// is refused; the handlers do, and call Refuse.
package refusal

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults: lines logged per minute, and the longest request field (path, user agent) logged.
const (
	LinesPerMinute = 10
	MaxField       = 128
)

// Log counts and logs refused requests.
type Log struct {
	refused *prometheus.CounterVec
	log     *slog.Logger
	now     func() time.Time

	mu         sync.Mutex
	window     time.Time // start of the current minute of logging
	lines      int       // lines logged in it
	suppressed int       // refusals not logged since the last line
}

// New returns a Log registering keywatch_http_refused_total on reg (nil: not registered).
func New(reg prometheus.Registerer, log *slog.Logger) *Log {
	l := &Log{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keywatch_http_refused_total",
			Help: "Requests refused before authentication, by source (api, slack, leak_reports) and reason.",
		}, []string{"source", "reason"}),
		log: log.With("component", "refusal"),
		now: time.Now,
	}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	return l
}

// Refuse records that r was refused. source and reason must be constants of the caller's (they
// are metric labels); nothing the caller sent is kept but a cut-short method, path, user agent
// and the remote address, in a log line when the minute's budget allows.
func (l *Log) Refuse(r *http.Request, source, reason string) {
	l.refused.WithLabelValues(source, reason).Inc()
	l.mu.Lock()
	now := l.now()
	if now.Sub(l.window) >= time.Minute {
		l.window, l.lines = now, 0
	}
	if l.lines >= LinesPerMinute {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.lines++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	l.log.Warn("request refused", "source", source, "reason", reason,
		"method", Cut(r.Method), "path", Cut(r.URL.Path), "user_agent", Cut(r.UserAgent()), "remote", r.RemoteAddr,
		"not_logged_before", suppressed)
}

// Cut returns s cut to MaxField bytes (on a rune boundary, marked with its full length).
func Cut(s string) string {
	if len(s) <= MaxField {
		return s
	}
	end := MaxField
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	var b strings.Builder
	b.WriteString(s[:end])
	b.WriteString("…(")
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteString(" bytes)")
	return b.String()
}
