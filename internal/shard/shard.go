// Package shard splits the VaultCertificates of a cluster across controller instances by a hash of their
// namespace: instance Index of Count reconciles exactly the namespaces that hash to Index, so every namespace
// belongs to one shard and no namespace to two, whichever shards are running. Each shard elects its own leader.
package shard

import (
	"fmt"
	"hash/fnv"
)

// MaxCount bounds the number of shards (each is a Deployment with its own leader election).
const MaxCount = 64

// Shard is one controller instance's share. The zero value (and Count 1) owns everything.
type Shard struct {
	// Index is this instance's shard, 0 <= Index < Count.
	Index int
	// Count is the number of shards; 0 or 1 means no sharding.
	Count int
}

// Validate reports an Index outside [0, Count) or a Count outside [0, MaxCount].
func (s Shard) Validate() error {
	if s.Count < 0 || s.Count > MaxCount {
		return fmt.Errorf("--shard-count=%d: must be between 1 and %d", s.Count, MaxCount)
	}
	if s.Index < 0 || (s.Index >= max(s.Count, 1)) {
		return fmt.Errorf("--shard-index=%d: must be between 0 and --shard-count-1 (%d)", s.Index, max(s.Count, 1)-1)
	}
	return nil
}

// Owns reports whether this shard reconciles the VaultCertificates and VaultConnections of namespace.
func (s Shard) Owns(namespace string) bool {
	if s.Count <= 1 {
		return true
	}
	return Of(namespace, s.Count) == s.Index
}

// OwnsClusterScoped reports whether this shard writes the status of cluster-scoped objects
// (ClusterVaultConnections): shard 0 does, so one instance writes each.
func (s Shard) OwnsClusterScoped() bool { return s.Index == 0 }

// Of is the shard of namespace among count shards: FNV-1a of the name, modulo count. It never changes for a
// name, so adding a namespace moves nothing, and it is what `vaultcert` documents for users to predict.
func Of(namespace string, count int) int {
	if count <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace))
	return int(h.Sum32() % uint32(count))
}

// LeaderElectionID is base for an unsharded controller, else base with the shard, so each shard elects its own
// leader among its replicas.
func (s Shard) LeaderElectionID(base string) string {
	if s.Count <= 1 {
		return base
	}
	return fmt.Sprintf("shard-%d-of-%d.%s", s.Index, s.Count, base)
}
