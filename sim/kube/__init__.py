"""A Kubernetes cluster in one process: API server, controllers, scheduler and kubelet."""
