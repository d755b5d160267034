"""The embedded local stack (``toque-local``): a real Kubernetes control plane on one
machine, with MinIO, MLflow and Prometheus beside it. The e2e tests use it too.

``cluster.LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok from binaries built by ``hack/build-tools.sh``, plus the test node
agent (``nodeagent``) that runs pods on local-execution nodes as processes; the pytest
fixtures in ``tests/conftest.py`` and ``toque-local`` use it.
"""
