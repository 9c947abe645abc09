"""Pinned versions of the test bed's control plane (served by the Go module proxy); the build cache is keyed by them."""

KUBERNETES = "v1.37.2"  # k8s.io/kubernetes; its staging modules (k8s.io/api, ...) at the matching v0.x release
STAGING = "v0." + KUBERNETES.removeprefix("v1.")
ETCD = "v3.7.0"  # go.etcd.io/etcd/server/v3, the version k8s.io/kubernetes itself requires
HELM = "v3.22.0"  # helm.sh/helm/v3
PROMETHEUS_OPERATOR = "v0.85.0"  # github.com/prometheus-operator/prometheus-operator: its CRDs (PodMonitor, ...) only
