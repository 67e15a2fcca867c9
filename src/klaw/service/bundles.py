"""Version bundles: a pipeline version as one self-contained, readable JSON document.

``klaw versions export`` writes one (files as text, so a bundle diffs well in review);
``klaw versions import`` reads one into another project or server. A bundle names its format
(``klaw_bundle``), carries its content hash, and may be signed with an Ed25519 key: the
signature covers the canonical JSON of every other field, so neither the files nor who made the
version can change unseen. The JSON Schema of the format is ``docs/bundle.schema.json``
(:func:`schema`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Final

import msgspec

from klaw.errors import ConfigError, VersionBundleError
from klaw.service.versions import FORMATS, Content, check_files, content_hash

ALGORITHM: Final = "ed25519"


class Signature(msgspec.Struct, kw_only=True, frozen=True):
    algorithm: str  # "ed25519"
    public_key: str  # the raw 32-byte public key, base64
    value: str  # the signature of the bundle's canonical JSON without "signature", base64


class Bundle(msgspec.Struct, kw_only=True, frozen=True):
    """A pipeline version, exported."""

    klaw_bundle: int  # the bundle format
    workflow: str
    version: int
    kind: str  # "folder" or "python"
    hash: str  # content_hash(workflow, kind, files, klaw_bundle)
    author: str
    message: str
    created_at: float
    files: dict[str, str]
    graph: dict[str, Any] = msgspec.field(default_factory=dict)
    signature: Signature | None = None

    @property
    def content(self) -> Content:
        return Content(
            workflow=self.workflow,
            kind=self.kind,
            files=self.files,
            graph=self.graph,
            format=self.klaw_bundle,
        )


def schema() -> dict[str, Any]:
    """The JSON Schema of a bundle."""
    return msgspec.json.schema(Bundle)


def _signed_bytes(bundle: Bundle) -> bytes:
    unsigned = msgspec.to_builtins(msgspec.structs.replace(bundle, signature=None))
    unsigned.pop("signature", None)
    return msgspec.json.encode(unsigned, order="sorted")


def sign(bundle: Bundle, key_file: Path) -> Bundle:
    """``bundle`` signed with the Ed25519 private key in ``key_file`` (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the signing key {key_file}: {exc}.",
            hint="Make one with `klaw versions keygen KEYFILE` (an Ed25519 key in PEM).",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{key_file} is not an Ed25519 private key.",
            hint="Make one with `klaw versions keygen KEYFILE`.",
        )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    value = key.sign(_signed_bytes(bundle))
    signature = Signature(
        algorithm=ALGORITHM,
        public_key=base64.b64encode(public).decode(),
        value=base64.b64encode(value).decode(),
    )
    return msgspec.structs.replace(bundle, signature=signature)


def keygen(key_file: Path) -> str:
    """Write a new Ed25519 private key to ``key_file`` (PEM, mode 600) and its public key to
    ``key_file.pub``; the public key, base64 (what ``[lifecycle] trusted_keys`` lists)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if key_file.exists():
        raise ConfigError(
            f"{key_file} exists; a key is never overwritten.", hint="Pick a new path."
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.touch(mode=0o600)
    key_file.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    text = base64.b64encode(public).decode()
    key_file.with_name(key_file.name + ".pub").write_text(text + "\n")
    return text


def read(data: bytes | str | dict[str, Any], trusted: tuple[str, ...] = ()) -> Bundle:
    """The bundle in ``data``, checked: a format this Klaw reads, a hash that matches its
    files, a signature that verifies (when it has one, or when ``trusted`` keys are set: then
    it must be signed by one of them). VersionBundleError says what is wrong."""
    raw: Any = data
    if isinstance(data, bytes | str):
        try:
            raw = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise VersionBundleError(f"The bundle is not valid JSON: {exc}.") from None
    if not isinstance(raw, dict) or "klaw_bundle" not in raw:
        raise VersionBundleError(
            "This is not a Klaw version bundle (no 'klaw_bundle' field).",
            hint="Export one with `klaw versions export WF VERSION > wf.klaw.json`.",
        )
    if raw["klaw_bundle"] not in FORMATS:
        known = ", ".join(str(f) for f in sorted(FORMATS))
        raise VersionBundleError(
            f"The bundle is in format {raw['klaw_bundle']!r}; this Klaw reads format {known}.",
            hint="Import it with the Klaw version that exported it, or a newer one.",
        )
    try:
        bundle = msgspec.convert(raw, Bundle)
    except msgspec.ValidationError as exc:
        raise VersionBundleError(f"The bundle is malformed: {exc}.") from None
    check_files(bundle.workflow, bundle.files)
    if bundle.kind not in ("folder", "python"):
        raise VersionBundleError(f"The bundle's kind {bundle.kind!r} is neither folder nor python.")
    found = content_hash(bundle.workflow, bundle.kind, bundle.files, bundle.klaw_bundle)
    if found != bundle.hash:
        raise VersionBundleError(
            f"The bundle of {bundle.workflow!r} v{bundle.version} says its hash is "
            f"{bundle.hash[:12]}, but its files hash to {found[:12]}: it was changed after "
            "it was exported.",
            hint="Export it again from the project it came from.",
        )
    if bundle.signature is not None or trusted:
        _verify(bundle, trusted)
    return bundle


def _verify(bundle: Bundle, trusted: tuple[str, ...]) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signature = bundle.signature
    if signature is None:
        raise VersionBundleError(
            f"The bundle of {bundle.workflow!r} v{bundle.version} is not signed, and this "
            "project only imports bundles signed by a trusted key.",
            hint="Export it with `--sign KEYFILE`, using a key in [lifecycle] trusted_keys.",
        )
    if signature.algorithm != ALGORITHM:
        raise VersionBundleError(
            f"The bundle is signed with {signature.algorithm!r}; Klaw verifies {ALGORITHM}."
        )
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature.public_key))
        public.verify(base64.b64decode(signature.value), _signed_bytes(bundle))
    except (InvalidSignature, ValueError):
        raise VersionBundleError(
            f"The signature of the bundle of {bundle.workflow!r} v{bundle.version} does not "
            "verify: the bundle was changed after it was signed, or the signature is not "
            "its own.",
            hint="Export and sign it again from the project it came from.",
        ) from None
    if trusted and signature.public_key not in trusted:
        raise VersionBundleError(
            f"The bundle of {bundle.workflow!r} v{bundle.version} is signed by key "
            f"{signature.public_key[:12]}..., which is not in [lifecycle] trusted_keys.",
            hint="Add the exporter's public key (KEYFILE.pub) to trusted_keys if you trust it.",
        )
