package detect

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteReadiness writes rep as `keywatch readiness` prints it: the verdict, the rotation and its
// deadline, and a table of the callers still on the key (attacker-written text quoted).
func WriteReadiness(w io.Writer, rep Readiness) {
	verdict := "SAFE"
	if !rep.Safe {
		verdict = "UNSAFE"
	}
	fmt.Fprintf(w, "%s to retire %s (%s): %s\n", verdict, rep.KeyID, rep.State, rep.Reason)
	if rep.RotationID != "" {
		fmt.Fprintf(w, "rotation %s", rep.RotationID)
		if rep.Deadline != nil {
			fmt.Fprintf(w, ", deadline %s (%s from now)", rep.Deadline.Format(time.RFC3339), rep.Deadline.Sub(rep.CheckedAt).Round(time.Minute))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Remaining) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tREQUESTS\tLAST SEEN\tON NEW KEY")
	for _, c := range rep.Remaining {
		caller := c.ClientID
		if caller == "" {
			caller = c.IP + " " + c.UserAgent
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f%%\n", printable(caller), c.Requests, c.LastSeen.Format(time.RFC3339), 100*c.NewKeyShare)
	}
	if rep.Unlisted > 0 {
		fmt.Fprintf(tw, "... and %d more callers\n", rep.Unlisted)
	}
	_ = tw.Flush()
}

// printable returns s for a terminal: whoever sends requests to the gateway writes client ids
// and user agents, so control and formatting characters (escape sequences, bidi overrides) are
// shown escaped, and a long value is cut.
func printable(s string) string {
	const maxRunes = 120
	if r := []rune(s); len(r) > maxRunes {
		s = string(r[:maxRunes]) + "…"
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
