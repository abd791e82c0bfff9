"""dekr.library_warnings: each silenced library message is silenced where the library says it (the real
Lightning and torch code where it is cheap to reach), and nothing broader: the library's other messages,
the same text from another module, a user's own warnings and a SLURM job's srun hint still show."""
from __future__ import annotations

import logging
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.warnings import PossibleUserWarning

from dekr.library_warnings import LIBRARY_NOISE, Silence, silence_library_noise

WARNINGS = [s for s in LIBRARY_NOISE if s.category is not None]
LOG_RECORDS = [s for s in LIBRARY_NOISE if s.logger is not None]


def entry_id(silence: Silence) -> str:
    return silence.message[:40]


@pytest.fixture
def library_loggers() -> Iterator[None]:
    """The library loggers without any filter during the test, and as they were after it."""
    saved = {name: logging.getLogger(name).filters[:] for name in {s.logger for s in LOG_RECORDS}}
    for name in saved:
        logging.getLogger(name).filters.clear()
    yield
    for name, filters in saved.items():
        logging.getLogger(name).filters[:] = filters


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def shown(silence: Silence, text: str, module: str, environ: dict[str, str] | None = None) -> bool:
    """Whether a Python warning of ``silence``'s category with ``text``, attributed to ``module``,
    shows after :func:`silence_library_noise`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise(environ or {})
        warnings.warn_explicit(text, silence.category, f"{module.replace('.', '/')}.py", 1, module=module)
    return len(caught) == 1


def test_every_entry_says_why_and_matches_its_example() -> None:
    for silence in LIBRARY_NOISE:
        assert silence.library and len(silence.why) > 40, silence
        assert silence.matches(silence.example), silence
        assert (silence.category is None) != (silence.logger is None), "a warning or a log record, not both"


@pytest.mark.parametrize("silence", WARNINGS, ids=entry_id)
def test_a_python_warning_is_silenced_from_its_module_only(silence: Silence) -> None:
    module = silence.module or "lightning.pytorch.trainer.connectors.logger_connector.result"
    assert not shown(silence, silence.example, module)
    if silence.module:  # the same text from elsewhere (a user's code) still shows
        assert shown(silence, silence.example, "my_project.train")
    assert shown(silence, "It is recommended to look at this", module)  # the library's other messages


def test_lightning_keeps_advising_sync_dist_for_a_users_own_metric() -> None:
    [advice] = [s for s in WARNINGS if "sync_dist" in s.message]
    assert issubclass(PossibleUserWarning, advice.category)
    template = ("It is recommended to use `self.log({!r}, ..., sync_dist=True)` when logging on epoch level in "
                "distributed setting to accumulate the metric across devices.")
    module = "lightning.pytorch.trainer.connectors.logger_connector.result"
    for ours in ("val/AP", "val/AP50", "test/AR", "val/AP_easy", "val/num_images"):
        assert not shown(advice, template.format(ours), module)
    for theirs in ("val/loss", "train/epoch_loss", "val/my_score", "my/AP"):
        assert shown(advice, template.format(theirs), module)


def test_a_users_own_deprecation_warning_still_shows() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise({})
        warnings.warn("my_function is deprecated", DeprecationWarning)
        warnings.warn("my_function is deprecated", FutureWarning)
        warnings.warn("The `srun` command is available on your system but is not used", UserWarning)
    assert [type(w.message) for w in caught] == [DeprecationWarning, FutureWarning, UserWarning]


def test_lightnings_srun_hint_is_silenced_outside_a_slurm_job_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    srun = tmp_path / "srun"  # SLURM installed: Lightning looks for the srun command on PATH
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    for key in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(key, raising=False)

    def hints(environ: dict[str, str]) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_library_noise(environ)
            SLURMEnvironment._validate_srun_used()
        return [str(w.message) for w in caught if "srun" in str(w.message)]

    assert hints({}) == []
    assert len(hints({"SLURM_JOB_ID": "123"})) == 1  # inside a job, a missing srun hangs a multi-GPU run


def test_lightnings_leafspec_deprecation_is_silenced_in_lightning_only() -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from torch.utils._pytree import LeafSpec

    def leafspec_warnings(call: object) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_library_noise({})
            call()
        return sum("LeafSpec" in str(w.message) for w in caught)

    if leafspec_warnings(LeafSpec) == 0:
        pytest.skip("this torch does not deprecate LeafSpec")
    assert leafspec_warnings(lambda: _tree_flatten({"a": [1, 2]})) == 0


@pytest.mark.usefixtures("library_loggers")
def test_lightnings_tips_are_dropped_and_its_other_messages_kept() -> None:
    records = Records()
    for name in {s.logger for s in LOG_RECORDS}:
        logging.getLogger(name).addHandler(records)
    try:
        def new_trainer() -> None:
            L.Trainer(logger=False, accelerator="cpu", devices=1, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)

        new_trainer()
        assert any("Tip: For seamless cloud logging" in m for m in records.messages)  # the control
        records.messages.clear()
        silence_library_noise({})
        new_trainer()
        assert not any("Tip:" in m for m in records.messages)
        assert any(m.startswith("GPU available:") for m in records.messages)  # Lightning's other news
        for silence in LOG_RECORDS:
            logging.getLogger(silence.logger).info(silence.example)
        assert not any("Tip:" in m for m in records.messages)
    finally:
        for name in {s.logger for s in LOG_RECORDS}:
            logging.getLogger(name).removeHandler(records)


@pytest.mark.usefixtures("library_loggers")
def test_calling_it_again_adds_nothing() -> None:
    with warnings.catch_warnings():
        silence_library_noise({})
        filters = len(warnings.filters)
        silence_library_noise({})
        assert len(warnings.filters) == filters
    for name in {s.logger for s in LOG_RECORDS}:
        assert len(logging.getLogger(name).filters) == 1
