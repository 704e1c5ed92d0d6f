package simulate

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Network is an address range (CIDR) of simulated callers, with the AS and country the geo
// databases give it.
type Network struct {
	CIDR    string
	ASN     uint32
	Org     string
	Country string
}

var networks = []Network{
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
	return WriteNetworks(dir, "demo", networks)
}

// WriteNetworks writes MaxMind-format ASN and country databases of nets into dir, as
// <name>-asn.mmdb and <name>-country.mmdb, the files keywatch's geo settings name.
func WriteNetworks(dir, name string, nets []Network) (asnPath, countryPath string, err error) {
	asnPath = filepath.Join(dir, name+"-asn.mmdb")
	countryPath = filepath.Join(dir, name+"-country.mmdb")
	asn := func(n Network) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n.ASN), "autonomous_system_organization": mmdbtype.String(n.Org)}
	}
	country := func(n Network) mmdbtype.Map {
		return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(n.Country)}}
	}
	if err := writeMMDB(asnPath, "GeoLite2-ASN", nets, asn); err != nil {
		return "", "", err
	}
	if err := writeMMDB(countryPath, "GeoLite2-Country", nets, country); err != nil {
		return "", "", err
	}
	return asnPath, countryPath, nil
}

func writeMMDB(path, dbType string, nets []Network, record func(Network) mmdbtype.Map) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType, IPVersion: 6, RecordSize: 24,
		IncludeReservedNetworks: true, DisableIPv4Aliasing: true,
	})
	if err != nil {
		return fmt.Errorf("simulate: %s: %w", dbType, err)
	}
	for _, n := range nets {
		_, cidr, err := net.ParseCIDR(n.CIDR)
		if err != nil {
			return fmt.Errorf("simulate: %s: %w", n.CIDR, err)
		}
		if err := tree.Insert(cidr, record(n)); err != nil {
			return fmt.Errorf("simulate: %s: insert %s: %w", dbType, n.CIDR, err)
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
