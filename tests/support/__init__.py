"""Test helpers shared across areas (emulator process, free ports, manifests)."""
