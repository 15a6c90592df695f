"""Unit tests of the GitOps assets in docs/gitops/."""
