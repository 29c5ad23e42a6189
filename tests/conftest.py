"""Shared fixtures. Area-specific fixtures live beside their tests."""
