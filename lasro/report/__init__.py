"""``report.html``: a self-contained page about a run (config, environment, the final paired evaluation,
curves, the reward-hacking monitor, the labelled sample pictures) or a ``lasro bench compare`` folder.
Written at the end of every ``lasro train`` and by ``lasro report RUN_DIR``."""
from lasro.report.build import build_report, hacking_flags, write_report

__all__ = ["build_report", "hacking_flags", "write_report"]
