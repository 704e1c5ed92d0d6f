package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeDB writes an MMDB file of the given database type holding records by network (CIDR)
// and returns its path. Documentation and private ranges need IncludeReservedNetworks;
// DisableIPv4Aliasing leaves ::ffff:0:0/96 empty, so IPv4-mapped addresses only hit when
// Network unmaps them.
func writeDB(t testing.TB, dbType string, ipVersion int, records map[string]mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		IPVersion:               ipVersion,
		RecordSize:              24,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, rec := range records {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(network, rec); err != nil {
			t.Fatalf("insert %s: %v", cidr, err)
		}
	}
	path := filepath.Join(t.TempDir(), strings.ReplaceAll(dbType, " ", "_")+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func asnRec(asn uint32, org string) mmdbtype.Map {
	return mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(asn),
		"autonomous_system_organization": mmdbtype.String(org),
	}
}

func countryRec(country, registered string) mmdbtype.Map {
	m := mmdbtype.Map{}
	if country != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(country)}
	}
	if registered != "" {
		m["registered_country"] = mmdbtype.Map{"iso_code": mmdbtype.String(registered)}
	}
	return m
}

func writeASNDB(t testing.TB) string {
	return writeDB(t, "GeoLite2-ASN", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24":  asnRec(64500, "Example Transit"),
		"198.51.100.0/24": asnRec(64501, "Example Hosting"),
		"2001:db8::/32":   asnRec(64502, "Example IPv6 Net"),
		"10.0.0.0/8":      asnRec(64999, "Private Must Not Show"),
	})
}

func writeCountryDB(t testing.TB) string {
	return writeDB(t, "GeoLite2-Country", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24":    countryRec("DE", "DE"),
		"198.51.100.0/25":   countryRec("", "FR"), // only registered_country
		"198.51.100.128/25": countryRec("nl", ""), // lower case in the file
		"2001:db8::/32":     countryRec("JP", "US"),
	})
}

func open(t testing.TB, asnPath, countryPath string) *Lookup {
	t.Helper()
	l, err := Open(asnPath, countryPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func TestNetwork(t *testing.T) {
	asnPath, countryPath := writeASNDB(t), writeCountryDB(t)
	full := open(t, asnPath, countryPath)
	asnOnly := open(t, asnPath, "")
	countryOnly := open(t, "", countryPath)
	none := open(t, "", "")

	tests := []struct {
		name   string
		lookup *Lookup
		ip     netip.Addr
		want   Network
	}{
		{"IPv4 hit", full, netip.MustParseAddr("203.0.113.7"), Network{64500, "Example Transit", "DE"}},
		{"IPv6 hit", full, netip.MustParseAddr("2001:db8:1::1"), Network{64502, "Example IPv6 Net", "JP"}},
		{"IPv6 hit with zone", full, netip.MustParseAddr("2001:db8:1::1%eth0"), Network{64502, "Example IPv6 Net", "JP"}},
		{"IPv4-mapped IPv6", full, netip.MustParseAddr("::ffff:203.0.113.7"), Network{64500, "Example Transit", "DE"}},
		{"registered country fallback", full, netip.MustParseAddr("198.51.100.1"), Network{64501, "Example Hosting", "FR"}},
		{"country upper-cased", full, netip.MustParseAddr("198.51.100.200"), Network{64501, "Example Hosting", "NL"}},
		{"miss IPv4", full, netip.MustParseAddr("192.0.2.1"), Network{}},
		{"miss IPv6", full, netip.MustParseAddr("2001:db9::1"), Network{}},
		{"private in database", full, netip.MustParseAddr("10.1.2.3"), Network{}},
		{"loopback", full, netip.MustParseAddr("127.0.0.1"), Network{}},
		{"unspecified", full, netip.IPv6Unspecified(), Network{}},
		{"link-local", full, netip.MustParseAddr("fe80::1"), Network{}},
		{"invalid", full, netip.Addr{}, Network{}},
		{"ASN only", asnOnly, netip.MustParseAddr("203.0.113.7"), Network{ASN: 64500, ASOrg: "Example Transit"}},
		{"country only", countryOnly, netip.MustParseAddr("2001:db8::5"), Network{Country: "JP"}},
		{"no databases", none, netip.MustParseAddr("203.0.113.7"), Network{}},
		{"nil Lookup", nil, netip.MustParseAddr("203.0.113.7"), Network{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lookup.Network(tt.ip); got != tt.want {
				t.Errorf("Network(%v) = %+v, want %+v", tt.ip, got, tt.want)
			}
			// The second answer comes from the cache and must be the same.
			if got := tt.lookup.Network(tt.ip); got != tt.want {
				t.Errorf("cached Network(%v) = %+v, want %+v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestNetworkCache(t *testing.T) {
	l := open(t, writeASNDB(t), writeCountryDB(t))
	ip := netip.MustParseAddr("203.0.113.7")
	want := Network{64500, "Example Transit", "DE"}

	if got := l.Network(ip); got != want {
		t.Fatalf("Network(%v) = %+v, want %+v", ip, got, want)
	}
	if got, ok := l.cache.get(ip); !ok || got != want {
		t.Fatalf("cache after lookup: %+v, %v; want %+v, true", got, ok, want)
	}
	// Mapped and zoned forms share the entry of the plain address.
	l.Network(netip.MustParseAddr("::ffff:203.0.113.7"))
	l.Network(netip.MustParseAddr("198.51.100.1"))
	l.Network(netip.MustParseAddr("192.0.2.1")) // misses are cached too
	l.Network(netip.MustParseAddr("10.0.0.1"))  // private addresses are not
	if got := l.cache.len(); got != 3 {
		t.Errorf("cache holds %d answers, want 3", got)
	}

	// Poison the entry to prove the answer comes from the cache, not the database.
	poisoned := Network{ASN: 1, ASOrg: "from cache"}
	l.cache.put(ip, poisoned)
	if got := l.Network(ip); got != poisoned {
		t.Errorf("Network(%v) = %+v, want cached %+v", ip, got, poisoned)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(cacheShards * 4)
	base := netip.MustParseAddr("2001:db8::")
	ip := base
	for range 10_000 {
		ip = ip.Next()
		c.put(ip, Network{ASN: 1})
		if n := c.len(); n > cacheShards*4 {
			t.Fatalf("cache holds %d answers, cap %d", n, cacheShards*4)
		}
	}
	if got, ok := c.get(ip); !ok || got.ASN != 1 {
		t.Errorf("latest entry missing: %+v, %v", got, ok)
	}
	c.reset()
	if n := c.len(); n != 0 {
		t.Errorf("after reset cache holds %d answers", n)
	}
}

func TestIPv4OnlyDatabase(t *testing.T) {
	path := writeDB(t, "GeoLite2-ASN", 4, map[string]mmdbtype.Map{"203.0.113.0/24": asnRec(64500, "v4 only")})
	l := open(t, path, "")
	if got, want := l.Network(netip.MustParseAddr("203.0.113.1")), (Network{ASN: 64500, ASOrg: "v4 only"}); got != want {
		t.Errorf("IPv4 in IPv4-only DB: %+v, want %+v", got, want)
	}
	if got := l.Network(netip.MustParseAddr("2001:db8::1")); got != (Network{}) {
		t.Errorf("IPv6 in IPv4-only DB: %+v, want zero", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	asnPath, countryPath := writeASNDB(t), writeCountryDB(t)
	missing := filepath.Join(dir, "GeoLite2-ASN.mmdb")
	notMMDB := filepath.Join(dir, "not.mmdb")
	if err := os.WriteFile(notMMDB, []byte("this is not a MaxMind database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	other := writeDB(t, "Acme-Connection-Type", 6, map[string]mmdbtype.Map{
		"203.0.113.0/24": {"connection_type": mmdbtype.String("Cable/DSL")},
	})

	tests := []struct {
		name                 string
		asnPath, countryPath string
		wantIn               []string // substrings of the error
		wantIs               error
	}{
		{"missing ASN file", missing, "", []string{"ASN database", missing, "no such file"}, fs.ErrNotExist},
		{"missing country file", asnPath, missing, []string{"country database", missing, "no such file"}, fs.ErrNotExist},
		{"not an MMDB file", notMMDB, "", []string{"ASN database", notMMDB, "not a MaxMind DB"}, nil},
		{"empty file", "", empty, []string{"country database", empty, "empty"}, nil},
		{"directory", dir, "", []string{"ASN database", dir}, nil},
		{"country file as ASN", countryPath, "", []string{"ASN database", countryPath, `"GeoLite2-Country"`, "pass it as the country database"}, nil},
		{"ASN file as country", "", asnPath, []string{"country database", asnPath, `"GeoLite2-ASN"`, "pass it as the ASN database"}, nil},
		{"swapped", countryPath, asnPath, []string{"ASN database", countryPath, "country database"}, nil},
		{"unknown type without fields", other, "", []string{"ASN database", other, `"Acme-Connection-Type"`, "autonomous_system_number"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(tt.asnPath, tt.countryPath)
			if err == nil {
				_ = l.Close()
				t.Fatal("Open succeeded, want error")
			}
			t.Log(err)
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q is not %v", err, tt.wantIs)
			}
		})
	}
}

func TestOpenUnknownTypeProbe(t *testing.T) {
	// Types naming neither kind are accepted when their records carry the fields.
	asnPath := writeDB(t, "Acme-Networks", 6, map[string]mmdbtype.Map{"203.0.113.0/24": asnRec(64500, "Acme")})
	countryPath := writeDB(t, "Acme-Geo", 6, map[string]mmdbtype.Map{"203.0.113.0/24": countryRec("", "CH")})
	l := open(t, asnPath, countryPath)
	if got, want := l.Network(netip.MustParseAddr("203.0.113.9")), (Network{64500, "Acme", "CH"}); got != want {
		t.Errorf("Network = %+v, want %+v", got, want)
	}
}

func TestNilAndClosed(t *testing.T) {
	var l *Lookup
	if err := l.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	if got := l.Network(netip.MustParseAddr("203.0.113.1")); got != (Network{}) {
		t.Errorf("nil Network = %+v", got)
	}

	l, err := Open(writeASNDB(t), writeCountryDB(t))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("203.0.113.1")
	if l.Network(ip) == (Network{}) {
		t.Fatal("want an answer before Close")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := l.Network(ip); got != (Network{}) {
		t.Errorf("Network after Close = %+v, want zero", got)
	}
}

func TestNetworkConcurrent(t *testing.T) {
	l := open(t, writeASNDB(t), writeCountryDB(t))
	l.cache = newCache(cacheShards * 2) // tiny, so shards are reset while others read

	type query struct {
		ip   netip.Addr
		want Network
	}
	var queries []query
	for i := range 256 {
		queries = append(queries,
			query{netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Network{64500, "Example Transit", "DE"}},
			query{netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i)), Network{64502, "Example IPv6 Net", "JP"}},
			query{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Network{}},
		)
	}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 * len(queries) {
				q := queries[(i*7+g*31)%len(queries)]
				if got := l.Network(q.ip); got != q.want {
					t.Errorf("Network(%v) = %+v, want %+v", q.ip, got, q.want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkNetwork measures Network on a small in-memory database. "cached" repeats 256
// addresses; "uncached" gives every call a new address (database lookup plus cache insert and
// periodic shard reset); "nocache" is the bare database lookup.
func BenchmarkNetwork(b *testing.B) {
	l := open(b, writeASNDB(b), writeCountryDB(b))
	nocache := open(b, writeASNDB(b), writeCountryDB(b))
	nocache.cache = nil

	hot := make([]netip.Addr, 256)
	for i := range hot {
		if i%2 == 0 {
			hot[i] = netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		} else {
			hot[i] = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i))
		}
	}
	// fresh returns the i-th address of 2001:db8::/32; all hit the database.
	fresh := func(i uint64) netip.Addr {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
		for j := range 8 {
			a[15-j] = byte(i >> (8 * j))
		}
		return netip.AddrFrom16(a)
	}
	for _, ip := range hot {
		l.Network(ip)
	}

	b.Run("cached", func(b *testing.B) {
		i := 0
		for b.Loop() {
			l.Network(hot[i%len(hot)])
			i++
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.Network(hot[i%len(hot)])
				i++
			}
		})
	})
	var blocks atomic.Uint64
	next := func() uint64 { return blocks.Add(1) << 32 } // a goroutine's own block of new addresses
	b.Run("uncached", func(b *testing.B) {
		i := next()
		for b.Loop() {
			l.Network(fresh(i))
			i++
		}
	})
	b.Run("uncached-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := next()
			for pb.Next() {
				l.Network(fresh(i))
				i++
			}
		})
	})
	b.Run("nocache", func(b *testing.B) {
		i := 0
		for b.Loop() {
			nocache.Network(hot[i%len(hot)])
			i++
		}
	})
	b.Run("nocache-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				nocache.Network(hot[i%len(hot)])
				i++
			}
		})
	})
}
