"""Test harness shared by every suite and the demo: a real registry and test images."""
