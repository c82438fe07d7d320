"""Taking in signed submissions: check the signature and the signer's role, then store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from threading import Lock

from sqlmodel import Session

from ledger.chain import SUBMITTER_ROLE, AnchorRegistry
from ledger.errors import ChainError, UnregisteredSigner
from ledger.models import Eip712Domain, SubmissionIn
from ledger.signing import domain_for, envelopes_for
from ledger.store import Receipt, Store

__all__ = ["Intake"]

log = logging.getLogger("fourflow.intake")

_NODE_RETRY_S = 5.0  # a failed role read: the next one is tried this much later


class Intake:
    """Accepts a submission only if its signer holds SUBMITTER_ROLE on the registry.

    A signer's role is read from the chain at most every ``role_ttl_s``. While the node
    cannot be reached, a signer whose role was confirmed within ``outage_grace_s`` is
    still accepted, so submissions keep being stored through a node outage; the audit
    checks every signer's role again at the block its batch was anchored in.
    """

    def __init__(
        self,
        store: Store,
        registry: AnchorRegistry,
        *,
        role_ttl_s: float = 10.0,
        outage_grace_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.domain: Eip712Domain = domain_for(
            chain_id=registry.chain.chain_id, contract=registry.address
        )
        self._role_ttl_s = role_ttl_s
        self._outage_grace_s = outage_grace_s
        self._roles: dict[str, float] = {}  # signer -> time its role was last confirmed
        self._node_down_until = 0.0  # after a failed read, skip the node this long
        self._lock = Lock()

    def _verify_role(self, signer: str) -> None:
        now = time.monotonic()
        with self._lock:
            confirmed = self._roles.get(signer)
        if confirmed is not None and now - confirmed < self._role_ttl_s:
            return
        graced = confirmed is not None and now - confirmed < self._outage_grace_s
        if graced and now < self._node_down_until:
            return  # the node failed a moment ago: do not make every submission wait on it
        try:
            holds = self.registry.has_role(SUBMITTER_ROLE, signer)
        except ChainError:
            self._node_down_until = time.monotonic() + _NODE_RETRY_S
            if graced:
                age = now - (confirmed or now)
                log.warning("node unreachable: accepting %s, role seen %.0fs ago", signer, age)
                return
            raise
        if not holds:
            raise UnregisteredSigner(
                f"{signer} does not hold SUBMITTER_ROLE on registry {self.registry.address}",
                field="submitter",
            )
        with self._lock:
            self._roles[signer] = now

    def submit(
        self,
        submission: SubmissionIn,
        *,
        same_id_is_duplicate: bool = False,
        related: Callable[[Session, list[Receipt]], None] | None = None,
    ) -> list[Receipt]:
        """Verify and store ``submission`` durably; all events or none (with the rows
        ``related`` derives from them, see Store.accept)."""
        sealed = envelopes_for(submission, domain=self.domain)
        self._verify_role(sealed.submitter)
        return self.store.accept_events(
            sealed.events,
            digests=sealed.digests,
            canonical=sealed.canonical,
            same_id_is_duplicate=same_id_is_duplicate,
            related=related,
        )
