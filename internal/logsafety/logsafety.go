// Package logsafety keeps Kubernetes request and response bodies, which hold Secret data, out of vaultcert's logs.
package logsafety

import "github.com/go-logr/logr"

// maxLogVerbosity is the highest V level vaultcert's logger lets through. client-go logs request and
// response bodies at V(8) through the logger in the request's context, which is the reconciler's: a body
// of a Secret read or applied holds private keys and client secrets.
const maxLogVerbosity = 7

// SafeLogger wraps a logger so that it never emits Kubernetes request or response bodies: lines above
// V(7) and client-go's "Request Body" / "Response Body" lines are dropped whatever the configured
// verbosity. main.go installs it around the zap logger; the test suite does the same.
func SafeLogger(l logr.Logger) logr.Logger {
	sink := l.GetSink()
	if sink == nil {
		return l
	}
	return logr.New(&safeSink{sink: withCallDepth(sink, 1)})
}

// safeSink filters another sink.
type safeSink struct{ sink logr.LogSink }

// dropped reports whether a line must not be logged.
func dropped(level int, msg string) bool {
	return level > maxLogVerbosity || msg == "Request Body" || msg == "Response Body"
}

// Init implements logr.LogSink. The wrapped sink was initialised by its own logger; the extra frame of
// this wrapper is accounted for with WithCallDepth in SafeLogger.
func (s *safeSink) Init(logr.RuntimeInfo) {}

// Enabled implements logr.LogSink.
func (s *safeSink) Enabled(level int) bool {
	return level <= maxLogVerbosity && s.sink.Enabled(level)
}

// Info implements logr.LogSink.
func (s *safeSink) Info(level int, msg string, keysAndValues ...any) {
	if dropped(level, msg) {
		return
	}
	s.sink.Info(level, msg, keysAndValues...)
}

// Error implements logr.LogSink.
func (s *safeSink) Error(err error, msg string, keysAndValues ...any) {
	s.sink.Error(err, msg, keysAndValues...)
}

// WithValues implements logr.LogSink.
func (s *safeSink) WithValues(keysAndValues ...any) logr.LogSink {
	return &safeSink{sink: s.sink.WithValues(keysAndValues...)}
}

// WithName implements logr.LogSink.
func (s *safeSink) WithName(name string) logr.LogSink {
	return &safeSink{sink: s.sink.WithName(name)}
}

// WithCallDepth implements logr.CallDepthLogSink.
func (s *safeSink) WithCallDepth(depth int) logr.LogSink {
	return &safeSink{sink: withCallDepth(s.sink, depth)}
}

func withCallDepth(sink logr.LogSink, depth int) logr.LogSink {
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		return cd.WithCallDepth(depth)
	}
	return sink
}
