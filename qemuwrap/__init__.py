"""qemuwrap: start QEMU guests straight from libvirt-style domain XML, no daemon."""

__version__ = "0.1.0"
