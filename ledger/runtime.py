"""Wiring the ledger's parts together for one process: store, chain, registry, intake.

``Runtime.open`` attaches to an existing deployment (a manifest, on a node given by
URL); ``Runtime.dev`` deploys a fresh registry on an in-process chain (or a dev node
with unlocked, funded accounts such as anvil) and generates its keys: the embedded
default for the demo and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger import keystore
from ledger.anchoring import Anchorer
from ledger.bundle import BundleBuilder
from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, AnchorRegistry, Chain, Deployment
from ledger.intake import Intake
from ledger.store import Store

__all__ = ["DevKeys", "Runtime", "load_key"]


def load_key(*, env: str = "FOURFLOW_ORACLE_KEY") -> LocalAccount | None:
    """A key from ``$ENV`` (hex) or ``$ENV_FILE`` (eth-account keyfile, password in
    ``$ENV_PASSWORD``); None if neither is set."""
    return keystore.load_key(env=env)


@dataclass(frozen=True)
class DevKeys:
    """Keys generated for a dev deployment. Never written to the repository."""

    admin: LocalAccount
    oracle: LocalAccount
    submitters: list[LocalAccount] = field(default_factory=list)


@dataclass
class Runtime:
    store: Store
    chain: Chain
    registry: AnchorRegistry
    deployment: Deployment
    intake: Intake
    bundles: BundleBuilder

    @classmethod
    def attach(cls, *, store: Store, chain: Chain, deployment: Deployment) -> Runtime:
        registry = AnchorRegistry.from_deployment(chain, deployment)
        chain.nonce_guard = store.signer_lock  # one sender per key across processes
        return cls(
            store=store,
            chain=chain,
            registry=registry,
            deployment=deployment,
            intake=Intake(store, registry),
            bundles=BundleBuilder(store, deployment),
        )

    @classmethod
    def open(cls, *, db_url: str, rpc_url: str, manifest: Path) -> Runtime:
        chain = Chain.connect(rpc_url)
        return cls.attach(
            store=Store.open(db_url), chain=chain, deployment=Deployment.read(manifest)
        )

    @classmethod
    def dev(
        cls, *, db_url: str, chain: Chain | None = None, submitters: int = 1
    ) -> tuple[Runtime, DevKeys]:
        """Deploy a fresh registry with generated, funded keys and roles granted."""
        chain = chain or Chain.in_process()
        keys = DevKeys(
            admin=Account.create(),
            oracle=Account.create(),
            submitters=[Account.create() for _ in range(submitters)],
        )
        chain.fund(keys.admin.address)
        chain.fund(keys.oracle.address)
        registry, deployment = AnchorRegistry.deploy(chain, admin=keys.admin)
        registry.grant(ORACLE_ROLE, keys.oracle.address, admin=keys.admin)
        for submitter in keys.submitters:
            registry.grant(SUBMITTER_ROLE, submitter.address, admin=keys.admin)
        runtime = cls.attach(store=Store.open(db_url), chain=chain, deployment=deployment)
        return runtime, keys

    def anchorer(
        self,
        oracle: LocalAccount,
        *,
        max_batch: int = 1000,
        max_age_s: float = 5.0,
        recheck_s: float = 10.0,
    ) -> Anchorer:
        return Anchorer(
            self.store,
            self.registry,
            oracle,
            max_batch=max_batch,
            max_age_s=max_age_s,
            recheck_s=recheck_s,
        )

    def close(self) -> None:
        self.store.close()
