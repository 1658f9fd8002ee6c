"""Settings found from the data: ``auto`` values resolved once per dataset, with the statistic behind each.

A new user has only the defaults, so every setting that depends on the data (tile span, dB bounds, band,
intensity mode, training length) defaults to ``auto``. A front end resolves them once per dataset, from
the data and without labels, before any tile is made (``quagga settings``, rule ``settings``). What was
chosen, and from what, is written to ``settings.json`` next to the tiles, copied into the store and
shown in the report; an explicit value in the config always wins and is recorded as such. Resolution is
deterministic (evenly spaced samples, no random draws): the same data gives the same values.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quagga import __version__

log = logging.getLogger(__name__)

AUTO = "auto"
MIN_ITEMS = 20  # fewer calls or particles than this: statistics are not trusted, stated fallbacks are used
# "auto" modes decided anew for every item at tiling time, not once per dataset: they stay "auto"
PER_ITEM_AUTO = frozenset({"detect.polarity"})


def is_auto(value: Any) -> bool:
    """Whether a config value asks to be found from the data."""
    return isinstance(value, str) and value == AUTO


class SettingsError(ValueError):
    """An explicit setting contradicts what the data are (e.g. fmax above the recordings' Nyquist frequency)."""


@dataclass
class Choices:
    """How every resolved setting got its value: from the config, from the data, or a stated fallback.

    Keys are dotted config paths relative to the section (``spectrogram.db_min``); each record holds the
    value, its ``source`` (``config``, ``data`` or ``fallback``) and, for the last two, the statistic or
    the reason, which the log and the report's run summary show.
    """

    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config(self, key: str, value: Any) -> Any:
        self.records[key] = {"value": value, "source": "config", "statistic": "set in the config"}
        return value

    def data(self, key: str, value: Any, statistic: str) -> Any:
        self.records[key] = {"value": value, "source": "data", "statistic": statistic}
        log.info("auto %s = %s (%s)", key, value, statistic)
        return value

    def fallback(self, key: str, value: Any, reason: str) -> Any:
        self.records[key] = {"value": value, "source": "fallback", "statistic": reason}
        log.warning("auto %s: %s; using %s", key, reason, value)
        return value

    def pick(self, key: str, requested: Any, found: tuple[Any, str] | None, fallback: Any, reason: str) -> Any:
        """``requested`` if explicit; else the value ``found`` from the data (value, statistic); else ``fallback``."""
        if not is_auto(requested):
            return self.config(key, requested)
        if found is None:
            return self.fallback(key, fallback, reason)
        return self.data(key, found[0], found[1])

    def merge(self, other: Choices, prefix: str = "") -> None:
        self.records.update({prefix + k: v for k, v in other.records.items()})


def set_path(section: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted ``key`` (``spectrogram.db_min``) in a nested dict."""
    *parents, last = key.split(".")
    for name in parents:
        section = section.setdefault(name, {})
    section[last] = value


def resolved_section(requested: dict[str, Any], choices: Choices) -> dict[str, Any]:
    """A copy of the config section with every chosen value filled in."""
    section = copy.deepcopy(requested)
    for key, record in choices.records.items():
        set_path(section, key, record["value"])
    return section


def unresolved(section: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys still set to ``auto`` (a resolver must leave none but the per-item modes)."""
    keys = []
    for key, value in section.items():
        if isinstance(value, dict):
            keys += unresolved(value, f"{prefix}{key}.")
        elif is_auto(value) and prefix + key not in PER_ITEM_AUTO:
            keys.append(prefix + key)
    return keys


def write_settings(path: str | Path, modality: str, requested: dict[str, Any], resolved: dict[str, Any],
                   choices: Choices) -> None:
    """``settings.json``: the section as configured, as resolved, and how each setting was chosen."""
    from quagga.tables import write_json  # pandas and pyarrow: not needed by the config check that imports this

    left = unresolved(resolved)
    if left:
        raise RuntimeError(f"settings left unresolved: {left}")
    write_json({"modality": modality, "requested": requested, "resolved": resolved, "choices": choices.records,
                "quagga_version": __version__}, path)


def resolve_settings(modality: str, params: Any, base_dir: Path) -> tuple[Any, Choices]:
    """A dataset's front-end params (``AudioParams`` / ``ImageParams``) with every ``auto`` value found from
    its data, and how each was chosen: the one entry point of the settings stage, the tiles stage and the
    benchmarks, so they cannot resolve differently."""
    if modality == "audio":
        from quagga.audio.settings import resolve_audio_settings

        return resolve_audio_settings(params, base_dir)
    from quagga.images.settings import resolve_image_settings

    return resolve_image_settings(params, base_dir)


def read_settings(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
