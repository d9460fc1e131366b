"""Locust load tests of the ingestion path (devices and gateways as Locust users).

Nothing imports this package: importing locust patches the standard library through gevent.
"""
