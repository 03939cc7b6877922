"""Dose parser unit tests."""
