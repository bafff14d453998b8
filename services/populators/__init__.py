"""Programs that run inside populator pods and copy one source disk into one volume.

They are not services: each is a short-lived process started by the cluster with
Forklift-compatible arguments. They share `common` and never import the four services.
"""
