"""seqgen export: write an ONNX bundle that samples without PyTorch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._util import corpus_feedback, err, log_line, out


def export(
    run: Annotated[
        Optional[Path], typer.Argument(help="Run folder or checkpoint (default: the most recent run).")
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Bundle folder to write (default: exports/<run name>).")
    ] = None,
    quantize: Annotated[Optional[str], typer.Option(help="Quantize the weights: int8 (dynamic quantization).")] = None,
    last: Annotated[bool, typer.Option("--last", help="Export the last checkpoint instead of the best.")] = False,
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed |logit difference| between torch and the fp32 graph.")
    ] = 1e-3,
    loss_tokens: Annotated[
        int, typer.Option(help="Validation tokens on which torch and ONNX losses are compared (0: skip).")
    ] = 4096,
    exporter: Annotated[
        str, typer.Option(help="auto, gqa or fused (transformer), torchscript (recurrent models) or dynamo.")
    ] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle at --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export report as JSON.")] = False,
) -> None:
    """Export a run to an ONNX bundle (model.onnx + seqgen.json) for onnxruntime.

    The export checks itself: it runs the graph in onnxruntime at two sequence lengths and with
    cached steps, compares the logits with torch and fails (leaving nothing behind) above
    --tolerance. With --quantize int8 it also reports the change in validation loss.
    `seqgen sample`, `infill` and `compose` accept the bundle folder like a run folder.
    """
    import contextlib
    import sys

    from seqgen.errors import ConfigError
    from seqgen.export import QUANTIZE, export_run

    if exporter not in ("auto", "gqa", "fused", "torchscript", "dynamo"):
        raise ConfigError(f"--exporter must be auto, gqa, fused, torchscript or dynamo, got {exporter!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if not tolerance > 0:
        raise ConfigError(f"--tolerance must be positive, got {tolerance}")
    if loss_tokens < 0:
        raise ConfigError(f"--loss-tokens must be >= 0, got {loss_tokens}")
    # The exporters print progress on stdout; stdout is kept for the result.
    with contextlib.redirect_stdout(sys.stderr), corpus_feedback() as feedback:
        report = export_run(run, out_dir, which="last" if last else "best", quantize=quantize,
                            tolerance=tolerance, loss_tokens=loss_tokens, exporter=exporter, force=force, log=log_line,
                            progress=feedback["progress"])
    if as_json:
        row = {
            "path": str(report.path), "model_type": report.model_type, "exporter": report.exporter,
            "opset": report.opset, "quantize": report.quantize, "max_abs_diff": report.max_abs_diff,
            "int8_max_abs_diff": report.int8_max_abs_diff, "val_loss_torch": report.val_loss_torch,
            "val_loss_onnx": report.val_loss_onnx, "val_loss_change": report.val_loss_change,
            "val_tokens": report.val_tokens, "seconds": report.seconds,
        }
        out.print(json.dumps(row), markup=False, highlight=False)
        return
    err.print(f"exported {report.model_type} with the {report.exporter} exporter (opset {report.opset}) "
              f"in {report.seconds:.1f}s", markup=False, highlight=False)
    out.print(str(report.path), markup=False, highlight=False)

