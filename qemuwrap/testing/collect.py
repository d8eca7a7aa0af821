"""What a paused QEMU reports about its machine, read over QMP as raw data.

Everything here is what QEMU itself says (QMP queries, HMP ``info qtree``/``info
numa``, QOM properties of the machine and of the first vCPU); nothing is read from
the command line. The result is plain JSON data, normalised later (``facts``), so a
recording of it can stand in for a QEMU in tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from qemu.qmp import QMPClient
from qemu.qmp.error import QMPError

from qemuwrap.testing import qtree

#: QOM property types read as values (links, children and opaque structs are not).
SCALAR_TYPES = frozenset({
    "bool", "str", "string", "int", "size", "OnOffAuto", "uint8", "uint16", "uint32",
    "uint64", "int8", "int16", "int32", "int64", "uint8_t", "uint16_t", "uint32_t",
    "uint64_t", "int32_t", "int64_t", "strList",
})
#: Machine properties that are structs QEMU can print.
MACHINE_STRUCTS = frozenset({"BootConfiguration", "SMPConfiguration",
                             "MemorySizeConfiguration"})


async def _try(client: QMPClient, cmd: str, args: dict[str, Any] | None = None) -> Any:
    """A query whose absence is an answer (no vmgenid device, no spice): None."""
    try:
        return await client.execute(cmd, args)
    except QMPError:
        return None


async def _hmp(client: QMPClient, line: str) -> str:
    result = await client.execute("human-monitor-command", {"command-line": line})
    return result if isinstance(result, str) else ""


async def _qom_values(client: QMPClient, path: str, types: frozenset[str],
                      skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    listing = cast(list[dict[str, str]], await client.execute("qom-list", {"path": path}))
    names = [p["name"] for p in listing if p["type"] in types and p["name"] not in skip]
    values = await asyncio.gather(*(_try(client, "qom-get", {"path": path, "property": n})
                                    for n in names))
    return {n: v for n, v in zip(names, values, strict=True) if v is not None}


async def collect(client: QMPClient) -> dict[str, Any]:
    """Query everything the comparison uses from the QEMU behind ``client``."""
    raw: dict[str, Any] = {}
    (name, uuid, genid, status, tree_text, numa, cpus, hotplug, memory, memdev, block,
     chardev, vnc, spice, tpm) = await asyncio.gather(
        client.execute("query-name"), client.execute("query-uuid"),
        _try(client, "query-vm-generation-id"), client.execute("query-status"),
        _hmp(client, "info qtree"), _hmp(client, "info numa"),
        client.execute("query-cpus-fast"), client.execute("query-hotpluggable-cpus"),
        client.execute("query-memory-size-summary"), client.execute("query-memdev"),
        client.execute("query-block"), client.execute("query-chardev"),
        _try(client, "query-vnc"), _try(client, "query-spice"), _try(client, "query-tpm"))
    raw.update(name=name.get("name"), uuid=uuid.get("UUID"),
               genid=genid.get("guid") if isinstance(genid, dict) else None,
               status=status.get("status"), qtree=tree_text, numa=numa, cpus=cpus,
               hotpluggable=hotplug, memory=memory, memdev=memdev, block=block,
               chardev=chardev, vnc=vnc, spice=spice, tpm=tpm)
    raw["machine"] = await _qom_values(client, "/machine", SCALAR_TYPES | MACHINE_STRUCTS)
    raw["machine"]["rtc-time"] = await _try(client, "qom-get",
                                            {"path": "/machine", "property": "rtc-time"})
    raw["collected_at"] = time.time()  # wall clock beside the RTC reading
    if cpus:
        cpu_path = cpus[0]["qom-path"]
        raw["cpu"] = await _qom_values(client, cpu_path, SCALAR_TYPES)
    raw["peripheral"] = await _peripheral(client, tree_text)
    return raw


#: QOM properties ``info qtree`` does not show: a boot index, and the chardev of an
#: ISA serial port (an alias to its inner serial object).
PERIPHERAL_PROPS = ("bootindex", "chardev")


async def _peripheral(client: QMPClient, tree_text: str) -> dict[str, dict[str, Any]]:
    """``PERIPHERAL_PROPS`` of every device with an id (``/machine/peripheral/ID``;
    devices without an id are not reachable by name), by id."""
    try:
        ids = sorted({d.id for d in qtree.walk(qtree.parse(tree_text)) if d.id})
    except qtree.QtreeError:
        return {}
    asks = [(i, prop) for i in ids for prop in PERIPHERAL_PROPS]
    values = await asyncio.gather(*(_try(client, "qom-get", {
        "path": f"/machine/peripheral/{i}", "property": prop}) for i, prop in asks))
    out: dict[str, dict[str, Any]] = {}
    for (i, prop), value in zip(asks, values, strict=True):
        if value is not None and value != -1 and value != "":
            out.setdefault(i, {})[prop] = value
    return out
