package connection

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// credentialReader reads credential Secrets and ServiceAccounts through the API server only when the credential
// watcher has seen them change since the last read. Every reconcile resolves its connection, and without this
// each one would cost an API request for an object that almost never changes; with it, a certificate refresh
// costs no Kubernetes read at all for its credentials. Objects the watcher does not (yet) watch, and every other
// kind, are read from the API server as before.
type credentialReader struct {
	watcher *CredentialWatcher // nil: always read through
	api     client.Reader
}

// Get returns the remembered object when the watcher's informer holds the same resourceVersion, else reads it.
func (c credentialReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	ref, ok := credentialRefOf(key, obj)
	if ok && c.watcher != nil && c.watcher.copyCurrent(ref, obj) {
		return nil
	}
	if err := c.api.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if ok && c.watcher != nil {
		c.watcher.remember(ref, obj.DeepCopyObject().(client.Object))
	}
	return nil
}

// List reads through.
func (c credentialReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.api.List(ctx, list, opts...)
}

// credentialRefOf names the watched object a Get is for; only Secrets and ServiceAccounts are credentials.
func credentialRefOf(key client.ObjectKey, obj client.Object) (credentialRef, bool) {
	switch obj.(type) {
	case *corev1.Secret:
		return credentialRef{resource: "secrets", namespace: key.Namespace, name: key.Name}, true
	case *corev1.ServiceAccount:
		return credentialRef{resource: "serviceaccounts", namespace: key.Namespace, name: key.Name}, true
	}
	return credentialRef{}, false
}

// maxRememberedSecretBytes bounds the credential Secrets kept in memory: real client secrets and certificates
// are a few KiB, and a tenant must not make the controller hold large Secrets for each connection it creates.
const maxRememberedSecretBytes = 64 << 10

// remember keeps the object last read for a watched reference (not an oversized Secret: that one is read
// again when needed).
func (w *CredentialWatcher) remember(r credentialRef, obj client.Object) {
	if s, ok := obj.(*corev1.Secret); ok && secretSize(s) > maxRememberedSecretBytes {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, watched := w.watches[r]; watched {
		w.lastRead[r] = obj
	}
}

// copyCurrent copies the remembered object into obj when the informer of r has listed it and its
// resourceVersion is the one remembered: nothing changed since it was read.
func (w *CredentialWatcher) copyCurrent(r credentialRef, obj client.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rw, watched := w.watches[r]
	last := w.lastRead[r]
	if !watched || last == nil || !rw.informer.HasSynced() {
		return false
	}
	item, exists, err := rw.informer.GetStore().GetByKey(r.namespace + "/" + r.name)
	if err != nil || !exists {
		return false
	}
	current, ok := item.(metav1.Object)
	if !ok || current.GetResourceVersion() != last.GetResourceVersion() {
		return false
	}
	switch dst := obj.(type) {
	case *corev1.Secret:
		src, ok := last.(*corev1.Secret)
		if !ok {
			return false
		}
		src.DeepCopyInto(dst)
	case *corev1.ServiceAccount:
		src, ok := last.(*corev1.ServiceAccount)
		if !ok {
			return false
		}
		src.DeepCopyInto(dst)
	default:
		return false
	}
	return true
}

// secretSize is the size of a Secret's data.
func secretSize(s *corev1.Secret) int {
	n := 0
	for k, v := range s.Data {
		n += len(k) + len(v)
	}
	return n
}
