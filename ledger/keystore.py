"""Private keys on disk: eth-account keystore files and the 0600 files that hold secrets.

A key never lives in the repository. A command reads its key from the environment
(``load_key``): ``$NAME`` as hex, or ``$NAME_FILE`` naming an eth-account keystore (Web3
Secret Storage v3, encrypted) with the password in ``$NAME_PASSWORD``.

Files this module creates (``write_keystore``, ``write_private``) are mode 0600 from
their first byte: they are created by ``os.open(..., 0o600)`` with ``O_EXCL``, never
written first and tightened with chmod after. ``private_dir`` makes a directory 0700.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address

from ledger.errors import InvalidInput

__all__ = [
    "LIGHT_SCRYPT_N",
    "keystore_address",
    "load_key",
    "private_dir",
    "read_keystore",
    "verify_private",
    "write_keystore",
    "write_private",
]

# scrypt cost of the keystores fourflow generates for a devnet: 2**14 decrypts in about
# 0.08 s (eth-account's default, 2**18, takes 0.7 s; geth's --lightkdf is 2**12)
LIGHT_SCRYPT_N = 2**14


def _bad_key(message: str) -> InvalidInput:
    return InvalidInput(message, code="bad_key")


def load_key(*, env: str) -> LocalAccount | None:
    """A key from ``$ENV`` (hex) or ``$ENV_FILE`` (eth-account keystore, password in
    ``$ENV_PASSWORD``); None if neither is set."""
    raw = os.environ.get(env)
    keyfile = os.environ.get(f"{env}_FILE")
    try:
        if raw:
            account: LocalAccount = Account.from_key(raw)
            return account
        if keyfile:
            return _decrypt(Path(keyfile), os.environ.get(f"{env}_PASSWORD", ""))
    except (OSError, ValueError) as exc:
        raise _bad_key(f"cannot load the key from ${env}: {exc}") from exc
    return None


def _decrypt(path: Path, password: str) -> LocalAccount:
    data = path.read_text(encoding="utf-8")
    account: LocalAccount = Account.from_key(Account.decrypt(data, password))
    return account


def read_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt the keystore at ``path``; InvalidInput if it cannot be read or the
    password is wrong."""
    try:
        return _decrypt(path, password)
    except (OSError, ValueError) as exc:
        raise _bad_key(f"cannot decrypt the keystore {path}: {exc}") from exc


def keystore_address(path: Path) -> str:
    """The checksummed address a keystore declares, read without decrypting it."""
    try:
        body: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad_key(f"cannot read the keystore {path}: {exc}") from exc
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, str) or not is_address(address.removeprefix("0x")):
        raise _bad_key(f"the keystore {path} declares no address")
    return to_checksum_address("0x" + address.removeprefix("0x"))


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to a new file that only its owner can read (0600).

    Without ``replace``, an existing file is an error (a key is never overwritten).
    With it, the data goes to a fresh 0600 file beside ``path`` that then replaces it,
    so readers see the old file or the new one and the mode is 0600 either way."""
    target = path if not replace else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InvalidInput(f"{target} exists; not overwriting it", code="file_exists") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def write_keystore(
    path: Path, account: LocalAccount, password: str, *, scrypt_n: int = LIGHT_SCRYPT_N
) -> None:
    """Encrypt ``account`` with ``password`` (scrypt) into a new 0600 keystore file."""
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    write_private(path, (json.dumps(keystore) + "\n").encode("utf-8"))


def private_dir(path: Path) -> None:
    """Make ``path`` a directory only its owner can enter (0700), tightening an existing
    one that others could."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)


def verify_private(path: Path) -> None:
    """Raise InvalidInput if the group or others may read or write the file at ``path``."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InvalidInput(
            f"{path} is open to others (mode {mode:04o}); `chmod 600 {path}` and retry",
            code="unprotected_key",
        )
