"""Every registered fusion trained on digits-av with all three modalities (one compare run).

    python -m benchmarks.fusions_digits_av [--seeds 1] [--out runs/bench-fusions]

Writes benchmarks/results/fusions_digits_av.csv and .md (test accuracy, params, train seconds,
inference latency), with the machine they came from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    import polyfuse
    from benchmarks.common import machine_line, summary_markdown

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-fusions"))
    args = parser.parse_args()
    fusions = [item["name"] for item in polyfuse.list_fusions()]
    result = polyfuse.compare(
        out=args.out, fusions=fusions, subsets=[["image", "audio", "text"]], seeds=args.seeds
    )
    summary = result.summary
    RESULTS.mkdir(exist_ok=True)
    summary.to_csv(RESULTS / "fusions_digits_av.csv", index=False)
    lines = [
        "# Every fusion on digits-av (image + audio + text)",
        "",
        f"Machine: {machine_line()}. Command: `python -m benchmarks.fusions_digits_av --seeds {args.seeds}`.",
        "Defaults of `polyfuse compare` (AdamW 2e-3, early stopping on validation accuracy, modality",
        "dropout 0.2); test split of 270 rows.",
        "",
    ] + summary_markdown(summary, result.metric)
    (RESULTS / "fusions_digits_av.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
