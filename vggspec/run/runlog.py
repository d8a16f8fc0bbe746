"""What a training run shows and leaves behind (rank 0 only).

* the resolved configuration, printed and written to ``RUN/config.json``, and a copy of the
  spec (``RUN/spec.vgg``, comments kept: the run's own, for ``--resume`` without SPEC);
* a progress bar per epoch: loss, images/s, data-wait against compute, ETA;
* ``RUN/metrics.jsonl``: one line per epoch (``epoch``, ``train_loss``, ``val_top1_err``,
  ``val_top5_err``, ``lr``, ``images_per_s``, ...);
* TensorBoard event files in ``RUN/tensorboard`` (when the ``tensorboard`` package is installed);
* ``RUN/curves.png``: loss, errors and learning rate against epochs;
* a closing summary: best epoch, errors, time, where the files are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from .. import files
from ..logs import log
from ..plan.batch import shares_text
from ..spec.formatter import format_spec
from ..units import human_duration
from . import runs


class RunLog:
    def __init__(self, run_dir: Path, *, enabled: bool, quiet: bool) -> None:
        self.run_dir = run_dir
        self.enabled = enabled  # progress bars
        self.quiet = quiet  # not rank 0: say nothing
        self._tensorboard = None
        self.top5 = True  # whether top-5 error says anything: not with 5 classes or fewer (always 0 there)

    # -- text ----------------------------------------------------------------------------
    def note(self, message: str) -> None:
        if not self.quiet:
            log.info(message)

    def event(self, message: str) -> None:
        """A note the run folder keeps too (RUN/events.log, time-stamped): resumes and restarts, read after
        the terminal that showed them is gone."""
        if self.quiet:
            return
        self.note(message)
        with open(self.run_dir / runs.EVENTS, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")

    def start(
        self,
        config,
        spec,
        train_folder,
        val_folder,
        stats,
        steps_per_epoch: int,
        batches,
        world: int,
        threads: int,
        decided: dict[str, object] | None = None,
    ) -> None:
        """``decided``: what the run made of settings left to it (the scale S, the init auto chose), shown
        in place of the setting as given; RUN/config.json keeps what was given."""
        self.top5 = len(train_folder.classes) > 5
        resolved = config.model_dump()
        files.write_text(self.run_dir / runs.CONFIG, json.dumps(resolved, indent=2) + "\n")
        copy, text = self.run_dir / runs.SPEC, spec.text if spec.text is not None else format_spec(spec)
        if not copy.exists() or copy.read_text(encoding="utf-8") != text:  # what --resume without SPEC reads
            files.write_text(copy, text)
        self.note(f"configuration (also in {self.run_dir / runs.CONFIG}):")
        shown = {**resolved, **(decided or {})}
        self.note("\n".join(f"  {key:<18} {value}" for key, value in shown.items()))
        micro = batches.micro
        self.note(
            f"{spec.display_name}: {len(train_folder.samples)} training images in {len(train_folder.classes)} classes, "
            f"{len(val_folder.samples)} validation images; {steps_per_epoch} steps of {config.batch_size} per epoch "
            f"({world} process{'es' if world > 1 else ''} × {shares_text(config.batch_size, world)}, micro-batches of "
            f"{micro}; "
            f"{threads} CPU thread{'s' if threads > 1 else ''}{' each' if world > 1 else ''}); "
            f"mean {'RGB' if len(stats.mean) == 3 else 'value'} {[round(m, 1) for m in stats.mean]}"
        )

    def progress(self, epoch: int, epochs: int, step: int, steps: int) -> _Progress:
        return _Progress(f"epoch {epoch + 1}/{epochs}", step, steps, enabled=self.enabled)

    def epoch_done(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        if self.quiet:
            return
        with open(self.run_dir / runs.METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self._write_tensorboard(record)
        self._write_curves(history)
        broken = f", {record['broken_images']} broken images skipped" if record.get("broken_images") else ""
        self.note(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val top-1 error "
            f"{record['val_top1_err']:.2%}{self._top5(record)}, lr {record['lr']:.0e}, "
            f"{record['images_per_s']:.0f} images/s (data wait {record['data_wait']:.0%}){broken}"
        )

    def _top5(self, record: dict[str, Any]) -> str:
        return f", top-5 {record['val_top5_err']:.2%}" if self.top5 else ""

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """On resume: metrics.jsonl as the checkpoint knows it (a line written after it is dropped)."""
        files.write_text(self.run_dir / runs.METRICS, "".join(json.dumps(record) + "\n" for record in history))

    def finish(
        self, history: list[dict[str, Any]], best: dict[str, Any] | None, seconds: float, *, first_epoch: int = 0
    ) -> None:
        """The closing summary; ``seconds`` is this session's time, which trained the epochs after ``first_epoch``."""
        if self.quiet:
            return
        if self._tensorboard is not None:
            self._tensorboard.close()
        count = len(history)
        if first_epoch == 0:
            trained = f"{count} epoch{'s' if count != 1 else ''}"
        else:  # a resumed run: the epochs this session trained, and the run's total
            several = count > first_epoch + 1
            span = f"s {first_epoch + 1}–{count}" if several else f" {count}"
            trained = f"epoch{span} ({count} in all)"
        lines = [f"done: {trained} in {human_duration(seconds)}."]
        if best:
            lines.append(
                f"best epoch {best['epoch']}: val top-1 error {best['val_top1_err']:.2%}{self._top5(best)} "
                f"(train loss {best['train_loss']:.4f})"
            )
        lines.append(
            f"files in {self.run_dir}: {runs.BEST}, {runs.LAST} (load with vggspec.load_model), {runs.METRICS}, "
            f"{runs.CURVES}, {runs.CONFIG}, {runs.SPEC}, {runs.COLOUR_STATS}"
            + (f", {runs.TENSORBOARD}/" if self._tensorboard else "")
        )
        self.note("\n".join(lines))

    # -- files ---------------------------------------------------------------------------
    def _write_tensorboard(self, record: dict[str, Any]) -> None:
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tensorboard = False  # not installed: skip quietly (noted in the summary)
                return
            self._tensorboard = SummaryWriter(str(self.run_dir / runs.TENSORBOARD))
        if self._tensorboard:
            for key in ("train_loss", "val_top1_err", "val_top5_err", "lr", "images_per_s"):
                self._tensorboard.add_scalar(key, record[key], record["epoch"])
            self._tensorboard.flush()

    def _write_curves(self, history: list[dict[str, Any]]) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        epochs = [r["epoch"] for r in history]
        fig, (loss_ax, err_ax, lr_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
        loss_ax.plot(epochs, [r["train_loss"] for r in history], marker="o")
        loss_ax.set(title="training loss", xlabel="epoch")
        err_ax.plot(epochs, [100 * r["val_top1_err"] for r in history], marker="o", label="top-1")
        err_ax.plot(epochs, [100 * r["val_top5_err"] for r in history], marker="o", label="top-5")
        err_ax.set(title="validation error (%)", xlabel="epoch")
        err_ax.legend()
        lr_ax.plot(epochs, [r["lr"] for r in history], marker="o", drawstyle="steps-post")
        lr_ax.set(title="learning rate", xlabel="epoch", yscale="log")
        from matplotlib.ticker import MaxNLocator

        for ax in (loss_ax, err_ax, lr_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        fig.tight_layout()
        try:
            with files.writing(self.run_dir / runs.CURVES) as f:
                fig.savefig(f, dpi=100, format="png")
        finally:
            plt.close(fig)


LOG_EVERY_SECONDS = 60.0  # without a terminal: a progress line this often


def progress_bar(total: int, *, desc: str, unit: str, initial: int = 0):
    """A tqdm bar on a terminal. Elsewhere (a log file, CI, nohup) a redrawn bar is one endless
    line of carriage returns: there, a plain line every ``LOG_EVERY_SECONDS`` (:class:`LogLines`)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5)
    return LogLines(total, desc=desc, unit=unit, initial=initial)


class LogLines:
    """The part of tqdm's interface vggspec uses, printed as lines: done, rate, extras and ETA."""

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.started = self.last = time.perf_counter()
        self.postfix: dict[str, Any] = {}

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= LOG_EVERY_SECONDS:
            self.last = now
            rate = (self.n - self.initial) / max(now - self.started, 1e-9)
            extras = "".join(f" {key}={value}" for key, value in self.postfix.items())
            eta = human_duration((self.total - self.n) / rate) if rate > 0 else "?"
            print(
                f"{self.desc}: {self.n}/{self.total} {self.unit}s ({self.n / max(self.total, 1):.0%}), "
                f"{rate:.3g} {self.unit}s/s,{extras} ETA {eta}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        pass  # what follows (an epoch's summary, the results table) says how it ended


class _Progress:
    """A progress bar (:func:`progress_bar`) with loss, images/s, data-wait share and ETA."""

    def __init__(self, label: str, start: int, total: int, *, enabled: bool) -> None:
        self.bar = progress_bar(total, desc=label, unit="step", initial=start) if enabled else None
        self.images = 0
        self.started = time.perf_counter()

    def update(self, loss: float, images: int, data_wait: float, compute: float) -> None:
        self.images += images
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(
            loss=f"{loss:.4f}",
            img_s=f"{self.images / elapsed:.0f}",
            data_wait=f"{data_wait / max(data_wait + compute, 1e-9):.0%}",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
