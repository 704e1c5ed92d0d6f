package geo

import (
	"hash/maphash"
	"net/netip"
	"sync"
)

const (
	// defaultCacheEntries bounds the answers a Lookup keeps: about 64 Ki addresses, a few MiB.
	defaultCacheEntries = 1 << 16
	// cacheShards spreads lock traffic from concurrent callers; a power of two.
	cacheShards = 64
)

// cache is a bounded map from address to answer, split into shards that each hold at most
// perShard entries. A full shard is emptied before it takes a new entry: crude, but O(1),
// allocation-free once warm, and good enough when hot addresses come back within seconds.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[netip.Addr]Network
	_  [32]byte // keep neighbouring shards' locks on separate cache lines
}

// newCache returns a cache holding at most entries answers (at least one per shard).
func newCache(entries int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(1, entries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[netip.Addr]Network)
	}
	return c
}

func (c *cache) shard(ip netip.Addr) *cacheShard {
	b := ip.As16()
	return &c.shards[maphash.Bytes(c.seed, b[:])%cacheShards]
}

func (c *cache) get(ip netip.Addr) (Network, bool) {
	s := c.shard(ip)
	s.mu.RLock()
	n, ok := s.m[ip]
	s.mu.RUnlock()
	return n, ok
}

func (c *cache) put(ip netip.Addr, n Network) {
	s := c.shard(ip)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m) // keeps the map's memory for the next round
	}
	s.m[ip] = n
	s.mu.Unlock()
}

// len returns the number of cached answers.
func (c *cache) len() int {
	total := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		total += len(s.m)
		s.mu.RUnlock()
	}
	return total
}

// reset drops every cached answer.
func (c *cache) reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.m)
		s.mu.Unlock()
	}
}
