"""A line's PKI for OPC UA tests, made with plantline-pki as `plantline up` makes it: `LinePki.create`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plantline.pki.authority import Authority
from plantline.pki.keys import KeySpec


@dataclass(frozen=True)
class LinePki:
    """An EC root (`ca/`), an RSA OPC UA issuing CA under it (`ca-opcua/`), and a foreign RSA CA."""

    directory: Path
    root: Authority
    opcua: Authority
    foreign: Authority

    @classmethod
    def create(cls, directory: Path) -> LinePki:
        """Make the three CAs in `directory` (keys unencrypted: test material)."""
        root = Authority.init(directory / "ca", name="Line CA", passphrase=None, encrypt=False)
        opcua = Authority.init(
            directory / "ca-opcua",
            name="Line OPC UA CA",
            key_type=KeySpec.RSA_2048,
            parent=root,
            passphrase=None,
            encrypt=False,
        )
        foreign = foreign_ca(directory / "foreign")
        return cls(directory, root, opcua, foreign)

    def crls(self) -> bytes:
        """Return the CRLs of the OPC UA CA and of the root above it, as peers of the line need them."""
        return self.opcua.crl_pem() + self.root.crl_pem()


def foreign_ca(directory: Path) -> Authority:
    """Return an RSA CA that no line trusts."""
    return Authority.init(directory, name="Foreign CA", key_type=KeySpec.RSA_2048, passphrase=None, encrypt=False)
