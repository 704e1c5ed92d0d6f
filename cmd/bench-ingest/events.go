package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/keywatch/keywatch/demo/simulate"
)

// The universe of simulated traffic: ~50 clients holding a few hundred keys, with their addresses,
// user agents and home gateways. Popularity is skewed (a few clients and keys carry most traffic).
var (
	companies = []string{
		"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
		"cyberdyne", "soylent", "aperture", "blackmesa", "vandelay", "piedpiper", "dundermifflin",
		"gringotts", "oscorp", "massive-dynamic", "northwind", "contoso", "fabrikam", "tailspin",
		"adventure-works", "wide-world-importers",
	}
	apps     = []string{"billing", "checkout", "mobile-app", "reporting", "inventory-sync", "partner-api", "etl-nightly", "webhooks"}
	gateways = []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2", "edge-ap-1", "edge-sa-1"}
	routes   = []struct {
		method, route string
		weight        float64
	}{
		{"GET", "/v1/prices", 20}, {"GET", "/v1/prices/{price_id}", 12}, {"GET", "/v1/customers/{customer_id}", 10},
		{"GET", "/v1/customers/{customer_id}/invoices", 6}, {"POST", "/v1/orders", 8}, {"GET", "/v1/orders/{order_id}", 9},
		{"PATCH", "/v1/orders/{order_id}", 2}, {"DELETE", "/v1/orders/{order_id}/items/{item_id}", 1},
		{"POST", "/v1/payments/intents", 5}, {"POST", "/v1/payments/intents/{intent_id}/confirm", 3},
		{"GET", "/v2/inventory/warehouses/{warehouse_id}/stock", 7}, {"PUT", "/v2/inventory/items/{sku}", 2},
		{"GET", "/v1/reports/usage/daily", 3}, {"POST", "/v1/webhooks/endpoints", 1}, {"GET", "/healthz/upstream", 1},
	}
	userAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
		"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
		"acme-sdk-python/4.2.1 (CPython 3.12.3; Linux 6.8.0-1008-aws x86_64) python-requests/2.31.0 urllib3/2.2.1",
		"acme-sdk-node/7.14.0 (Node.js v20.12.2; linux x64; OpenSSL 3.0.13+quic) axios/1.6.8",
		"acme-sdk-java/11.3.0 (Java 21.0.3; Eclipse Adoptium; Linux amd64 5.15.0-105-generic) okhttp/4.12.0",
		"acme-sdk-go/3.8.2 (go1.22.2; linux/amd64) Go-http-client/1.1",
		"Apache-HttpClient/5.3.1 (Java/17.0.11) billing-reconciler/2024.05.02",
		"curl/8.7.1 (x86_64-pc-linux-gnu) libcurl/8.7.1 OpenSSL/3.2.1 zlib/1.3.1 nghttp2/1.61.0",
		"PostmanRuntime/7.37.3",
		"Terraform/1.8.2 (+https://www.terraform.io) terraform-provider-acme/2.19.0",
		"okhttp/4.12.0 (Android 13; SM-S918B) com.northwind.mobile/5.31.0",
	}
	// statuses is the HTTP status mix: mostly 200, some client errors, auth failures, 429s and 5xx.
	statuses = []struct {
		code   int
		weight float64
	}{
		{200, 86}, {201, 3}, {204, 1}, {400, 1}, {404, 2}, {401, 3}, {403, 1}, {429, 2}, {500, 0.5}, {502, 0.3}, {503, 0.2},
	}
)

type client struct {
	id      string
	gateway string
	keys    []string
	keyCum  []float64
	ips     []string
	agents  []string
}

// universe is everything events are drawn from. It is read-only once built.
type universe struct {
	clients   []client
	clientCum []float64
	routeCum  []float64
	statusCum []float64
}

func newUniverse(seed uint64) *universe {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	u := &universe{}
	weights := make([]float64, 0, 50)
	for i := range 50 {
		c := client{
			id:      companies[i%len(companies)] + "-" + apps[(i/len(companies)+i*3)%len(apps)],
			gateway: gateways[r.IntN(len(gateways))],
		}
		nkeys := 4 + r.IntN(9) // ~400 keys over 50 clients
		kw := make([]float64, nkeys)
		for k := range nkeys {
			env := "live"
			if r.IntN(10) == 0 {
				env = "test"
			}
			c.keys = append(c.keys, "kid_"+env+"_"+strconv.FormatUint(r.Uint64()>>24, 16))
			kw[k] = 1 / math.Pow(float64(k+1), 1.5)
		}
		c.keyCum = simulate.Cumulative(kw)
		for range 3 + r.IntN(60) {
			c.ips = append(c.ips, randomIP(r))
		}
		for range 1 + r.IntN(3) {
			c.agents = append(c.agents, userAgents[r.IntN(len(userAgents))])
		}
		u.clients = append(u.clients, c)
		weights = append(weights, 1/math.Pow(float64(i+1), 0.9))
	}
	u.clientCum = simulate.Cumulative(weights)
	rw := make([]float64, len(routes))
	for i, rt := range routes {
		rw[i] = rt.weight
	}
	u.routeCum = simulate.Cumulative(rw)
	sw := make([]float64, len(statuses))
	for i, s := range statuses {
		sw[i] = s.weight
	}
	u.statusCum = simulate.Cumulative(sw)
	return u
}

// randomIP returns a public-looking IPv4 address, or (one time in eight) an IPv6 one, in the
// canonical text form that both keywatch and ClickHouse parse.
func randomIP(r *rand.Rand) string {
	if r.IntN(8) == 0 {
		var b [16]byte
		copy(b[:], []byte{0x2a, 0x05, 0xd0, 0x14})
		for i := 4; i < 16; i++ {
			b[i] = byte(r.UintN(256))
		}
		return netip.AddrFrom16(b).String()
	}
	firsts := []byte{23, 34, 52, 63, 81, 91, 104, 141, 176, 185, 203, 212}
	return netip.AddrFrom4([4]byte{firsts[r.IntN(len(firsts))], byte(r.UintN(256)), byte(r.UintN(256)), byte(1 + r.UintN(254))}).String()
}

// generator turns an event number into one authentication event (contract 3.1) as JSON.
// Events are spread evenly over the hour before base; every request_id is unique.
type generator struct {
	u    *universe
	seed uint64
	base time.Time
	step time.Duration
}

func newGenerator(seed uint64, n int, now time.Time) *generator {
	const span = time.Hour
	return &generator{u: newUniverse(seed), seed: seed, base: now.Add(-span).Truncate(time.Millisecond), step: span / time.Duration(max(n, 1))}
}

// appendEvent appends event i to buf. r supplies the randomness (one source per chunk of events,
// so that parallel producers generate the same stream).
func (g *generator) appendEvent(buf []byte, r *rand.Rand, i int) []byte {
	c := &g.u.clients[simulate.Pick(r, g.u.clientCum)]
	rt := routes[simulate.Pick(r, g.u.routeCum)]
	status := statuses[simulate.Pick(r, g.u.statusCum)].code
	ts := g.base.Add(time.Duration(i)*g.step + time.Duration(r.IntN(1000)-500)*time.Millisecond)
	gw := c.gateway
	if r.IntN(7) == 0 {
		gw = gateways[r.IntN(len(gateways))]
	}

	buf = append(buf, `{"ts":"`...)
	buf = ts.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z07:00")
	buf = append(buf, '"')
	buf = simulate.AppendField(buf, "key_id", c.keys[simulate.Pick(r, c.keyCum)])
	buf = simulate.AppendField(buf, "client_id", c.id)
	if r.IntN(10) < 7 { // three gateways in ten log no outcome: it is derived from status
		buf = simulate.AppendField(buf, "outcome", outcomeFor(r, status))
	}
	buf = append(buf, `,"status":`...)
	buf = strconv.AppendInt(buf, int64(status), 10)
	buf = simulate.AppendField(buf, "ip", c.ips[r.IntN(len(c.ips))])
	buf = simulate.AppendField(buf, "user_agent", c.agents[r.IntN(len(c.agents))])
	buf = simulate.AppendField(buf, "method", rt.method)
	buf = simulate.AppendField(buf, "route", rt.route)
	buf = append(buf, `,"request_id":"`...)
	buf = g.appendRequestID(buf, r, i)
	buf = append(buf, '"')
	buf = simulate.AppendField(buf, "gateway", gw)
	// Fields keywatch does not read: one to three of them.
	buf = append(buf, `,"latency_ms":`...)
	buf = strconv.AppendInt(buf, int64(2+r.IntN(40)+r.IntN(2)*r.IntN(400)), 10)
	if r.IntN(10) < 6 {
		buf = append(buf, `,"bytes_out":`...)
		buf = strconv.AppendInt(buf, int64(120+r.IntN(48000)), 10)
	}
	if r.IntN(10) < 3 {
		buf = simulate.AppendField(buf, "tls_version", []string{"TLSv1.2", "TLSv1.3"}[min(r.IntN(5), 1)])
	}
	return append(buf, '}')
}

// outcomeFor is the outcome a gateway that logs one writes for status; 401s are sometimes
// expired or revoked keys rather than invalid ones.
func outcomeFor(r *rand.Rand, status int) string {
	switch {
	case status == 401:
		return []string{"invalid_key", "invalid_key", "invalid_key", "expired_key", "revoked_key"}[r.IntN(5)]
	case status == 403:
		return "forbidden"
	case status == 429:
		return "rate_limited"
	case status >= 500:
		return "error"
	default:
		return "ok"
	}
}

// appendRequestID writes a UUID-like id whose last 48 bits are a bijection of i: unique per event.
func (g *generator) appendRequestID(buf []byte, r *rand.Rand, i int) []byte {
	const mask = 1<<48 - 1
	x := (uint64(i) + g.seed) & mask
	x = (x * 0x9E3779B97F4B) & mask // odd multiplier: a bijection modulo 2^48
	x ^= x >> 21
	x = (x * 0xBF58476D1CE5) & mask
	x ^= x >> 19
	hi := r.Uint64()
	buf = simulate.AppendHex(buf, hi>>32, 8)
	buf = append(buf, '-')
	buf = simulate.AppendHex(buf, hi>>16&0xffff, 4)
	buf = append(buf, '-', '4')
	buf = simulate.AppendHex(buf, hi&0xfff, 3)
	buf = append(buf, '-')
	buf = simulate.AppendHex(buf, 0x8000|r.Uint64()&0x3fff, 4)
	buf = append(buf, '-')
	return simulate.AppendHex(buf, x, 12)
}

// selfCheck decodes the first events as JSON and checks the contract's fields, so that a
// generator bug shows up here rather than as dead letters in the middle of a measurement.
func (g *generator) selfCheck(n int) error {
	r := rand.New(rand.NewPCG(g.seed, 0))
	for i := range n {
		raw := g.appendEvent(nil, r, i)
		var ev struct {
			TS        time.Time `json:"ts"`
			KeyID     string    `json:"key_id"`
			ClientID  string    `json:"client_id"`
			Status    int       `json:"status"`
			IP        string    `json:"ip"`
			RequestID string    `json:"request_id"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("generated event %d is not valid JSON (%v): %s", i, err, raw)
		}
		if _, err := netip.ParseAddr(ev.IP); err != nil || ev.TS.IsZero() || ev.KeyID == "" || ev.ClientID == "" || ev.Status == 0 || len(ev.RequestID) != 36 {
			return fmt.Errorf("generated event %d misses a contract field: %s", i, raw)
		}
	}
	return nil
}
