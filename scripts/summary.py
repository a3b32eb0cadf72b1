"""The figures of an `infinipaint evaluate` run that the README and the model card quote, from its
metrics.json: SSIM / PSNR at steps 1, 150, 500, 800, 1000, the first step below SSIM 0.95, the
first visible error, the exact-pixel share per phase, press responses in the late phase, toolbar slips, pen strokes in the true colour.

    .venv/bin/python scripts/summary.py docs/learned-only/eval-long/metrics.json
"""
import json
import sys


def main() -> None:
    m = json.load(open(sys.argv[1]))
    steps = m["steps"]
    at = lambda key, s: m[key][steps.index(s)] if s in steps else float("nan")  # noqa: E731
    marks = [s for s in (1, 150, 500, 800, 1000) if s in steps]
    print(f"episodes: {len(m['data']['lengths'])}, keep margin {m['model']['keep_margin']}, window {m['model']['window']}")
    print("SSIM at " + " / ".join(map(str, marks)) + ": " + " / ".join(f"{at('ssim_mean', s):.3f}" for s in marks))
    print("PSNR at " + " / ".join(map(str, marks)) + ": " + " / ".join(f"{at('psnr_mean', s):.1f}" for s in marks) + " dB")
    print(f"first step below SSIM 0.95: {m['onset_095_mean']:.0f} ± {m['onset_095_std']:.0f} ({m['onset_095_never']} never)")
    v = m["visible_error_onset"]
    print(f"first visible error: {v['mean']:.1f} ± {v['std']:.1f} ({v['never']} never)")
    share = lambda p: m["phases"][p]["exact_share"]  # noqa: E731  (None: no step in that phase)
    print("exact pixels early / mid / late: " + " / ".join("-" if share(p) is None else f"{100 * share(p):.2f} %"
                                                           for p in ("early", "mid", "late")))
    late = {k: m["responses"][k]["late"] for k in ("pen", "eraser", "tool", "color", "slider")}
    print("late responses: " + ", ".join(f"{k} {100 * r['value']:.0f} % (n={r['n']})" if r["value"] is not None else f"{k} - (n=0)"
                                         for k, r in late.items()))
    slips = m["toolbar_slips"]
    print("toolbar slips early / mid / late: " + " / ".join(str(slips['phases'][p]['slips']) for p in ("early", "mid", "late")))
    ink = m.get("pen_ink")  # absent from metrics.json written before 2026-12-02
    if ink:
        cell = lambda r: "-" if r["value"] is None else f"{100 * r['value']:.0f} % (n={r['n']})"  # noqa: E731
        print("pen strokes in the true colour early / mid / late: " + " / ".join(cell(ink[p]) for p in ("early", "mid", "late")))
        print("  by ink: " + ", ".join(f"{c} {cell(r)}" for c, r in ink["by_colour"].items()))
    for group, phases in m.get("behaviour", {}).items():
        ev = phases["all"]
        if ev["right"]["n"]:
            print(f"{group.replace('_', ' ')}: right {100 * ev['right']['value']:.0f} %, made up "
                  f"{100 * ev['made_up']['value']:.0f} %, missed {100 * ev['missed']['value']:.0f} % (n={ev['right']['n']})")


if __name__ == "__main__":
    main()
