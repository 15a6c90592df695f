"""A small local kubelet: runs pods bound to its Node as local processes."""
