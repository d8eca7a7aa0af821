"""The generic domain model: XML in, XML out, no QEMU knowledge (libvirt's src/conf)."""
