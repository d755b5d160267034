"""A real local Kubernetes control plane for tests and the local stack (no containers).

``cluster.LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok from binaries built by ``hack/build-tools.sh``, plus the test node
agent (``nodeagent``) that runs pods on local-execution nodes as processes; the pytest
fixtures in ``tests/conftest.py`` and ``toque-local`` use it.
"""
