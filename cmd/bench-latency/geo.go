package main

import (
	"math/rand/v2"
	"net/netip"

	"github.com/keywatch/keywatch/demo/simulate"
)

// network is one address range of the simulated traffic, with the AS and country the geo
// databases give it.
type network struct {
	prefix  netip.Prefix
	asn     uint32
	org     string
	country string
}

// homeNetworks are where the clients' callers sit: cloud regions, hosting and office networks in
// six countries. Every client calls from the networks of one country.
var homeNetworks = []network{
	{netip.MustParsePrefix("23.20.0.0/16"), 64601, "Simulated Cloud us-east", "US"},
	{netip.MustParsePrefix("34.82.0.0/16"), 64602, "Simulated Cloud us-west", "US"},
	{netip.MustParsePrefix("52.28.0.0/16"), 64603, "Simulated Cloud eu-central", "DE"},
	{netip.MustParsePrefix("176.9.0.0/16"), 64604, "Simulated Hosting Falkenstein", "DE"},
	{netip.MustParsePrefix("35.176.0.0/16"), 64605, "Simulated Cloud eu-west-2", "GB"},
	{netip.MustParsePrefix("81.2.0.0/16"), 64606, "Simulated Broadband London", "GB"},
	{netip.MustParsePrefix("141.94.0.0/16"), 64607, "Simulated Hosting Roubaix", "FR"},
	{netip.MustParsePrefix("145.131.0.0/16"), 64608, "Simulated Carrier Amsterdam", "NL"},
	{netip.MustParsePrefix("54.248.0.0/16"), 64609, "Simulated Cloud ap-northeast-1", "JP"},
}

// foreignNetworks are where leaked keys are used from: networks and countries no client calls
// from.
var foreignNetworks = []network{
	{netip.MustParsePrefix("45.134.140.0/22"), 64666, "Simulated Bulletproof Hosting", "BR"},
	{netip.MustParsePrefix("5.188.0.0/16"), 64667, "Simulated VPS Provider", "RU"},
	{netip.MustParsePrefix("103.75.0.0/16"), 64668, "Simulated Residential Proxy", "VN"},
	{netip.MustParsePrefix("196.200.0.0/16"), 64669, "Simulated Mobile Carrier", "NG"},
	{netip.MustParsePrefix("185.220.100.0/22"), 64670, "Simulated Anonymizer", "RO"},
}

// randomAddr returns an address of n other than its network and broadcast addresses.
func randomAddr(r *rand.Rand, n network) string {
	a := n.prefix.Addr().As4()
	host := uint32(1) << (32 - n.prefix.Bits())
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += 1 + r.Uint32N(host-2)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// writeGeo writes MaxMind-format ASN and country databases of every simulated network into dir,
// the files keywatch's geo settings name, so that events carry networks and countries as with
// GeoLite2 files.
func writeGeo(dir string) (asnPath, countryPath string, err error) {
	var nets []simulate.Network
	for _, n := range append(append([]network{}, homeNetworks...), foreignNetworks...) {
		nets = append(nets, simulate.Network{CIDR: n.prefix.String(), ASN: n.asn, Org: n.org, Country: n.country})
	}
	return simulate.WriteNetworks(dir, "bench", nets)
}
