"""How the builders spell option values QEMU shares across devices."""

from __future__ import annotations


def on_off(value: bool | None) -> str | None:
    """A libvirt tristate as QEMU's ``on``/``off`` (None: leave the property out)."""
    return None if value is None else ("on" if value else "off")
