package controllers

import "k8s.io/client-go/rest"

// SuiteRESTConfig is the envtest API server of the suite, set by TestMain (suite_test.go) right after it starts,
// so the internal tests (package controllers) use the same real API server as the integration tests.
var SuiteRESTConfig *rest.Config
