"""Tests of the container image and Kubernetes manifests (Dockerfile, deploy/k8s)."""
