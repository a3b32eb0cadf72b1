"""Helpers of the training tests: a run's logged metrics, two runs compared bit for bit, and a spy
that keeps the network a command trained in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from infinipaint.models.checkpoint import load_weights
from infinipaint.training.loop import load_state

FP32 = ["--precision", "fp32", "--channels-last", "false"]


def metrics(run: Path, split: str = "train") -> list[dict]:
    """The rows of `run/metrics.jsonl` of one split, in order."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def assert_same_training(a: Path, b: Path, name: str) -> None:
    """Runs `a` and `b` ended in the same state: the step, the weights, the optimizer state (in
    ckpt/state.pt, checksums verified) and the exported model/, and every logged training value but
    the throughput, bit for bit."""
    sa, sb = load_state(a / "ckpt" / "state.pt"), load_state(b / "ckpt" / "state.pt")
    assert sa["step"] == sb["step"]
    assert sa["model"].keys() == sb["model"].keys()
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert oa.keys() == ob.keys() and oa
    assert all(oa[i].keys() == ob[i].keys() and all(torch.equal(oa[i][k], ob[i][k]) for k in oa[i]) for i in oa)
    wa, _ = load_weights(a / "model", name)
    wb, _ = load_weights(b / "model", name)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    logged = [[{k: v for k, v in r.items() if k != "samples_per_s"} for r in metrics(run)] for run in (a, b)]
    assert logged[0] == logged[1]


@pytest.fixture
def trained_nets(monkeypatch):
    """The networks the training loop is given in this process (`infinipaint.cli.main(["train", ...])`),
    in the state the loop leaves them in."""
    from infinipaint.training import loop

    nets = []
    real = loop.train

    def spy(model, *args, **kwargs):
        nets.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(loop, "train", spy)  # the train commands import it when they run
    return nets
