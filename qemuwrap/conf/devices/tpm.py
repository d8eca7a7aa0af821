"""``<tpm>``: the guest's TPM (swtpm emulator or host passthrough)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import attr


class TPMModel(enum.StrEnum):
    TPM_TIS = "tpm-tis"
    TPM_CRB = "tpm-crb"
    TPM_SPAPR = "tpm-spapr"
    SPAPR_TPM_PROXY = "spapr-tpm-proxy"


class TPM(Device):
    TAG = "tpm"
    model: TPMModel | None = attr(TPMModel)
