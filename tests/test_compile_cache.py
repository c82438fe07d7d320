"""The compiler's outputs are kept, keyed by the exact input and the compiler's own
files: the same sources through the same solc give what solc gave, without solc; any
other input, a damaged entry or the cache turned off goes through solc again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import solcx

from ledger import contracts
from ledger.contracts import compile_cache_dir, compile_contracts


class Compiled(Exception):
    """solc was asked to compile (the spy below raises it instead of compiling)."""


def _spy(*_: object, **__: object) -> None:
    raise Compiled


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of its own, seeded from the user's (filled first if it is cold: one real
    compile, once per machine)."""
    compile_contracts()
    shared = compile_cache_dir()
    mine = tmp_path / "solc"
    if shared is not None and shared.is_dir():
        shutil.copytree(shared, mine)
    monkeypatch.setenv("FOURFLOW_SOLC_CACHE", str(mine))
    return mine


def test_the_same_input_is_served_from_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = compile_contracts()
    entries = sorted(cache.glob("*.json"))
    assert entries
    monkeypatch.setattr(solcx, "compile_standard", _spy)
    assert compile_contracts() == first
    # a damaged entry is compiled again, not trusted
    for entry in entries:
        entry.write_text("{not json")
    with pytest.raises(Compiled):
        compile_contracts()


def test_another_input_or_no_cache_goes_through_solc(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compile_contracts()
    monkeypatch.setattr(solcx, "compile_standard", _spy)
    real = contracts.compiler_input

    def edited() -> dict[str, object]:
        data = real()
        name = sorted(data["sources"])[0]
        data["sources"][name] = {"content": data["sources"][name]["content"] + "\n// edited\n"}
        return data

    monkeypatch.setattr(contracts, "compiler_input", edited)
    with pytest.raises(Compiled):
        compile_contracts()
    monkeypatch.setattr(contracts, "compiler_input", real)
    compile_contracts()  # the original input: still kept
    monkeypatch.setenv("FOURFLOW_SOLC_CACHE", "off")
    assert compile_cache_dir() is None
    with pytest.raises(Compiled):
        compile_contracts()


def test_a_cache_others_can_write_to_is_not_used(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry anyone could plant would decide what the audit compares deployed code
    with: a group- or world-writable cache is neither read nor written."""
    compile_contracts()
    monkeypatch.setattr(solcx, "compile_standard", _spy)
    compile_contracts()  # kept, private
    cache.chmod(0o777)
    with pytest.raises(Compiled):
        compile_contracts()
    cache.chmod(0o700)
    compile_contracts()
