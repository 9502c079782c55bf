"""Fixtures shared by the unit tests."""

from tests.unit.scripted_http import scripted_http

__all__ = ["scripted_http"]
