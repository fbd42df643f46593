"""Offline speech synthesis with espeak-ng (the ``espeakng-loader`` wheel) through ctypes.

espeak-ng keeps some synthesis state in C statics that survive between utterances (and even
``espeak_Terminate``), so the same word spoken twice in one process can differ by a few samples.
To make a dataset build byte-for-byte reproducible, every batch of clips is synthesised in a
fresh interpreter (``python -m polyfuse.data.datasets.speech``), in a fixed order, with the
library's random seed set before each clip.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.extras import require

AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesise into the callback, no playback
ESPEAK_RATE, ESPEAK_PITCH = 1, 3  # espeak_PARAMETER ids
POS_CHARACTER, CHARS_UTF8 = 1, 1

_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True, order=True)
class Utterance:
    """What to say and how: a word, an espeak voice name (``"en-us+f2"``), rate (wpm) and pitch (0-99)."""

    word: str
    voice: str
    rate: int
    pitch: int


def require_espeak() -> Any:
    """Import ``espeakng_loader`` or raise an ImportError that names the extra to install."""
    return require("espeakng_loader", "audio", "speech synthesis (espeak-ng)")


def available_variants() -> list[str]:
    """Names of the voice variants (``m1``, ``f2``, ``croak`` ...) shipped in the espeak data path."""
    variants = Path(require_espeak().get_data_path()) / "voices" / "!v"
    return sorted(p.name for p in variants.iterdir()) if variants.is_dir() else []


class _Espeak:
    """A synchronous espeak-ng session collecting int16 samples from the synth callback."""

    def __init__(self) -> None:
        loader = require_espeak()
        self.lib = ctypes.CDLL(loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data_path = loader.get_data_path().encode()
        self.sample_rate = int(self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0))
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _Callback(self._collect)  # keep a reference: C holds only a pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n: int, events: Any) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on synthesising

    def say(self, utt: Utterance, seed: int) -> np.ndarray:
        """Synthesise one utterance; returns int16 samples at ``self.sample_rate``."""
        if self.lib.espeak_SetVoiceByName(utt.voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {utt.voice!r}")
        self.lib.espeak_SetParameter(ESPEAK_RATE, utt.rate, 0)
        self.lib.espeak_SetParameter(ESPEAK_PITCH, utt.pitch, 0)
        self.lib.espeak_ng_SetRandSeed(seed)
        self._chunks.clear()
        text = utt.word.encode()
        self.lib.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def _synthesise_batch(utterances: list[Utterance], seed: int) -> tuple[int, list[np.ndarray]]:
    """Speak every utterance in order in this process (see the module docstring)."""
    engine = _Espeak()
    return engine.sample_rate, [engine.say(u, seed) for u in utterances]


def _start_worker(utterances: list[Utterance], seed: int, out: Path) -> subprocess.Popen[str]:
    """Start a fresh interpreter (not a fork, nor a spawn that re-imports ``__main__``) for one batch."""
    request = out.with_suffix(".json")
    spoken = [asdict(u) for u in utterances]
    request.write_text(json.dumps({"seed": seed, "out": str(out), "utterances": spoken}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-m", __name__, str(request)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _read_batch(out: Path) -> tuple[int, list[np.ndarray]]:
    with np.load(out) as saved:
        return int(saved["sample_rate"]), np.split(saved["samples"], saved["ends"][:-1])


def synthesise(
    utterances: Sequence[Utterance], seed: int = 0, workers: int = 2
) -> tuple[int, dict[Utterance, np.ndarray]]:
    """Speak each distinct utterance once, reproducibly, in up to ``workers`` fresh processes.

    Returns:
        The sample rate and a mapping utterance -> int16 samples.
    """
    require_espeak()
    unique = sorted(set(utterances))
    if not unique:
        return 0, {}
    n_batches = max(1, min(workers, len(unique)))
    batches = [unique[i::n_batches] for i in range(n_batches)]
    clips: dict[Utterance, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="polyfuse-speech-") as tmp:
        outs = [Path(tmp) / f"batch{i}.npz" for i in range(n_batches)]
        running = [_start_worker(batch, seed, out) for batch, out in zip(batches, outs, strict=True)]
        for worker in running:
            _, err = worker.communicate()
            if worker.returncode != 0:
                raise RuntimeError(f"speech synthesis failed:\n{err}")
        for batch, out in zip(batches, outs, strict=True):
            sample_rate, waves = _read_batch(out)
            clips.update(zip(batch, waves, strict=True))
    return sample_rate, clips


def _worker_main() -> None:
    """Entry point of a worker: a JSON request file in, an .npz of concatenated clips out."""
    request = json.loads(Path(sys.argv[1]).read_text())
    utterances = [Utterance(**u) for u in request["utterances"]]
    sample_rate, waves = _synthesise_batch(utterances, int(request["seed"]))
    ends = np.cumsum([len(w) for w in waves])
    samples = np.concatenate(waves) if waves else np.zeros(0, np.int16)
    np.savez(request["out"], sample_rate=sample_rate, samples=samples, ends=ends)


if __name__ == "__main__":
    _worker_main()
