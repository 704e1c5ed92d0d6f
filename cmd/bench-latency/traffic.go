package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/keywatch/keywatch/demo/simulate"
)

// The background: 50 clients holding ~250 keys, each client calling from a few dozen addresses in
// the networks of one country, with the usual mix of routes, user agents and outcomes. Popularity
// is skewed: a few clients and keys carry most of the traffic.
var (
	companies = []string{
		"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
		"cyberdyne", "soylent", "aperture", "blackmesa", "vandelay", "piedpiper", "dundermifflin",
		"gringotts", "oscorp", "massive-dynamic", "northwind", "contoso", "fabrikam", "tailspin",
		"adventure-works", "wide-world-importers",
	}
	apps     = []string{"billing", "checkout", "mobile-app", "reporting", "inventory-sync", "partner-api", "etl-nightly", "webhooks"}
	gateways = []string{"edge-eu-1", "edge-eu-2", "edge-us-1", "edge-us-2", "edge-ap-1"}
	routes   = []struct {
		method, route string
		weight        float64
	}{
		{"GET", "/v1/prices", 20}, {"GET", "/v1/prices/{price_id}", 12}, {"GET", "/v1/customers/{customer_id}", 10},
		{"GET", "/v1/customers/{customer_id}/invoices", 6}, {"POST", "/v1/orders", 8}, {"GET", "/v1/orders/{order_id}", 9},
		{"PATCH", "/v1/orders/{order_id}", 2}, {"POST", "/v1/payments/intents", 5}, {"GET", "/v2/inventory/warehouses/{warehouse_id}/stock", 7},
		{"GET", "/v1/reports/usage/daily", 3}, {"POST", "/v1/webhooks/endpoints", 1},
	}
	userAgents = []string{
		"acme-sdk-python/4.2.1 (CPython 3.12.3; Linux 6.8.0-1008-aws x86_64) python-requests/2.31.0",
		"acme-sdk-node/7.14.0 (Node.js v20.12.2; linux x64) axios/1.6.8",
		"acme-sdk-java/11.3.0 (Java 21.0.3; Linux amd64) okhttp/4.12.0",
		"acme-sdk-go/3.8.2 (go1.22.2; linux/amd64) Go-http-client/1.1",
		"Apache-HttpClient/5.3.1 (Java/17.0.11) billing-reconciler/2024.05.02",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"okhttp/4.12.0 (Android 13; SM-S918B) com.northwind.mobile/5.31.0",
		"Terraform/1.8.2 (+https://www.terraform.io) terraform-provider-acme/2.19.0",
	}
	// statuses is the HTTP status mix of benign traffic: mostly 200, some client errors, auth
	// failures, 429s and 5xx.
	statuses = []struct {
		code   int
		weight float64
	}{
		{200, 86}, {201, 3}, {204, 1}, {400, 1}, {404, 2}, {401, 1}, {403, 1}, {429, 2}, {500, 0.5}, {502, 0.3}, {503, 0.2},
	}
)

// countries are the home countries, each with its networks.
func countries() map[string][]network {
	m := map[string][]network{}
	for _, n := range homeNetworks {
		m[n.country] = append(m[n.country], n)
	}
	return m
}

type client struct {
	id      string
	gateway string
	keys    []string
	keyCum  []float64
	ips     []string
	agents  []string
}

// universe is what background events are drawn from. It is read-only once built.
type universe struct {
	clients   []client
	clientCum []float64
	routeCum  []float64
	statusCum []float64
}

func newUniverse(seed uint64) *universe {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	byCountry := countries()
	names := make([]string, 0, len(byCountry))
	for c := range byCountry {
		names = append(names, c)
	}
	sort.Strings(names)
	u := &universe{}
	weights := make([]float64, 0, 50)
	for i := range 50 {
		nets := byCountry[names[r.IntN(len(names))]]
		c := client{
			id:      companies[i%len(companies)] + "-" + apps[(i/len(companies)+i*3)%len(apps)],
			gateway: gateways[r.IntN(len(gateways))],
		}
		nkeys := 2 + r.IntN(7)
		kw := make([]float64, nkeys)
		for k := range nkeys {
			c.keys = append(c.keys, "kid_live_"+strconv.FormatUint(r.Uint64()>>24, 16))
			kw[k] = 1 / math.Pow(float64(k+1), 1.5)
		}
		c.keyCum = simulate.Cumulative(kw)
		for range 3 + r.IntN(40) {
			c.ips = append(c.ips, randomAddr(r, nets[r.IntN(len(nets))]))
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

// request is one authentication event (contract 3.1) before it is written as JSON.
type request struct {
	ts                   time.Time
	keyID, clientID      string
	status               int
	outcome              string // empty: the gateway logs none, keywatch derives it from status
	ip, userAgent        string
	method, route, reqID string
	gateway              string
	latencyMS, bytesOut  int
}

// appendJSON appends the event as one JSON object, with fields keywatch does not read as
// gateways log them.
func (q *request) appendJSON(buf []byte) []byte {
	buf = append(buf, `{"ts":"`...)
	buf = q.ts.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z07:00")
	buf = append(buf, '"')
	buf = simulate.AppendField(buf, "key_id", q.keyID)
	if q.clientID != "" {
		buf = simulate.AppendField(buf, "client_id", q.clientID)
	}
	if q.outcome != "" {
		buf = simulate.AppendField(buf, "outcome", q.outcome)
	}
	buf = append(buf, `,"status":`...)
	buf = strconv.AppendInt(buf, int64(q.status), 10)
	buf = simulate.AppendField(buf, "ip", q.ip)
	buf = simulate.AppendField(buf, "user_agent", q.userAgent)
	buf = simulate.AppendField(buf, "method", q.method)
	buf = simulate.AppendField(buf, "route", q.route)
	buf = simulate.AppendField(buf, "request_id", q.reqID)
	buf = simulate.AppendField(buf, "gateway", q.gateway)
	buf = append(buf, `,"latency_ms":`...)
	buf = strconv.AppendInt(buf, int64(q.latencyMS), 10)
	if q.bytesOut > 0 {
		buf = append(buf, `,"bytes_out":`...)
		buf = strconv.AppendInt(buf, int64(q.bytesOut), 10)
	}
	return append(buf, '}')
}

// background draws one benign request at ts.
func (u *universe) background(r *rand.Rand, ts time.Time, ids *requestIDs) request {
	c := &u.clients[simulate.Pick(r, u.clientCum)]
	rt := routes[simulate.Pick(r, u.routeCum)]
	status := statuses[simulate.Pick(r, u.statusCum)].code
	gw := c.gateway
	if r.IntN(7) == 0 {
		gw = gateways[r.IntN(len(gateways))]
	}
	q := request{
		ts: ts, keyID: c.keys[simulate.Pick(r, c.keyCum)], clientID: c.id, status: status,
		ip: c.ips[r.IntN(len(c.ips))], userAgent: c.agents[r.IntN(len(c.agents))],
		method: rt.method, route: rt.route, reqID: ids.next(), gateway: gw,
		latencyMS: 2 + r.IntN(40) + r.IntN(2)*r.IntN(400),
	}
	if r.IntN(10) < 7 { // three gateways in ten log no outcome: it is derived from status
		q.outcome = outcomeFor(r, status)
	}
	if r.IntN(10) < 6 {
		q.bytesOut = 120 + r.IntN(48000)
	}
	return q
}

// outcomeFor is the outcome a gateway that logs one writes for status.
func outcomeFor(r *rand.Rand, status int) string {
	switch {
	case status == 401:
		return []string{"invalid_key", "invalid_key", "expired_key"}[r.IntN(3)]
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

// requestIDs hands out unique request ids: a prefix of the run and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs(seed uint64) *requestIDs {
	return &requestIDs{prefix: fmt.Sprintf("r%x-", seed^uint64(time.Now().UnixNano()))}
}

func (ids *requestIDs) next() string {
	return ids.prefix + strconv.FormatUint(ids.n.Add(1), 36)
}
