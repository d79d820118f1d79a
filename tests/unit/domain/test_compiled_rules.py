"""The business rules run from one source: compiled where built, interpreted otherwise.

setup.py compiles backbone/domain's rule modules from their Python source; BACKBONE_INTERPRETED=1
runs the same source interpreted (backbone.compiled). Both must give the same states, field for
field and decimal exponent for exponent, and the same refusals: a session is folded here (on
whatever this process runs) and in a child process on the other build, and the two digests
compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from backbone import compiled
from backbone.domain import order_state, positions

ROOT = Path(__file__).resolve().parents[3]


def _can_compile() -> bool:
    """A C compiler is there (Cython comes with the build requirements, pyproject.toml)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return bool(shutil.which(cc) or shutil.which("cc"))


def session_digest() -> str:
    """Fold a simulated session, every fourth order event misreported (a refusal), through the
    order state machine and the position netting; the digest of every outcome."""
    from backbone.domain.events import OrderEvent
    from backbone.domain.plain import to_plain
    from backbone.errors import InvalidRecord
    from producers.simulator import SimulationConfig, simulate

    digest = hashlib.sha256()
    orders: dict[str, order_state.OrderState] = {}
    books: dict[tuple[str, str], positions.Position] = {}
    records = simulate(SimulationConfig(events=4000, seed=23, symbols=6, accounts=3))
    for i, event in enumerate(r for r in records if isinstance(r, OrderEvent)):
        if i % 4 == 3 and event.cum_qty is not None:
            event = replace(event, cum_qty=event.cum_qty + Decimal("0.5"))
        try:
            state = orders[event.order_id] = order_state.apply(orders.get(event.order_id), event)
            outcome = to_plain(state)
        except InvalidRecord as e:
            outcome = [type(e).__name__, e.reason, str(e)]
        digest.update(json.dumps(outcome, sort_keys=True).encode())
        if event.event_type.value == "FILLED" and event.last_qty is not None and event.last_px is not None:
            key = (event.account, event.symbol)
            fill = positions.Fill(event.order_id, str(event.exec_id), event.account, event.symbol, event.side,
                                  event.last_qty, event.last_px, Decimal("0.35"), event.event_time)
            try:
                book = books[key] = positions.apply_fill(books.get(key) or positions.empty_position(*key), fill)
                outcome = to_plain(book)
            except InvalidRecord as e:
                outcome = [type(e).__name__, e.reason, str(e)]
            digest.update(json.dumps(outcome, sort_keys=True).encode())
    return digest.hexdigest()


def run_child(code: str, *, interpreted: bool) -> str:
    paths = [str(ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.pop(compiled.SWITCH, None)
    if interpreted:
        env[compiled.SWITCH] = "1"
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_rules_run_compiled_where_a_compiler_exists_and_interpreted_when_switched_off() -> None:
    loaded = {name: compiled.is_compiled(sys.modules[name]) for name in compiled.RULE_MODULES}
    if compiled.interpreted():
        assert not any(loaded.values())
    elif _can_compile():
        assert all(loaded.values()), loaded


def test_the_switch_loads_every_rule_from_its_python_source_and_no_compiled_module() -> None:
    out = run_child(
        "import sys, json; from backbone import compiled; import backbone.domain.order_state, "
        "backbone.domain.positions, backbone.record_time, backbone.codec.native as native; "
        "print(json.dumps([[compiled.is_compiled(sys.modules[m]), sys.modules[m].__file__] "
        "for m in compiled.RULE_MODULES] + [compiled.compiled('any_nul') is None, native._speedups is None]))",
        interpreted=True)
    *modules, no_helper, no_codec = json.loads(out)
    assert no_helper and no_codec
    assert all(not is_compiled and path.endswith(".py") for is_compiled, path in modules)


def test_compiled_and_interpreted_builds_fold_a_session_to_the_same_outcomes() -> None:
    here = session_digest()
    other = run_child("from test_compiled_rules import session_digest; print(session_digest())",
                      interpreted=not compiled.interpreted())
    assert other == here
