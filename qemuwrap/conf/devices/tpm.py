"""``<tpm>``: the guest's TPM — emulated by swtpm (a companion process), a host TPM passed
through, or an external swtpm socket."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import YES_NO, Element, ParseContext, Path, Str, attr, child, flag


class TPMModel(ValueSet):
    TPM_TIS = "tpm-tis"
    TPM_CRB = "tpm-crb"
    TPM_SPAPR = "tpm-spapr"
    SPAPR_TPM_PROXY = "spapr-tpm-proxy"


class TPMBackendType(ValueSet):
    PASSTHROUGH = "passthrough"
    EMULATOR = "emulator"
    EXTERNAL = "external"


class TPMVersion(ValueSet):
    V1_2 = "1.2"
    V2_0 = "2.0"


class TPMSourceType(ValueSet):
    UNIX = "unix"
    FILE = "file"
    DIR = "dir"


class TPMSourceMode(ValueSet):
    CONNECT = "connect"


class TPMDevicePath(Element):
    TAG = "device"
    path: str = attr(Path(), required=True)


class TPMSource(Element):
    TAG = "source"
    type: TPMSourceType | None = attr(TPMSourceType)
    mode: TPMSourceMode | None = attr(TPMSourceMode)
    path: str = attr(Path(), required=True)


class TPMEncryption(Element):
    TAG = "encryption"
    secret: str = attr(Str(r"[0-9a-fA-F-]{32,36}", what="secret uuid"), required=True)


class PCRBanks(Element):
    TAG = "active_pcr_banks"
    sha1: bool = flag("sha1")
    sha256: bool = flag("sha256")
    sha384: bool = flag("sha384")
    sha512: bool = flag("sha512")

    @property
    def names(self) -> list[str]:
        return [n for n in ("sha1", "sha256", "sha384", "sha512") if getattr(self, n)]


class TPMBackend(Element):
    TAG = "backend"
    type: TPMBackendType = attr(TPMBackendType, required=True)
    version: TPMVersion | None = attr(TPMVersion)
    persistent_state: bool | None = attr(YES_NO)
    device: TPMDevicePath | None = child(TPMDevicePath)
    source: TPMSource | None = child(TPMSource)
    encryption: TPMEncryption | None = child(TPMEncryption)
    active_pcr_banks: PCRBanks | None = child(PCRBanks)


class TPM(Device):
    TAG = "tpm"
    model: TPMModel | None = attr(TPMModel)
    backend: TPMBackend = child(TPMBackend, required=True)

    def check(self, ctx: ParseContext) -> None:
        """libvirt's post-parse (qemuDomainTPMDefPostParse) and its parse-time rules."""
        backend = self.backend
        if self.model is None:
            self.model = TPMModel.TPM_TIS
        if backend.type == TPMBackendType.EMULATOR:
            if backend.version is None:  # tpm-tis on x86 keeps libvirt's historical 1.2
                backend.version = (TPMVersion.V1_2 if self.model == TPMModel.TPM_TIS
                                   else TPMVersion.V2_0)
            if backend.device is not None or backend.source is not None:
                raise backend.error("an emulator backend takes no <device> or <source>")
        else:
            if backend.version is not None or backend.encryption is not None or \
                    backend.active_pcr_banks is not None or backend.persistent_state is not None:
                what = "<device>" if backend.type == TPMBackendType.PASSTHROUGH else "<source>"
                raise backend.error(f"a '{backend.type}' backend takes only its {what}")
        if backend.type == TPMBackendType.PASSTHROUGH:
            if backend.source is not None:
                raise backend.error("a passthrough backend names its host TPM in <device>")
            if backend.device is None:  # libvirt's default host TPM
                backend.device = TPMDevicePath(path="/dev/tpm0")
        if backend.type == TPMBackendType.EXTERNAL:
            if backend.source is None or backend.source.type not in (None,
                                                                     TPMSourceType.UNIX):
                raise backend.error("an external backend needs <source type='unix' "
                                    "mode='connect' path=.../>")
            backend.source.type = TPMSourceType.UNIX
            backend.source.mode = TPMSourceMode.CONNECT

    @property
    def version(self) -> TPMVersion | None:
        return self.backend.version
