// Package geo owns looking up an IP address's autonomous system and country in MaxMind-format
// MMDB files. It does not own where the answers are stored (ingest) or how they are compared (detect).
package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Network is what is known about one IP address; zero values mean unknown.
type Network struct {
	ASN     uint32
	ASOrg   string
	Country string // ISO 3166-1 alpha-2, upper case, e.g. "DE"
}

// Lookup answers Network questions from up to two MMDB files.
//
// A nil *Lookup is valid: it answers every question with the zero Network.
type Lookup struct {
	asn     *maxminddb.Reader // nil without an ASN database
	country *maxminddb.Reader // nil without a country database
	cache   *cache            // nil disables caching
	closed  atomic.Bool
}

// Open opens the ASN database at asnPath and the country database at countryPath; either may be
// "" to go without it.
//
// The database type in each file's metadata is checked loosely and case-insensitively: an ASN
// database's type must contain "ASN" or "ISP" (GeoLite2-ASN, GeoIP2-ISP, DBIP-ASN-Lite), a
// country database's type "Country" or "City" (GeoLite2-Country, GeoIP2-City, DBIP-City-Lite).
// A file whose type names only the other kind is rejected, so swapped paths fail early. A file
// whose type names neither kind is accepted only if one of its first records carries the
// expected field (autonomous_system_number, or country.iso_code/registered_country.iso_code).
//
// Errors name the file and say what is wrong: missing, not an MMDB file, or the wrong kind of
// database. Files are not fully verified (see maxminddb.Reader.Verify); a corrupt record makes
// the affected lookups return unknown rather than fail.
func Open(asnPath, countryPath string) (*Lookup, error) {
	l := &Lookup{cache: newCache(defaultCacheEntries)}
	var err error
	if asnPath != "" {
		if l.asn, err = openDB(asnPath, kindASN); err != nil {
			return nil, err
		}
	}
	if countryPath != "" {
		if l.country, err = openDB(countryPath, kindCountry); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Network returns what the databases know about ip; the zero Network when ip is invalid,
// private/unspecified, or not in the databases.
//
// "Private/unspecified" means every address that is not global unicast (unspecified, loopback,
// link-local, multicast, IPv4 broadcast) plus RFC 1918 and RFC 4193 private ranges. IPv4-mapped
// IPv6 addresses are looked up as IPv4 and zones are ignored. Answers, including misses, are
// kept in a bounded per-Lookup cache. Safe for concurrent use, but not concurrently with Close.
func (l *Lookup) Network(ip netip.Addr) Network {
	if l == nil || (l.asn == nil && l.country == nil) || l.closed.Load() {
		return Network{}
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsGlobalUnicast() || ip.IsPrivate() { // also rejects the invalid netip.Addr{}
		return Network{}
	}
	if l.cache == nil {
		return l.lookup(ip)
	}
	if n, ok := l.cache.get(ip); ok {
		return n
	}
	n := l.lookup(ip)
	l.cache.put(ip, n)
	return n
}

// Close releases the files. It must not run concurrently with Network; afterwards Network
// returns the zero Network. Closing a nil or already closed Lookup does nothing.
func (l *Lookup) Close() error {
	if l == nil || l.closed.Swap(true) {
		return nil
	}
	var errs []error
	if l.asn != nil {
		if err := l.asn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("geo: close ASN database: %w", err))
		}
	}
	if l.country != nil {
		if err := l.country.Close(); err != nil {
			errs = append(errs, fmt.Errorf("geo: close country database: %w", err))
		}
	}
	if l.cache != nil {
		l.cache.reset()
	}
	return errors.Join(errs...)
}

// lookup asks the databases about ip, which must be valid, unmapped and without zone.
// A database that fails to answer (IPv6 address in an IPv4-only file, corrupt record)
// contributes nothing.
func (l *Lookup) lookup(ip netip.Addr) Network {
	var n Network
	// One allocation for both records: Decode takes an interface, so they escape.
	var rec struct {
		asn     asnRecord
		country countryRecord
	}
	if l.asn != nil && canLookup(l.asn, ip) && l.asn.Lookup(ip).Decode(&rec.asn) == nil {
		n.ASN, n.ASOrg = rec.asn.Number, rec.asn.Org
	}
	if l.country != nil && canLookup(l.country, ip) && l.country.Lookup(ip).Decode(&rec.country) == nil {
		n.Country = rec.country.code()
	}
	return n
}

// canLookup reports whether r can answer for ip. Checking up front avoids the reader building
// a formatted error for every IPv6 address given to an IPv4-only database.
func canLookup(r *maxminddb.Reader, ip netip.Addr) bool {
	return ip.Is4() || r.Metadata.IPVersion != 4
}

// asnRecord is the part of a GeoLite2-ASN / GeoIP2-ISP record that Network needs.
type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

// countryRecord is the part of a GeoLite2-Country / GeoLite2-City / GeoIP2 record that Network
// needs.
type countryRecord struct {
	Country    isoCode `maxminddb:"country"`
	Registered isoCode `maxminddb:"registered_country"`
}

type isoCode struct {
	Code string `maxminddb:"iso_code"`
}

// code returns the country's ISO code, falling back to the registered country's, normalized
// to upper case; "" when neither is a two-letter code.
func (r countryRecord) code() string {
	if c := normalizeCountry(r.Country.Code); c != "" {
		return c
	}
	return normalizeCountry(r.Registered.Code)
}

func normalizeCountry(s string) string {
	if len(s) != 2 {
		return ""
	}
	for i := range len(s) {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return ""
		}
	}
	return strings.ToUpper(s) // returns s itself, without allocating, when already upper case
}

// kind is the kind of database a path was given as.
type kind int

const (
	kindASN kind = iota
	kindCountry
)

func (k kind) String() string {
	if k == kindASN {
		return "ASN"
	}
	return "country"
}

// fields names the record fields a database of kind k must carry.
func (k kind) fields() string {
	if k == kindASN {
		return "autonomous_system_number"
	}
	return "country.iso_code or registered_country.iso_code"
}

// example names a well-known database of kind k.
func (k kind) example() string {
	if k == kindASN {
		return "GeoLite2-ASN"
	}
	return "GeoLite2-Country"
}

// withArticle returns "an ASN" or "a country".
func (k kind) withArticle() string {
	if k == kindASN {
		return "an ASN"
	}
	return "a country"
}

// other returns the kind a file was probably meant as when given as k.
func (k kind) other() kind { return 1 - k }

// matches reports whether databaseType names k: "ASN" or "ISP" for ASN databases, "Country" or
// "City" for country databases, case-insensitively.
func (k kind) matches(databaseType string) bool {
	t := strings.ToLower(databaseType)
	if k == kindASN {
		return strings.Contains(t, "asn") || strings.Contains(t, "isp")
	}
	return strings.Contains(t, "country") || strings.Contains(t, "city")
}

// probeRecords is how many records with data openDB decodes from a database of unknown type.
const probeRecords = 64

// probe reports whether one of the first records of r carries the field k is about.
func (k kind) probe(r *maxminddb.Reader) bool {
	seen := 0
	for res := range r.Networks() {
		if seen++; seen > probeRecords {
			break
		}
		switch k {
		case kindASN:
			var rec asnRecord
			if res.Decode(&rec) == nil && rec.Number != 0 {
				return true
			}
		case kindCountry:
			var rec countryRecord
			if res.Decode(&rec) == nil && rec.code() != "" {
				return true
			}
		}
	}
	return false
}

// openDB opens the MMDB file at path and checks that it is a database of kind k.
func openDB(path string, k kind) (*maxminddb.Reader, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		var pathErr *fs.PathError
		var invalid maxminddb.InvalidDatabaseError
		switch {
		case errors.As(err, &pathErr):
			// The path error repeats the path; keep its cause (still errors.Is(err, fs.ErrNotExist)).
			return nil, fmt.Errorf("geo: open %s database %s: %w", k, path, pathErr.Err)
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("geo: open %s database %s: not a MaxMind DB (.mmdb) file: %w", k, path, err)
		default:
			return nil, fmt.Errorf("geo: open %s database %s: %w", k, path, err)
		}
	}
	dbType := r.Metadata.DatabaseType
	switch {
	case k.matches(dbType):
		return r, nil
	case k.other().matches(dbType):
		_ = r.Close()
		return nil, fmt.Errorf("geo: %s database %s has database type %q, which makes it %s database: pass it as the %s database instead",
			k, path, dbType, k.other().withArticle(), k.other())
	case k.probe(r):
		return r, nil
	default:
		_ = r.Close()
		return nil, fmt.Errorf("geo: %s database %s has unrecognised database type %q and none of its first records has %s: want a %s style database",
			k, path, dbType, k.fields(), k.example())
	}
}
