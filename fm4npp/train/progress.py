"""Training progress on stdout: a tqdm bar on a terminal, plain periodic lines in log files.

SLURM and submitit redirect stdout to a file, where a carriage-return bar would be one enormous line;
there we print ``step 120/500 loss 0.4312 tok/s 5.1e+04 eta 3m12s`` every ``every_steps`` steps.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


def format_eta(seconds: float) -> str:
    """``1h02m``, ``3m12s`` or ``45s``."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Reports steps ``start_step+1 … total_steps``. Disabled (silent) on ranks other than 0."""

    def __init__(
        self,
        total_steps: int,
        start_step: int = 0,
        every_steps: int = 10,
        enabled: bool = True,
        stream: IO[str] | None = None,
        desc: str = "pretrain",
    ) -> None:
        self.total = total_steps
        self.start = start_step
        self.every = max(1, every_steps)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        self.desc = desc
        self._t0 = time.perf_counter()
        self._bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, desc=desc, unit="step", file=self.stream
            )

    def update(
        self,
        step: int,
        loss: float,
        tokens_per_s: float,
        val_loss: float | None = None,
        data_wait: float | None = None,
    ) -> None:
        """Record that optimiser step ``step`` (1-based) finished with training loss ``loss``;
        ``data_wait`` = fraction of the step spent waiting for input (shown as ``wait 12%``)."""
        if not self.enabled:
            return
        done = step - self.start
        eta = (time.perf_counter() - self._t0) / max(1, done) * (self.total - step)
        if self._bar is not None:
            post = {"loss": f"{loss:.4f}", "tok/s": f"{tokens_per_s:.3g}"}
            if val_loss is not None:
                post["val"] = f"{val_loss:.4f}"
            if data_wait is not None:
                post["wait"] = f"{data_wait:.0%}"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(step - self._bar.n)
            return
        if step % self.every == 0 or step == self.total or val_loss is not None:
            val = f" val {val_loss:.4f}" if val_loss is not None else ""
            wait = f" wait {data_wait:.0%}" if data_wait is not None else ""
            self.stream.write(
                f"{self.desc} step {step}/{self.total} loss {loss:.4f}{val} "
                f"tok/s {tokens_per_s:.3g}{wait} eta {format_eta(eta)}\n"
            )
            self.stream.flush()

    def message(self, text: str) -> None:
        """A one-off line (resume, stop, failure) that does not garble the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
