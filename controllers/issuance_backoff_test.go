package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestIssuanceBackoffTracker: one failed operation counts once, a second doubles the delay, a success starts over.
func TestIssuanceBackoffTracker(t *testing.T) {
	var b issuanceBackoff
	key := types.NamespacedName{Namespace: "ns", Name: "web"}
	now := time.Unix(1000, 0)
	at, isNew := b.observe(key, "op1", now, time.Second)
	if !isNew || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("first failure: %v %v", at, isNew)
	}
	if _, isNew := b.observe(key, "op1", now.Add(time.Second), time.Second); isNew {
		t.Error("the same operation is one failure")
	}
	if at, _ := b.observe(key, "op2", now, time.Second); !at.Equal(now.Add(2 * time.Second)) {
		t.Errorf("second failure should double the delay: %v", at)
	}
	b.reset(key)
	if at, _ := b.observe(key, "op3", now, time.Second); !at.Equal(now.Add(time.Second)) {
		t.Errorf("after a success the delay starts over: %v", at)
	}
}
