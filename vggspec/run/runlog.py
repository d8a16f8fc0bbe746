"""What a training run shows and leaves behind (rank 0 only).

* the resolved configuration, printed and written to ``RUN/config.json``, and a copy of the
  spec (``RUN/spec.vgg``, comments kept: the run's own, for ``--resume`` without SPEC);
* a progress bar per epoch: loss, images/s, data-wait against compute, ETA;
* ``RUN/metrics.jsonl``: one line per epoch (``epoch``, ``train_loss``, ``train_top1_err``, ``val_loss``,
  ``val_top1_err``, ``val_top5_err``, ``lr``, ``images_per_s``, ...); the run's last epoch also says why the
  run ended there (``stopped``: ``epochs`` or ``plateau``);
* TensorBoard event files in ``RUN/tensorboard`` (when the ``tensorboard`` package is installed);
* ``RUN/curves.png``: loss and error, training and validation, and the learning rate against epochs,
  drawn on a figure of its own (the caller's matplotlib backend untouched);
* a closing summary: best epoch, errors, time, where the files are; and ``RUN/summary.json``, the same as
  data, however the session ended (:meth:`RunLog.summary`).
"""

from __future__ import annotations

import json
import math
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
        self.max_epochs: int | None = None  # --epochs, for the summary

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
        self.max_epochs = config.epochs
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
            f"{len(val_folder.samples)} validation images; {steps_per_epoch} step{'s' if steps_per_epoch != 1 else ''} "
            f"of {config.batch_size} per epoch "
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
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} (top-1 error "
            f"{record['train_top1_err']:.1%}), val loss {record['val_loss']:.4f}, val top-1 error "
            f"{record['val_top1_err']:.2%}{self._top5(record)}, lr {record['lr']:.0e}, "
            f"{record['images_per_s']:.0f} images/s (data wait {record['data_wait']:.0%}){broken}"
        )

    def _top5(self, record: dict[str, Any]) -> str:
        return f", top-5 {record['val_top5_err']:.2%}" if self.top5 else ""

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """On resume: metrics.jsonl as the checkpoint knows it (a line written after it is dropped)."""
        files.write_text(self.run_dir / runs.METRICS, "".join(json.dumps(record) + "\n" for record in history))

    def finish(
        self,
        history: list[dict[str, Any]],
        best: dict[str, Any] | None,
        seconds: float,
        *,
        first_epoch: int = 0,
        stopped: str | None = "epochs",
        message: str | None = None,
    ) -> None:
        """The closing summary, said and written (RUN/summary.json); ``seconds`` is this session's time, which
        trained the epochs after ``first_epoch``; ``stopped``, why the run ended (``message``: the line that
        said so)."""
        if self.quiet:
            return
        self.close(history, best, seconds, first_epoch=first_epoch, stopped=stopped, message=message)
        count = len(history)
        if first_epoch == 0:
            trained = f"{count} epoch{'s' if count != 1 else ''}"
        else:  # a resumed run: the epochs this session trained, and the run's total
            several = count > first_epoch + 1
            span = f"s {first_epoch + 1}–{count}" if several else f" {count}"
            trained = f"epoch{span} ({count} in all)"
        took = f" in {human_duration(seconds)}"
        if count == first_epoch:  # a finished run resumed: nothing trained now
            trained, took = f"no epoch trained ({count} in all)", ""
        lines = [f"done: {trained}{took}."]
        if best:
            val_loss = f"val loss {best['val_loss']:.4f}, " if "val_loss" in best else ""  # not in older runs' records
            lines.append(
                f"best epoch {best['epoch']}: val top-1 error {best['val_top1_err']:.2%}{self._top5(best)} "
                f"({val_loss}train loss {best['train_loss']:.4f})"
            )
        lines.append(
            f"files in {self.run_dir}: {runs.BEST}, {runs.LAST} (load with vggspec.load_model), {runs.METRICS}, "
            f"{runs.CURVES}, {runs.CONFIG}, {runs.SPEC}, {runs.COLOUR_STATS}, {runs.SUMMARY}"
            + (f", {runs.TENSORBOARD}/" if self._tensorboard else "")
        )
        self.note("\n".join(lines))

    def close(
        self,
        history: list[dict[str, Any]],
        best: dict[str, Any] | None,
        seconds: float,
        *,
        first_epoch: int,
        stopped: str | None,
        message: str | None,
    ) -> None:
        """The session is over (``stopped`` says why; ``message``, the line that said it): RUN/summary.json written,
        and TensorBoard's files closed. :meth:`finish` says the closing summary first."""
        if self.quiet:
            return
        if self._tensorboard:
            self._tensorboard.close()
        summary = self.summary(history, best, seconds, first_epoch=first_epoch, stopped=stopped, message=message)
        files.write_text(self.run_dir / runs.SUMMARY, json.dumps(summary, indent=2) + "\n")

    def summary(
        self,
        history: list[dict[str, Any]],
        best: dict[str, Any] | None,
        seconds: float,
        *,
        first_epoch: int,
        stopped: str | None,
        message: str | None,
    ) -> dict[str, Any]:
        """How the session ended, as RUN/summary.json and ``vggspec train --format json`` give it: ``stopped``
        (``epochs``, ``plateau``, ``interrupted``, ``diverged``, ``out of memory``) and ``message``; ``epochs``
        trained in all, of ``max_epochs``, ``epochs_this_session`` in ``seconds``; the ``best`` epoch's errors and
        losses; the ``run`` folder and its ``files``. Numbers that are not finite are null (strict JSON)."""
        names = {
            "best": runs.BEST, "last": runs.LAST, "metrics": runs.METRICS, "curves": runs.CURVES,
            "config": runs.CONFIG, "spec": runs.SPEC, "colour_stats": runs.COLOUR_STATS, "events": runs.EVENTS,
            "tensorboard": runs.TENSORBOARD,
        }  # fmt: skip
        found = {key: str(self.run_dir / name) for key, name in names.items() if (self.run_dir / name).exists()}
        return _finite({
            "run": str(self.run_dir),
            "stopped": stopped,
            "message": message,
            "epochs": len(history),
            "max_epochs": self.max_epochs,
            "epochs_this_session": len(history) - first_epoch,
            "seconds": round(seconds, 3),
            "best": {key: best.get(key) for key in BEST_FIELDS} if best else None,
            "files": {**found, "summary": str(self.run_dir / runs.SUMMARY)},
        })  # fmt: skip

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
            for key in (*BEST_FIELDS[1:], "images_per_s"):
                if key in record and (key != "val_top5_err" or self.top5):
                    self._tensorboard.add_scalar(key, record[key], record["epoch"])
            self._tensorboard.flush()

    def _write_curves(self, history: list[dict[str, Any]]) -> None:
        """RUN/curves.png: loss (training, validation), top-1 error (training, validation; validation's top-5 where
        it can be other than 0) and the learning rate, against epochs; the best epoch marked, the lr drops as
        dotted lines. Drawn on a Figure of its own, never through pyplot: a notebook that trains keeps its
        backend and its inline plots."""
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator, NullLocator, PercentFormatter
        except ImportError:
            return
        epochs = [r["epoch"] for r in history]

        def series(key: str, scale: float = 1.0) -> list[float]:  # an older run's records lack the newer keys
            return [scale * r[key] if r.get(key) is not None else math.nan for r in history]

        train, val = {"color": "C0", "label": "training"}, {"color": "C1", "label": "validation"}
        style = {"marker": "o", "markersize": 3 if len(history) <= 40 else 0, "linewidth": 1.5}
        fig = Figure(figsize=(13, 3.8), layout="constrained")
        loss_ax, err_ax, lr_ax = fig.subplots(1, 3)
        loss_ax.plot(epochs, series("train_loss"), **train, **style)
        loss_ax.plot(epochs, series("val_loss"), **val, **style)
        loss_ax.set(title="loss (cross-entropy)", xlabel="epoch")
        err_ax.plot(epochs, series("train_top1_err", 100), **{**train, "label": "training top-1"}, **style)
        err_ax.plot(epochs, series("val_top1_err", 100), **{**val, "label": "validation top-1"}, **style)
        if self.top5:
            err_ax.plot(epochs, series("val_top5_err", 100), **{**val, "label": "validation top-5"}, **style,
                        linestyle="--", alpha=0.7)  # fmt: skip
        best = min(history, key=lambda r: r["val_top1_err"])
        err_ax.plot(best["epoch"], 100 * best["val_top1_err"], marker="*", markersize=13, color="C3", linestyle="",
                    label=f"best: epoch {best['epoch']}, {best['val_top1_err']:.2%}", zorder=3)  # fmt: skip
        err_ax.set(title="error" if self.top5 else "top-1 error", xlabel="epoch")
        err_ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
        lr_ax.plot(epochs, series("lr"), color="C2", drawstyle="steps-mid", **style)  # each epoch at its rate
        lr_ax.set(title="learning rate", xlabel="epoch", yscale="log")
        rates = sorted({r["lr"] for r in history})  # a tick for each rate the run trained at, and no other
        lr_ax.yaxis.set_minor_locator(NullLocator())
        lr_ax.set_yticks(rates, labels=[f"{rate:.0e}" for rate in rates])
        drops = [b["epoch"] - 0.5 for a, b in zip(history, history[1:]) if b["lr"] < a["lr"] * 0.99]
        for ax in (loss_ax, err_ax, lr_ax):
            for x in drops:  # where the rate fell: between the last epoch at one rate and the first at the next
                ax.axvline(x, color="0.6", linestyle=":", linewidth=1)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        loss_ax.legend(frameon=False)
        err_ax.legend(frameon=False)
        last = history[-1]["epoch"]
        if history[-1].get("stopped") == "plateau":
            end = f"stopped after epoch {last}: no better validation error since epoch {best['epoch']}, no lr drop left"
        else:
            end = f"epoch {last}" + (f" of {self.max_epochs}" if self.max_epochs else "")
        fig.suptitle(f"{self.run_dir.name}: {end}", fontsize=10)
        with files.writing(self.run_dir / runs.CURVES) as f:
            fig.savefig(f, dpi=100, format="png")


BEST_FIELDS = ("epoch", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "lr")
"""What the summary keeps of the best epoch's record (an older run's record may lack some: null)."""


def _finite(value: Any) -> Any:
    """``value`` with every number that is not finite (a validation loss with no image read) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def stopped_on_a_plateau(epoch: int, best: dict[str, Any], drops: int) -> str:
    """Why a run stopped early, in one line: ``stopped after epoch 33: the learning rate was lowered 3 times and
    validation error has not improved for 6 epochs since (best: epoch 27, 1.20%)``."""
    since = epoch - best["epoch"]
    still = f"validation error has not improved for {since} epoch{'s' if since != 1 else ''}"
    if drops == 0:
        lowered = f"the learning rate is not lowered (--lr-drops 0) and {still}"
    else:
        lowered = f"the learning rate was lowered {_times(drops)} and {still} since"
    return f"stopped after epoch {epoch}: {lowered} (best: epoch {best['epoch']}, {best['val_top1_err']:.2%})"


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


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
