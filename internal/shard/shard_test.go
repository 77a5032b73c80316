package shard

import (
	"fmt"
	"testing"
)

// TestEveryNamespaceHasExactlyOneShard: for any count, each namespace is owned by one shard and one only, and the
// shards share the namespaces roughly evenly.
func TestEveryNamespaceHasExactlyOneShard(t *testing.T) {
	for _, count := range []int{1, 2, 3, 7, MaxCount} {
		perShard := make([]int, count)
		for i := range 10000 {
			ns := fmt.Sprintf("team-%d", i)
			owners := 0
			for index := range count {
				if (Shard{Index: index, Count: count}).Owns(ns) {
					owners++
					perShard[index]++
				}
			}
			if owners != 1 {
				t.Fatalf("count %d: namespace %s has %d owners, want 1", count, ns, owners)
			}
		}
		for index, n := range perShard {
			if want := 10000 / count; n < want/2 || n > want*2 {
				t.Errorf("count %d: shard %d owns %d of 10000 namespaces, want about %d", count, index, n, want)
			}
		}
	}
	if !(Shard{}).Owns("anything") {
		t.Error("the zero Shard must own everything")
	}
}

func TestValidateAndLeaderElectionID(t *testing.T) {
	for _, s := range []Shard{{Index: 0, Count: 0}, {Index: 0, Count: 1}, {Index: 2, Count: 3}} {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
	for _, s := range []Shard{{Index: 3, Count: 3}, {Index: -1, Count: 2}, {Index: 1, Count: 1}, {Index: 0, Count: MaxCount + 1}} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v must be refused", s)
		}
	}
	if got := (Shard{Count: 1}).LeaderElectionID("vaultcert.vaultcert.io"); got != "vaultcert.vaultcert.io" {
		t.Errorf("unsharded ID %q", got)
	}
	if a, b := (Shard{Index: 0, Count: 2}).LeaderElectionID("x"), (Shard{Index: 1, Count: 2}).LeaderElectionID("x"); a == b {
		t.Errorf("two shards share the leader election ID %q", a)
	}
}
