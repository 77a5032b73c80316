package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// apiServerMinimum measures the API server's own floor for the writes a cold sync of n certificates needs: n
// Secrets of a TLS Secret's size created, then n patches (standing in for the status patches), by the bench's
// unthrottled client with 16 writers, in a namespace the controller does not watch. The objects are deleted after.
func apiServerMinimum(ctx context.Context, k8s client.Client, n int) (time.Duration, error) {
	const ns = "bench-apimin"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, err
	}
	data := map[string][]byte{corev1.TLSCertKey: make([]byte, 2400), corev1.TLSPrivateKeyKey: make([]byte, 240), "ca.crt": make([]byte, 1200)}
	start := time.Now()
	if err := parallel(n, func(i int) error {
		return k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d", i), Namespace: ns}, Type: corev1.SecretTypeTLS, Data: data})
	}); err != nil {
		return 0, err
	}
	if err := parallel(n, func(i int) error {
		obj := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d", i), Namespace: ns}}
		return k8s.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"annotations":{"bench":"patched"}}}`)))
	}); err != nil {
		return 0, err
	}
	took := time.Since(start)
	return took, k8s.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))
}
