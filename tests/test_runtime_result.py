"""A command's result leaves its event loop without being repr'd (a 1,000,000-lead plan's
repr was ~500 MB at the end of `seqrun plan`)."""

from __future__ import annotations

from pathlib import Path

from engine.runtime import Runtime, with_runtime


class _Costly:
    """A result that counts the reprs made of it."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return "_Costly()"


def test_with_runtime_hands_the_result_over_without_its_repr(tmp_path: Path) -> None:
    async def work(rt: Runtime) -> _Costly:
        return _Costly()

    result = with_runtime(tmp_path / "state", work)

    assert isinstance(result, _Costly)
    assert _Costly.reprs == 0
