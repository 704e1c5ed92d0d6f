package label

import "slices"

// Route sends what its Matchers select to Channel. Routes are walked in order: the first that
// matches ends the walk unless it says Continue.
type Route struct {
	Matchers Matchers
	Channel  string
	Continue bool
}

// Routes is an ordered list of routes: slack.routes.
type Routes []Route

// Match walks the routes and returns those that select any of sets, in order: the walk ends at
// the first match unless that route says continue. No set, no match.
func (rs Routes) Match(sets ...Set) []Route {
	var out []Route
	for _, r := range rs {
		if !slices.ContainsFunc(sets, r.Matchers.Matches) {
			continue
		}
		out = append(out, r)
		if !r.Continue {
			break
		}
	}
	return out
}

// Channels returns the channels of the routes Match returns, each once, in order.
func (rs Routes) Channels(sets ...Set) []string {
	var out []string
	for _, r := range rs.Match(sets...) {
		if !slices.Contains(out, r.Channel) {
			out = append(out, r.Channel)
		}
	}
	return out
}
