package main

import (
	"fmt"
	"time"
)

// What "held" means for a rate (issue 9): nearly every scheduled message reached its
// recipient, and soon enough.
const (
	heldDelivered = 0.99        // of the scheduled messages, delivered to their recipient
	heldP99       = time.Second // the recipients' delivery p99 at most
)

// judgeHeld says whether a run held its offered rate. Scheduled counts every message the
// open loop was due to send, so messages not sent for want of a free client, rejected or
// never delivered all count against it; p99 is the recipients' delivery latency.
func judgeHeld(scheduled, recipientDelivered int64, p99 *Quantiles) (frac float64, held bool, why string) {
	if scheduled <= 0 {
		return 0, false, "no message scheduled"
	}
	frac = float64(recipientDelivered) / float64(scheduled)
	lim := float64(heldP99.Milliseconds())
	switch {
	case frac < heldDelivered:
		return frac, false, fmt.Sprintf("%.2f %% of scheduled messages reached their recipient (< %.0f %%)", 100*frac, 100*heldDelivered)
	case p99 == nil:
		return frac, false, "no recipient delivery measured"
	case p99.P99 > lim:
		return frac, false, fmt.Sprintf("recipient delivery p99 %s > %s", msStr(p99.P99), msStr(lim))
	}
	return frac, true, fmt.Sprintf("%.2f %% reached their recipient, p99 %s", 100*frac, msStr(p99.P99))
}

// deliverySplit is the delivery latencies (ns) of a load phase by who received them.
type deliverySplit struct {
	same, other []int64 // by a stream on the instance the message was posted to, or another
	recipient   []int64 // by the recipient's stream, not the sender's own copy
}

// splitDeliveries sorts the first two deliveries of every message: by instance against
// the one it was posted to (postInstance), and by participant against its sender.
func splitDeliveries(t *tracker, ninst int) deliverySplit {
	var d deliverySplit
	for i := range t.deliveries {
		posted, sender := postInstance(t.nconv, ninst, i), senderSide(t.nconv, i)
		recipient := false // a duplicate to the recipient counts once (checkDeliveries reports it)
		for k := 2 * i; k < 2*i+min(int(t.deliveries[i].Load()), 2); k++ {
			if int(t.slotInst[k]) == posted {
				d.same = append(d.same, t.latency[k])
			} else {
				d.other = append(d.other, t.latency[k])
			}
			if int(t.slotSide[k]) != sender && !recipient {
				recipient = true
				d.recipient = append(d.recipient, t.latency[k])
			}
		}
	}
	return d
}
