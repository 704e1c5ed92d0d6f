package detect

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteReadiness writes rep as `keywatch readiness` prints it: the verdict, the rotation and its
// deadline, a table of the callers still on the key with, for a client, its addresses and user
// agents still on it, and a table of the callers that were only refused (attacker-written text
// quoted).
func WriteReadiness(w io.Writer, rep Readiness) {
	switch {
	case rep.Verdict == VerdictGone:
		fmt.Fprintf(w, "GONE: %s (%s) is already out of use: %s\n", rep.KeyID, rep.State, rep.Reason)
	case rep.Safe:
		fmt.Fprintf(w, "SAFE to retire %s (%s): %s\n", rep.KeyID, rep.State, rep.Reason)
	default:
		fmt.Fprintf(w, "UNSAFE to retire %s (%s): %s\n", rep.KeyID, rep.State, rep.Reason)
	}
	if rep.RotationID != "" {
		fmt.Fprintf(w, "rotation %s", rep.RotationID)
		if rep.Deadline != nil {
			fmt.Fprintf(w, ", deadline %s (%s from now)", rep.Deadline.Format(time.RFC3339), rep.Deadline.Sub(rep.CheckedAt).Round(time.Minute))
		}
		fmt.Fprintln(w)
	}
	if len(rep.Remaining) > 0 {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "CALLER\tREQUESTS\tLAST SEEN\tON NEW KEY\tRHYTHM")
		for _, c := range rep.Remaining {
			rhythm := ""
			if c.Cadence != "" {
				rhythm = fmt.Sprintf("runs %s, quiet %s needed", c.Cadence, c.QuietNeeded)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f%%\t%s\n", printable(callerText(c)), c.Requests, c.LastSeen.Format(time.RFC3339), 100*c.NewKeyShare, printable(rhythm))
			for _, s := range c.StillOn {
				fmt.Fprintf(tw, "  from %s\t%d\t%s\t\truns %s, quiet %s needed, %s so far\n",
					printable(s.IP+" "+s.UserAgent), s.Requests, s.LastOK.Format(time.RFC3339), printable(s.Cadence), s.QuietNeeded, s.QuietSoFar)
			}
			if more := c.SubCallers - len(c.StillOn); more > 0 {
				fmt.Fprintf(tw, "  ... and %d more addresses and user agents of it\n", more)
			}
		}
		if rep.Unlisted > 0 {
			fmt.Fprintf(tw, "... and %d more callers\n", rep.Unlisted)
		}
		_ = tw.Flush()
	}
	if len(rep.Refused) > 0 {
		fmt.Fprintln(w, "refused only (not use):")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "CALLER\tATTEMPTS\tLAST SEEN")
		for _, c := range rep.Refused {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", printable(callerText(c)), c.Requests, c.LastSeen.Format(time.RFC3339))
		}
		if rep.RefusedUnlisted > 0 {
			fmt.Fprintf(tw, "... and %d more callers\n", rep.RefusedUnlisted)
		}
		_ = tw.Flush()
	}
}

// callerText is how the table names a caller: its client, or its address and user agent.
func callerText(c Caller) string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return c.IP + " " + c.UserAgent
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
