package simulate

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// network is one address range the simulated callers use, with its AS and country.
type network struct {
	cidr    string
	asn     uint32
	org     string
	country string
}

// networks are the simulated address ranges (documentation and shared ranges), and the one the
// leaked key is used from.
var networks = []network{
	{"203.0.113.0/24", 64500, "Example Transit", "US"},
	{"198.51.100.0/24", 64501, "Example Hosting", "DE"},
	{"192.0.2.0/24", 64502, "Example Broadband", "GB"},
	{"100.64.0.0/10", 64503, "Example Carrier", "FR"},
	{"2001:db8::/32", 64504, "Example IPv6 Networks", "NL"},
	{leakCIDR, 64666, "Unfamiliar Cloud", "BR"},
}

const leakCIDR = "45.134.140.0/24"

// WriteGeo writes MaxMind-format ASN and country databases for the simulated networks into dir,
// so that the demo's events carry networks and countries as with GeoLite2 files.
func WriteGeo(dir string) (asnPath, countryPath string, err error) {
	asnPath = filepath.Join(dir, "demo-asn.mmdb")
	countryPath = filepath.Join(dir, "demo-country.mmdb")
	asn := func(n network) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n.asn), "autonomous_system_organization": mmdbtype.String(n.org)}
	}
	country := func(n network) mmdbtype.Map {
		return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(n.country)}}
	}
	if err := writeMMDB(asnPath, "GeoLite2-ASN", asn); err != nil {
		return "", "", err
	}
	if err := writeMMDB(countryPath, "GeoLite2-Country", country); err != nil {
		return "", "", err
	}
	return asnPath, countryPath, nil
}

func writeMMDB(path, dbType string, record func(network) mmdbtype.Map) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType, IPVersion: 6, RecordSize: 24,
		IncludeReservedNetworks: true, DisableIPv4Aliasing: true,
	})
	if err != nil {
		return fmt.Errorf("simulate: %s: %w", dbType, err)
	}
	for _, n := range networks {
		_, cidr, err := net.ParseCIDR(n.cidr)
		if err != nil {
			return fmt.Errorf("simulate: %s: %w", n.cidr, err)
		}
		if err := tree.Insert(cidr, record(n)); err != nil {
			return fmt.Errorf("simulate: %s: insert %s: %w", dbType, n.cidr, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("simulate: write %s: %w", path, err)
	}
	return f.Close()
}
