"""Test tooling that ships with qemuwrap: the differential harness against libvirt.

Not imported by the ``qemuwrap`` command; run with ``python -m qemuwrap.testing.differential``.
"""
