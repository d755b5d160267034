"""The embedded local stack (``toque-local``): a real Kubernetes cluster on one machine, with
MinIO, MLflow and Prometheus beside it, and Toque installed by its chart. The e2e tests use it
too.

``cluster.LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok from binaries built by ``hack/build-tools.sh``, and a real node
(``node.RealNode``: containerd, runc, CNI, kubelet, kube-proxy) pulling from a local registry
(``registry``); ``install`` runs ``helm install``. The pytest fixtures in ``tests/`` and
``toque-local`` use them.
"""
