package agent

import (
	"slices"
	"testing"
	"time"
)

// The backoff grows once per round over the agent's servers: a refusal
// from a follower during an election, or a dead server's refused dial,
// does not push the next try of the others seconds away.
func TestBackoffGrowsPerRound(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		round int
		want  []time.Duration
	}{
		{1, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}},
		{3, []time.Duration{100 * ms, 100 * ms, 100 * ms, 100 * ms, 100 * ms, 200 * ms, 100 * ms, 100 * ms, 400 * ms,
			100 * ms, 100 * ms, 800 * ms, 100 * ms, 100 * ms, 1600 * ms}},
	} {
		b := backoff{max: 5 * time.Second, round: c.round}
		var got []time.Duration
		for range c.want {
			got = append(got, b.step())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("round %d: steps %v, want %v", c.round, got, c.want)
		}
		b.reset()
		if s := b.step(); s != 100*ms {
			t.Errorf("round %d: first step after reset %v, want 100ms", c.round, s)
		}
	}
}
