"""Locust load tests for the Prism service (see loadtests/README.md)."""
