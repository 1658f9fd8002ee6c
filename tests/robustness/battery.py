"""Shared helpers of the robustness battery: generated inputs, tiny configs, and the real snakemake.

Everything is generated here (no downloads): tones in noise for audio, drawn particles for images.
Model settings are the smallest the schema allows, so a whole workflow run costs seconds of compute
(most of a run's wall time is Python start-up of its jobs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SR = 16000

# the smallest model and embedding settings the schema allows, enough to run every step
TRAIN = {"max_epochs": 1, "batch_size": 8, "base_channels": 4, "latent_dim": 4, "depth": 3}
EMBED = {"epochs": 2, "n_neighbors": 5, "hidden": 16, "cluster_dims": 2, "batch_size": 64, "min_steps": 0}
CLUSTER = {"min_cluster_size": 4}
EVALUATE = {"bootstrap": 0, "few_label_repeats": 0}
REPORT = {"n_examples": 4, "max_points": 100}
SPECTROGRAM = {"sample_rate": SR, "n_fft": 256, "hop_length": 64, "n_mels": 32, "fmin": 200.0, "fmax": 7000.0,
               "tile_duration_s": 0.4, "tile_size": 32}
SEGMENT = {"fmax": 7000.0, "n_fft": 256}


# ---------------------------------------------------------------------------------------------- audio

def tone(freq: float, dur: float, amp: float, sr: int = SR, sweep: float = 0.0) -> np.ndarray:
    """A Hann-windowed tone (``sweep`` Hz/s of upward FM)."""
    t = np.arange(int(dur * sr)) / sr
    phase = 2 * np.pi * (freq * t + 0.5 * sweep * t**2)
    return (amp * np.sin(phase) * np.hanning(len(t))).astype(np.float32)


CALL_TYPES = {"low": dict(freq=1000.0, dur=0.15, amp=0.3), "sweep": dict(freq=3000.0, dur=0.25, amp=0.2,
                                                                          sweep=6000.0)}


def recording(calls: list[tuple[float, str]], length_s: float, sr: int = SR, seed: int = 0,
              noise: float = 0.003) -> np.ndarray:
    """Noise with the named call types at the given onsets."""
    rng = np.random.default_rng(seed)
    y = (noise * rng.standard_normal(int(length_s * sr))).astype(np.float32)
    for onset, kind in calls:
        c = tone(sr=sr, **CALL_TYPES[kind])
        i = int(onset * sr)
        y[i : i + len(c)] += c
    return y


def call_rows(name: str, calls: list[tuple[float, str]]) -> list[dict]:
    return [{"file": name, "onset_s": round(on, 4), "offset_s": round(on + CALL_TYPES[k]["dur"], 4), "label": k}
            for on, k in calls]


def write_good_recordings(folder: Path, n_files: int, calls_per_file: int, seed: int = 0) -> list[dict]:
    """``n_files`` 16-bit WAVs with alternating call types; returns their annotation rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for f in range(n_files):
        calls = [(0.3 + 0.5 * k, "low" if (k + f) % 2 else "sweep") for k in range(calls_per_file)]
        name = f"good{f}.wav"
        sf.write(folder / name, recording(calls, 0.6 + 0.5 * calls_per_file, seed=seed + f), SR, subtype="PCM_16")
        rows += call_rows(name, calls)
    return rows


def write_csv(path: Path, rows: list[dict], label_column: str = "label", encoding: str = "utf-8") -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["file", "onset_s", "offset_s", label_column])
    writer.writerows([r["file"], r["onset_s"], r["offset_s"], r["label"]] for r in rows)
    path.write_bytes(out.getvalue().encode(encoding))


def write_long_recording(path: Path, hours: float, sr: int, call_at_s: float) -> None:
    """An hours-long 8-bit WAV written in blocks (never in memory whole) with one call at ``call_at_s``."""
    block = sr * 600
    total = int(hours * 3600 * sr)
    call = tone(500.0, 0.2, 0.5, sr=sr)
    start = int(call_at_s * sr)
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_U8", format="WAV") as fh:
        for i in range(0, total, block):
            y = (0.02 * rng.standard_normal(min(block, total - i))).astype(np.float32)
            if i <= start < i + len(y):
                y[start - i : start - i + len(call)] += call[: len(y) - (start - i)]
            fh.write(y)


# ---------------------------------------------------------------------------------------------- images

def particle(size: int = 48, kind: str = "disc", seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    """A dark particle on a bright field (bright-field microscopy), gray."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c = size / 2 + rng.uniform(-3, 3, 2)
    if kind == "disc":
        mask = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < (size * 0.22) ** 2
    else:
        mask = (np.abs(yy - c[0]) < size * 0.08) & (np.abs(xx - c[1]) < size * 0.32)
    img = 0.85 - 0.6 * mask + rng.normal(0, 0.01, (size, size))
    img = np.clip(img, 0, 1)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (img * top).astype(dtype)


# ---------------------------------------------------------------------------------------------- config

def audio_dataset(recordings: str, annotations: str | None, *, train: dict | None = None, **audio: object) -> dict:
    return {
        "modality": "audio",
        "audio": {"recordings": recordings, "annotations": annotations, "annotation_format": "csv",
                  "label_column": "label", "spectrogram": dict(SPECTROGRAM), "segment": dict(SEGMENT), **audio},
        "train": {**TRAIN, **(train or {})}, "embed": dict(EMBED), "cluster": dict(CLUSTER),
        "evaluate": dict(EVALUATE), "report": dict(REPORT),
    }


def images_dataset(images: str, *, train: dict | None = None, **section: object) -> dict:
    return {
        "modality": "images",
        "images": {"images": images, "normalize": {"tile_size": 32}, **section},
        "train": {**TRAIN, **(train or {})}, "embed": dict(EMBED), "cluster": dict(CLUSTER),
        "evaluate": dict(EVALUATE), "report": dict(REPORT),
    }


def write_config(workdir: Path, datasets: dict, seed: int = 0) -> Path:
    """``config/config.yaml`` in ``workdir`` (the README's run command picks it up as the default)."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump({"seed": seed, "datasets": datasets}, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- snakemake

def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The README's run command (``snakemake --cores all``, default profile) for ``workdir``."""
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "all", *args]


def snakemake(workdir: Path, *args: str, timeout: float = 900,
              preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(snakemake_cmd(workdir, *args), capture_output=True, text=True, env=_env(),
                          timeout=timeout, preexec_fn=preexec_fn)


def run_and_kill(workdir: Path, ready: Callable[[], bool], timeout: float = 600) -> tuple[int, str]:
    """Start the workflow in its own process group, SIGKILL the whole group once ``ready()``.

    Returns (the returncode, what it had printed); fails if it ended before ``ready()`` became true.
    """
    log = workdir / "killed-run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(snakemake_cmd(workdir), stdout=out, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if proc.poll() is not None:
                    raise AssertionError(f"workflow ended (rc {proc.returncode}) before the kill point:\n"
                                         + log.read_text()[-3000:])
                if time.monotonic() > deadline:
                    raise AssertionError("kill point not reached in time")
                time.sleep(0.01)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    # children of the group die too; wait until none is left writing into the workdir
    for _ in range(200):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    return rc, log.read_text()


# ---------------------------------------------------------------------------------------------- the battery

HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_FILE = '"onerror=alert(2) x=".wav'
TEX_LABEL = "$$\\alpha$$"  # Bokeh would typeset TeX with MathJax from a CDN: it must stay text
TILED = "tiled"


def _one_call(sr: int = SR, length_s: float = 1.0, amp: float = 0.3) -> np.ndarray:
    y = recording([], length_s, sr=sr)
    c = tone(1000.0, 0.15, amp, sr=sr)
    y[int(0.3 * sr) : int(0.3 * sr) + len(c)] += c
    return y


def _truncated_mid_frame(p: Path) -> None:
    sf.write(p, _one_call(length_s=2.0), SR, subtype="PCM_24")
    data = p.read_bytes()
    p.write_bytes(data[: 44 + 3 * SR + 1])  # 1 s and one byte of a 3-byte frame: cut mid-frame


def _nan_inf(p: Path) -> None:
    y = _one_call()
    y[int(0.35 * SR)] = np.nan
    y[int(0.36 * SR)] = np.inf
    sf.write(p, y, SR, subtype="FLOAT")


def _six_channels(p: Path) -> None:
    y = _one_call()
    sf.write(p, np.stack([y * (k + 1) / 6 for k in range(6)], axis=1), SR, subtype="PCM_16")


def _wrong_extension(p: Path) -> None:  # a WAV named .flac: libsndfile reads by content
    sf.write(p, _one_call(), SR, format="WAV", subtype="PCM_16")


# (kind, file written, its annotated calls as (onset, offset), input, expected outcome per call)
# outcome: TILED, or a substring of the skip reason
AUDIO_FILES = [
    ("audio truncated mid-frame", "truncated.wav", _truncated_mid_frame, [(0.3, 0.45), (1.5, 1.65)],
     "24-bit WAV cut 1 byte into a frame after 1 s of 2 s",
     [TILED, "outside the recording (0-1.000 s; the file is truncated"]),
    ("zero bytes", "empty.wav", lambda p: p.write_bytes(b""), [(0.3, 0.45)], "0-byte .wav",
     ["cannot read audio"]),
    ("header only", "header_only.wav", lambda p: sf.write(p, np.zeros(0, np.float32), SR), [(0.3, 0.45)],
     "44-byte WAV header, no samples", ["no samples (zero length)"]),
    ("all zeros", "zeros.wav", lambda p: sf.write(p, np.zeros(SR, np.float32), SR), [(0.3, 0.45)],
     "1 s of digital silence", ["audio is silent (all samples zero)"]),
    ("NaN/Inf samples", "nan_inf.wav", _nan_inf, [(0.3, 0.45), (0.6, 0.75)],
     "float WAV, a NaN and an Inf inside the first call", ["of the call's samples are NaN or Inf", TILED]),
    ("DC offset", "dc.wav", lambda p: sf.write(p, _one_call() + 0.3, SR, subtype="PCM_16"), [(0.3, 0.45)],
     "call on a +0.3 full-scale DC offset", [TILED]),
    ("clipped", "clipped.wav", lambda p: sf.write(p, np.clip(_one_call(amp=4.0), -1, 1), SR, subtype="PCM_16"),
     [(0.3, 0.45)], "call 12 dB over full scale, clipped", ["clipped: "]),
    ("8-bit", "u8.wav", lambda p: sf.write(p, _one_call(), SR, subtype="PCM_U8"), [(0.3, 0.45)],
     "unsigned 8-bit WAV", [TILED]),
    ("24-bit", "pcm24.wav", lambda p: sf.write(p, _one_call(), SR, subtype="PCM_24"), [(0.3, 0.45)],
     "24-bit WAV", [TILED]),
    ("32-bit float", "float.wav", lambda p: sf.write(p, _one_call(), SR, subtype="FLOAT"), [(0.3, 0.45)],
     "32-bit float WAV", [TILED]),
    ("6 channels", "six.wav", _six_channels, [(0.3, 0.45)], "6-channel WAV (channel: mix)", [TILED]),
    ("8 kHz", "rate8k.wav", lambda p: sf.write(p, _one_call(sr=8000), 8000, subtype="PCM_16"), [(0.3, 0.45)],
     "8 kHz file, dataset rate 16 kHz (resampled up)", [TILED]),
    ("384 kHz", "rate384k.wav", lambda p: sf.write(p, _one_call(sr=384000), 384000, subtype="PCM_16"),
     [(0.3, 0.45)], "384 kHz file (resampled down)", [TILED]),
    ("3-hour file", "three_hours.wav", lambda p: write_long_recording(p, 3.0, 2000, 10790.0),
     [(10790.0, 10790.2)], "3 h, 2 kHz 8-bit WAV (21.6 MB), one call 10 s before its end; read in blocks",
     [TILED]),
    ("wrong extension", "really_a_wav.flac", _wrong_extension, [(0.3, 0.45)], "a WAV named .flac", [TILED]),
    ("non-audio file", "notes.wav", lambda p: p.write_text("field notes, not audio\n" * 50), [(0.3, 0.45)],
     "a text file named .wav", ["cannot read audio"]),
    ("hostile file name and label", HOSTILE_FILE, lambda p: sf.write(p, _one_call(), SR, subtype="PCM_16"),
     [(0.3, 0.45)], f"file {HOSTILE_FILE}, label {HOSTILE_LABEL}", [TILED]),
]

# annotation rows against good0.wav (6.6 s long): (kind, file, onset, offset, label, input, outcome)
ANNOTATION_ROWS = [
    ("offset <= onset", "good0.wav", "3.2", "3.1", "low", "row with offset before onset",
     "offset 3.1 s <= onset 3.2 s"),
    ("call beyond the end", "good0.wav", "6.5", "9.0", "low", "row 6.5-9 s of a 5.6 s file",
     "call 6.5-9 s outside the recording (0-5.600 s)"),
    ("unknown file", "missing.wav", "0.3", "0.45", "low", "row naming a file that is not there",
     "recording not found"),
    ("onset not a number", "good0.wav", "abc", "0.45", "low", "row with onset 'abc'",
     "onset or offset is not a number"),
    ("duplicated row", None, None, None, None, "a row repeated verbatim", "same call as calls.csv line 2"),
    ("empty label", "dc.wav", "0.6", "0.7", "", "a call with no label", TILED),
    ("non-UTF-8 text", None, None, None, None, "the whole table in Windows-1252; float.wav's call labelled "
     "'Grünspecht'", TILED),
    ("label with TeX delimiters", None, None, None, None, f"dc.wav's call labelled {TEX_LABEL}",
     TILED + "; the report fetches nothing (checked in Chromium)"),
]
LABELS = {"float.wav": "Grünspecht", HOSTILE_FILE: HOSTILE_LABEL, "dc.wav": TEX_LABEL}
N_GOOD_FILES, CALLS_PER_GOOD_FILE = 4, 10


def write_bad_audio(folder: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Good recordings, every bad file of AUDIO_FILES, and one CSV (Windows-1252) with all their rows.

    Returns, per kind, what each of its rows must become: (file, "calls.csv line N", TILED or reason).
    """
    rows = write_good_recordings(folder, N_GOOD_FILES, CALLS_PER_GOOD_FILE)
    table = [dict(r) for r in rows]
    expect: dict[str, list[tuple[str, str, str]]] = {}

    def add(kind: str, row: dict, outcome: str) -> None:
        table.append(row)
        expect.setdefault(kind, []).append((row["file"], f"calls.csv line {len(table) + 1}", outcome))

    add("duplicated row", dict(rows[0]), next(r[-1] for r in ANNOTATION_ROWS if r[0] == "duplicated row"))
    for kind, name, write, calls, _, outcomes in AUDIO_FILES:
        write(folder / name)
        for (on, off), outcome in zip(calls, outcomes, strict=True):
            add(kind, {"file": name, "onset_s": on, "offset_s": off, "label": LABELS.get(name, "low")}, outcome)
    for kind, file, onset, offset, label, _, outcome in ANNOTATION_ROWS:
        if file is not None:
            add(kind, {"file": file, "onset_s": onset, "offset_s": offset, "label": label}, outcome)
    expect["non-UTF-8 text"] = list(expect["32-bit float"])  # the call labelled Grünspecht
    expect["label with TeX delimiters"] = list(expect["DC offset"])
    write_csv(folder / "calls.csv", table, encoding="cp1252")
    return expect


def _png(p: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(p)


def _huge_png(p: Path, width: int = 20000, height: int = 20000) -> None:
    """A valid 20000x20000 gray PNG (about 0.4 MB: zeros compress well), written row by row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _truncated_png(p: Path) -> None:
    _png(p, particle(seed=7))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _sixteen_bit_three_levels(p: Path) -> None:
    img = particle(seed=8).astype(np.uint16)
    _png(p, np.select([img < 100, img < 200], [300, 200], 100).astype(np.uint16))  # 3 levels of 65535


def _rgba(p: Path) -> None:
    gray = particle(seed=9)
    _png(p, np.dstack([gray, gray, gray, np.full_like(gray, 200)]))


def _cmyk_jpeg(p: Path) -> None:
    from PIL import Image

    gray = particle(seed=10)
    Image.fromarray(np.dstack([gray] * 3)).convert("CMYK").save(p, format="JPEG", quality=95)


def _tiff(compression: str) -> Callable[[Path], None]:
    """A 16-bit gray TIFF written by Pillow (``tiff_lzw``, ``tiff_adobe_deflate``), as cameras write them."""

    def write(p: Path) -> None:
        from PIL import Image

        Image.fromarray(particle(seed=11, dtype=np.uint16)).save(p, format="TIFF", compression=compression)

    return write


def _multipage(p: Path) -> None:
    import tifffile

    tifffile.imwrite(p, np.stack([particle(seed=12 + k) for k in range(3)]), photometric="minisblack")


def _exif_rotated(p: Path) -> None:
    """A 64x32 (w x h) JPEG whose EXIF says 'rotate 90': upright it is 32 wide and 64 high."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(particle(size=64, kind="bar", seed=13)[16:48, :]))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    img.save(p, format="JPEG", quality=95, exif=exif.tobytes())


# (kind, image file, writer, box (xmin, ymin, xmax, ymax) or None for the whole image, input, outcome)
# outcome: TILED, or a regex the skip reason matches
IMAGE_FILES = [
    ("image truncated", "truncated.png", _truncated_png, None, "a PNG cut in half", "cannot read image"),
    ("image 0 bytes", "empty.png", lambda p: p.write_bytes(b""), None, "0-byte .png", "cannot read image"),
    ("image 1x1", "one_pixel.png", lambda p: _png(p, np.full((1, 1), 128, np.uint8)), (0, 0, 1, 1),
     "a 1x1 px image, box of its one pixel", r"only 1x1 px to tile"),
    ("constant image", "constant.png", lambda p: _png(p, np.full((48, 48), 200, np.uint8)), None,
     "48x48 px all one gray value", r"crop has no contrast \(every pixel is 0\.78"),
    ("16-bit, 3 levels", "sixteen_bit.png", _sixteen_bit_three_levels, None,
     "16-bit PNG using 3 values (100, 200, 300 of 65535)", TILED),
    ("RGBA", "rgba.png", _rgba, None, "RGBA PNG with alpha 200", TILED),
    ("CMYK JPEG", "cmyk.jpg", _cmyk_jpeg, None, "a CMYK JPEG", TILED),
    ("LZW TIFF", "lzw.tif", _tiff("tiff_lzw"), None, "16-bit TIFF, LZW", TILED),
    ("deflate TIFF", "deflate.tif", _tiff("tiff_adobe_deflate"), None, "16-bit TIFF, deflate", TILED),
    ("multi-page TIFF", "stack.tif", _multipage, None, "3-page TIFF (page 0 is used)", TILED),
    ("EXIF-rotated JPEG", "rotated.jpg", _exif_rotated, None, "64x32 JPEG with EXIF orientation 6", TILED),
    ("20000x20000 image", "huge.png", _huge_png, None, "a 20000x20000 px PNG (400 MP)",
     r"image is 20000x20000 px \(400 MP\), above images\.max_megapixels = 100"),
    ("non-image file", "notes.png", lambda p: p.write_text("not an image\n" * 20), None, "a text file named .png",
     "cannot read image"),
]
# box rows against good image field0.png (48x48): (kind, image, box, input, outcome)
BOX_ROWS = [
    ("box outside the image", "field0.png", ("100", "100", "140", "140"), "box 100-140 on a 48x48 image",
     "is outside the 48x48 image"),
    ("box of zero area", "field0.png", ("10", "10", "10", "30"), "xmin == xmax", "has zero area"),
    ("box not numbers", "field0.png", ("a", "1", "20", "20"), "xmin 'a'", "not all numbers"),
    ("box names a missing image", "nowhere.png", ("0", "0", "10", "10"), "image not in the folder",
     "image not found"),
]
N_GOOD_IMAGES = 40


def write_bad_images(folder: Path, source_prefix: str) -> dict[str, list[tuple[str, str, str]]]:
    """Good one-particle fields, every bad file of IMAGE_FILES, and a box table with all their rows.

    Returns, per kind: (source as the store names it, "line N", TILED or a reason regex).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    expect: dict[str, list[tuple[str, str, str]]] = {}

    def add(kind: str, row: list, outcome: str) -> None:
        rows.append(row)
        expect.setdefault(kind, []).append((f"{source_prefix}/{row[0]}", f"line {len(rows) + 1}", outcome))

    for k in range(N_GOOD_IMAGES):
        kind = "disc" if k % 2 else "bar"
        _png(folder / f"field{k}.png", particle(kind=kind, seed=100 + k))
        rows.append([f"field{k}.png", kind, 4, 4, 44, 44])
    for kind, name, write, box, _, outcome in IMAGE_FILES:
        write(folder / name)
        add(kind, [name, "odd", *(box or (4, 4, 44, 44))], outcome)
    for kind, image, box, _, outcome in BOX_ROWS:
        add(kind, [image, "odd", *box], outcome)
    with open(folder / "boxes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)
    return expect


# ---------------------------------------------------------------------------------------------- config

def _set(path: str, value: object) -> Callable[[dict], None]:
    """A config edit: set the dotted ``path`` (datasets.a.train.max_epochs) to ``value``."""

    def edit(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _rename_dataset(config: dict) -> None:
    config["datasets"]["my birds!"] = config["datasets"].pop("e")


def _drop_section(config: dict) -> None:
    config["datasets"]["g"] = {"modality": "images"}


# config mistakes that the schema catches: all in one config, all reported at once (one line each)
SCHEMA_CASES = [
    ("value out of bounds", "train.max_epochs: 0", _set("datasets.a.train.max_epochs", 0),
     "datasets.a.train.max_epochs: 0 is less than the minimum of 1"),
    ("wrong type", 'train.batch_size: "64"', _set("datasets.b.train.batch_size", "64"),
     "datasets.b.train.batch_size: '64' is not of type 'integer'"),
    ("unknown key", "train.max_epoch (a typo)", _set("datasets.c.train.max_epoch", 3),
     "datasets.c.train: Additional properties are not allowed ('max_epoch' was unexpected)"),
    ("value not allowed", "spectrogram.tile_size: 100", _set("datasets.d.audio.spectrogram.tile_size", 100),
     "datasets.d.audio.spectrogram.tile_size: 100 is not one of [32, 64, 128, 256]"),
    ("bad dataset name", "a dataset named 'my birds!'", _rename_dataset,
     "datasets: 'my birds!' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"),
    ("negative seed", "seed: -1", _set("seed", -1), "seed: -1 is less than the minimum of 0"),
    ("modality section missing", "modality: images without an images section", _drop_section,
     "datasets.g: 'images' is a required property"),
]
# mistakes found after the schema (across keys, names, paths, syntax): one run each
CONFIG_CASES = [
    ("fmax above Nyquist", "spectrogram.fmax 9000 Hz at sample_rate 16000",
     _set("datasets.a.audio.spectrogram.fmax", 9000.0),
     "datasets.a.audio.spectrogram.fmax: 9000.0 Hz is above sample_rate/2 = 8000.0 Hz"),
    ("unknown dataset in run_datasets", "run_datasets: [nope]", _set("run_datasets", ["nope"]),
     "run_datasets: ['nope'] are not datasets; the datasets are ['a']"),
    ("input path missing", "audio.recordings: data/nowhere", _set("datasets.a.audio.recordings", "data/nowhere"),
     "datasets.a.audio.recordings: 'data/nowhere' -> {workdir}/data/nowhere does not exist"),
    ("unknown label column", "label_column: species, the table has 'label'",
     _set("datasets.a.audio.label_column", "species"),
     "datasets.a.audio.label_column: 'species' is not a column of {workdir}/data/audio/calls.csv; "
     "columns are ['file', 'onset_s', 'offset_s', 'label']"),
    ("augmentation for audio", "train.augment: dihedral on spectrograms", _set("datasets.a.train.augment", "dihedral"),
     "datasets.a.train.augment: 'dihedral' turns tiles, but spectrogram axes are time and frequency"),
    ("YAML syntax error", "an unclosed bracket in config.yaml", None,
     "Config file is not valid JSON or YAML"),
    ("no datasets", "a config without datasets", _set("datasets", {}), "datasets: {} should be non-empty"),
]

# whole datasets that cannot be used: (kind, dataset, input, what its tiles job log says)
STOPPING = [
    ("dataset with no usable items", "no-usable-items", "every recording unreadable or missing",
     "quagga tiles: no usable items for results/no-usable-items/tiles: "),
]


# kinds whose test is marked xfail(strict=True) until the module's owner fixes them: kind -> why
XFAIL: dict[str, str] = {}


def _skip_text(outcome: str) -> str:
    return outcome if outcome.startswith(TILED) else f"skipped: “{outcome}”"


def battery_table() -> list[tuple[str, str, str, str]]:
    """(group, kind, input, outcome) of every kind; tests/robustness/README.md shows exactly these rows."""
    rows = []
    for kind, _, _, _, what, outcomes in AUDIO_FILES:
        rows.append(("audio file", kind, what, "; ".join(
            (f"call {i + 1} " if len(outcomes) > 1 else "") + _skip_text(o) for i, o in enumerate(outcomes))))
    for kind, _, _, _, _, what, outcome in ANNOTATION_ROWS:
        rows.append(("annotation", kind, what, _skip_text(outcome)))
    for kind, _, _, _, what, outcome in IMAGE_FILES:
        text = _skip_text(outcome).replace("\\", "")
        rows.append(("image file", kind, what, text + (f" — **fails now** (xfail): {XFAIL[kind]}" if kind in XFAIL
                                                       else "")))
    for kind, _, _, what, outcome in BOX_ROWS:
        rows.append(("box row", kind, what, _skip_text(outcome)))
    for kind, _, what, message in STOPPING:
        rows.append(("dataset", kind, what, f"its tiles job stops: “{message}…”; the other datasets finish"))
    for kind, what, _, message in SCHEMA_CASES + CONFIG_CASES:
        rows.append(("config", kind, what, f"stops at start: “{message}”"))
    return rows


def markdown_rows() -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

    return [f"| {cell(g)} | {cell(k)} | {cell(i)} | {cell(o)} |" for g, k, i, o in battery_table()]


if __name__ == "__main__":  # print the table for the README
    print("\n".join(markdown_rows()))
