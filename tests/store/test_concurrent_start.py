"""Several processes starting at once on one database end with one CURRENT and one NEXT key."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from m2mauth.core.clock import utc_now
from m2mauth.core.interfaces import Store
from m2mauth.core.models import SigningKeyState
from m2mauth.core.root_key import DerivedKeys
from m2mauth.core.signing_keys import SigningKeyRing
from m2mauth.store.sql import SqlStore

STARTERS = 6


def states(store: Store) -> list[SigningKeyState]:
    with store.unit_of_work() as uow:
        return sorted((k.state for k in uow.list_signing_keys()), key=lambda s: s.value)


def test_concurrent_ensure_keys_from_threads_each_with_its_own_store(
    store: Store, store_url: str
) -> None:
    kek = DerivedKeys.from_root(secrets.token_bytes(32)).key_encryption
    barrier = threading.Barrier(STARTERS)
    errors: list[BaseException] = []
    signers: list[str] = []

    def start() -> None:
        own = SqlStore(store_url)
        try:
            ring = SigningKeyRing(own, kek, utc_now)
            barrier.wait()
            ring.ensure_keys()
            signers.append(ring.current_signer()[0])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=start) for _ in range(STARTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert states(store) == [SigningKeyState.CURRENT, SigningKeyState.NEXT]
    # Every starter signs with the same key.
    assert len(set(signers)) == 1


_STARTER = textwrap.dedent(
    """
    import base64, os, sys, time
    from pathlib import Path
    from m2mauth.core.clock import utc_now
    from m2mauth.core.root_key import DerivedKeys
    from m2mauth.core.signing_keys import SigningKeyRing
    from m2mauth.store.sql import SqlStore

    store = SqlStore(os.environ["DB_URL"])
    keys = DerivedKeys.from_root(base64.b64decode(os.environ["ROOT_KEY"]))
    ring = SigningKeyRing(store, keys.key_encryption, utc_now)
    go = Path(os.environ["GO_FILE"])
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():  # start together
        time.sleep(0.005)
    ring.ensure_keys()
    print(ring.current_signer()[0])
    store.close()
    """
)


def test_concurrent_start_of_real_processes(store: Store, store_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    env = {
        **os.environ,
        "DB_URL": store_url,
        "ROOT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "GO_FILE": str(go),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _STARTER],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(STARTERS)
    ]
    # Start them together: once every interpreter has imported and is waiting.
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < STARTERS and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    assert states(store) == [SigningKeyState.CURRENT, SigningKeyState.NEXT]
    assert len({out.strip() for out, _ in outputs}) == 1
