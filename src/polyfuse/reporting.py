"""What fit prints: the schema, skipped rows, progress of each model, and the results table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from polyfuse.config import Schema

SELECTION_METHODS = {"mutual_info": "mutual information", "permutation": "permutation importance"}  # printed
SHOWN_METRICS = ("accuracy", "subset_accuracy", "f1_macro", "f1_weighted", "roc_auc", "mae", "mse", "r2")


class Reporter:
    """Prints to the terminal with rich when ``verbose``; silent otherwise."""

    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    def schema(self, schema: Schema, frame: Any, base_dir: Path) -> None:
        if not self.verbose:
            return
        from rich.table import Table

        from polyfuse.data.schema import describe_schema

        table = Table(title=f"Schema ({len(frame)} rows, files relative to {base_dir})")
        for col in ("column", "role", "detail"):
            table.add_column(col)
        for row in describe_schema(schema, frame, base_dir):
            table.add_row(*row)
        self.console.print(table)
        if schema.split_column:
            self.console.print(f"splits from column [bold]{schema.split_column}[/bold]")

    def skipped(self, errors: list[Any]) -> None:
        if not self.verbose or not errors:
            return
        self.console.print(f"[yellow]skipped {len(errors)} bad row(s):[/yellow]")
        for err in errors[:20]:
            self.console.print(f"  - {err}")
        if len(errors) > 20:
            self.console.print(f"  ... and {len(errors) - 20} more (listed in metrics.json)")

    def start(self, title: str, model: Any) -> None:
        if self.verbose:
            params = sum(p.numel() for p in model.parameters() if p.requires_grad)
            self.console.print(f"[bold]training {title}[/bold] model ({params:,} trainable parameters)")

    def trained(self, title: str, test: dict[str, Any], summary: dict[str, Any]) -> None:
        if self.verbose:
            keys = [k for k in dict.fromkeys(SHOWN_METRICS) if test.get(k) is not None][:4]
            shown = ", ".join(f"{k} {test[k]:.4f}" for k in keys)
            self.console.print(
                f"  {title}: {summary['epochs']} epochs in {summary['train_seconds']:.1f}s; test {shown}"
            )

    def final(self, name: str, chosen: dict[str, Any] | None) -> None:
        """Which model ``fit`` keeps, and the validation scores it was chosen by."""
        if self.verbose and chosen is not None:
            scores = chosen["candidates"]
            single = max(v for k, v in scores.items() if k != "fused")
            self.console.print(
                f"final model: {describe_final(name, chosen)}; validation score {chosen['val_score']:.4f} "
                f"(fused {scores['fused']:.4f}, best single modality {single:.4f})",
                highlight=False,
            )

    def imbalance(self, found: dict[str, Any]) -> None:
        """One line: each modality's linear probe inside the fused model vs alone, and its last
        gradient share (``metrics.json``'s ``imbalance``)."""
        if self.verbose and found:
            self.console.print(imbalance_line(found), highlight=False)

    def feature_selection(self, found: dict[str, Any]) -> None:
        """One line: the tabular columns ``select_features`` kept and dropped, with their scores."""
        if self.verbose and found:
            scores = found["scores"]
            kept = ", ".join(f"{c} {scores[c]:.2f}" for c in found["kept"])
            dropped = ", ".join(found["dropped"]) or "none"
            method = SELECTION_METHODS.get(found["method"], found["method"])
            self.console.print(
                f"feature selection ({method}, share of the best): kept {kept}; dropped {dropped}",
                highlight=False,
            )

    def gates(self, found: dict[str, Any]) -> None:
        """One line: the share of the fused network's feature gates open on validation."""
        if not (self.verbose and found):
            return
        parts = [f"{m} {100 * v:.0f}%" for m, v in (found.get("embeddings") or {}).items()]
        columns = found.get("columns") or {}
        if columns:
            ranked = sorted(columns.items(), key=lambda kv: -kv[1])
            parts.append("tabular columns " + ", ".join(f"{c} {100 * v:.0f}%" for c, v in ranked))
        self.console.print("feature gates open on validation: " + "; ".join(parts), highlight=False)

    def cascade(self, plan: dict[str, Any]) -> None:
        """One line: the modality cascade's order and what it saves on validation (``metrics.json``'s
        ``cascade``)."""
        if self.verbose and plan:
            self.console.print(cascade_line(plan), highlight=False)

    def results(self, metrics: dict[str, Any]) -> None:
        if not self.verbose:
            return
        self.console.print(metrics_table(metrics))

    def line(self, text: str) -> None:
        if self.verbose:
            self.console.print(text, highlight=False)

    def table(self, table: Any) -> None:
        if self.verbose:
            self.console.print(table)

    def saved(self, path: Path) -> None:
        if self.verbose:
            self.console.print(f"model saved to [bold]{path}[/bold]")


def imbalance_line(found: dict[str, Any]) -> str:
    """ "imbalance (validation probe in fused -> alone; last gradient share): image 0.41 -> 0.52, 12% ..."."""
    probe, shares = found.get("probe", {}), found.get("grad_share", {})
    parts = []
    for m in dict.fromkeys([*probe, *shares]):
        p = probe.get(m, {})
        text = f"{m} {p['fused']:.2f} -> {p['single']:.2f}" if p.get("fused") is not None else m
        if shares.get(m):
            text += f", {100 * shares[m][-1]:.0f}% of the gradient"
        parts.append(text)
    return (
        "imbalance (linear probe on validation, in the fused model -> alone; last epoch's gradient share): "
        + ("; ".join(parts))
    )


CASCADE_TOLERANCE = 0.01  # the printed cascade point: within 1 point of every modality on validation


def cascade_line(plan: dict[str, Any]) -> str:
    """ "cascade (cheapest first: image 0.05 ms, audio 0.2 ms, text 3.1 ms per row): within 1 point of
    every modality on validation at 0.41 of 3.35 encoder ms per row (88% less; --budget-ms 0.41)"."""
    from polyfuse.eval.cascade import threshold_within

    costs = ", ".join(f"{m} {plan['encoder_ms'][m]:.3g} ms" for m in plan["order"])
    full = plan["curve"][-1]
    chosen = threshold_within(plan, CASCADE_TOLERANCE)
    point = next(p for p in plan["curve"] if p["threshold"] == chosen)
    saved = 1 - point["ms_per_row"] / full["ms_per_row"] if full["ms_per_row"] > 0 else 0.0
    budget = math.ceil(point["ms_per_row"] * 1000) / 1000  # rounded up, so that the point fits in it
    return (
        f"cascade (cheapest first: {costs} per row): within {100 * CASCADE_TOLERANCE:.0f} point of every "
        f"modality on validation at {point['ms_per_row']:.3g} of {full['ms_per_row']:.3g} encoder ms per row "
        f"({100 * saved:.0f}% less; --budget-ms {budget:g})"
    )


def describe_final(name: str, chosen: dict[str, Any] | None) -> str:
    """ "ensemble of fused 0.64 + audio 0.36", or the one model's name."""
    if name != "ensemble" or not chosen:
        return name
    return "ensemble of " + " + ".join(f"{m} {w:.2f}" for m, w in chosen["weights"].items())


def metrics_table(metrics: dict[str, Any]) -> Any:
    """A rich table: the final model first, then the fused network and each single-modality baseline
    (the one that is the final model appears once, as "final: ...")."""
    from rich.table import Table

    final = metrics.get("final_model", "fused")  # metrics.json before ensembles: the fused model's
    fused = metrics.get("fused", metrics)
    named = {"fused": (f"fused ({fused.get('fusion', metrics.get('fusion', '?'))})", fused)}
    named |= {name: (f"{name} only", m) for name, m in metrics.get("baselines", {}).items()}
    rows = {f"final: {named[final][0] if final in named else final}": metrics}
    rows |= {title: m for name, (title, m) in named.items() if name != final}
    keys = [k for k in dict.fromkeys(SHOWN_METRICS) if metrics["test"].get(k) is not None]
    table = Table(title=f"Test metrics ({metrics.get('label', '')}, {metrics.get('task', '')})")
    table.add_column("model", no_wrap=True)
    for key in keys + ["train s"]:
        table.add_column(key, justify="right")
    for name, m in rows.items():
        values = [f"{m['test'][k]:.4f}" if m["test"].get(k) is not None else "-" for k in keys]
        table.add_row(name, *values, f"{m.get('train_seconds', 0):.1f}")
    return table
