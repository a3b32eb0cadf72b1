"""The default precision: bf16 autocast only where the device computes bf16 natively."""

from infinipaint import precision
from infinipaint.training.config import TrainConfig
from infinipaint.training.loop import runtime


def test_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not precision.native_bf16("cpu") and not precision.resolve_bf16(None, "cpu")
    assert runtime(TrainConfig(device="cpu")).precision == "fp32"
    for flag in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(precision, "_cpu_flags", lambda flag=flag: frozenset({"avx2", flag}))
        assert precision.resolve_bf16(None, "cpu") and runtime(TrainConfig(device="cpu")).precision == "bf16"
    # Asked for explicitly, either way, it is what it is.
    assert precision.resolve_bf16(False, "cpu") is False
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset())
    assert precision.resolve_bf16(True, "cpu") is True
    assert runtime(TrainConfig(device="cpu", precision="bf16")).precision == "bf16"
